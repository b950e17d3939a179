"""Standard attention as three kernels: the ``N²`` round trips that fusion removes.

A naive implementation writes the whole score matrix to global memory (HBM), reads
it back to take the softmax, writes ``P`` back, and reads it once more for ``P V``:

1. ``qk`` (program per ``(i, j)`` tile, like a plain matmul):
   ``S_ij = softmax_scale · Q_i K_jᵀ`` stored to ``S`` in HBM.
2. ``softmax`` (program per Q block ``i``; whole rows): load the rows of ``S``,
   mask, ``P = softmax(S)`` row by row, store ``P``. A program holds
   ``ROWS x next_pow2(N_k)`` scores at once, ``ROWS = min(BLOCK_M, 2**14 //
   next_pow2(N_k))`` (at least 1), so ``N_k`` up to 16k fits on a GPU; when
   ``ROWS < BLOCK_M`` the program walks its Q block in chunks of ``ROWS`` rows.
3. ``pv`` (program per Q block ``i``): ``acc = Σ_j P_ij V_j``, ``O_i = acc``
   stored.

``S`` and ``P`` are stored in the input dtype, as a naive PyTorch implementation
(``s = q @ k.T * scale; p = s.softmax(-1); o = p @ v``) keeps them; the softmax
itself is computed in float32. Causal (top-left aligned: query ``r`` sees keys
``0 .. r``) is a mask in kernel 2 only: standard attention computes all of ``S``,
and ``P`` is 0 above the diagonal; nothing is skipped.

``T_r = ceil(N_q / BLOCK_M)``, ``T_c = ceil(N_k / BLOCK_N)``.

Trace events (``op tensor(row, col)``: tile coordinates in the tensor's own matrix)
---------------------------------------------------------------------
Launch ``"qk"``, grid ``(T_r · T_c, B · H)``, program ``(i · T_c + j) + bh · T_r ·
T_c`` (header block ``i``)::

    load Q(i), load K(j), qk S(i,j), store S(i,j)

Launch ``"softmax"``, grid ``(T_r, B · H)``, program ``i + bh · T_r`` (header
block ``i``); for each chunk of ``ROWS`` rows of Q block ``i`` holding a valid row
(one chunk, the whole block, whenever ``BLOCK_M · N_K_PAD <= 2**14``)::

    load S(i,j)     for j < T_c
    mask S(i,j)     for j < T_c where masked
    softmax P(i,j)  for j < T_c          (one softmax of whole rows, shown per tile)
    store P(i,j)    for j < T_c

A tile is masked iff ``(j + 1) · BLOCK_N > N_k`` (key tail) or, causal,
``(j + 1) · BLOCK_N - 1 > r0`` where ``r0`` is the chunk's first row (``i ·
BLOCK_M`` with one chunk). The loads and stores of a chunk are single
whole-row memory operations; the events split them by tile.

Launch ``"pv"``, grid ``(T_r, B · H)``, program ``i + bh · T_r`` (header block
``i``)::

    for j < T_c:  load P(i,j), load V(j), pv acc(i)
    store O(i)

Value snapshots (``values=True``; float32, padded tiles, row-major): ``Q(i)``
``BLOCK_M x BLOCK_D``, ``K(j), V(j)`` ``BLOCK_N x BLOCK_D``, ``S, P`` tiles
``BLOCK_M x BLOCK_N`` (``ROWS x BLOCK_N`` in kernel 2), ``acc(i), O(i)``
``BLOCK_M x BLOCK_D``. ``qk`` holds ``softmax_scale · Q_i K_jᵀ`` in float32,
``store S`` / ``load S`` what HBM holds (the input dtype; padding ``-inf`` in the
load), ``mask`` the masked scores (``-inf``), ``softmax``/``store P`` the
probabilities.

HBM traffic (closed forms, per batch·head; multiply by ``B · H``)
-----------------------------------------------------------------
``E`` is the input element size (``S`` and ``P`` are stored in the input dtype).
Causal and not alike (nothing is skipped)::

    qk:      load Q  = T_c · N_q · d · E     load K = T_r · N_k · d · E
             store S = N_q · N_k · E
    softmax: load S  = N_q · N_k · E         store P = N_q · N_k · E
    pv:      load P  = N_q · N_k · E         load V = T_r · N_k · d · E
             store O = N_q · d · E

:func:`hbm_traffic` computes these.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import _steps as step
from ._common import (
    check_blocks,
    check_qkv,
    check_scale,
    elem_bytes,
    head_block,
    next_pow2,
    resolve_blocks,
)
from ._device import INTERPRET
from ._trace import launch_buffers, rec, recorder, trace_args, trace_start, trace_stop

__all__ = [
    "attention_forward",
    "record",
    "hbm_traffic",
    "softmax_rows",
    "SOFTMAX_BUDGET",
]

#: Most scores one softmax program holds at once (``ROWS · next_pow2(N_k)``).
SOFTMAX_BUDGET: int = 1 << 14


@triton.jit
def _qk_kernel(
    Q, K, S, softmax_scale,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_sb, stride_sh, stride_sm, stride_sn,
    H, N_Q, N_K, HEAD_DIM,
    ev_ptr, hdr_ptr, val_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ELEM: tl.constexpr, DOT_PRECISION: tl.constexpr,
    TRACE: tl.constexpr, VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr,
):  # fmt: skip
    """Kernel 1: ``S_ij = softmax_scale · Q_i K_jᵀ`` to HBM, one program per tile."""
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    prog = pid + bh * tl.num_programs(0)
    T_c = tl.cdiv(N_K, BLOCK_N)
    i = pid // T_c
    j = pid % T_c
    b = bh // H
    h = bh % H
    offs_d = tl.arange(0, BLOCK_D)
    rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = j * BLOCK_N + tl.arange(0, BLOCK_N)
    d_ok = offs_d < HEAD_DIM
    r_ok = rows < N_Q
    c_ok = cols < N_K
    n_i = tl.minimum(N_Q - i * BLOCK_M, BLOCK_M)
    n_j = tl.minimum(N_K - j * BLOCK_N, BLOCK_N)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, i, TC)
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    q = tl.load(q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=r_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_Q, i, 0, q, n_i * HEAD_DIM * ELEM)
    k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                mask=c_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_K, j, 0, k, n_j * HEAD_DIM * ELEM)
    s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * softmax_scale
    tr = rec(tr, TC, step.QK_S, i, j, s)
    s_out = s.to(S.dtype.element_ty)
    s_base = S + b.to(tl.int64) * stride_sb + h.to(tl.int64) * stride_sh
    tl.store(s_base + rows[:, None] * stride_sm + cols[None, :] * stride_sn, s_out,
             mask=r_ok[:, None] & c_ok[None, :])  # fmt: skip
    tr = rec(tr, TC, step.STORE_S, i, j, s_out, n_i * n_j * ELEM)
    trace_stop(tr, TC)


@triton.jit
def _tile(x, j, ROWS: tl.constexpr, N_K_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key tile ``j`` (``ROWS x BLOCK_N``) of the ``ROWS x N_K_PAD`` row block ``x``.

    Exact: every other tile is replaced by 0 before the sum over tiles.
    """
    x3 = tl.reshape(x, [ROWS, N_K_PAD // BLOCK_N, BLOCK_N])
    sel = tl.arange(0, N_K_PAD // BLOCK_N)[None, :, None] == j
    return tl.sum(tl.where(sel, x3, 0.0), axis=1)


@triton.jit
def _softmax_kernel(
    S, P,
    stride_sb, stride_sh, stride_sm, stride_sn,
    stride_pb, stride_ph, stride_pm, stride_pn,
    H, N_Q, N_K,
    ev_ptr, hdr_ptr, val_ptr,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ROWS: tl.constexpr, N_K_PAD: tl.constexpr, ELEM: tl.constexpr,
    TRACE: tl.constexpr, VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr,
):  # fmt: skip
    """Kernel 2: ``P = softmax(S)`` of whole rows, ``S`` read from and ``P`` written
    to HBM; one program per Q block, ``ROWS`` rows at a time."""
    i = tl.program_id(0)
    bh = tl.program_id(1)
    prog = i + bh * tl.num_programs(0)
    b = bh // H
    h = bh % H
    T_c = tl.cdiv(N_K, BLOCK_N)
    cols = tl.arange(0, N_K_PAD)
    c_ok = cols < N_K
    s_base = S + b.to(tl.int64) * stride_sb + h.to(tl.int64) * stride_sh
    p_base = P + b.to(tl.int64) * stride_pb + h.to(tl.int64) * stride_ph
    n_i = tl.minimum(N_Q - i * BLOCK_M, BLOCK_M)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, i, TC)
    for r0 in range(0, n_i, ROWS):
        row0 = i * BLOCK_M + r0
        rows = row0 + tl.arange(0, ROWS)
        r_ok = rows < N_Q
        n_r = tl.minimum(N_Q - row0, ROWS)
        io_mask = r_ok[:, None] & c_ok[None, :]
        # One whole-row load of S.
        s = tl.load(s_base + rows[:, None] * stride_sm + cols[None, :] * stride_sn,
                    mask=io_mask, other=float("-inf")).to(tl.float32)  # fmt: skip
        if TRACE:
            for j in range(0, T_c):
                n_j = tl.minimum(N_K - j * BLOCK_N, BLOCK_N)
                x = s
                if VALUES:
                    x = _tile(s, j, ROWS, N_K_PAD, BLOCK_N)
                tr = rec(tr, TC, step.LOAD_S, i, j, x, n_r * n_j * ELEM)
        valid = c_ok[None, :]
        if CAUSAL:
            valid = valid & (cols[None, :] <= rows[:, None])
        s = tl.where(valid, s, float("-inf"))
        if TRACE:
            for j in range(0, T_c):
                need_mask = (j + 1) * BLOCK_N > N_K
                if CAUSAL:
                    need_mask = need_mask | ((j + 1) * BLOCK_N - 1 > row0)
                if need_mask:
                    x = s
                    if VALUES:
                        x = _tile(s, j, ROWS, N_K_PAD, BLOCK_N)
                    tr = rec(tr, TC, step.MASK_S, i, j, x)
        # Softmax of whole rows, in float32 (rows past N_q: all -inf -> 0).
        m = tl.max(s, 1)
        m = tl.where(m == float("-inf"), 0.0, m)
        e = tl.exp(s - m[:, None])
        denom = tl.sum(e, 1)
        p = e / tl.where(denom == 0.0, 1.0, denom)[:, None]
        p_out = p.to(P.dtype.element_ty)
        if TRACE:
            for j in range(0, T_c):
                x = p_out
                if VALUES:
                    x = _tile(p_out.to(tl.float32), j, ROWS, N_K_PAD, BLOCK_N)
                tr = rec(tr, TC, step.SOFTMAX_P, i, j, x)
        # One whole-row store of P.
        tl.store(p_base + rows[:, None] * stride_pm + cols[None, :] * stride_pn, p_out,
                 mask=io_mask)  # fmt: skip
        if TRACE:
            for j in range(0, T_c):
                n_j = tl.minimum(N_K - j * BLOCK_N, BLOCK_N)
                x = p_out
                if VALUES:
                    x = _tile(p_out.to(tl.float32), j, ROWS, N_K_PAD, BLOCK_N)
                tr = rec(tr, TC, step.STORE_P, i, j, x, n_r * n_j * ELEM)
    trace_stop(tr, TC)


@triton.jit
def _pv_kernel(
    P, V, Out,
    stride_pb, stride_ph, stride_pm, stride_pn,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_om, stride_od,
    H, N_Q, N_K, HEAD_DIM,
    ev_ptr, hdr_ptr, val_ptr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ELEM: tl.constexpr, DOT_PRECISION: tl.constexpr,
    TRACE: tl.constexpr, VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr,
):  # fmt: skip
    """Kernel 3: ``O_i = Σ_j P_ij V_j``, ``P`` read from HBM; program per Q block."""
    i = tl.program_id(0)
    bh = tl.program_id(1)
    prog = i + bh * tl.num_programs(0)
    b = bh // H
    h = bh % H
    T_c = tl.cdiv(N_K, BLOCK_N)
    rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    r_ok = rows < N_Q
    d_ok = offs_d < HEAD_DIM
    n_i = tl.minimum(N_Q - i * BLOCK_M, BLOCK_M)
    p_base = P + b.to(tl.int64) * stride_pb + h.to(tl.int64) * stride_ph
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, i, TC)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for j in range(0, T_c):
        cols = j * BLOCK_N + offs_n
        c_ok = cols < N_K
        n_j = tl.minimum(N_K - j * BLOCK_N, BLOCK_N)
        p = tl.load(p_base + rows[:, None] * stride_pm + cols[None, :] * stride_pn,
                    mask=r_ok[:, None] & c_ok[None, :], other=0.0)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_P, i, j, p, n_i * n_j * ELEM)
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=c_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_V, j, 0, v, n_j * HEAD_DIM * ELEM)
        acc += tl.dot(p, v, input_precision=DOT_PRECISION)
        tr = rec(tr, TC, step.PV_ACC, i, j, acc)
    o = acc.to(Out.dtype.element_ty)
    o_base = Out + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh
    tl.store(o_base + rows[:, None] * stride_om + offs_d[None, :] * stride_od, o,
             mask=r_ok[:, None] & d_ok[None, :])  # fmt: skip
    tr = rec(tr, TC, step.STORE_O, i, 0, o, n_i * HEAD_DIM * ELEM)
    trace_stop(tr, TC)


# --------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _n_k_pad(n_k: int, block_n: int) -> int:
    """``N_K_PAD``: the key length a softmax row holds (a power of two >= BLOCK_N)."""
    return max(next_pow2(n_k), block_n)


def softmax_rows(block_m: int, block_n: int, n_k: int) -> int:
    """``ROWS``: rows one softmax program holds at once (a power of two).

    ``min(BLOCK_M, SOFTMAX_BUDGET // N_K_PAD)`` and at least 1, where ``N_K_PAD =
    max(next_pow2(N_k), BLOCK_N)``.
    """
    return max(1, min(block_m, SOFTMAX_BUDGET // _n_k_pad(n_k, block_n)))


def _softmax_masked(row0: int, n_k: int, block_n: int, causal: bool) -> int:
    """Number of masked tiles of a softmax chunk whose first row is ``row0``."""
    return sum(
        (j + 1) * block_n > n_k or (causal and (j + 1) * block_n - 1 > row0)
        for j in range(_cdiv(n_k, block_n))
    )


def _trace_sizes(n_q, n_k, block_m, block_n, block_d, causal):
    """Exact ``(MAX_EV, MAX_VAL)`` per launch: ``{"qk": ..., "softmax": ..., ...}``."""
    t_r, t_c = _cdiv(n_q, block_m), _cdiv(n_k, block_n)
    bm, bn, bd = block_m, block_n, block_d
    rows = softmax_rows(block_m, block_n, n_k)
    sizes = {"qk": (4, bm * bd + bn * bd + 2 * bm * bn)}
    best_ev = best_val = 0
    for i in range(t_r):
        n_i = min(block_m, n_q - i * block_m)
        n_ev = 0
        for r0 in range(0, n_i, rows):
            n_ev += 3 * t_c + _softmax_masked(i * block_m + r0, n_k, bn, causal)
        best_ev = max(best_ev, n_ev)
        best_val = max(best_val, n_ev * rows * bn)
    sizes["softmax"] = (best_ev, best_val)
    sizes["pv"] = (3 * t_c + 1, t_c * (bm * bn + bn * bd + bm * bd) + bm * bd)
    return sizes


def hbm_traffic(
    n_q: int,
    n_k: int,
    head_dim: int,
    elem: int,
    block_m: int,
    block_n: int,
    causal: bool = False,
) -> dict[str, dict[tuple[str, str], int]]:
    """The closed-form HBM bytes of one batch·head, by launch and ``(op, tensor)``.

    ``causal`` changes nothing (standard attention skips no work); it is accepted
    for a uniform signature. Multiply by ``B · H`` for a whole run.
    """
    del causal
    t_r, t_c = _cdiv(n_q, block_m), _cdiv(n_k, block_n)
    d, e = head_dim, elem
    return {
        "qk": {
            ("load", "Q"): t_c * n_q * d * e,
            ("load", "K"): t_r * n_k * d * e,
            ("store", "S"): n_q * n_k * e,
        },
        "softmax": {("load", "S"): n_q * n_k * e, ("store", "P"): n_q * n_k * e},
        "pv": {
            ("load", "P"): n_q * n_k * e,
            ("load", "V"): t_r * n_k * d * e,
            ("store", "O"): n_q * d * e,
        },
    }


def _run(q, k, v, causal, softmax_scale, block_m, block_n, trace, values):
    """Launch the three kernels; return ``(O, S, P, buffers by launch or None)``."""
    batch, heads, n_q, n_k, d = check_qkv(q, k, v)
    block_m, block_n = check_blocks(block_m, block_n)
    scale = check_scale(softmax_scale, d)
    block_d = head_block(d)
    dev, dtype = q.device, q.dtype
    elem = elem_bytes(dtype)
    prec = "ieee" if dtype == torch.float32 else "tf32"
    t_r, t_c = _cdiv(n_q, block_m), _cdiv(n_k, block_n)
    s = torch.empty((batch, heads, n_q, n_k), dtype=dtype, device=dev)
    p = torch.empty_like(s)
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    bh = batch * heads
    sizes = _trace_sizes(n_q, n_k, block_m, block_n, block_d, bool(causal))
    grids = {"qk": (t_r * t_c, bh), "softmax": (t_r, bh), "pv": (t_r, bh)}
    bufs = {}
    for name, grid in grids.items():
        if trace:
            bufs[name] = launch_buffers(grid[0] * grid[1], *sizes[name], values, dev,
                                        fill=True)  # fmt: skip

    def flags(name):
        return trace_args(bufs.get(name), dev, values)

    _qk_kernel[grids["qk"]](
        q, k, s, scale, *q.stride(), *k.stride(), *s.stride(),
        heads, n_q, n_k, d, *flags("qk")[0],
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, ELEM=elem,
        DOT_PRECISION=prec, **flags("qk")[1],
    )  # fmt: skip
    rows = softmax_rows(block_m, block_n, n_k)
    n_k_pad = _n_k_pad(n_k, block_n)
    _softmax_kernel[grids["softmax"]](
        s, p, *s.stride(), *p.stride(), heads, n_q, n_k,
        *flags("softmax")[0],
        CAUSAL=bool(causal), BLOCK_M=block_m, BLOCK_N=block_n, ROWS=rows,
        N_K_PAD=n_k_pad, ELEM=elem, **flags("softmax")[1],
        num_warps=8 if (not INTERPRET and rows * n_k_pad >= 8192) else 4,
    )  # fmt: skip
    _pv_kernel[grids["pv"]](
        p, v, o, *p.stride(), *v.stride(), *o.stride(),
        heads, n_q, n_k, d, *flags("pv")[0],
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d, ELEM=elem,
        DOT_PRECISION=prec, **flags("pv")[1],
        num_warps=8 if (not INTERPRET and block_m * block_d >= 128 * 128) else 4,
    )  # fmt: skip
    return o, s, p, (bufs if trace else None), (block_m, block_n)


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Standard attention, three kernels (untraced).

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)``.
    causal
        Top-left aligned causal mask (query ``r`` sees keys ``0 .. r``).
    softmax_scale
        Scale of ``Q Kᵀ``; ``1/sqrt(d)`` when ``None``.
    block_m, block_n
        ``BLOCK_M`` and ``BLOCK_N``; defaults from
        :func:`flashanim.kernels._common.default_blocks`.

    Returns
    -------
    torch.Tensor
        ``O`` ``(B, H, N_q, d)`` in the input dtype.
    """
    shapes = check_qkv(q, k, v)
    block_m, block_n = resolve_blocks(
        block_m, block_n, shapes.n_q, shapes.n_k, shapes.head_dim, q.dtype
    )
    return _run(q, k, v, causal, softmax_scale, block_m, block_n, False, False)[0]


def _record(q, k, v, *, causal, softmax_scale, block_m, block_n, values, do):
    del do  # (the recorders' uniform signature)
    o, s, p, bufs, blocks = _run(
        q, k, v, causal, softmax_scale, block_m, block_n, True, values
    )
    launches = [bufs["qk"], bufs["softmax"], bufs["pv"]]
    return launches, {"O": o, "S": s, "P": p}, blocks


record = recorder(
    "standard",
    ("qk", "softmax", "pv"),
    _record,
    """\
Run the three kernels with ``TRACE=True``; return their raw traces.

Returns
-------
RawTrace
    Kernel ``"standard"``, launches ``"qk"``, ``"softmax"``, ``"pv"``; outputs
    ``"O"``, ``"S"`` (unmasked ``softmax_scale · Q Kᵀ``) and ``"P"``, all in the
    input dtype.
""",
)
