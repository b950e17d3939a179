"""Input checks and launch helpers shared by every kernel of the package.

The kernels never see an input these checks have not accepted, so a bad shape,
dtype, device or block size is a :class:`ValueError` or :class:`TypeError` that
says what was wrong and what is accepted, never a traceback from inside Triton.

What is accepted
----------------
* ``q, k, v``: 4-D ``(B, H, N, d)`` tensors, ``q`` of shape ``(B, H, N_q, d)`` and
  ``k, v`` of shape ``(B, H, N_k, d)``, ``N_q, N_k >= 1``, ``1 <= d <= 256``
  (:data:`MAX_HEAD_DIM`), one dtype among float32, float16 and bfloat16
  (bfloat16 on the GPU only: Triton's CPU interpreter computes it wrongly), all on
  the process's kernel device (:func:`flashanim.kernels._device.check_device`).
* ``block_m, block_n``: powers of two in :data:`BLOCK_RANGE` of the backend
  (1..128 in the interpreter, 16..256 on the GPU).
* ``attn_mask`` (optional): a bool or floating tensor broadcastable to
  ``(B, H, N_q, N_k)`` (:func:`check_attn_mask`), on the kernel device.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import NamedTuple

import torch

from ._device import BACKEND, INTERPRET, check_device

__all__ = [
    "BLOCK_RANGE",
    "DTYPES",
    "GPU_CLOCK",
    "TRACE_STAGE",
    "LOG2E",
    "MAX_HEAD_DIM",
    "Shapes",
    "check_blocks",
    "check_attn_mask",
    "check_like",
    "check_qkv",
    "check_scale",
    "default_blocks",
    "elem_bytes",
    "head_block",
    "next_pow2",
    "resolve_blocks",
    "short_config",
    "SHORT_TABLE",
    "bwd_pass_config",
    "BWD_PASS_TABLE",
    "gpu_fwd_config",
    "GPU_FWD_TABLE",
]

#: ``log2(e)``: the kernels use ``exp2`` and fold this factor into ``qk_scale``.
LOG2E: float = 1.4426950408889634

#: Accepted input dtypes (bfloat16 only when compiled for the GPU).
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)

#: Largest head dimension accepted.
MAX_HEAD_DIM: int = 256

#: Accepted block sizes ``(min, max)`` (powers of two) on this process's backend.
#: ``tl.dot`` needs at least 16 rows/columns when compiled; the interpreter has no
#: such floor, so small blocks (the animations' 4x4) work there.
BLOCK_RANGE: tuple[int, int] = (1, 128) if INTERPRET else (16, 256)

#: Whether kernels read ``%globaltimer``/``%smid`` (compiled on CUDA only).
#: 0 in the interpreter; on the GPU 1 (program headers: SM, start and end time) or,
#: with ``FLASHANIM_EVENT_CLOCK=1`` in the environment, 2 (every event stamped too).
GPU_CLOCK: int = (
    0
    if BACKEND != "cuda"
    else 2
    if os.environ.get("FLASHANIM_EVENT_CLOCK") == "1"
    else 1
)

#: Whether an events-only trace (no value snapshots) writes each inner-loop
#: iteration's events with one store (``kernels/_trace.py``, "Staged events") rather
#: than one store per event; the records are the same. ``FLASHANIM_TRACE_STAGE=0``
#: turns it off (for comparison; ``bench/diagnose_trace.py``).
TRACE_STAGE: bool = os.environ.get("FLASHANIM_TRACE_STAGE", "1") != "0"

_ELEM_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


#: The dtypes :func:`check_qkv` accepts in this process (bfloat16 on the GPU only).
_FAST_DTYPES: frozenset = frozenset(
    t for t in DTYPES if not (t == torch.bfloat16 and INTERPRET)
)


class Shapes(NamedTuple):
    """The sizes of one attention problem, as :func:`check_qkv` found them."""

    batch: int
    heads: int
    n_q: int
    n_k: int
    head_dim: int


def next_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (``n >= 1``)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def elem_bytes(dtype: torch.dtype) -> int:
    """Bytes per element of an accepted dtype."""
    return _ELEM_BYTES[dtype]


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dim()}-D tensor of shape {tuple(x.shape)}"
    return f"a {type(x).__name__}"


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Shapes:
    """Check ``q, k, v`` for the attention kernels; return their sizes.

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)`` of one dtype among
        float32, float16 (and bfloat16 on the GPU), on the kernel device.

    Returns
    -------
    Shapes
        ``(batch, heads, n_q, n_k, head_dim)``.

    Raises
    ------
    TypeError
        When an argument is not a tensor or has a dtype that is not accepted.
    ValueError
        When shapes disagree or are out of range, when bfloat16 is asked of the CPU
        interpreter, or when a tensor is not on the kernel device.
    """
    # well-formed inputs (every call but a refused one): a few comparisons; anything
    # else goes through the checks below, which name what is wrong
    if type(q) is torch.Tensor and type(k) is torch.Tensor and type(v) is torch.Tensor:
        qs, ks = q.shape, k.shape
        if (
            len(qs) == 4
            and len(ks) == 4
            and ks == v.shape
            and qs[0] == ks[0]
            and qs[1] == ks[1]
            and qs[3] == ks[3]
            and q.dtype in _FAST_DTYPES
            and q.dtype == k.dtype
            and q.dtype == v.dtype
            and q.device.type == BACKEND
            and k.device.type == BACKEND
            and v.device.type == BACKEND
        ):
            batch, heads, n_q, d = qs
            n_k = ks[2]
            if batch >= 1 and heads >= 1 and n_q >= 1 and n_k >= 1:
                if 1 <= d <= MAX_HEAD_DIM:
                    return Shapes(int(batch), int(heads), int(n_q), int(n_k), int(d))
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape (B, H, N, d), got "
                f"{_describe(t)}"
            )
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D (batch, heads, seq_len, head_dim), got "
                f"{_describe(t)}"
            )
    if q.shape[0] != k.shape[0] or q.shape[0] != v.shape[0]:
        raise ValueError(
            f"q, k, v must have the same batch size (dim 0), got "
            f"{q.shape[0]}, {k.shape[0]}, {v.shape[0]}"
        )
    if q.shape[1] != k.shape[1] or q.shape[1] != v.shape[1]:
        raise ValueError(
            f"q, k, v must have the same number of heads (dim 1), got "
            f"{q.shape[1]}, {k.shape[1]}, {v.shape[1]}"
        )
    if q.shape[3] != k.shape[3] or q.shape[3] != v.shape[3]:
        raise ValueError(
            f"q, k, v must have the same head dim (dim 3), got "
            f"{q.shape[3]}, {k.shape[3]}, {v.shape[3]}"
        )
    if k.shape[2] != v.shape[2]:
        raise ValueError(
            f"k and v must have the same sequence length (dim 2), got "
            f"{k.shape[2]} and {v.shape[2]}"
        )
    batch, heads, n_q, d = q.shape
    n_k = k.shape[2]
    if batch < 1 or heads < 1:
        raise ValueError(
            f"batch and heads must be >= 1, got batch={batch}, heads={heads}"
        )
    if n_q < 1 or n_k < 1:
        raise ValueError(
            f"sequence lengths must be >= 1, got N_q={n_q} (q) and N_k={n_k} (k, v)"
        )
    if not 1 <= d <= MAX_HEAD_DIM:
        raise ValueError(
            f"head dim d={d} is not supported; accepted: 1 <= d <= {MAX_HEAD_DIM}"
        )
    dtypes = {q.dtype, k.dtype, v.dtype}
    if len(dtypes) != 1:
        raise TypeError(
            f"q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if q.dtype not in DTYPES:
        raise TypeError(
            f"dtype {q.dtype} is not supported; accepted: torch.float32, "
            "torch.float16, torch.bfloat16 (bfloat16 on the GPU only)"
        )
    if q.dtype == torch.bfloat16 and INTERPRET:
        raise ValueError(
            "bfloat16 is GPU-only: Triton's CPU interpreter computes bfloat16 "
            "wrongly; use torch.float32 or torch.float16 on the CPU"
        )
    check_device(q, k, v)
    return Shapes(int(batch), int(heads), int(n_q), int(n_k), int(d))


def check_like(t: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    """Check that ``t`` (e.g. ``dO``) has the shape, dtype and device of ``like``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(t)}")
    if t.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, got "
            f"{tuple(t.shape)}"
        )
    if t.dtype != like.dtype:
        raise TypeError(
            f"{name} must have the dtype of {like_name} ({like.dtype}), got {t.dtype}"
        )
    check_device(t)


def check_blocks(block_m: int, block_n: int) -> tuple[int, int]:
    """Check the block sizes ``BLOCK_M`` (query rows) and ``BLOCK_N`` (key rows).

    Both must be powers of two within :data:`BLOCK_RANGE` (1..128 in the CPU
    interpreter, 16..256 compiled on the GPU). Returns them as Python ints.
    """
    lo, hi = BLOCK_RANGE
    out = []
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        if isinstance(b, bool) or not isinstance(b, int):
            raise TypeError(
                f"{name} must be an int (a power of two in {lo}..{hi}), got "
                f"{type(b).__name__} {b!r}"
            )
        if b < lo or b > hi or b & (b - 1):
            raise ValueError(
                f"{name}={b} is not accepted; use a power of two in {lo}..{hi} "
                f"(on {BACKEND!r})"
            )
        out.append(int(b))
    return out[0], out[1]


def head_block(d: int) -> int:
    """``BLOCK_D``: the head dim padded to a power of two (at least 16 on the GPU)."""
    return max(next_pow2(d), 1 if INTERPRET else 16)


#: Short sequences (16-bit inputs, ``max(N_q, N_k)`` up to the row's bound):
#: ``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` by (pass, padded head dim, causal),
#: only where a measurement beat the rules of :func:`default_blocks` and
#: ``fa2._launch_opts``. Source: ``bench/sweep_issue15.py`` on an NVIDIA H200,
#: 2026-12-02 (``media/bench/sweep_issue15_NVIDIA_H200.jsonl``, ``bench/NOTES.md``
#: session 6): GPU time (a CUDA graph of 10 calls), bf16 and fp16, batch * N = 16k
#: tokens, every entry the fastest of 16 configurations in both dtypes:
#:
#: * forward causal, N = 128: 64 x 64, 2 stages (d = 64: 89.5 / 88.6 us against
#:   94.5 / 93.2 with 3; d = 128: 91.2 / 89.9 against 94.0 / 93.2); d = 64 also at
#:   N = 256 (109.1 / 108.7 against 111.2 / 110.3);
#: * backward causal d = 64: N = 128 64 x 64, 2 stages (314.7 against 326.7 with 3;
#:   also session 5's sweep); N = 256 64 x 64, 3 stages (387.5 / 387.8 against
#:   401.0 / 402.9 for the rule's 128 x 64).
#:
#: Elsewhere at N <= 512 the rules were the fastest or within 2 % (session 5's
#: entries for the non-causal d = 64 forward were 2-3 % slower than the rule's
#: 64 x 64 here and were dropped; their do_bench timing was host-bound).
SHORT_TABLE: dict[tuple[str, int, bool], tuple[tuple[int, tuple[int, ...]], ...]] = {
    ("fwd", 64, True): ((128, (64, 64, 4, 2)), (256, (64, 64, 4, 2))),
    ("fwd", 128, True): ((128, (64, 64, 4, 2)),),
    ("bwd", 64, True): ((128, (64, 64, 4, 2)), (256, (64, 64, 4, 3))),
}  # fmt: skip


def short_config(
    n_q: int, n_k: int, d: int, dtype: torch.dtype, backward: bool, causal: bool
) -> tuple[int, ...] | None:
    """The :data:`SHORT_TABLE` entry for this problem on the GPU, or ``None``."""
    if INTERPRET or dtype == torch.float32:
        return None
    rows = SHORT_TABLE.get(("bwd" if backward else "fwd", head_block(d), bool(causal)))
    n = max(n_q, n_k)
    for bound, cfg in rows or ():
        if n <= bound:
            return cfg
    return None


#: The backward's two main passes with blocks of their own (16-bit inputs, untraced
#: launches with default blocks): by (padded head dim, causal), rows
#: ``(smallest max(N_q, N_k), {"dkdv": cfg, "dq": cfg})`` where ``cfg`` is
#: ``(BLOCK_M, BLOCK_N, num_warps, num_stages)``. The dK/dV pass keeps a K/V block
#: and streams Q blocks past it, the dQ pass the reverse, so each may want its own
#: shape; a pass not named keeps ``default_blocks``' pair. Source:
#: ``bench/bwd_pass_sweep.py`` on an NVIDIA H200, 2026-12-03 (bf16, N = 1k/4k/16k,
#: 16k tokens, 14 configurations a pass, the other pass at the default; GPU time of
#: the whole backward; ``media/bench/bwd_pass_sweep_NVIDIA_H200.jsonl``,
#: ``bench/NOTES.md`` session 9). Entries where a pass was >= 2 % faster at each N
#: from the row's bound; d = 128 non-causal: nothing beat the default.
BWD_PASS_TABLE: dict[
    tuple[int, bool], tuple[tuple[int, dict[str, tuple[int, ...]]], ...]
] = {
    # dK/dV 32 x 128, 4 warps, 4 stages: 0.958 / 0.973 of the default at 4k / 16k;
    # dQ 128 x 64, 8 warps, 3 stages: 0.959 / 0.973 (1.03 at 1k: not from there)
    (64, False): ((2048, {"dkdv": (32, 128, 4, 4), "dq": (128, 64, 8, 3)}),),
    # dK/dV 32 x 128, 8 warps, 3 stages: 0.973 / 0.975 / 0.991 at 1k / 4k / 16k;
    # dQ 128 x 64, 8 warps, 3 stages: 0.973 / 0.970 / 0.979
    (64, True): ((1024, {"dkdv": (32, 128, 8, 3), "dq": (128, 64, 8, 3)}),),
    # dK/dV 64 x 128, 8 warps, 3 stages: 0.971 / 0.964 at 4k / 16k (1.014 at 1k)
    (128, True): ((2048, {"dkdv": (64, 128, 8, 3)}),),
}


def bwd_pass_config(
    n_q: int, n_k: int, d: int, dtype: torch.dtype, causal: bool
) -> dict[str, tuple[int, ...]] | None:
    """The :data:`BWD_PASS_TABLE` entry for this backward on the GPU, or ``None``."""
    if INTERPRET or dtype == torch.float32:
        return None
    return _last_reached(BWD_PASS_TABLE.get((head_block(d), bool(causal)), ()),
                         max(n_q, n_k))  # fmt: skip


def _last_reached(rows, n: int):
    """The entry of the last row ``(bound, entry)`` whose bound ``n`` reaches (rows
    in rising order), or ``None``."""
    found = None
    for bound, entry in rows:
        if n >= bound:
            found = entry
    return found


#: Forward launches measured on one GPU model (16-bit inputs, untraced launches with
#: default blocks and launch options, no mask): by (a substring of the device name, padded
#: head dim, causal), rows ``(smallest N_k, (BLOCK_M, BLOCK_N, num_warps,
#: num_stages, K/V by tensor descriptors))``; the last row whose bound N_k reaches
#: applies. Source: ``bench/fwd_tma_sweep.py`` (36 configurations, pointer and
#: descriptor loads, bf16, 16k tokens) and ``bench/ab_tma.py`` (descriptors against
#: pointers, both dtypes), alternated in one process on an NVIDIA H200, 2026-12-03
#: (``bench/NOTES.md``, session 11).
GPU_FWD_TABLE: dict[
    tuple[str, int, bool], tuple[tuple[int, tuple[int, int, int, int, bool]], ...]
] = {
    # 128 x 128, 8 warps, 3 stages, descriptors: 1.09-1.13x the speed of the rules
    # (128 x 64, 8 warps, 3 stages, pointer loads) from 2k to 16k keys, both dtypes
    ("H200", 128, False): ((2048, (128, 128, 8, 3, True)),),
    # the rules' blocks with descriptors: 1.03-1.05x from 4k to 16k keys
    ("H200", 64, False): ((4096, (128, 64, 4, 3, True)),),
}


def gpu_fwd_config(
    gpu: str, n_q: int, n_k: int, d: int, dtype: torch.dtype, causal: bool
) -> tuple[int, int, int, int, bool] | None:
    """The :data:`GPU_FWD_TABLE` entry for this forward on the GPU named ``gpu``
    (``torch.cuda.get_device_name``), or ``None``."""
    if INTERPRET or dtype == torch.float32 or not gpu:
        return None
    for (model, bd, c), rows in GPU_FWD_TABLE.items():
        if model in gpu and bd == head_block(d) and c == bool(causal):
            return _last_reached(rows, n_k)
    return None


def default_blocks(
    n_q: int,
    n_k: int,
    d: int,
    dtype: torch.dtype = torch.float16,
    backward: bool = False,
    causal: bool = False,
) -> tuple[int, int]:
    """Default ``(BLOCK_M, BLOCK_N)`` for a problem of this size.

    On the GPU, from a sweep on an H200 (``bench/tune_fa2.py``; figures in
    ``bench/NOTES.md``): forward 128 x 64 (128 x 128 for causal 16-bit ``d = 128``
    past 1k keys), 64 x 64 for short sequences (``N_k <= 1024``), smaller for wide
    float32 rows (shared memory); backward 64 x 64 (128 x 64 for causal ``d <= 64``).
    Short sequences take :data:`SHORT_TABLE`'s blocks where it has an entry. The
    launchers' plain calls (untraced, default blocks and launch options) may take
    others: each backward pass from :data:`BWD_PASS_TABLE`, and the forward on a
    GPU named in :data:`GPU_FWD_TABLE` from there.
    In the interpreter every block is one NumPy operation, so larger blocks run
    faster: 32 x 32. Blocks are not made larger than the (power-of-two-padded)
    sequence needs, within :data:`BLOCK_RANGE`.
    """
    lo, hi = BLOCK_RANGE
    short = short_config(n_q, n_k, d, dtype, backward, causal)
    if INTERPRET:
        bm, bn = 32, 32
    elif short is not None:
        bm, bn = short[0], short[1]
    else:
        width = head_block(d) * elem_bytes(dtype)  # bytes of one padded row
        if backward:
            if width <= 128 and causal:
                bm, bn = 128, 64
            else:
                bm, bn = (64, 64) if width <= 256 else (32, 32)
        elif width <= 256 and n_k <= 1024:
            bm, bn = 64, 64
        elif width <= 128:  # d <= 64 in 16-bit, d <= 32 in float32
            bm, bn = 128, 64
        elif width <= 256:
            if dtype == torch.float32:
                bm, bn = 128, 32
            else:
                bm, bn = (128, 128) if causal else (128, 64)
        elif width <= 512:
            bm, bn = 64, 32
        else:
            bm, bn = 32, 32
    bm = min(max(min(bm, next_pow2(n_q)), lo), hi)
    bn = min(max(min(bn, next_pow2(n_k)), lo), hi)
    return bm, bn


def resolve_blocks(
    block_m: int | None,
    block_n: int | None,
    n_q: int,
    n_k: int,
    d: int,
    dtype: torch.dtype = torch.float16,
    backward: bool = False,
    causal: bool = False,
) -> tuple[int, int]:
    """Fill missing block sizes from :func:`default_blocks`, then check both."""
    dm, dn = default_blocks(n_q, n_k, d, dtype, backward, causal)
    return check_blocks(
        dm if block_m is None else block_m, dn if block_n is None else block_n
    )


def check_scale(softmax_scale: float | None, d: int) -> float:
    """The softmax scale: ``1/sqrt(d)`` when ``None``, else a finite float ``> 0``."""
    if softmax_scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, numbers.Real):
        raise TypeError(
            f"softmax_scale must be a float > 0 or None (1/sqrt(d)), got "
            f"{type(softmax_scale).__name__}"
        )
    s = float(softmax_scale)
    if not math.isfinite(s) or s <= 0.0:
        raise ValueError(f"softmax_scale must be finite and > 0, got {s}")
    return s


def check_attn_mask(
    attn_mask: torch.Tensor | None, shapes: Shapes
) -> torch.Tensor | None:
    """Check an attention mask and view it as ``(B, H, N_q, N_k)`` without copying.

    Parameters
    ----------
    attn_mask
        ``None``, or a tensor broadcastable to ``(B, H, N_q, N_k)`` (at most 4-D;
        missing leading dimensions and dimensions of size 1 are broadcast with
        stride 0, so a key padding mask ``(B, 1, 1, N_k)`` costs no memory). Bool:
        ``True`` = the key takes part, ``False`` = masked (as
        ``scaled_dot_product_attention``). Floating: added to ``S = scale * Q K^T``
        (``-inf`` masks); float64 is converted to float32, others are kept.
    shapes
        The problem's sizes (:func:`check_qkv`).

    Returns
    -------
    torch.Tensor or None
        The mask expanded to ``(B, H, N_q, N_k)`` (a view; bool as ``uint8``).

    Raises
    ------
    TypeError
        For a non-tensor, an integer dtype, or a float mask that requires grad (the
        gradient of the bias is not computed).
    ValueError
        For a shape that does not broadcast, or a tensor off the kernel device.
    """
    if attn_mask is None:
        return None
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(
            f"attn_mask must be a bool or floating torch.Tensor or None, got "
            f"{_describe(attn_mask)}"
        )
    full = (shapes.batch, shapes.heads, shapes.n_q, shapes.n_k)
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise TypeError(
            f"attn_mask must be bool (True = attend) or floating (added to the "
            f"scores), got {attn_mask.dtype}"
        )
    if attn_mask.requires_grad:
        raise TypeError(
            "attn_mask requires grad, but the kernels do not compute the gradient "
            "of an additive bias; pass attn_mask.detach()"
        )
    ok = attn_mask.dim() <= 4 and all(
        m in (1, f) for m, f in zip(attn_mask.shape[::-1], full[::-1], strict=False)
    )
    if not ok:
        raise ValueError(
            f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to "
            f"(B, H, N_q, N_k) = {full}"
        )
    check_device(attn_mask)
    if attn_mask.dtype == torch.float64 or (
        attn_mask.dtype == torch.bfloat16 and INTERPRET
    ):
        attn_mask = attn_mask.float()
    elif attn_mask.dtype == torch.bool:
        attn_mask = attn_mask.view(torch.uint8)
    return attn_mask.expand(full)
