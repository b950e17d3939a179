"""Run a kernel on seeded random inputs with its trace switched on, and decode it.

:func:`record` is the one call a scene, a test or the command line needs: it checks
its arguments, draws ``Q``, ``K``, ``V`` and ``dO`` from ``N(0, 1)`` with a seeded
:class:`torch.Generator`, runs the kernel's recorder (``TRACE=True``), decodes the
trace buffers and fills in the metadata.

The kernels (and with them Triton) are imported only when :func:`record` is
called: the device is chosen once per process when :mod:`flashanim.kernels` is
first imported (see :mod:`flashanim.kernels._device`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from dataclasses import replace
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._interp import patch_once
from .decode import decode
from .model import KERNELS, Trace, TraceMeta

if TYPE_CHECKING:
    import torch

__all__ = [
    "record",
    "make_inputs",
    "trace_cache_dir",
    "DTYPES",
    "SMALL_RUN_ELEMENTS",
    "CACHE_ENV",
    "STEP_SECONDS",
    "estimate_recording",
]

log = logging.getLogger(__name__)

#: Environment variable: the folder of cached interpreter traces, or ``off``.
CACHE_ENV = "FLASHANIM_TRACE_CACHE"
_OFF = ("0", "off", "no", "false", "none")

#: Accepted dtype names.
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16")

#: A run whose tensors have at most this many elements each keeps them in
#: :attr:`Trace.tensors` even without ``values=True``.
SMALL_RUN_ELEMENTS = 1 << 16


def trace_cache_dir(environ=None) -> Path | None:
    """Where :func:`record` keeps the traces it recorded in Triton's interpreter.

    ``FLASHANIM_TRACE_CACHE`` names the folder; ``off`` (or ``0``) turns the cache
    off. Default: ``$XDG_CACHE_HOME/flashanim/traces`` (``~/.cache/...``).
    """
    env = os.environ if environ is None else environ
    raw = env.get(CACHE_ENV, "").strip()
    if raw.lower() in _OFF:
        return None
    if raw:
        return Path(raw).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "flashanim" / "traces"


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of the kernels' and the trace decoder's source files."""
    import importlib.util

    h = hashlib.sha256()
    for pkg in ("flashanim.kernels", "flashanim.trace"):
        # (found without importing the kernels, which would import PyTorch)
        (folder,) = importlib.util.find_spec(pkg).submodule_search_locations
        files = sorted(Path(folder).glob("*.py"))
        if not files:
            raise RuntimeError(f"no source files of {pkg} under {folder}")
        for f in files:
            h.update(f"{pkg}/{f.name}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _cache_path(folder: Path, kernel: str, args: dict) -> Path:
    """The cache file of one recording: a hash of everything that decides it."""
    import numpy
    import torch
    import triton

    from flashanim.kernels import fa2

    key = {
        **args,
        "kernel": kernel,
        "code": _code_digest(),
        "triton": triton.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        # staged events are tested equal to per-event ones; keyed all the same
        "trace_stage": bool(fa2.TRACE_STAGE),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return folder / f"{kernel}-{digest[:32]}.json.gz"


def _cached(path: Path | None) -> Trace | None:
    if path is None or not path.is_file():
        return None
    from .io import load_trace

    try:
        return load_trace(path)
    except Exception as err:  # unreadable: record again and overwrite it
        log.warning("ignoring cached trace %s (%s); recording again", path, err)
        return None


def _keep(path: Path | None, trace: Trace) -> None:
    if path is None:
        return
    from .io import save_trace

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_trace(trace, path)
    except OSError as err:  # a read-only home: record without the cache
        log.warning("could not cache the trace in %s (%s)", path.parent, err)


def _positive(name: str, x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer):
        raise TypeError(f"{name} must be an integer >= 1, got {x!r}")
    if x < 1:
        raise ValueError(f"{name} must be >= 1, got {x}")
    return int(x)


#: Seconds one block step (one program's visit of one K/V block) takes in Triton's
#: interpreter, per kernel, without and with value snapshots. Measured on this
#: project's 2-core machine, shared with other work, 2026-12-02 (N = 64, 4x4
#: blocks, d = 4); a quiet machine is up to ~2.5x faster (N = 256 with values:
#: 64 s measured earlier, 42 ms x 4096 steps = 172 s predicted here).
STEP_SECONDS: dict[str, tuple[float, float]] = {
    "fa2-fwd": (0.021, 0.043),
    "fa2-bwd": (0.046, 0.085),
    "fa1-fwd": (0.049, 0.056),
    "standard": (0.048, 0.077),
    # N_q = 1, N_k = 256, 4-key blocks, d = 4 (64 steps, split and reduce)
    "fa2-decode": (0.049, 0.076),
}


def estimate_recording(
    kernel: str,
    *,
    seq_len: int,
    seq_len_k: int | None = None,
    block_m: int = 4,
    block_n: int = 4,
    batch: int = 1,
    heads: int = 1,
    causal: bool = False,
    values: bool = True,
) -> tuple[float, int]:
    """``(seconds, block steps)`` a recording in Triton's interpreter takes, from
    the measured model :data:`STEP_SECONDS` times the number of block steps
    (``B·H·T_r·T_c``; causal kernels skip the blocks above the diagonal)."""
    n_k = seq_len if seq_len_k is None else seq_len_k
    t_r, t_c = -(-seq_len // block_m), -(-n_k // block_n)
    if causal and kernel != "standard":
        steps = sum(
            min(t_c, -(-min((i + 1) * block_m, n_k) // block_n)) for i in range(t_r)
        )
    else:
        steps = t_r * t_c
    steps *= batch * heads
    return steps * STEP_SECONDS[kernel][bool(values)], steps


def make_inputs(
    *,
    batch: int,
    heads: int,
    seq_len_q: int,
    seq_len_k: int,
    head_dim: int,
    dtype: str,
    seed: int,
    device: torch.device | str,
    heads_kv: int | None = None,
) -> dict[str, torch.Tensor]:
    """Seeded ``Q``, ``K``, ``V``, ``dO`` ~ ``N(0, 1)``, shape ``(B, H, N, d)``
    (``K``, ``V``: ``(B, H_kv, N_k, d)`` when ``heads_kv`` is given).

    They are drawn in that order from one CPU :class:`torch.Generator` (so the same
    seed gives the same inputs on every device and for every kernel), then cast to
    ``dtype`` and moved to ``device``.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = {
        "Q": (batch, heads, seq_len_q, head_dim),
        "K": (batch, heads_kv or heads, seq_len_k, head_dim),
        "V": (batch, heads_kv or heads, seq_len_k, head_dim),
        "dO": (batch, heads, seq_len_q, head_dim),
    }
    tdtype = getattr(torch, dtype)
    return {
        name: torch.randn(shape, generator=g, dtype=torch.float32).to(tdtype).to(device)
        for name, shape in shapes.items()
    }


def record(
    kernel: str,
    *,
    seq_len: int = 16,
    seq_len_k: int | None = None,
    head_dim: int = 4,
    block_m: int = 4,
    block_n: int = 4,
    batch: int = 1,
    heads: int = 1,
    causal: bool = False,
    values: bool = True,
    dtype: str = "float32",
    softmax_scale: float | None = None,
    seed: int = 0,
    device: str | None = None,
    keep_tensors: bool | None = None,
    cache: bool = True,
    heads_kv: int | None = None,
    num_splits: int | None = None,
) -> Trace:
    """Run ``kernel`` with its trace on and return the decoded :class:`Trace`.

    Parameters
    ----------
    kernel
        One of :data:`~flashanim.trace.model.KERNELS`: ``"fa2-fwd"``,
        ``"fa2-bwd"``, ``"fa1-fwd"``, ``"standard"``, ``"fa2-decode"``.
    seq_len, seq_len_k
        Query and key lengths ``N_q`` and ``N_k`` (``seq_len_k`` defaults to
        ``seq_len``).
    head_dim, block_m, block_n, batch, heads
        ``d``, ``BLOCK_M``, ``BLOCK_N``, ``B``, ``H``.
    causal
        Causal mask (aligned top-left: query ``i`` sees keys ``0..i``; for
        ``"fa2-decode"`` bottom-right, as flash-attn's decoding).
    values
        Record value snapshots (S and P tiles, ``m_i``, ``l_i``, ``acc``...): for
        small runs only.
    dtype
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    softmax_scale
        Defaults to ``1 / sqrt(head_dim)``.
    seed
        Seed of the inputs' generator.
    device
        ``"cpu"`` (Triton's interpreter) or ``"cuda"``; must match the device this
        process's kernels run on (``None``: that device).
    keep_tensors
        Keep inputs and outputs in :attr:`Trace.tensors` as float64 arrays;
        ``None``: when ``values`` or when each has at most
        :data:`SMALL_RUN_ELEMENTS` elements.
    cache
        On the CPU (Triton's interpreter, which takes seconds for a few thousand
        events), reuse a trace recorded earlier with the same arguments by the
        same kernel source, Triton, PyTorch and NumPy (see
        :func:`trace_cache_dir`); a new recording is saved there. GPU traces
        are never cached (they carry timings).
    heads_kv, num_splits
        ``"fa2-decode"`` only: the K/V heads (dividing ``heads``; default
        ``heads``) and the slices of the cache (default: the kernel's own choice,
        :func:`flashanim.kernels.decode.choose_splits`).

    Raises
    ------
    ValueError, TypeError
        An unknown kernel or dtype, a size below 1, a device other than this
        process's, or a shape the kernel refuses.
    """
    if kernel not in KERNELS:
        raise ValueError(
            f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}"
        )
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    seq_len = _positive("seq_len", seq_len)
    seq_len_k = seq_len if seq_len_k is None else _positive("seq_len_k", seq_len_k)
    head_dim = _positive("head_dim", head_dim)
    block_m = _positive("block_m", block_m)
    block_n = _positive("block_n", block_n)
    batch = _positive("batch", batch)
    heads = _positive("heads", heads)
    if kernel != "fa2-decode" and (heads_kv is not None or num_splits is not None):
        raise ValueError(
            f"heads_kv and num_splits are for kernel 'fa2-decode', not {kernel!r}"
        )
    if heads_kv is not None:
        heads_kv = _positive("heads_kv", heads_kv)
        if heads % heads_kv:
            raise ValueError(
                f"heads_kv must divide heads: {heads_kv} K/V heads for {heads} "
                "query heads"
            )
    if num_splits is not None:
        num_splits = _positive("num_splits", num_splits)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if softmax_scale is None:
        softmax_scale = 1.0 / math.sqrt(head_dim)
    elif not isinstance(softmax_scale, int | float) or not math.isfinite(softmax_scale):
        raise ValueError(
            f"softmax_scale must be a finite number, got {softmax_scale!r}"
        )
    if device is not None and device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose one of cpu, cuda")

    # flashanim.kernels first: it chooses the device before Triton is imported.
    from flashanim.kernels import BACKEND, default_device, recorder

    import torch  # isort: skip
    import triton  # isort: skip

    if device is not None and device != BACKEND:
        raise ValueError(
            f"this process runs the kernels on {BACKEND!r}, not {device!r}: the device "
            "is chosen once per process (set FLASHANIM_DEVICE before importing "
            "flashanim.kernels, or use `flashanim trace --device`)"
        )
    dev = default_device()
    biggest = max(seq_len, seq_len_k) * batch * heads * head_dim
    if keep_tensors is None:
        keep_tensors = bool(values) or biggest <= SMALL_RUN_ELEMENTS
    folder = trace_cache_dir() if cache and dev.type == "cpu" else None
    where = None
    extra = {}
    if kernel == "fa2-decode":
        extra = dict(heads_kv=heads_kv, num_splits=num_splits)
    if folder is not None:
        where = _cache_path(folder, kernel, dict(**extra,
            seq_len=seq_len, seq_len_k=seq_len_k, head_dim=head_dim,
            block_m=block_m, block_n=block_n, batch=batch, heads=heads,
            causal=bool(causal), values=bool(values), dtype=dtype,
            softmax_scale=repr(float(softmax_scale)), seed=int(seed),
            keep_tensors=bool(keep_tensors), device=dev.type,
        ))  # fmt: skip
        hit = _cached(where)
        if hit is not None:
            return hit
    inputs = make_inputs(
        batch=batch,
        heads=heads,
        seq_len_q=seq_len,
        seq_len_k=seq_len_k,
        head_dim=head_dim,
        dtype=dtype,
        seed=int(seed),
        device=dev,
        heads_kv=heads_kv,
    )
    kwargs = dict(
        causal=bool(causal),
        softmax_scale=float(softmax_scale),
        block_m=block_m,
        block_n=block_n,
        values=bool(values),
    )
    if kernel == "fa2-bwd":
        kwargs["do"] = inputs["dO"]
    if kernel == "fa2-decode":
        kwargs["num_splits"] = num_splits
    run = recorder(kernel)
    with patch_once() if dev.type == "cpu" else contextlib.nullcontext():
        raw = run(inputs["Q"], inputs["K"], inputs["V"], **kwargs)
    meta = TraceMeta(
        kernel=kernel,
        batch=batch,
        heads=heads,
        seq_len_q=seq_len,
        seq_len_k=seq_len_k,
        head_dim=head_dim,
        block_m=raw.block_m,
        block_n=raw.block_n,
        causal=bool(causal),
        dtype=dtype,
        softmax_scale=float(softmax_scale),
        device=dev.type,
        values=bool(values),
        triton_version=triton.__version__,
        torch_version=torch.__version__,
        gpu_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seed=int(seed),
    )
    if kernel == "fa2-decode":  # the recorder's split count: one program per slice
        n_split = len(raw.launches[0].header)
        meta = replace(meta, heads_kv=heads_kv or heads)
        meta = replace(meta, num_splits=n_split // (meta.batch_heads * meta.t_r))
    trace = decode(raw, meta)
    if keep_tensors:
        names = ["Q", "K", "V"] + (["dO"] if kernel == "fa2-bwd" else [])
        arrays = {n: inputs[n] for n in names}
        # the decoding kernel's float32 scratch (O_s, LSE_s) stays out: its
        # padding is never written; the events' snapshots show the partial results
        arrays.update(
            (k, v) for k, v in raw.outputs.items() if k not in ("O_s", "LSE_s")
        )
        for name, t in arrays.items():
            trace.tensors[name] = t.detach().to("cpu", torch.float64).numpy()
    _keep(where, trace)
    return trace
