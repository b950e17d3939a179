"""FlashAttention-1 order forward: Algorithm 1 of Dao et al. (2022), as written.

One program per batch·head walks the whole problem: the *outer* loop runs over the
K/V blocks ``j`` (``K_j, V_j`` loaded once), the *inner* loop over the Q blocks
``i``; at every inner step the running output ``O_i`` and the statistics ``l_i``,
``m_i`` are read from global memory (HBM) and written back, exactly as lines 8–13 of
the paper's algorithm say. This is the loop order FlashAttention-2 turned inside
out (program per Q block, ``O_i, l_i, m_i`` kept on chip): the extra HBM round
trips of ``O, l, m`` are what the FA1-vs-FA2 scene shows.

Algorithm (paper's line numbers)
--------------------------------
2. ``O = 0``, ``l = 0``, ``m = -inf`` in HBM (the kernel stores them itself).
5. for ``j`` in ``0 .. T_c - 1``:
6.   load ``K_j, V_j``;
7.   for ``i`` in ``0 .. T_r - 1``:
8.     load ``Q_i, O_i, l_i, m_i``;
9.     ``S_ij = softmax_scale · Q_i K_jᵀ`` (masked entries ``-inf``);
10.    ``m̃_ij = rowmax(S_ij)``, ``P̃_ij = exp(S_ij - m̃_ij)``,
       ``l̃_ij = rowsum(P̃_ij)``;
11.    ``m_new = max(m_i, m̃_ij)``,
       ``l_new = e^(m_i - m_new) l_i + e^(m̃_ij - m_new) l̃_ij``;
12.    ``O_i = diag(l_new)⁻¹ (diag(l_i) e^(m_i - m_new) O_i
       + e^(m̃_ij - m_new) P̃_ij V_j)``, stored;
13.    ``l_i = l_new``, ``m_i = m_new``, stored.

``T_r = ceil(N_q / BLOCK_M)`` and ``T_c = ceil(N_k / BLOCK_N)``. Rows that see no
key of block ``j`` (``m̃_ij = -inf``) contribute nothing (their ``P̃`` is 0); the
kernel guards every ``-inf - (-inf)``.

Buffers. ``O`` in HBM is a float32 workspace of shape ``(B, H, N_q, d)`` (as
flash-attn v1's ``o_tmp``): rounding the running ``O_i`` to float16 at each of the
``T_c`` outer steps would lose the accuracy of the fused kernel. ``l`` and ``m``
are float32 ``(B, H, N_q)``. After the launch the host casts ``O`` to the input
dtype (a no-op for float32; not part of the trace) and computes
``LSE = m + log(l)`` from the final ``l, m`` buffers (host side, natural log, the
same units as ``S``).

Causal (top-left aligned, like :mod:`flashanim.kernels.reference`: query ``r``
sees keys ``0 .. r``). Block ``(i, j)`` is *visited* iff
``j · BLOCK_N <= min((i + 1) · BLOCK_M, N_q) - 1`` (some valid query of block
``i`` sees some key of block ``j``); pairs entirely above the diagonal are
skipped. So the outer loop runs over ``j < T_c' = min(T_c, ceil(N_q / BLOCK_N))``
(K/V blocks no query sees are never loaded) and the inner loop over
``i_lo(j) = floor(j · BLOCK_N / BLOCK_M) <= i < T_r``. Without causal,
``T_c' = T_c`` and ``i_lo = 0``.

Mask rule: a visited ``S_ij`` is masked (a ``mask`` event) iff
``(j + 1) · BLOCK_N > N_k`` (key tail) or, causal, ``(j + 1) · BLOCK_N - 1 >
i · BLOCK_M`` (the block reaches above the diagonal).

Trace events (``op tensor(row, col)``)
--------------------------------------
``row, col`` are tile coordinates in the tensor's own matrix (as in :mod:`fa2`):
``Q, O`` and ``l, m`` are tile ``(i, 0)``, ``K, V`` tile ``(j, 0)``, ``S, P`` tile
``(i, j)``.
One program per batch·head (program id ``bh = b · H + h``, header block ``-1``)::

    for i < T_r:            store O(i), store l(i), store m(i)          # line 2
    for j < T_c':           load K(j), load V(j)                        # line 6
      for i_lo(j) <= i < T_r:
                            load Q(i), load O(i), load l(i), load m(i)  # line 8
                            qk S(i,j), [mask S(i,j)]                    # line 9
                            rowmax m(i), exp P(i,j), rowsum l(i)        # line 10
                            update O(i)                                 # lines 11-12
                            store O(i), store l(i), store m(i)          # lines 12-13

Value snapshots (``values=True``; float32, full padded tiles, row-major):
``Q(i), O(i)`` ``BLOCK_M x BLOCK_D``; ``K(j), V(j)`` ``BLOCK_N x BLOCK_D``;
``l(i), m(i)`` ``BLOCK_M x 1``; ``S, P`` ``BLOCK_M x BLOCK_N``. ``qk`` holds
``softmax_scale · Q_i K_jᵀ`` (natural units, unmasked), ``mask`` the masked
``S_ij`` (``-inf`` where masked), ``rowmax`` ``m̃_ij``, ``exp`` ``P̃_ij``, ``rowsum``
``l̃_ij``, ``update`` the new ``O_i``; ``store l``/``store m`` hold ``l_new``,
``m_new`` (``0`` and ``-inf`` at the init stores). Rows past ``N_q`` and columns
past ``N_k`` or ``d`` are padding.

HBM traffic (closed forms, per batch·head; multiply by ``B · H``)
-----------------------------------------------------------------
``nbytes`` counts valid elements moved times the element size: ``E`` bytes for
``Q, K, V`` (the input dtype) and 4 bytes for ``O, l, m`` (float32 buffers).
Let ``n_i = min(BLOCK_M, N_q - i · BLOCK_M)``, ``n_j = min(BLOCK_N, N_k -
j · BLOCK_N)`` and ``c_i`` the number of visited ``j`` of Q block ``i``.

Without causal (``c_i = T_c``)::

    load  Q = T_c · N_q · d · E          load  K = load V = N_k · d · E
    load  O = T_c · N_q · d · 4          store O = (T_c + 1) · N_q · d · 4
    load  l = load m = T_c · N_q · 4     store l = store m = (T_c + 1) · N_q · 4

Causal: ``c_i = min(T_c, floor((min((i + 1) · BLOCK_M, N_q) - 1) / BLOCK_N) + 1)``::

    load  Q = Σ_i c_i · n_i · d · E      load  K = load V = Σ_{j < T_c'} n_j · d · E
    load  O = Σ_i c_i · n_i · d · 4      store O = load O + N_q · d · 4
    load  l = load m = Σ_i c_i · n_i · 4 store l = store m = load l + N_q · 4

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
    resolve_blocks,
)
from ._device import INTERPRET
from ._trace import launch_buffers, rec, recorder, trace_args, trace_start, trace_stop

__all__ = ["attention_forward", "record_forward", "hbm_traffic", "event_counts"]


@triton.jit
def _fa1_fwd(
    Q, K, V, Out, L, M, softmax_scale,
    stride_qb, stride_qh, stride_qm, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    H, N_Q, N_K, HEAD_DIM,
    ev_ptr, hdr_ptr, val_ptr,
    CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, ELEM: tl.constexpr, DOT_PRECISION: tl.constexpr,
    TRACE: tl.constexpr, VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr,
):  # fmt: skip
    """Algorithm 1 of FlashAttention for one batch·head (program id ``b · H + h``)."""
    bh = tl.program_id(0)
    prog = bh
    b = bh // H
    h = bh % H
    q_base = Q + b.to(tl.int64) * stride_qb + h.to(tl.int64) * stride_qh
    k_base = K + b.to(tl.int64) * stride_kb + h.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + h.to(tl.int64) * stride_vh
    # O (float32 workspace, contiguous (B, H, N_q, d)), l and m (float32 (B, H, N_q)).
    o_base = Out + bh.to(tl.int64) * N_Q * HEAD_DIM
    l_base = L + bh.to(tl.int64) * N_Q
    m_base = M + bh.to(tl.int64) * N_Q

    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    T_r = tl.cdiv(N_Q, BLOCK_M)
    T_c = tl.cdiv(N_K, BLOCK_N)
    if CAUSAL:
        # K/V blocks that no query sees are never loaded.
        T_c = tl.minimum(T_c, tl.cdiv(N_Q, BLOCK_N))

    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, -1, TC)

    # Line 2: O = 0, l = 0, m = -inf in HBM.
    o_zero = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    l_zero = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_ninf = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    for i in range(0, T_r):
        rows = i * BLOCK_M + offs_m
        r_ok = rows < N_Q
        n_i = tl.minimum(N_Q - i * BLOCK_M, BLOCK_M)
        o_ptrs = o_base + rows[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(o_ptrs, o_zero, mask=r_ok[:, None] & d_ok[None, :])
        tl.store(l_base + rows, l_zero, mask=r_ok)
        tl.store(m_base + rows, m_ninf, mask=r_ok)
        tr = rec(tr, TC, step.STORE_O, i, 0, o_zero, n_i * HEAD_DIM * 4)
        tr = rec(tr, TC, step.STORE_L, i, 0, l_zero, n_i * 4)
        tr = rec(tr, TC, step.STORE_M, i, 0, m_ninf, n_i * 4)

    # Line 5: outer loop over the K/V blocks.
    for j in range(0, T_c):
        cols = j * BLOCK_N + offs_n
        c_ok = cols < N_K
        n_j = tl.minimum(N_K - j * BLOCK_N, BLOCK_N)
        kv_mask = c_ok[:, None] & d_ok[None, :]
        # Line 6: load K_j, V_j.
        k = tl.load(k_base + cols[:, None] * stride_kn + offs_d[None, :] * stride_kd,
                    mask=kv_mask, other=0.0)  # fmt: skip
        v = tl.load(v_base + cols[:, None] * stride_vn + offs_d[None, :] * stride_vd,
                    mask=kv_mask, other=0.0)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_K, j, 0, k, n_j * HEAD_DIM * ELEM)
        tr = rec(tr, TC, step.LOAD_V, j, 0, v, n_j * HEAD_DIM * ELEM)
        i_lo = 0
        if CAUSAL:
            # Q blocks entirely above the diagonal of K/V block j are skipped.
            i_lo = (j * BLOCK_N) // BLOCK_M
        # Line 7: inner loop over the Q blocks.
        for i in range(i_lo, T_r):
            # The O_i, l_i, m_i stored at the previous outer step (or at line 2) are
            # read back by other threads of this program: make the stores visible.
            tl.debug_barrier()
            rows = i * BLOCK_M + offs_m
            r_ok = rows < N_Q
            n_i = tl.minimum(N_Q - i * BLOCK_M, BLOCK_M)
            qo_mask = r_ok[:, None] & d_ok[None, :]
            # Line 8: load Q_i, O_i, l_i, m_i.
            q = tl.load(
                q_base + rows[:, None] * stride_qm + offs_d[None, :] * stride_qd,
                mask=qo_mask, other=0.0,
            )  # fmt: skip
            o_ptrs = o_base + rows[:, None] * HEAD_DIM + offs_d[None, :]
            o_i = tl.load(o_ptrs, mask=qo_mask, other=0.0)
            l_i = tl.load(l_base + rows, mask=r_ok, other=0.0)
            m_i = tl.load(m_base + rows, mask=r_ok, other=float("-inf"))
            tr = rec(tr, TC, step.LOAD_Q, i, 0, q, n_i * HEAD_DIM * ELEM)
            tr = rec(tr, TC, step.LOAD_O, i, 0, o_i, n_i * HEAD_DIM * 4)
            tr = rec(tr, TC, step.LOAD_L, i, 0, l_i, n_i * 4)
            tr = rec(tr, TC, step.LOAD_M, i, 0, m_i, n_i * 4)
            # Line 9: S_ij = softmax_scale * Q_i K_j^T.
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * softmax_scale
            tr = rec(tr, TC, step.QK_S, i, j, s)
            # Key tail (and, causal, keys after the query) -> -inf.
            valid = c_ok[None, :]
            if CAUSAL:
                valid = valid & (cols[None, :] <= rows[:, None])
            s = tl.where(valid, s, float("-inf"))
            if TRACE:
                need_mask = (j + 1) * BLOCK_N > N_K
                if CAUSAL:
                    need_mask = need_mask | ((j + 1) * BLOCK_N - 1 > i * BLOCK_M)
                if need_mask:
                    tr = rec(tr, TC, step.MASK_S, i, j, s)
            # Line 10: m~_ij, P~_ij, l~_ij (rows that see no key: m~ = -inf, P~ = 0).
            m_ij = tl.max(s, 1)
            m_ij_safe = tl.where(m_ij == float("-inf"), 0.0, m_ij)
            p = tl.exp(s - m_ij_safe[:, None])
            l_ij = tl.sum(p, 1)
            tr = rec(tr, TC, step.ROWMAX_M, i, 0, m_ij)
            tr = rec(tr, TC, step.EXP_P, i, j, p)
            tr = rec(tr, TC, step.ROWSUM_L, i, 0, l_ij)
            # Line 11: m_new, l_new.
            m_new = tl.maximum(m_i, m_ij)
            m_new_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp(m_i - m_new_safe)  # e^(m_i - m_new); 0 where m_i = -inf
            beta = tl.exp(m_ij - m_new_safe)  # e^(m~_ij - m_new)
            l_new = alpha * l_i + beta * l_ij
            l_new_safe = tl.where(l_new == 0.0, 1.0, l_new)
            # Line 12: O_i = diag(l_new)^-1 (diag(l_i) alpha O_i + beta P~_ij V_j).
            pv = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            o_i = o_i * (l_i * alpha)[:, None] + pv * beta[:, None]
            o_i = o_i / l_new_safe[:, None]
            tr = rec(tr, TC, step.UPDATE_O, i, 0, o_i)
            # Lines 12-13: write O_i, l_i = l_new, m_i = m_new to HBM.
            tl.store(o_ptrs, o_i, mask=qo_mask)
            tl.store(l_base + rows, l_new, mask=r_ok)
            tl.store(m_base + rows, m_new, mask=r_ok)
            tr = rec(tr, TC, step.STORE_O, i, 0, o_i, n_i * HEAD_DIM * 4)
            tr = rec(tr, TC, step.STORE_L, i, 0, l_new, n_i * 4)
            tr = rec(tr, TC, step.STORE_M, i, 0, m_new, n_i * 4)
    trace_stop(tr, TC)


# --------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _visited_i(j: int, n_q: int, block_m: int, block_n: int, causal: bool) -> range:
    """The Q blocks ``i`` the inner loop visits for K/V block ``j``."""
    t_r = _cdiv(n_q, block_m)
    return range((j * block_n) // block_m if causal else 0, t_r)


def _t_c_visited(n_q: int, n_k: int, block_n: int, causal: bool) -> int:
    """``T_c'``: the number of K/V blocks the outer loop loads."""
    t_c = _cdiv(n_k, block_n)
    return min(t_c, _cdiv(n_q, block_n)) if causal else t_c


def _needs_mask(i: int, j: int, n_k: int, block_m: int, block_n: int,
                causal: bool) -> bool:  # fmt: skip
    return (j + 1) * block_n > n_k or (causal and (j + 1) * block_n - 1 > i * block_m)


def event_counts(
    n_q: int, n_k: int, block_m: int, block_n: int, causal: bool
) -> tuple[int, int, int, int]:
    """Counts of one program's trace: ``(T_r, T_c', visited pairs, masked pairs)``.

    The program records ``3 T_r + 2 T_c' + 12 · pairs + masked`` events.
    """
    t_r = _cdiv(n_q, block_m)
    t_cv = _t_c_visited(n_q, n_k, block_n, causal)
    pairs = masked = 0
    for j in range(t_cv):
        vis = _visited_i(j, n_q, block_m, block_n, causal)
        pairs += len(vis)
        masked += sum(_needs_mask(i, j, n_k, block_m, block_n, causal) for i in vis)
    return t_r, t_cv, pairs, masked


def _trace_sizes(
    n_q: int, n_k: int, block_m: int, block_n: int, block_d: int, causal: bool
) -> tuple[int, int]:
    """Exact ``(MAX_EV, MAX_VAL)`` of one program (all programs are alike)."""
    t_r, t_cv, pairs, masked = event_counts(n_q, n_k, block_m, block_n, causal)
    max_ev = 3 * t_r + 2 * t_cv + 12 * pairs + masked
    bm, bn, bd = block_m, block_n, block_d
    init = bm * bd + 2 * bm
    per_j = 2 * bn * bd
    # load Q, O, l, m; qk; rowmax, exp, rowsum; update; store O, l, m.
    per_pair = (
        (bm * bd * 2 + 2 * bm)
        + bm * bn
        + (bm + bm * bn + bm)
        + bm * bd
        + (bm * bd + 2 * bm)
    )
    max_val = t_r * init + t_cv * per_j + pairs * per_pair + masked * bm * bn
    return max_ev, max_val


def hbm_traffic(
    n_q: int,
    n_k: int,
    head_dim: int,
    elem: int,
    block_m: int,
    block_n: int,
    causal: bool = False,
) -> dict[tuple[str, str], int]:
    """The closed-form HBM bytes of one batch·head, by ``(op, tensor)``.

    ``elem`` is the input element size (``Q, K, V``); ``O, l, m`` are float32.
    Multiply by ``B · H`` for a whole launch.
    """
    t_r = _cdiv(n_q, block_m)
    t_c = _cdiv(n_k, block_n)
    d = head_dim
    if causal:
        rows_visits = 0  # sum_i c_i n_i
        for i in range(t_r):
            n_i = min(block_m, n_q - i * block_m)
            last = min((i + 1) * block_m, n_q) - 1
            rows_visits += min(t_c, last // block_n + 1) * n_i
        t_cv = _t_c_visited(n_q, n_k, block_n, causal)
        kv_rows = min(n_k, t_cv * block_n)
    else:
        rows_visits = t_c * n_q
        kv_rows = n_k
    return {
        ("load", "Q"): rows_visits * d * elem,
        ("load", "K"): kv_rows * d * elem,
        ("load", "V"): kv_rows * d * elem,
        ("load", "O"): rows_visits * d * 4,
        ("load", "l"): rows_visits * 4,
        ("load", "m"): rows_visits * 4,
        ("store", "O"): (rows_visits + n_q) * d * 4,
        ("store", "l"): (rows_visits + n_q) * 4,
        ("store", "m"): (rows_visits + n_q) * 4,
    }


def _launch(q, k, v, causal, softmax_scale, block_m, block_n, bufs, values):
    """Run the kernel; return the float32 ``O`` workspace and the ``l, m`` buffers."""
    batch, heads, n_q, n_k, d = check_qkv(q, k, v)
    block_m, block_n = check_blocks(block_m, block_n)
    scale = check_scale(softmax_scale, d)
    block_d = head_block(d)
    o_ws = torch.empty((batch, heads, n_q, d), dtype=torch.float32, device=q.device)
    l_buf = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    m_buf = torch.empty_like(l_buf)
    tptr, tflags = trace_args(bufs, q.device, values)
    num_warps = 8 if (not INTERPRET and block_m * block_d >= 64 * 128) else 4
    _fa1_fwd[(batch * heads,)](
        q, k, v, o_ws, l_buf, m_buf, scale,
        *q.stride(), *k.stride(), *v.stride(),
        heads, n_q, n_k, d,
        *tptr,
        CAUSAL=bool(causal), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        ELEM=elem_bytes(q.dtype),
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        **tflags, num_warps=num_warps,
    )  # fmt: skip
    return o_ws, l_buf, m_buf


def _finish(q, o_ws, l_buf, m_buf):
    """Host side: ``O`` in the input dtype and ``LSE = m + log(l)`` (float32)."""
    return o_ws.to(q.dtype), m_buf + torch.log(l_buf)


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention-1 order forward (untraced).

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)``.
    causal
        Top-left aligned causal mask (query ``r`` sees keys ``0 .. r``).
    softmax_scale
        Scale of ``Q Kᵀ``; ``1/sqrt(d)`` when ``None``.
    block_m, block_n
        ``BLOCK_M`` (Q rows per block) and ``BLOCK_N`` (K/V rows per block);
        defaults from :func:`flashanim.kernels._common.default_blocks` (``BLOCK_M``
        at most 64 on the GPU: ``O_i`` is a float32 tile here).

    Returns
    -------
    o, lse
        ``O`` ``(B, H, N_q, d)`` in the input dtype and ``LSE = m + log(l)``
        ``(B, H, N_q)`` in float32 (natural log, computed on the host from the
        kernel's final ``l`` and ``m``).
    """
    shapes = check_qkv(q, k, v)
    if block_m is None and not INTERPRET:
        block_m = min(64, resolve_blocks(None, block_n, shapes.n_q, shapes.n_k,
                                         shapes.head_dim, q.dtype)[0])  # fmt: skip
    block_m, block_n = resolve_blocks(
        block_m, block_n, shapes.n_q, shapes.n_k, shapes.head_dim, q.dtype
    )
    o_ws, l_buf, m_buf = _launch(
        q, k, v, causal, softmax_scale, block_m, block_n, None, False
    )
    return _finish(q, o_ws, l_buf, m_buf)


def _record(q, k, v, *, causal, softmax_scale, block_m, block_n, values, do):
    del do  # (the recorders' uniform signature)
    batch, heads, n_q, n_k, d = check_qkv(q, k, v)
    block_m, block_n = check_blocks(block_m, block_n)
    max_ev, max_val = _trace_sizes(
        n_q, n_k, block_m, block_n, head_block(d), bool(causal)
    )
    bufs = launch_buffers(batch * heads, max_ev, max_val, values, q.device, fill=True)
    o_ws, l_buf, m_buf = _launch(
        q, k, v, causal, softmax_scale, block_m, block_n, bufs, values
    )
    o, lse = _finish(q, o_ws, l_buf, m_buf)
    return [bufs], {"O": o, "LSE": lse, "l": l_buf, "m": m_buf}, (block_m, block_n)


record_forward = recorder(
    "fa1-fwd",
    ("fwd",),
    _record,
    """\
Run the FA1-order forward with ``TRACE=True``; return its raw trace.

Returns
-------
RawTrace
    Kernel ``"fa1-fwd"``, one launch named ``"fwd"`` of ``B · H`` programs;
    outputs ``"O"`` (input dtype), ``"LSE"``, and the final ``"l"``, ``"m"``
    (float32).
""",
)
