"""FlashAttention-2 forward and backward in Triton, with a compile-time trace.

Structured like Triton's fused-attention tutorial (``06-fused-attention.py``) and
named like the FlashAttention papers: ``_attn_fwd`` runs one program per
``(Q block i, batch-head)`` that loops over the K/V blocks ``j`` with the online
softmax (``m_i``, ``l_i``, ``acc``, ``alpha``; ``exp2`` with ``log2(e)`` folded
into ``qk_scale``) and writes ``O`` and ``LSE`` (natural log, float32,
``(B, H, N_q)``). The backward recomputes ``P`` from ``Q``, ``K`` and ``LSE``:
``_attn_bwd_preprocess`` computes ``D = rowsum(dO * O)``, ``_attn_bwd_dkdv`` runs
one program per K/V block looping over Q blocks, ``_attn_bwd_dq`` one program per
Q block looping over K/V blocks (no atomics).

Shapes: ``q (B, H, N_q, d)``, ``k, v (B, H, N_k, d)``, any ``N_q, N_k >= 1`` (tails
masked), ``d <= 256`` padded to ``BLOCK_D`` (a power of two). Causal attention is
aligned top-left (query ``r`` sees keys ``0..r``, as PyTorch's ``is_causal``).
Grids are one-dimensional; program ``p`` of the forward is Q block
``i = p % T_r`` of batch-head ``bh = p // T_r`` (``p = i + bh * T_r``, the trace
protocol's linear program id).

Which blocks a program visits, and which it masks
-------------------------------------------------
With ``T_r = ceil(N_q / BLOCK_M)``, ``T_c = ceil(N_k / BLOCK_N)``, tile ``(i, j)``
(Q block ``i``, K/V block ``j``) is *visited* when it holds a valid pair the
softmax keeps: always without ``causal``; with it when
``j * BLOCK_N <= min((i + 1) * BLOCK_M, N_q) - 1`` (its first key is at or before
the block's last valid query). Tiles above the diagonal are skipped entirely.
A visited tile is *masked* (``S`` set to ``-inf`` where a key is past ``N_k`` or,
causal, after the query) exactly when ``(j + 1) * BLOCK_N > N_k`` (key tail) or,
causal, ``(j + 1) * BLOCK_N - 1 > i * BLOCK_M`` (its last key is after the block's
first query). Like the tutorial, each loop runs in two stages, the unmasked tiles
(no mask computed) and then the masked ones (``MASK`` constexpr); since the masked
tiles of a row are its last ones (and of a column its first ones), the forward and
the dQ kernel visit ``j`` ascending and the dK/dV kernel visits ``i`` ascending.

Masks and additive biases (``attn_mask``; constexpr ``HAS_BIAS``, off by default)
-------------------------------------------------------------------------------
``attention_forward/backward(..., attn_mask=m)`` take a bool or floating tensor
broadcastable to ``(B, H, N_q, N_k)``, passed with its own strides (0 for broadcast
dimensions: a key padding mask ``(B, 1, 1, N_k)`` is read, never copied). Each
visited tile loads its ``BLOCK_M x BLOCK_N`` slice and applies it to ``S`` before
the softmax, after the causal and tail masks: bool ``False`` -> ``-inf``
(``BIAS_BOOL``), floats are added. The same tiles are visited (no block is skipped
for the mask's sake) and the backward applies the same slice when it recomputes
``P``. A row whose keys are all masked gets ``O = 0`` and ``LSE = +inf`` (so the
backward's ``P = exp(S - LSE) = 0``: zero gradients), as flash-attn does (a naive
softmax gives NaN). The forward's masked path is its own loop,
``_attn_fwd_inner_bias``, and is never traced (the recorders refuse ``attn_mask``);
with ``HAS_BIAS=False`` the kernels compile exactly as without the feature.

Trace (``TRACE=True``): the event sequence of each program
-----------------------------------------------------------
``op tensor(row, col)``; ``row, col`` are tile coordinates in the tensor's own
matrix: ``Q, O, dO, dQ, acc`` (``N_q x d``) and ``m, l, alpha, LSE, D``
(length ``N_q``) are tile ``(i, 0)``; ``K, V, dK, dV`` tile ``(j, 0)``;
``S, P, dP, dS`` tile ``(i, j)``. ``[mask S(i, j)]`` appears only for masked tiles.

forward (launch ``"fwd"``, program per Q block ``i``)::

    load Q(i)
    for each visited j:  load K(j), load V(j), qk S(i,j), [mask S(i,j)],
                         rowmax m(i), exp P(i,j), alpha alpha(i), rowsum l(i),
                         rescale acc(i), pv acc(i)
    normalize O(i), lse LSE(i), store O(i), store LSE(i)

backward, launch ``"preprocess"`` (program per Q block ``i``)::

    load O(i), load dO(i), rowdot D(i), store D(i)

launch ``"dkdv"`` (program per K/V block ``j``)::

    load K(j), load V(j)
    for each visited i:  load Q(i), load dO(i), load LSE(i), load D(i), qk S(i,j),
                         [mask S(i,j)], recompute P(i,j), dv dV(j), dp dP(i,j),
                         ds dS(i,j), dk dK(j)
    store dK(j), store dV(j)

launch ``"dq"`` (program per Q block ``i``)::

    load Q(i), load dO(i), load LSE(i), load D(i)
    for each visited j:  load K(j), load V(j), qk S(i,j), [mask S(i,j)],
                         recompute P(i,j), dp dP(i,j), ds dS(i,j), dq dQ(i)
    store dQ(i)

With ``VALUES=True`` every event snapshots, as float32 in the papers' natural
units, the tile it produced or moved: loads and stores the whole padded tile
(``BLOCK_M x BLOCK_D`` or ``BLOCK_N x BLOCK_D``; vectors ``BLOCK_M x 1``; zeros
outside the valid rows/columns of ``Q, K, V, O, dO``; ``+inf`` in ``LSE``'s tail
rows of the backward loads), ``S = softmax_scale * Q K^T`` (masked entries
``-inf``), ``m_i`` (running max of ``S``), ``P = exp(S - m_new)``,
``alpha = exp(m_old - m_new)``, ``l_i``, ``acc`` (unnormalised), ``O``, ``LSE``
(natural log); in the backward ``D``, ``P = exp(S - LSE)``, ``dP = dO V^T``,
``dS = P * (dP - D)`` and the running ``dV``, ``dK = scale * dS^T Q``,
``dQ = scale * dS K``. Rows past ``N_q`` and columns past ``N_k`` of compute
snapshots are unspecified (crop them); valid entries are never NaN.

Closed-form HBM traffic (the sums of ``nbytes``)
-----------------------------------------------
``nbytes`` counts the elements actually moved (tails excluded) times the element
size ``e`` (2 or 4; ``LSE`` and ``D`` are float32: 4). Per batch-head, with
``n_q(i) = min(BLOCK_M, N_q - i * BLOCK_M)`` valid rows of Q block ``i``,
``n_k(j) = min(BLOCK_N, N_k - j * BLOCK_N)`` of K block ``j``, ``V`` the set of
visited tiles and ``KV_read = sum_{(i,j) in V} n_k(j)``,
``Q_read = sum_{(i,j) in V} n_q(i)`` (without causal: ``KV_read = T_r * N_k``,
``Q_read = T_c * N_q``)::

    fwd         reads   Q: N_q d e      K: KV_read d e     V: KV_read d e
                writes  O: N_q d e      LSE: 4 N_q
    preprocess  reads   O: N_q d e      dO: N_q d e        writes D: 4 N_q
    dkdv        reads   K: N_k d e      V: N_k d e
                        Q: Q_read d e   dO: Q_read d e     LSE: 4 Q_read  D: 4 Q_read
                writes  dK: N_k d e     dV: N_k d e
    dq          reads   Q: N_q d e      dO: N_q d e        LSE: 4 N_q     D: 4 N_q
                        K: KV_read d e  V: KV_read d e
                writes  dQ: N_q d e

and everything times ``B * H``.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from . import _steps as step
from . import _trace
from ._common import (
    GPU_CLOCK,
    LOG2E,
    TRACE_STAGE,
    bwd_pass_config,
    check_attn_mask,
    check_blocks,
    check_like,
    check_qkv,
    check_scale,
    elem_bytes,
    gpu_fwd_config,
    head_block,
    resolve_blocks,
    short_config,
)
from ._device import INTERPRET, gpu_name
from ._trace import (
    TraceBuffers,
    iter_close,
    iter_open,
    launch_buffers,
    rec,
    recorder,
    trace_args,
    trace_start,
    trace_stop,
)

__all__ = [
    "attention_forward",
    "attention_backward",
    "record_forward",
    "record_backward",
    "program_events",
    "visited_blocks",
]

LN2 = tl.constexpr(0.6931471805599453)
RCP_LN2 = tl.constexpr(LOG2E)

#: Value-buffer size (float32 elements) above which a VALUES run is refused.
MAX_VALUE_ELEMENTS = _trace.MAX_VALUE_ELEMENTS  # (re-exported)


# --------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------


@triton.jit
def _load_tile(ptrs, offs_r, n_rows, offs_d, HEAD_DIM: tl.constexpr,
               BLOCK_D: tl.constexpr, ROW_MASK: tl.constexpr):  # fmt: skip
    """Load a ``rows x BLOCK_D`` tile, zero past ``n_rows`` and past ``HEAD_DIM``."""
    if ROW_MASK:
        if BLOCK_D == HEAD_DIM:
            x = tl.load(ptrs, mask=offs_r[:, None] < n_rows, other=0.0)
        else:
            x = tl.load(ptrs, mask=(offs_r[:, None] < n_rows)
                        & (offs_d[None, :] < HEAD_DIM), other=0.0)  # fmt: skip
    else:
        if BLOCK_D == HEAD_DIM:
            x = tl.load(ptrs)
        else:
            x = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    return x


@triton.jit
def _store_tile(ptrs, x, offs_r, n_rows, offs_d, HEAD_DIM: tl.constexpr,
                BLOCK_D: tl.constexpr, ROW_MASK: tl.constexpr):  # fmt: skip
    """Store a ``rows x BLOCK_D`` tile, skipping rows past ``n_rows``, columns past
    ``HEAD_DIM``."""
    if ROW_MASK:
        if BLOCK_D == HEAD_DIM:
            tl.store(ptrs, x, mask=offs_r[:, None] < n_rows)
        else:
            tl.store(ptrs, x, mask=(offs_r[:, None] < n_rows)
                     & (offs_d[None, :] < HEAD_DIM))  # fmt: skip
    else:
        if BLOCK_D == HEAD_DIM:
            tl.store(ptrs, x)
        else:
            tl.store(ptrs, x, mask=offs_d[None, :] < HEAD_DIM)


@triton.jit
def _causal_span(start_m, N_Q, N_K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr):  # fmt: skip
    """K/V blocks of Q block ``start_m``: ``[0, n_nomask)`` unmasked and
    ``[n_nomask, n_visit)`` masked (block indices)."""
    T_C = tl.cdiv(N_K, BLOCK_N)
    n_full_k = N_K // BLOCK_N
    if CAUSAL:
        last_row = tl.minimum((start_m + 1) * BLOCK_M, N_Q) - 1
        n_visit = tl.minimum(last_row // BLOCK_N + 1, T_C)
        n_nomask = tl.minimum((start_m * BLOCK_M + 1) // BLOCK_N, n_full_k)
    else:
        n_visit = T_C
        n_nomask = n_full_k
    return n_nomask, n_visit


# --------------------------------------------------------------------------------------
# Forward: FlashAttention-2, Algorithm 1 (line numbers of the paper in the comments)
# --------------------------------------------------------------------------------------


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn,
                    stride_vk, i, sm_scale, qk_scale, lo, hi, offs_m, offs_n,
                    offs_d, N_K, tr, TC: tl.constexpr,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                    MASK: tl.constexpr, CAUSAL: tl.constexpr, ELEM: tl.constexpr,
                    DOT_PREC: tl.constexpr, TMA: tl.constexpr):  # fmt: skip
    """Lines 6-11: the loop over K/V blocks ``lo <= j < hi`` of Q block ``i``."""
    for start_n in range(lo * BLOCK_N, hi * BLOCK_N, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        j = start_n // BLOCK_N
        tr = iter_open(tr, TC)
        offs_kn = start_n + offs_n
        nb = tl.minimum(N_K - start_n, BLOCK_N) * (HEAD_DIM * ELEM)
        # 7: load K_j, V_j from HBM to on-chip SRAM
        if TMA:  # K is a tensor descriptor: the copy engine, zeros past the edges
            k = K.load([start_n, 0])
        else:
            k = _load_tile(K + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                           offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_K, j, 0, k, nb)
        if TMA:
            v = V.load([start_n, 0])
        else:
            v = _load_tile(V + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                           offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_V, j, 0, v, nb)
        # 8: S_ij = Q_i K_j^T (softmax_scale applied in the exponent below)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        tr = rec(tr, TC, step.QK_S, i, j, qk * sm_scale)
        if MASK:  # keys past N_K, and causal: keys after the query -> -inf
            keep = offs_kn[None, :] < N_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_kn[None, :])
            qk = tl.where(keep, qk, float("-inf"))
            tr = rec(tr, TC, step.MASK_S, i, j, qk * sm_scale)
        # 9: m_ij = max(m_i, rowmax(S_ij)), P_ij = exp(S_ij - m_ij),
        #    l_ij = e^(m_i - m_ij) l_i + rowsum(P_ij)  (log2 units: qk_scale)
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        tr = rec(tr, TC, step.ROWMAX_M, i, 0, m_ij * LN2)
        qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        tr = rec(tr, TC, step.EXP_P, i, j, p)
        alpha = tl.math.exp2(m_i - m_ij)
        tr = rec(tr, TC, step.ALPHA, i, 0, alpha)
        l_i = l_i * alpha + tl.sum(p, 1)
        tr = rec(tr, TC, step.ROWSUM_L, i, 0, l_i)
        # 10: O_ij = diag(e^(m_i - m_ij)) O_i + P_ij V_j
        acc = acc * alpha[:, None]
        tr = rec(tr, TC, step.RESCALE_ACC, i, 0, acc)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        tr = rec(tr, TC, step.PV_ACC, i, 0, acc)
        m_i = m_ij
        tr = iter_close(tr, TC)
    return acc, l_i, m_i, tr


@triton.jit
def _bias_scores(qk, Bias, offs_m, offs_n, stride_bm, stride_bn, N_Q, N_K, qk_scale,
                 BIAS_BOOL: tl.constexpr):  # fmt: skip
    """``S`` in log2 units with the bias of tile ``(offs_m, offs_n)`` applied:
    ``qk * qk_scale + bias * log2(e)``, or ``-inf`` where a boolean mask is False.

    Entries past ``N_Q`` or ``N_K`` read no bias (0 / keep); ``qk``'s own ``-inf``
    (key tail, causal) stays ``-inf``.
    """
    inside = (offs_m[:, None] < N_Q) & (offs_n[None, :] < N_K)
    ptrs = Bias + offs_m[:, None] * stride_bm + offs_n[None, :] * stride_bn
    if BIAS_BOOL:
        keep = tl.load(ptrs, mask=inside, other=1)
        s = tl.where(keep != 0, qk * qk_scale, float("-inf"))
    else:
        b = tl.load(ptrs, mask=inside, other=0.0).to(tl.float32)
        s = qk * qk_scale + b * RCP_LN2
    return s


@triton.jit
def _attn_fwd_inner_bias(acc, l_i, m_i, q, K, V, Bias, stride_kn, stride_kk,
                         stride_vn, stride_vk, stride_bm, stride_bn, qk_scale, lo, hi,
                         offs_m, offs_n, offs_d, N_Q, N_K,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                         MASK: tl.constexpr, CAUSAL: tl.constexpr,
                         BIAS_BOOL: tl.constexpr,
                         DOT_PREC: tl.constexpr):  # fmt: skip
    """:func:`_attn_fwd_inner` with an additive bias or boolean mask on ``S``
    (``HAS_BIAS``; never traced). A row may see no key at all: ``m_i`` stays
    ``-inf`` and 0 (not ``-inf``) is subtracted, so ``P = 0`` and no NaN arises."""
    for start_n in range(lo * BLOCK_N, hi * BLOCK_N, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_kn = start_n + offs_n
        k = _load_tile(K + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                       offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        v = _load_tile(V + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                       offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        if MASK:
            keep = offs_kn[None, :] < N_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_kn[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        s = _bias_scores(qk, Bias, offs_m, offs_kn, stride_bm, stride_bn, N_Q, N_K,
                         qk_scale, BIAS_BOOL)  # fmt: skip
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)
        p_ij = tl.math.exp2(s - m_sub[:, None])
        scale_old = tl.math.exp2(m_i - m_sub)
        l_i = l_i * scale_old + tl.sum(p_ij, 1)
        acc = acc * scale_old[:, None]
        acc = tl.dot(p_ij.to(v.dtype), v, acc, input_precision=DOT_PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(Q, K, V, O, LSE, sm_scale,  # noqa: E741
              stride_qz, stride_qh, stride_qm, stride_qk,
              stride_kz, stride_kh, stride_kn, stride_kk,
              stride_vz, stride_vh, stride_vn, stride_vk,
              stride_oz, stride_oh, stride_om, stride_ok,
              Bias, stride_bz, stride_bh, stride_bm, stride_bn,
              H, N_Q, N_K,
              ev_ptr, hdr_ptr, val_ptr,
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, EVEN_M: tl.constexpr,
              ELEM: tl.constexpr, DOT_PREC: tl.constexpr, TRACE: tl.constexpr,
              VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr, MAX_EV: tl.constexpr,
              MAX_VAL: tl.constexpr, STAGE: tl.constexpr, HAS_BIAS: tl.constexpr,
              TMA: tl.constexpr,
              BIAS_BOOL: tl.constexpr, HEAVY_FIRST: tl.constexpr):  # fmt: skip
    """One program: Q block ``start_m`` of batch-head ``off_hz``; writes O and LSE.

    With ``HAS_BIAS`` (never traced), ``Bias`` (strides ``stride_b*``, 0 for
    broadcast dimensions) is added to ``S`` (``BIAS_BOOL``: a keep-mask, False ->
    ``-inf``); rows that see no key get ``O = 0`` and ``LSE = +inf``.
    ``HEAVY_FIRST`` (untraced causal launches with d >= 128, ``fa2.CAUSAL_ORDER``):
    each batch-head's Q blocks from the last, which visits the most K/V blocks, so
    the programs that start last are short ones."""
    prog = tl.program_id(0)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    start_m = prog % T_R
    off_hz = prog // T_R
    if HEAVY_FIRST:
        start_m = T_R - 1 - start_m
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    Q += off_z * stride_qz + off_h * stride_qh
    K += off_z * stride_kz + off_h * stride_kh
    V += off_z * stride_vz + off_h * stride_vh
    O += off_z * stride_oz + off_h * stride_oh  # noqa: E741
    LSE += off_hz.to(tl.int64) * N_Q

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, off_hz, start_m, TC)
    n_q = tl.minimum(N_Q - start_m * BLOCK_M, BLOCK_M)  # valid rows of Q_i

    # 4: load Q_i from HBM to on-chip SRAM
    q = _load_tile(Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                   offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_Q, start_m, 0, q, n_q * (HEAD_DIM * ELEM))
    # 5: on chip, m_i = -inf, l_i = 0, O_i = 0
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2  # log2(e) folded in: exp(x) = exp2(x * log2(e))

    n_nomask, n_visit = _causal_span(start_m, N_Q, N_K, BLOCK_M, BLOCK_N, CAUSAL)
    if HAS_BIAS:
        # the same two stages, with the bias (or boolean mask) added to S
        Bias += off_z * stride_bz + off_h * stride_bh
        acc, l_i, m_i = _attn_fwd_inner_bias(
            acc, l_i, m_i, q, K, V, Bias, stride_kn, stride_kk, stride_vn, stride_vk,
            stride_bm, stride_bn, qk_scale, 0, n_nomask, offs_m, offs_n, offs_d, N_Q,
            N_K, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, CAUSAL, BIAS_BOOL,
            DOT_PREC)  # fmt: skip
        acc, l_i, m_i = _attn_fwd_inner_bias(
            acc, l_i, m_i, q, K, V, Bias, stride_kn, stride_kk, stride_vn, stride_vk,
            stride_bm, stride_bn, qk_scale, n_nomask, n_visit, offs_m, offs_n, offs_d,
            N_Q, N_K, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, CAUSAL, BIAS_BOOL,
            DOT_PREC)  # fmt: skip
        # rows that saw no key: l = 1 and m = +inf make O = 0/1 = 0, LSE = +inf
        no_key = m_i == float("-inf")
        l_i = tl.where(no_key, 1.0, l_i)
        m_i = tl.where(no_key, float("inf"), m_i)
    else:
        if TMA:  # K and V through tensor descriptors (the copy engine)
            K = tl.make_tensor_descriptor(K, shape=[N_K, HEAD_DIM], strides=[stride_kn, 1],
                                          block_shape=[BLOCK_N, BLOCK_D])  # fmt: skip
            V = tl.make_tensor_descriptor(V, shape=[N_K, HEAD_DIM], strides=[stride_vn, 1],
                                          block_shape=[BLOCK_N, BLOCK_D])  # fmt: skip
        # 6-11, stage 1: blocks that need no mask (left of the diagonal, no key tail)
        acc, l_i, m_i, tr = _attn_fwd_inner(
            acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn, stride_vk,
            start_m, sm_scale, qk_scale, 0, n_nomask, offs_m, offs_n, offs_d, N_K,
            tr, TC, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, CAUSAL, ELEM, DOT_PREC,
            TMA)  # fmt: skip
        # stage 2: blocks on the diagonal or with the key tail, masked
        acc, l_i, m_i, tr = _attn_fwd_inner(
            acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn, stride_vk,
            start_m, sm_scale, qk_scale, n_nomask, n_visit, offs_m, offs_n, offs_d,
            N_K, tr, TC, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, CAUSAL, ELEM,
            DOT_PREC, TMA)  # fmt: skip

    # 12: O_i = diag(l_i)^-1 O_i
    acc = acc / l_i[:, None]
    tr = rec(tr, TC, step.NORMALIZE_O, start_m, 0, acc)
    # 13: L_i = m_i + log(l_i)
    lse = (m_i + tl.math.log2(l_i)) * LN2
    tr = rec(tr, TC, step.LSE, start_m, 0, lse)
    # 14: write O_i to HBM
    o = acc.to(O.dtype.element_ty)
    _store_tile(O + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok, o,
                offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.STORE_O, start_m, 0, o, n_q * (HEAD_DIM * ELEM))
    # 15: write L_i to HBM
    if EVEN_M:
        tl.store(LSE + offs_m, lse)
    else:
        tl.store(LSE + offs_m, lse, mask=offs_m < N_Q)
    tr = rec(tr, TC, step.STORE_LSE, start_m, 0, lse, n_q * 4)
    trace_stop(tr, TC)


# --------------------------------------------------------------------------------------
# Backward: FlashAttention-2, Algorithm 2, split into a dK/dV and a dQ kernel
# --------------------------------------------------------------------------------------


@triton.jit
def _attn_bwd_preprocess(O, DO, Delta,  # noqa: E741
                         stride_oz, stride_oh, stride_om, stride_ok,
                         stride_dz, stride_dh, stride_dm, stride_dk,
                         H, N_Q,
                         ev_ptr, hdr_ptr, val_ptr,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_D: tl.constexpr, EVEN_M: tl.constexpr,
                         ELEM: tl.constexpr, TRACE: tl.constexpr,
                         VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
                         MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr):  # fmt: skip
    """``D_i = rowsum(dO_i * O_i)`` for one Q block."""
    prog = tl.program_id(0)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    start_m = prog % T_R
    off_hz = prog // T_R
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, off_hz, start_m, TC)
    n_q = tl.minimum(N_Q - start_m * BLOCK_M, BLOCK_M)
    o = _load_tile(O + off_z * stride_oz + off_h * stride_oh
                   + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                   offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_O, start_m, 0, o, n_q * (HEAD_DIM * ELEM))
    do = _load_tile(DO + off_z * stride_dz + off_h * stride_dh
                    + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                    offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_DO, start_m, 0, do, n_q * (HEAD_DIM * ELEM))
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tr = rec(tr, TC, step.ROWDOT_D, start_m, 0, delta)
    Delta += off_hz.to(tl.int64) * N_Q
    if EVEN_M:
        tl.store(Delta + offs_m, delta)
    else:
        tl.store(Delta + offs_m, delta, mask=offs_m < N_Q)
    tr = rec(tr, TC, step.STORE_D, start_m, 0, delta, n_q * 4)
    trace_stop(tr, TC)


@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, Delta, stride_qm, stride_qk,
                         stride_dm, stride_dk, start_n, sm_scale, qk_scale, lo, hi,
                         offs_n, offs_m0, offs_d, N_Q, N_K, tr, TC: tl.constexpr,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                         MASK: tl.constexpr, CAUSAL: tl.constexpr,
                         EVEN_M: tl.constexpr, ELEM: tl.constexpr,
                         DOT_PREC: tl.constexpr,
                         Bias, stride_bm, stride_bn, HAS_BIAS: tl.constexpr,
                         BIAS_BOOL: tl.constexpr, S_T: tl.constexpr):  # fmt: skip
    """Accumulate ``dK_j, dV_j`` over Q blocks ``lo <= i < hi`` (block indices).

    ``S_T``: compute ``S_ij`` transposed (``K_j Q_i^T``, BLOCK_N x BLOCK_M), so that
    ``P_ij^T`` and ``dS_ij^T`` come out as the left operands of the ``dV_j`` and
    ``dK_j`` products take them instead of being transposed in registers (which
    shuffles them through shared memory). Measured on an H200 (``bench/NOTES.md``,
    session 8): 3-9 % faster backward with square blocks, 2-4 % slower with the
    128 x 64 blocks of causal ``d <= 64``; :func:`_bwd_plan` sets it. The trace
    records ``S_ij, P_ij, dP_ij, dS_ij`` untransposed either way."""
    j = start_n // BLOCK_N
    for start_m in range(lo * BLOCK_M, hi * BLOCK_M, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        i = start_m // BLOCK_M
        tr = iter_open(tr, TC)
        offs_m = start_m + offs_m0
        n_q = tl.minimum(N_Q - start_m, BLOCK_M)
        # -- load Q_i, dO_i, LSE_i, D_i --
        q = _load_tile(Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                       offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_Q, i, 0, q, n_q * (HEAD_DIM * ELEM))
        do = _load_tile(DO + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                        offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_DO, i, 0, do, n_q * (HEAD_DIM * ELEM))
        if EVEN_M:
            lse = tl.load(LSE + offs_m)
        else:
            lse = tl.load(LSE + offs_m, mask=offs_m < N_Q, other=float("inf"))
        tr = rec(tr, TC, step.LOAD_LSE, i, 0, lse, n_q * 4)
        if EVEN_M:
            Di = tl.load(Delta + offs_m)
        else:
            Di = tl.load(Delta + offs_m, mask=offs_m < N_Q, other=0.0)
        tr = rec(tr, TC, step.LOAD_D, i, 0, Di, n_q * 4)
        if S_T:
            # -- S_ij^T = K_j Q_i^T --
            qkT = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)
            tr = rec(tr, TC, step.QK_S, i, j, tl.trans(qkT) * sm_scale)
            if MASK:
                keep = offs_n[:, None] < N_K
                if CAUSAL:
                    keep = keep & (offs_m[None, :] >= offs_n[:, None])
                qkT = tl.where(keep, qkT, float("-inf"))
                tr = rec(tr, TC, step.MASK_S, i, j, tl.trans(qkT) * sm_scale)
            if HAS_BIAS:
                # the forward's bias on S (never traced), back in qk's units
                qkT = tl.trans(_bias_scores(tl.trans(qkT), Bias, offs_m, offs_n,
                                            stride_bm, stride_bn, N_Q, N_K, qk_scale,
                                            BIAS_BOOL) * (1.0 / qk_scale))  # fmt: skip
            # -- P_ij^T = exp(S_ij^T - LSE_i), recomputed instead of stored --
            pT = tl.math.exp2(qkT * qk_scale - lse[None, :] * RCP_LN2)
            tr = rec(tr, TC, step.RECOMPUTE_P, i, j, tl.trans(pT))
            # -- dV_j += P_ij^T dO_i --
            dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PREC)
            tr = rec(tr, TC, step.DV, j, 0, dv)
            # -- dP_ij^T = V_j dO_i^T; dS_ij^T = P_ij^T * (dP_ij^T - D_i) --
            dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
            tr = rec(tr, TC, step.DP, i, j, tl.trans(dpT))
            dsT = pT * (dpT - Di[None, :])
            tr = rec(tr, TC, step.DS, i, j, tl.trans(dsT))
            # -- dK_j += dS_ij^T Q_i (softmax_scale applied at the end) --
            dk = tl.dot(dsT.to(q.dtype), q, dk, input_precision=DOT_PREC)
        else:
            # -- S_ij = Q_i K_j^T --
            qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
            tr = rec(tr, TC, step.QK_S, i, j, qk * sm_scale)
            if MASK:
                keep = offs_n[None, :] < N_K
                if CAUSAL:
                    keep = keep & (offs_m[:, None] >= offs_n[None, :])
                qk = tl.where(keep, qk, float("-inf"))
                tr = rec(tr, TC, step.MASK_S, i, j, qk * sm_scale)
            if HAS_BIAS:
                # the forward's bias on S (never traced), back in qk's units
                qk = _bias_scores(qk, Bias, offs_m, offs_n, stride_bm, stride_bn, N_Q,
                                  N_K, qk_scale, BIAS_BOOL) * (1.0 / qk_scale)  # fmt: skip
            # -- P_ij = exp(S_ij - LSE_i), recomputed instead of stored --
            p = tl.math.exp2(qk * qk_scale - lse[:, None] * RCP_LN2)
            tr = rec(tr, TC, step.RECOMPUTE_P, i, j, p)
            # -- dV_j += P_ij^T dO_i --
            dv = tl.dot(tl.trans(p.to(do.dtype)), do, dv, input_precision=DOT_PREC)
            tr = rec(tr, TC, step.DV, j, 0, dv)
            # -- dP_ij = dO_i V_j^T; dS_ij = P_ij * (dP_ij - D_i) --
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
            tr = rec(tr, TC, step.DP, i, j, dp)
            ds = p * (dp - Di[:, None])
            tr = rec(tr, TC, step.DS, i, j, ds)
            # -- dK_j += dS_ij^T Q_i (softmax_scale applied at the end) --
            dk = tl.dot(tl.trans(ds.to(q.dtype)), q, dk, input_precision=DOT_PREC)
        tr = rec(tr, TC, step.DK, j, 0, dk * sm_scale)
        tr = iter_close(tr, TC)
    return dk, dv, tr


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, Delta, sm_scale,
                   stride_qz, stride_qh, stride_qm, stride_qk,
                   stride_kz, stride_kh, stride_kn, stride_kk,
                   stride_vz, stride_vh, stride_vn, stride_vk,
                   stride_dz, stride_dh, stride_dm, stride_dk,
                   stride_gz, stride_gh, stride_gn, stride_gk,
                   Bias, stride_bz, stride_bh, stride_bm, stride_bn,
                   H, N_Q, N_K,
                   ev_ptr, hdr_ptr, val_ptr,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   CAUSAL: tl.constexpr, EVEN_M: tl.constexpr,
                   EVEN_N: tl.constexpr, ELEM: tl.constexpr,
                   DOT_PREC: tl.constexpr, TRACE: tl.constexpr,
                   VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
                   MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, STAGE: tl.constexpr,
                   HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr,
                   S_T: tl.constexpr):  # fmt: skip
    """One program: K/V block ``start_n`` of a batch-head; writes ``dK_j, dV_j``.

    ``DK`` and ``DV`` share the strides ``stride_g*`` (both allocated here). With
    ``HAS_BIAS`` the forward's bias is applied again when ``P`` is recomputed.
    """
    prog = tl.program_id(0)
    T_C = tl.cdiv(N_K, BLOCK_N)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    pid_n = prog % T_C
    off_hz = prog // T_C
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    Q += off_z * stride_qz + off_h * stride_qh
    K += off_z * stride_kz + off_h * stride_kh
    V += off_z * stride_vz + off_h * stride_vh
    DO += off_z * stride_dz + off_h * stride_dh
    DK += off_z * stride_gz + off_h * stride_gh
    DV += off_z * stride_gz + off_h * stride_gh
    LSE += off_hz.to(tl.int64) * N_Q
    Delta += off_hz.to(tl.int64) * N_Q
    if HAS_BIAS:
        Bias += off_z * stride_bz + off_h * stride_bh

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, off_hz, pid_n, TC)
    nb_k = tl.minimum(N_K - start_n, BLOCK_N) * (HEAD_DIM * ELEM)
    # -- load K_j, V_j: they stay in SRAM; dK_j = dV_j = 0 --
    k = _load_tile(K + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                   offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_K, pid_n, 0, k, nb_k)
    v = _load_tile(V + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                   offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_V, pid_n, 0, v, nb_k)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2

    # Q blocks that see this K block: [i_lo, T_R); masked ones first: [i_lo, i_me)
    if CAUSAL:
        i_lo = tl.where(start_n < N_Q, start_n // BLOCK_M, T_R)
        i_me = tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M)
        i_me = tl.minimum(tl.maximum(i_me, i_lo), T_R)
    else:
        i_lo = 0
        i_me = 0
    if not EVEN_N:
        i_me = tl.where(start_n + BLOCK_N > N_K, T_R, i_me)
    dk, dv, tr = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q, DO, LSE, Delta, stride_qm, stride_qk, stride_dm, stride_dk,
        start_n, sm_scale, qk_scale, i_lo, i_me, offs_n, offs_m0, offs_d, N_Q, N_K,
        tr, TC, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, CAUSAL, EVEN_M, ELEM,
        DOT_PREC, Bias, stride_bm, stride_bn, HAS_BIAS, BIAS_BOOL, S_T)  # fmt: skip
    dk, dv, tr = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q, DO, LSE, Delta, stride_qm, stride_qk, stride_dm, stride_dk,
        start_n, sm_scale, qk_scale, i_me, T_R, offs_n, offs_m0, offs_d, N_Q, N_K,
        tr, TC, HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, CAUSAL, EVEN_M, ELEM,
        DOT_PREC, Bias, stride_bm, stride_bn, HAS_BIAS, BIAS_BOOL, S_T)  # fmt: skip

    # -- write dK_j = scale * sum dS^T Q, dV_j --
    dk = dk * sm_scale
    dk_out = dk.to(DK.dtype.element_ty)
    _store_tile(DK + offs_n[:, None] * stride_gn + offs_d[None, :] * stride_gk, dk_out,
                offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    tr = rec(tr, TC, step.STORE_DK, pid_n, 0, dk_out, nb_k)
    dv_out = dv.to(DV.dtype.element_ty)
    _store_tile(DV + offs_n[:, None] * stride_gn + offs_d[None, :] * stride_gk, dv_out,
                offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    tr = rec(tr, TC, step.STORE_DV, pid_n, 0, dv_out, nb_k)
    trace_stop(tr, TC)


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, Di, K, V, stride_kn, stride_kk, stride_vn,
                       stride_vk, i, sm_scale, qk_scale, lo, hi, offs_m,
                       offs_n, offs_d, N_K, tr, TC: tl.constexpr,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                       MASK: tl.constexpr, CAUSAL: tl.constexpr, ELEM: tl.constexpr,
                       DOT_PREC: tl.constexpr,
                       Bias, stride_bm, stride_bn, N_Q, HAS_BIAS: tl.constexpr,
                       BIAS_BOOL: tl.constexpr):  # fmt: skip
    """Accumulate ``dQ_i`` over K/V blocks ``lo <= j < hi`` (block indices)."""
    lse2 = lse * RCP_LN2
    for start_n in range(lo * BLOCK_N, hi * BLOCK_N, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        j = start_n // BLOCK_N
        tr = iter_open(tr, TC)
        offs_kn = start_n + offs_n
        nb = tl.minimum(N_K - start_n, BLOCK_N) * (HEAD_DIM * ELEM)
        # -- load K_j, V_j --
        k = _load_tile(K + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                       offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_K, j, 0, k, nb)
        v = _load_tile(V + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                       offs_kn, N_K, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_V, j, 0, v, nb)
        # -- S_ij, P_ij = exp(S_ij - LSE_i) --
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        tr = rec(tr, TC, step.QK_S, i, j, qk * sm_scale)
        if MASK:
            keep = offs_kn[None, :] < N_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_kn[None, :])
            qk = tl.where(keep, qk, float("-inf"))
            tr = rec(tr, TC, step.MASK_S, i, j, qk * sm_scale)
        if HAS_BIAS:
            # the forward's bias on S (never traced), back in qk's units
            qk = _bias_scores(qk, Bias, offs_m, offs_kn, stride_bm, stride_bn, N_Q,
                              N_K, qk_scale, BIAS_BOOL) * (1.0 / qk_scale)  # fmt: skip
        p = tl.math.exp2(qk * qk_scale - lse2[:, None])
        tr = rec(tr, TC, step.RECOMPUTE_P, i, j, p)
        # -- dP_ij = dO_i V_j^T; dS_ij = P_ij * (dP_ij - D_i); dQ_i += dS_ij K_j --
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        tr = rec(tr, TC, step.DP, i, j, dp)
        ds = p * (dp - Di[:, None])
        tr = rec(tr, TC, step.DS, i, j, ds)
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)
        tr = rec(tr, TC, step.DQ, i, 0, dq * sm_scale)
        tr = iter_close(tr, TC)
    return dq, tr


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, Delta, sm_scale,
                 stride_qz, stride_qh, stride_qm, stride_qk,
                 stride_kz, stride_kh, stride_kn, stride_kk,
                 stride_vz, stride_vh, stride_vn, stride_vk,
                 stride_dz, stride_dh, stride_dm, stride_dk,
                 stride_gz, stride_gh, stride_gm, stride_gk,
                 Bias, stride_bz, stride_bh, stride_bm, stride_bn,
                 H, N_Q, N_K,
                 ev_ptr, hdr_ptr, val_ptr,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                 CAUSAL: tl.constexpr, EVEN_M: tl.constexpr, ELEM: tl.constexpr,
                 DOT_PREC: tl.constexpr, TRACE: tl.constexpr,
                 VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
                 MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, STAGE: tl.constexpr,
                 HAS_BIAS: tl.constexpr, BIAS_BOOL: tl.constexpr):  # fmt: skip
    """One program: Q block ``start_m`` of a batch-head; writes ``dQ_i`` (with
    ``HAS_BIAS``, the forward's bias applied again when ``P`` is recomputed)."""
    prog = tl.program_id(0)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    start_m = prog % T_R
    off_hz = prog // T_R
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    Q += off_z * stride_qz + off_h * stride_qh
    K += off_z * stride_kz + off_h * stride_kh
    V += off_z * stride_vz + off_h * stride_vh
    DO += off_z * stride_dz + off_h * stride_dh
    DQ += off_z * stride_gz + off_h * stride_gh
    LSE += off_hz.to(tl.int64) * N_Q
    Delta += off_hz.to(tl.int64) * N_Q
    if HAS_BIAS:
        Bias += off_z * stride_bz + off_h * stride_bh

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, off_hz, start_m, TC)
    n_q = tl.minimum(N_Q - start_m * BLOCK_M, BLOCK_M)
    # -- load Q_i, dO_i, LSE_i, D_i: they stay in SRAM; dQ_i = 0 --
    q = _load_tile(Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                   offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_Q, start_m, 0, q, n_q * (HEAD_DIM * ELEM))
    do = _load_tile(DO + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                    offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_DO, start_m, 0, do, n_q * (HEAD_DIM * ELEM))
    if EVEN_M:
        lse = tl.load(LSE + offs_m)
        Di = tl.load(Delta + offs_m)
    else:
        lse = tl.load(LSE + offs_m, mask=offs_m < N_Q, other=float("inf"))
        Di = tl.load(Delta + offs_m, mask=offs_m < N_Q, other=0.0)
    tr = rec(tr, TC, step.LOAD_LSE, start_m, 0, lse, n_q * 4)
    tr = rec(tr, TC, step.LOAD_D, start_m, 0, Di, n_q * 4)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2

    n_nomask, n_visit = _causal_span(start_m, N_Q, N_K, BLOCK_M, BLOCK_N, CAUSAL)
    dq, tr = _attn_bwd_dq_inner(
        dq, q, do, lse, Di, K, V, stride_kn, stride_kk, stride_vn, stride_vk, start_m,
        sm_scale, qk_scale, 0, n_nomask, offs_m, offs_n, offs_d, N_K, tr, TC,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, CAUSAL, ELEM, DOT_PREC,
        Bias, stride_bm, stride_bn, N_Q, HAS_BIAS, BIAS_BOOL)  # fmt: skip
    dq, tr = _attn_bwd_dq_inner(
        dq, q, do, lse, Di, K, V, stride_kn, stride_kk, stride_vn, stride_vk, start_m,
        sm_scale, qk_scale, n_nomask, n_visit, offs_m, offs_n, offs_d, N_K, tr, TC,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, CAUSAL, ELEM, DOT_PREC,
        Bias, stride_bm, stride_bn, N_Q, HAS_BIAS, BIAS_BOOL)  # fmt: skip

    # -- write dQ_i = scale * sum dS K --
    dq = dq * sm_scale
    dq_out = dq.to(DQ.dtype.element_ty)
    _store_tile(DQ + offs_m[:, None] * stride_gm + offs_d[None, :] * stride_gk, dq_out,
                offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    tr = rec(tr, TC, step.STORE_DQ, start_m, 0, dq_out, n_q * (HEAD_DIM * ELEM))
    trace_stop(tr, TC)


# --------------------------------------------------------------------------------------
# The plan of each program, in Python (sizes the trace buffers; documents the trace)
# --------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def visited_blocks(
    i: int, n_q: int, n_k: int, block_m: int, block_n: int, causal: bool
) -> list[tuple[int, bool]]:
    """K/V blocks ``(j, masked)`` that Q block ``i`` visits, ``j`` ascending (the
    forward and dQ kernels' order; the dK/dV kernel visits the same tiles column by
    column)."""
    t_c = _cdiv(n_k, block_n)
    if causal:
        last_row = min((i + 1) * block_m, n_q) - 1
        n_visit = min(last_row // block_n + 1, t_c)
        n_nomask = min((i * block_m + 1) // block_n, n_k // block_n)
    else:
        n_visit, n_nomask = t_c, n_k // block_n
    return [(j, j >= n_nomask) for j in range(n_visit)]


def _visited_q_blocks(
    j: int, n_q: int, n_k: int, block_m: int, block_n: int, causal: bool
) -> list[tuple[int, bool]]:
    """Q blocks ``(i, masked)`` that K/V block ``j`` visits, in the dK/dV order."""
    t_r = _cdiv(n_q, block_m)
    start_n = j * block_n
    if causal:
        i_lo = start_n // block_m if start_n < n_q else t_r
        i_me = min(max(_cdiv(start_n + block_n - 1, block_m), i_lo), t_r)
    else:
        i_lo, i_me = 0, 0
    if start_n + block_n > n_k:
        i_me = t_r
    return [(i, i < i_me) for i in range(i_lo, t_r)]


def program_events(
    launch: str,
    block: int,
    n_q: int,
    n_k: int,
    d: int,
    block_m: int,
    block_n: int,
    causal: bool,
    elem: int,
) -> list[tuple[str, str, int, int, int, int]]:
    """The events one program records, as the module docstring documents them.

    Parameters
    ----------
    launch
        ``"fwd"``, ``"preprocess"``, ``"dkdv"`` or ``"dq"``.
    block
        The program's own block index (Q block ``i``; K/V block ``j`` for dkdv).
    elem
        Bytes per element of the inputs.

    Returns
    -------
    list of tuple
        ``(op, tensor, row, col, nbytes, n_values)``: ``n_values`` is the size of
        the event's snapshot (float32 elements) when values are recorded.
    """
    bd = head_block(d)
    bm, bn = block_m, block_n
    rows_q = lambda i: min(bm, n_q - i * bm)  # noqa: E731
    rows_k = lambda j: min(bn, n_k - j * bn)  # noqa: E731
    ev: list[tuple[str, str, int, int, int, int]] = []
    if launch == "fwd":
        i = block
        ev.append(("load", "Q", i, 0, rows_q(i) * d * elem, bm * bd))
        for j, masked in visited_blocks(i, n_q, n_k, bm, bn, causal):
            ev += [("load", "K", j, 0, rows_k(j) * d * elem, bn * bd),
                   ("load", "V", j, 0, rows_k(j) * d * elem, bn * bd),
                   ("qk", "S", i, j, 0, bm * bn)]  # fmt: skip
            if masked:
                ev.append(("mask", "S", i, j, 0, bm * bn))
            ev += [("rowmax", "m", i, 0, 0, bm), ("exp", "P", i, j, 0, bm * bn),
                   ("alpha", "alpha", i, 0, 0, bm), ("rowsum", "l", i, 0, 0, bm),
                   ("rescale", "acc", i, 0, 0, bm * bd),
                   ("pv", "acc", i, 0, 0, bm * bd)]  # fmt: skip
        ev += [("normalize", "O", i, 0, 0, bm * bd), ("lse", "LSE", i, 0, 0, bm),
               ("store", "O", i, 0, rows_q(i) * d * elem, bm * bd),
               ("store", "LSE", i, 0, rows_q(i) * 4, bm)]  # fmt: skip
    elif launch == "preprocess":
        i = block
        ev += [("load", "O", i, 0, rows_q(i) * d * elem, bm * bd),
               ("load", "dO", i, 0, rows_q(i) * d * elem, bm * bd),
               ("rowdot", "D", i, 0, 0, bm),
               ("store", "D", i, 0, rows_q(i) * 4, bm)]  # fmt: skip
    elif launch == "dkdv":
        j = block
        ev += [("load", "K", j, 0, rows_k(j) * d * elem, bn * bd),
               ("load", "V", j, 0, rows_k(j) * d * elem, bn * bd)]  # fmt: skip
        for i, masked in _visited_q_blocks(j, n_q, n_k, bm, bn, causal):
            ev += [("load", "Q", i, 0, rows_q(i) * d * elem, bm * bd),
                   ("load", "dO", i, 0, rows_q(i) * d * elem, bm * bd),
                   ("load", "LSE", i, 0, rows_q(i) * 4, bm),
                   ("load", "D", i, 0, rows_q(i) * 4, bm),
                   ("qk", "S", i, j, 0, bm * bn)]  # fmt: skip
            if masked:
                ev.append(("mask", "S", i, j, 0, bm * bn))
            ev += [("recompute", "P", i, j, 0, bm * bn), ("dv", "dV", j, 0, 0, bn * bd),
                   ("dp", "dP", i, j, 0, bm * bn), ("ds", "dS", i, j, 0, bm * bn),
                   ("dk", "dK", j, 0, 0, bn * bd)]  # fmt: skip
        ev += [("store", "dK", j, 0, rows_k(j) * d * elem, bn * bd),
               ("store", "dV", j, 0, rows_k(j) * d * elem, bn * bd)]  # fmt: skip
    elif launch == "dq":
        i = block
        ev += [("load", "Q", i, 0, rows_q(i) * d * elem, bm * bd),
               ("load", "dO", i, 0, rows_q(i) * d * elem, bm * bd),
               ("load", "LSE", i, 0, rows_q(i) * 4, bm),
               ("load", "D", i, 0, rows_q(i) * 4, bm)]  # fmt: skip
        for j, masked in visited_blocks(i, n_q, n_k, bm, bn, causal):
            ev += [("load", "K", j, 0, rows_k(j) * d * elem, bn * bd),
                   ("load", "V", j, 0, rows_k(j) * d * elem, bn * bd),
                   ("qk", "S", i, j, 0, bm * bn)]  # fmt: skip
            if masked:
                ev.append(("mask", "S", i, j, 0, bm * bn))
            ev += [("recompute", "P", i, j, 0, bm * bn),
                   ("dp", "dP", i, j, 0, bm * bn), ("ds", "dS", i, j, 0, bm * bn),
                   ("dq", "dQ", i, 0, 0, bm * bd)]  # fmt: skip
        ev.append(("store", "dQ", i, 0, rows_q(i) * d * elem, bm * bd))
    else:
        raise ValueError(
            f"unknown launch {launch!r}; one of 'fwd', 'preprocess', 'dkdv', 'dq'"
        )
    return ev


def _buffers(
    launch: str,
    n_blocks: int,
    bh: int,
    n_q: int,
    n_k: int,
    d: int,
    block_m: int,
    block_n: int,
    causal: bool,
    elem: int,
    values: bool,
    device: torch.device,
) -> TraceBuffers:
    """Trace buffers sized exactly: the largest program's events and values."""
    max_ev, max_val = _trace_sizes(launch, n_blocks, n_q, n_k, d, block_m, block_n,
                                   causal, elem, values)  # fmt: skip
    return launch_buffers(n_blocks * bh, max_ev, max_val, values, device,
                          fill=INTERPRET or values)  # fmt: skip


@functools.lru_cache(maxsize=256)
def _trace_sizes(launch: str, n_blocks: int, n_q: int, n_k: int, d: int,
                 block_m: int, block_n: int, causal: bool, elem: int,
                 values: bool) -> tuple[int, int]:  # fmt: skip
    """The largest program's event count and value count (cached: walking the
    programs in Python costs milliseconds at large N, more than the kernel)."""
    max_ev, max_val = 1, 0
    for b in range(n_blocks):  # programs of one batch-head; all heads alike
        evs = program_events(launch, b, n_q, n_k, d, block_m, block_n, causal, elem)
        max_ev = max(max_ev, len(evs))
        if values:
            max_val = max(max_val, sum(e[5] for e in evs))
    return max_ev, max_val


def _bias_args(attn_mask, shapes, q, trace):
    """``(tensor, 4 strides)`` and constexprs of the kernels' ``Bias`` argument."""
    bias = check_attn_mask(attn_mask, shapes)
    if bias is None:
        return (q, 0, 0, 0, 0), {"HAS_BIAS": False, "BIAS_BOOL": False}
    if trace:
        raise ValueError(
            "attn_mask cannot be traced: the recorders run the mask-free kernel that "
            "the animations show; record without attn_mask"
        )
    return (bias, *bias.stride()), {
        "HAS_BIAS": True,
        "BIAS_BOOL": bias.dtype == torch.uint8,
    }


# --------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------


def _dot_precision(dtype: torch.dtype) -> str:
    # float32 inputs: exact products (no TF32), so float32 runs meet float32's tolerance
    return "ieee" if dtype == torch.float32 else "tf32"


#: Load the forward's K and V tiles through tensor descriptors (TMA) where it was
#: measured to pay (``bench/NOTES.md``), and only where the layout allows:
#:
#: * causal, 256-byte rows (16-bit d = 128), N_k >= 2048: +7-16 % on an H100
#:   (session 2; elsewhere there -2 to -14 %, non-causal d = 128 at 16k -7 %);
#: * where the GPU's own table says so for a plain call
#:   (:data:`~flashanim.kernels._common.GPU_FWD_TABLE`: on an H200, non-causal
#:   16-bit d = 64 from 4096 keys and d = 128 from 2048, session 11).
#:
#: ``FLASHANIM_TMA=0``: never; ``=1``: wherever the layout allows.
FWD_TMA: str = os.environ.get("FLASHANIM_TMA", "auto")


#: Program order of the causal forward (``_attn_fwd``'s ``HEAVY_FIRST``): ``auto``
#: (untraced launches with a padded head dimension of 128 or more run each
#: batch-head's Q blocks from the last, the one that visits the most K/V blocks:
#: 1.01-1.07x at d = 128 from 1k to 16k keys on an H200, geomean 1.03; at d = 64 no
#: faster; traced launches keep the index order their recorded traces and the
#: scenes show: ``bench/NOTES.md``, session 12), ``0`` (index order always), ``1``
#: (last block first wherever causal, traced launches too).
#: ``FLASHANIM_CAUSAL_ORDER`` in the environment.
CAUSAL_ORDER: str = os.environ.get("FLASHANIM_CAUSAL_ORDER", "auto")


def _heavy_first(causal: bool, trace, d: int) -> bool:
    """Whether a causal forward runs its Q blocks from the last (``CAUSAL_ORDER``)."""
    if not causal or CAUSAL_ORDER == "0":
        return False
    return CAUSAL_ORDER == "1" or (not trace and head_block(d) >= 128)


def _tma_alloc(size: int, alignment: int, stream) -> torch.Tensor:
    """Global scratch for device-side tensor descriptors (``triton.set_allocator``)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def _use_tma(
    k: torch.Tensor, v: torch.Tensor, attn_mask, causal: bool, planned: bool = False
) -> bool:
    """Whether the forward loads K/V through tensor descriptors (see ``FWD_TMA``;
    ``planned``: the launch plan's GPU table asks for them). TMA needs a GPU, unit
    stride along d and 16-byte aligned rows and heads."""
    if INTERPRET or FWD_TMA == "0" or attn_mask is not None or not k.is_cuda:
        return False
    if FWD_TMA != "1" and not planned:
        width = head_block(k.shape[3]) * k.element_size()  # bytes of a padded row
        if not (causal and width == 256 and k.shape[2] >= 2048):
            return False
    return _tma_layout(k, v)


def _tma_layout(*tensors: torch.Tensor) -> bool:
    """Whether tensor descriptors can address these ``(B, H, N, d)`` tensors: unit
    stride along d, 16-byte aligned base, rows and heads."""
    for t in tensors:
        if t.stride(3) != 1 or t.data_ptr() % 16:
            return False
        if any((t.stride(i) * t.element_size()) % 16 for i in range(3)):
            return False
    return True


def _stage(trace: bool, values: bool) -> bool:
    """Stage an iteration's events into one store: events-only traces without
    per-event clocks (module variable ``TRACE_STAGE``, from
    ``FLASHANIM_TRACE_STAGE``)."""
    return bool(trace and not values and TRACE_STAGE and GPU_CLOCK < 2)


def _launch_opts(
    block_m: int, block_n: int, bd: int, elem: int, backward: bool,
    num_warps: int | None, num_stages: int | None, causal: bool = False,
    short: tuple[int, ...] | None = None,
) -> dict:  # fmt: skip
    """``num_warps``/``num_stages`` where not given: the H200 sweep's choices
    (``bench/tune_fa2.py``, ``bench/NOTES.md``); ``short``: the short-sequence
    table's entry (:func:`~flashanim.kernels._common.short_config`), used when the
    blocks are its blocks."""
    if INTERPRET:
        return {}
    if short is not None and (block_m, block_n) == tuple(short[:2]):
        num_warps = short[2] if num_warps is None else num_warps
        num_stages = short[3] if num_stages is None else num_stages
    width = bd * elem  # bytes of one padded row
    if num_warps is None:
        if backward:
            num_warps = 8 if block_m * block_n >= 128 * 128 else 4
        else:
            num_warps = 8 if width >= 256 and block_m * block_n >= 128 * 64 else 4
    if num_stages is None:
        if backward:
            num_stages = 3 if width <= 128 and not causal else 2
        else:
            num_stages = 3 if width <= 256 else 2
    return {"num_warps": num_warps, "num_stages": num_stages}


#: Per-shape launch decisions of untraced launches with default blocks and launch
#: options (every call of ``flash_attention``): block sizes, the constexprs and
#: ``num_warps``/``num_stages`` of each kernel, computed once per
#: ``(pass, N_q, N_k, d, dtype, causal[, GPU])``: recomputing them cost host time on every
#: call, which bounds short sequences (``bench/NOTES.md``, "Launch host time").
_PLANS: dict[tuple, tuple] = {}
_PLANS_MAX = 4096  # entries kept (emptied when full: a bound, not an LRU)

#: The untraced launches' trace arguments (one-element placeholders the kernels
#: never touch with ``TRACE=False``), allocated once per device.
_UNTRACED: dict[torch.device, tuple[tuple, dict]] = {}

_NO_BIAS_FLAGS = {"HAS_BIAS": False, "BIAS_BOOL": False}


def _untraced_args(device: torch.device) -> tuple[tuple, dict]:
    """``trace_args(None, device)``, cached per device (not while a CUDA graph is
    being captured: those placeholders would live in the graph's memory pool)."""
    args = _UNTRACED.get(device)
    if args is None:
        args = trace_args(None, device)
        if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            _UNTRACED[device] = args
    return args


def _plain(trace, block_m, block_n, num_warps, num_stages) -> bool:
    """The plain call: untraced, default blocks and launch options (every
    ``flash_attention`` call)."""
    return not trace and (block_m, block_n, num_warps, num_stages) == (None,) * 4


def _plan(make, n_q, n_k, d, dtype, causal, block_m, block_n, num_warps, num_stages,
          trace, values, *extra):  # fmt: skip
    """``make(...)``'s launch plan; cached per shape (and ``extra``, such as the
    GPU's name) for the plain call (:func:`_plain`)."""
    if not _plain(trace, block_m, block_n, num_warps, num_stages):
        return make(n_q, n_k, d, dtype, causal, block_m, block_n, num_warps,
                    num_stages, trace, values, *extra)  # fmt: skip
    key = (make, n_q, n_k, d, dtype, causal, *extra)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[key] = make(n_q, n_k, d, dtype, causal, None, None, None,
                                  None, False, False, *extra)  # fmt: skip
    return plan


def _fwd_plan(n_q, n_k, d, dtype, causal, block_m, block_n, num_warps, num_stages,
              trace, values, gpu=""):  # fmt: skip
    """``(block_m, block_n, constexprs and launch options, K/V by descriptors
    wanted)`` of ``_attn_fwd``; a plain call on a GPU with its own table entry
    (:func:`~flashanim.kernels._common.gpu_fwd_config`) takes that entry."""
    own = None
    if _plain(trace, block_m, block_n, num_warps, num_stages):
        own = gpu_fwd_config(gpu, n_q, n_k, d, dtype, causal)
    if own is not None:
        block_m, block_n, num_warps, num_stages = own[:4]
    block_m, block_n = resolve_blocks(block_m, block_n, n_q, n_k, d, dtype,
                                      causal=causal)  # fmt: skip
    bd, elem = head_block(d), elem_bytes(dtype)
    consts = dict(
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=bd, CAUSAL=causal,
        EVEN_M=n_q % block_m == 0, ELEM=elem, DOT_PREC=_dot_precision(dtype),
        STAGE=_stage(trace, values),
        **_launch_opts(block_m, block_n, bd, elem, False, num_warps, num_stages,
                       causal, short_config(n_q, n_k, d, dtype, False, causal)),
    )  # fmt: skip
    return block_m, block_n, consts, own is not None and own[4]


def _forward(q, k, v, causal, softmax_scale, block_m, block_n, trace, values,
             num_warps=None, num_stages=None, attn_mask=None):  # fmt: skip
    """Validate, allocate and launch ``_attn_fwd``; return ``(o, lse, buffers,
    (block_m, block_n))``."""
    shapes = check_qkv(q, k, v)
    batch, heads, n_q, n_k, d = shapes
    if attn_mask is None:
        bias_args, bias_flags = (q, 0, 0, 0, 0), _NO_BIAS_FLAGS
    else:
        bias_args, bias_flags = _bias_args(attn_mask, shapes, q, trace)
    scale = check_scale(softmax_scale, d)
    causal = bool(causal)
    # the GPU's table was measured without masks: masked calls keep the rules
    gpu = gpu_name(q.device) if attn_mask is None else ""
    plan = _plan(_fwd_plan, n_q, n_k, d, q.dtype, causal, block_m, block_n,
                 num_warps, num_stages, trace, values, gpu)  # fmt: skip
    block_m, block_n, consts, planned_tma = plan
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    t_r = _cdiv(n_q, block_m)
    bufs = None
    if trace:
        bufs = _buffers("fwd", t_r, batch * heads, n_q, n_k, d, block_m, block_n,
                        causal, elem_bytes(q.dtype), values, q.device)  # fmt: skip
        tptr, tflags = trace_args(bufs, q.device, values)
    else:
        tptr, tflags = _untraced_args(q.device)
    tma = _use_tma(k, v, attn_mask, causal, planned_tma)
    if tma:  # the descriptors are built on the device, in this scratch
        triton.set_allocator(_tma_alloc)
    _attn_fwd[(t_r * batch * heads,)](
        q, k, v, o, lse, scale,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), *bias_args,
        heads, n_q, n_k, *tptr, **consts, **tflags, **bias_flags, TMA=tma,
        HEAVY_FIRST=_heavy_first(causal, trace, d),
    )  # fmt: skip
    return o, lse, bufs, (block_m, block_n)


def _bwd_plan(n_q, n_k, d, dtype, causal, block_m, block_n, num_warps, num_stages,
              trace, values):  # fmt: skip
    """``(block_m, block_n, constexprs and launch options of the preprocess, dK/dV
    and dQ kernels)``. One block pair for every pass; for an untraced launch with
    default blocks and launch options, the passes named in the tuning table
    (:func:`~flashanim.kernels._common.bwd_pass_config`) take their own."""
    own = None
    if _plain(trace, block_m, block_n, num_warps, num_stages):
        own = bwd_pass_config(n_q, n_k, d, dtype, causal)
    block_m, block_n = resolve_blocks(block_m, block_n, n_q, n_k, d, dtype,
                                      backward=True, causal=causal)  # fmt: skip
    bd, elem = head_block(d), elem_bytes(dtype)
    stage, prec = _stage(trace, values), _dot_precision(dtype)
    short = short_config(n_q, n_k, d, dtype, True, causal)

    def consts(name, with_n=True):
        bm, bn, warps, stages = block_m, block_n, num_warps, num_stages
        cfg = (own or {}).get(name)
        if cfg is not None:
            (bm, bn), warps, stages = check_blocks(*cfg[:2]), cfg[2], cfg[3]
        c = dict(HEAD_DIM=d, BLOCK_M=bm, BLOCK_D=bd, EVEN_M=n_q % bm == 0, ELEM=elem,
                 **_launch_opts(bm, bn, bd, elem, True, warps, stages, causal,
                                short))  # fmt: skip
        if with_n:
            c.update(BLOCK_N=bn, CAUSAL=causal, DOT_PREC=prec, STAGE=stage)
        return c

    pre = consts("pre", with_n=False)
    # S computed transposed in the dK/dV pass unless the Q block is the taller:
    # (_attn_bwd_dkdv_inner's docstring has the measurement)
    dkdv = consts("dkdv")
    dkdv.update(EVEN_N=n_k % dkdv["BLOCK_N"] == 0,
                S_T=dkdv["BLOCK_M"] <= dkdv["BLOCK_N"])  # fmt: skip
    dq = consts("dq")
    return block_m, block_n, pre, dkdv, dq


def _backward(q, k, v, o, lse, do, causal, softmax_scale, block_m, block_n, trace,
              values, num_warps=None, num_stages=None, attn_mask=None):  # fmt: skip
    """Validate and launch the three backward kernels; return grads and buffers."""
    shapes = check_qkv(q, k, v)
    batch, heads, n_q, n_k, d = shapes
    if attn_mask is None:
        bias_args, bias_flags = (q, 0, 0, 0, 0), _NO_BIAS_FLAGS
    else:
        bias_args, bias_flags = _bias_args(attn_mask, shapes, q, trace)
    check_like(o, q, "o", "q")
    check_like(do, q, "do", "q")
    if not isinstance(lse, torch.Tensor) or tuple(lse.shape) != (batch, heads, n_q):
        raise ValueError(
            f"lse must be a float32 tensor of shape {(batch, heads, n_q)} (the "
            "forward's second output)"
        )
    if lse.dtype != torch.float32:
        raise TypeError(f"lse must be float32 (the forward's output), got {lse.dtype}")
    scale = check_scale(softmax_scale, d)
    causal = bool(causal)
    plan = _plan(_bwd_plan, n_q, n_k, d, q.dtype, causal, block_m, block_n,
                 num_warps, num_stages, trace, values)  # fmt: skip
    block_m, block_n, pre_consts, dkdv_consts, dq_consts = plan
    lse = lse.contiguous()
    bh = batch * heads
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    delta = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    launches = []

    def buffers(name, n_blocks):
        if not trace:
            return _untraced_args(q.device)
        b = _buffers(name, n_blocks, bh, n_q, n_k, d, block_m, block_n, causal,
                     elem_bytes(q.dtype), values, q.device)  # fmt: skip
        launches.append(b)
        return trace_args(b, q.device, values)

    # (traced launches use one block pair, so these are the trace's T_r and T_c)
    t_pre = _cdiv(n_q, pre_consts["BLOCK_M"])
    t_c = _cdiv(n_k, dkdv_consts["BLOCK_N"])
    t_r = _cdiv(n_q, dq_consts["BLOCK_M"])
    tptr, tflags = buffers("preprocess", t_pre)
    _attn_bwd_preprocess[(t_pre * bh,)](
        o, do, delta, *o.stride(), *do.stride(), heads, n_q, *tptr,
        **pre_consts, **tflags,
    )  # fmt: skip
    tptr, tflags = buffers("dkdv", t_c)
    _attn_bwd_dkdv[(t_c * bh,)](
        q, k, v, do, dk, dv, lse, delta, scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(),
        *bias_args, heads, n_q, n_k, *tptr, **dkdv_consts, **tflags, **bias_flags,
    )  # fmt: skip
    tptr, tflags = buffers("dq", t_r)
    _attn_bwd_dq[(t_r * bh,)](
        q, k, v, do, dq, lse, delta, scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
        *bias_args, heads, n_q, n_k, *tptr, **dq_consts, **tflags, **bias_flags,
    )  # fmt: skip
    return dq, dk, dv, launches, (block_m, block_n)


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    *,
    num_warps: int | None = None,
    num_stages: int | None = None,
    attn_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention-2 forward: ``O = softmax(scale * Q K^T [+ mask]) V``.

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)``; float32 or
        float16 (bfloat16 on the GPU only).
    causal
        Mask keys after the query (top-left aligned: query ``r`` sees keys
        ``0..r``).
    softmax_scale
        Scale of ``Q K^T``; ``1/sqrt(d)`` when ``None``.
    block_m, block_n
        ``BLOCK_M`` (rows of a Q block) and ``BLOCK_N`` (rows of a K/V block);
        powers of two, defaults from :func:`~flashanim.kernels._common.default_blocks`.
    num_warps, num_stages
        Launch options on the GPU (ignored by the interpreter).
    attn_mask
        Optional bool or floating tensor broadcastable to ``(B, H, N_q, N_k)``
        (broadcast dimensions cost no memory: stride 0), applied to ``S`` before
        the softmax, on top of ``causal``: bool ``False`` masks (``-inf``), floats
        are added (see :func:`~flashanim.kernels._common.check_attn_mask`). A row
        whose keys are all masked gets ``O = 0`` and ``LSE = +inf`` (and zero
        gradients in the backward), as flash-attn (never NaN).

    Returns
    -------
    o : torch.Tensor
        ``(B, H, N_q, d)`` in the inputs' dtype.
    lse : torch.Tensor
        ``(B, H, N_q)`` float32, the natural-log ``logsumexp`` of each row of ``S``.
    """
    o, lse, _, _ = _forward(q, k, v, causal, softmax_scale, block_m, block_n, False,
                            False, num_warps, num_stages, attn_mask)  # fmt: skip
    return o, lse


def attention_backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    do: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    *,
    num_warps: int | None = None,
    num_stages: int | None = None,
    attn_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention-2 backward: ``dQ, dK, dV`` from ``dO`` and the forward's
    ``O`` and ``LSE`` (``P`` is recomputed, never stored).

    Parameters are those of :func:`attention_forward`, plus ``o`` and ``lse`` (its
    outputs) and ``do`` (the gradient of ``o``, shape and dtype of ``q``). Pass the
    forward's ``attn_mask`` again: ``P`` is recomputed with it.

    Returns
    -------
    tuple of torch.Tensor
        ``(dq, dk, dv)`` in the inputs' dtype.
    """
    dq, dk, dv, _, _ = _backward(q, k, v, o, lse, do, causal, softmax_scale, block_m,
                                 block_n, False, False, num_warps, num_stages,
                                 attn_mask)  # fmt: skip
    return dq, dk, dv


# --------------------------------------------------------------------------------------
# Recorders
# --------------------------------------------------------------------------------------


def _record_forward(q, k, v, *, causal, softmax_scale, block_m, block_n, values,
                    do):  # fmt: skip
    del do  # (the recorders' uniform signature)
    o, lse, bufs, blocks = _forward(q, k, v, causal, softmax_scale, block_m,
                                    block_n, True, values)  # fmt: skip
    return [bufs], {"O": o, "LSE": lse}, blocks


def _record_backward(q, k, v, *, causal, softmax_scale, block_m, block_n, values,
                     do):  # fmt: skip
    shapes = check_qkv(q, k, v)
    bm, bn = resolve_blocks(block_m, block_n, shapes.n_q, shapes.n_k,
                            shapes.head_dim, q.dtype, backward=True,
                            causal=bool(causal))  # fmt: skip
    o, lse = attention_forward(q, k, v, causal, softmax_scale, bm, bn)
    if do is None:
        gen = torch.Generator(device=q.device).manual_seed(0)
        do = torch.randn(q.shape, generator=gen, device=q.device).to(q.dtype)
    dq, dk, dv, launches, _ = _backward(q, k, v, o, lse, do, causal, softmax_scale,
                                        bm, bn, True, values)  # fmt: skip
    outputs = {"O": o, "LSE": lse, "dO": do, "dQ": dq, "dK": dk, "dV": dv}
    return launches, outputs, (bm, bn)


record_forward = recorder(
    "fa2-fwd",
    ("fwd",),
    _record_forward,
    """\
Run the forward with ``TRACE=True``; return its raw trace (kernel ``"fa2-fwd"``,
one launch ``"fwd"``, outputs ``O`` and ``LSE``).

``do`` is accepted for the recorders' uniform signature and ignored. With
``values`` every event also snapshots its tile (small runs only).
""",
)
record_backward = recorder(
    "fa2-bwd",
    ("preprocess", "dkdv", "dq"),
    _record_backward,
    """\
Run the forward untraced, then the backward with ``TRACE=True``.

Returns the raw trace of kernel ``"fa2-bwd"``: launches ``"preprocess"``,
``"dkdv"``, ``"dq"``; outputs ``O``, ``LSE``, ``dO``, ``dQ``, ``dK``, ``dV``.
``do`` defaults to a standard normal tensor like ``q`` drawn with seed 0.
""",
)
