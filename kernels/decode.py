"""Split-K/V decoding (Flash-Decoding): few queries against a long K/V cache.

With one or a few new queries per sequence, the forward of :mod:`.fa2` has one
program per ``(Q block, batch-head)``: 32 heads of one sequence give 32 programs on a
GPU of 132 SMs, and each walks the whole cache alone. Here the cache is cut into
``S`` slices (*splits*) and each program takes one slice:

``"split"`` (``_attn_fwd_split``, one program per ``(split s, Q block i,
batch-K/V-head)``)
    the online softmax of :mod:`.fa2` over the K/V blocks of its slice only; writes
    the slice's normalised partial output ``O_s`` and its ``LSE_s`` (float32
    scratch). A slice that holds no key of a row (past a ragged cache length, or
    masked by the causal rule) gives ``O_s = 0``, ``LSE_s = -inf`` (weight 0).
``"reduce"`` (``_attn_fwd_merge``, one program per packed query row ``r`` of a
batch-K/V-head)
    loads the row's ``LSE_s`` and ``O_s`` of all slices at once and merges them
    with their LSE weights: ``m = max_s LSE_s``, ``w_s = exp(LSE_s - m)``,
    ``O = sum_s w_s O_s / sum_s w_s``, ``LSE = m + log(sum_s w_s)``: the same as
    one program over the whole cache. (A first version walked the slices one after
    the other in one program per Q block: 64 dependent loads, 20-40 us, more than
    the split kernel itself at batch 1; ``bench/NOTES.md``.)

On Hopper (compute capability 9.0+) the reduce is a *programmatic dependent
launch*: the split kernel lets it launch before the split launch ends (at its start
or after its K/V loop: :func:`pdl_mode`), and each reduce program waits on the GPU
(``gdc_wait``) for the whole split launch before it reads ``O_s`` and ``LSE_s``, so
the gap between the two launches is hidden. Results and traces are the same.

Grouped- and multi-query attention (``H`` query heads, ``H_kv`` K/V heads,
``G = H / H_kv``) never expands K/V: the ``G * N_q`` query rows that share a K/V
head are packed into one Q block (row ``r`` of batch-K/V-head ``bh = b * H_kv +
kvh`` is query ``r % N_q`` of head ``kvh * G + r // N_q``), so each K/V tile is read
once for all of them. Q and O are read and written through their strides
(``(B, H, N, d)`` views or flash-attn's ``(B, N, H, d)``), no copies.

Lengths and masks: ``cache_seqlens`` (optional, per batch) says how many keys of the
cache are valid (clamped to ``[0, N_k]``; no host synchronisation). ``causal`` is
aligned to the bottom-right corner, as flash-attn's: query ``r`` of a sequence of
``L`` keys sees keys ``0 .. r + L - N_q``; a row that sees no key gives ``O = 0`` and
``LSE = +inf`` (as :mod:`.fa2` for fully masked rows).

Forward only: :func:`flashanim.kernels.attention.flash_attention` and
:func:`flashanim.kernels.modules.flash_attn_func` take this path by themselves when
no gradient is wanted and :func:`use_split` says it pays; with autograd they run the
general kernels (which have a backward).

Trace (``TRACE=True``; tile coordinates as in :mod:`.fa2`, ``i`` the packed Q block,
``j`` the K/V block of the whole cache, ``s`` the split)::

    split, program (s, i, bh):
        load Q(i)
        for each K/V block j of the slice (ascending):
            load K(j), load V(j), qk S(i,j), [mask S(i,j)], rowmax m(i),
            exp P(i,j), alpha alpha(i), rowsum l(i), rescale acc(i), pv acc(i)
        normalize O_s(i,s), lse LSE_s(i,s), store O_s(i,s), store LSE_s(i,s)
    reduce, program (r, bh):   (r: the packed row; its tiles are rows (r, 0))
        load LSE_s(r,0), load O_s(r,0)   (all S slices: S x 1 and S x d)
        merge O(r), lse LSE(r), store O(r), store LSE(r)

A K/V block is masked (``[mask S]``) when it holds a key past the sequence's length
or, causal, a key after the first packed row's limit (``j >= (L - N_q + 1) //
BLOCK_N``; non-causal ``j >= L // BLOCK_N``). Headers: ``bh`` as above, ``block`` =
``s`` (split) or ``r`` (reduce). ``nbytes``: Q, K, V, O in the inputs' element size
over valid rows and ``d``; ``O_s`` and ``LSE_s`` float32 over the valid packed rows.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from . import _steps as step
from ._common import (
    BLOCK_RANGE,
    DTYPES,
    check_blocks,
    check_scale,
    elem_bytes,
    head_block,
    next_pow2,
)
from ._device import INTERPRET, check_device, cuda_index, pdl_capable
from ._trace import (
    iter_close,
    iter_open,
    launch_buffers,
    rec,
    recorder,
    trace_args,
    trace_start,
    trace_stop,
)
from .fa2 import LN2, RCP_LN2, _dot_precision, _load_tile, _stage

__all__ = [
    "attention_decode",
    "choose_splits",
    "program_events",
    "record_forward",
    "use_split",
]

#: Launch plans of the split kernel on the GPU (rows up to 256 bytes), the fastest
#: of ``bench/sweep_issue15.py`` on an NVIDIA H200 (132 SMs), 2026-12-02,
#: graph-timed (``media/bench/sweep_issue15_NVIDIA_H200.jsonl`` and
#: ``sweep_issue15_plans_NVIDIA_H200.jsonl``; figures in ``bench/NOTES.md``, session
#: 6): ``(block_n, num_warps, num_stages, per_sm)``, where ``per_sm`` is how many
#: programs of the plan fit on one SM at once (shared memory: ``stages x (K + V
#: tile)``, 192 KB for ``"few"``, 96 KB for ``"many"``). The split count fills those
#: slots in one wave (:func:`choose_splits`); a count that spills into a second,
#: partial wave is the slowest thing measured (B = 8, 128k, 160 programs of one per
#: SM: 640 us against 473 for 128 programs).
#:
#: * ``"few"`` (at most one program per SM before splitting): 128-key blocks, 3
#:   stages, one program per SM. B = 1 (4 programs, 33 slices): 71.6 us at 128k,
#:   15.3 at 16k (64-key blocks: 80.4, 16.3); B = 8 (32 programs, 4 slices): 473 us
#:   at 128k (4,539 GB/s; cuDNN 476 in the same run); B = 2 ... 24 at 32k: as fast as
#:   ``"many"`` or up to 3 % faster, 1.009-1.114x cuDNN.
#: * ``"many"`` (more programs than SMs: one per SM would take a second, partial
#:   wave): 64-key blocks, 3 stages, two programs per SM (session 5's measured
#:   configuration; this regime was not measured in session 6).
DECODE_PLANS: dict[str, tuple[int, int, int, int]] = {
    "few": (128, 4, 3, 1),
    "many": (64, 4, 3, 2),
}
#: Wide rows (more than 256 bytes: 16-bit ``d > 128`` or float32 ``d > 64``):
#: 32-key blocks, one wave of one program per SM (not measured in the sweep).
WIDE_PLAN: tuple[int, int, int, int] = (32, 4, 3, 1)
#: The fewest keys a slice holds (one 128-key block of ``"few"``; 4 blocks of the
#: interpreter's 32), and at most :data:`MAX_SPLITS` slices.
MIN_SPLIT_KEYS: int = 128
MAX_SPLITS: int = 128
#: Largest ``S_PAD x BLOCK_D`` tile of partial outputs the reduce holds (float32).
MAX_REDUCE_TILE: int = 16384
#: The SM count the heuristic assumes in Triton's interpreter (small, so that CPU
#: runs exercise several splits).
INTERPRETER_SMS: int = 4
#: Programmatic dependent launch of the reduce (GPU, compute capability 9.0+): the
#: split launch lets the reduce's programs start while it still runs, and they wait
#: on the GPU (``gdc_wait``) for its end instead of the reduce being launched only
#: after it. Same kernels and results, one launch gap fewer. ``None`` (default):
#: on wherever the GPU supports it; ``False``: off (``bench/bench_decode.py``
#: times both in one process).
PDL: bool | None = None
#: Where the split kernel lets the reduce launch (:func:`pdl_mode`): ``None`` (the
#: rule), or ``"start"`` / ``"loop_end"`` to force one (the benchmark times both).
#: Measured on an H200 (``bench/NOTES.md``, session 10): let go at the split's
#: start, the reduce's programs sit on the SMs beside it until it ends. 32 of them
#: (batch 1, one query) cost nothing: 0.4-0.7 us saved at caches of 4k-64k, up to
#: 0.5 us more than letting them go after the K/V loop. 256 (batch 1, 8 queries)
#: made the whole 0.8-1.4 us slower than no dependent launch at all (two runs),
#: where letting them go after the loop saved 0.6-1.1 us.
PDL_AT: str | None = None


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@triton.jit
def _split_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn, stride_vk,
                 i, sm_scale, qk_scale, lo, hi, kmax, seq_len, offs_n, offs_d,
                 tr, TC: tl.constexpr,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, MASK: tl.constexpr,
                 ELEM: tl.constexpr, DOT_PREC: tl.constexpr):  # fmt: skip
    """K/V blocks ``lo <= j < hi`` of one slice. With ``MASK`` a key ``n`` is kept
    for row ``r`` when ``n <= kmax[r]`` (length and causal limit in one), and a row
    that has seen no key yet keeps ``m = -inf`` without NaN."""
    for start_n in range(lo * BLOCK_N, hi * BLOCK_N, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        j = start_n // BLOCK_N
        tr = iter_open(tr, TC)
        nb = tl.minimum(seq_len - start_n, BLOCK_N) * (HEAD_DIM * ELEM)
        offs_kn = start_n + offs_n
        k = _load_tile(K + offs_kn[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                       offs_kn, seq_len, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_K, j, 0, k, nb)
        v = _load_tile(V + offs_kn[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                       offs_kn, seq_len, offs_d, HEAD_DIM, BLOCK_D, MASK)  # fmt: skip
        tr = rec(tr, TC, step.LOAD_V, j, 0, v, nb)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        tr = rec(tr, TC, step.QK_S, i, j, qk * sm_scale)
        if MASK:
            qk = tl.where(offs_kn[None, :] <= kmax[:, None], qk, float("-inf"))
            tr = rec(tr, TC, step.MASK_S, i, j, qk * sm_scale)
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        if MASK:  # a row with no key so far: subtract 0, not -inf (P = 0, no NaN)
            m_sub = tl.where(m_ij == float("-inf"), 0.0, m_ij)
        else:
            m_sub = m_ij
        tr = rec(tr, TC, step.ROWMAX_M, i, 0, m_ij * LN2)
        p = tl.math.exp2(qk * qk_scale - m_sub[:, None])
        tr = rec(tr, TC, step.EXP_P, i, j, p)
        alpha = tl.math.exp2(m_i - m_sub)
        tr = rec(tr, TC, step.ALPHA, i, 0, alpha)
        l_i = l_i * alpha + tl.sum(p, 1)
        tr = rec(tr, TC, step.ROWSUM_L, i, 0, l_i)
        acc = acc * alpha[:, None]
        tr = rec(tr, TC, step.RESCALE_ACC, i, 0, acc)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        tr = rec(tr, TC, step.PV_ACC, i, 0, acc)
        m_i = m_ij
        tr = iter_close(tr, TC)
    return acc, l_i, m_i, tr


@triton.jit
def _packed_rows(i, N_Q, G, BLOCK_M: tl.constexpr):
    """Packed rows of Q block ``i``: ``(rows, valid, group g, query r_q)``."""
    rows = i * BLOCK_M + tl.arange(0, BLOCK_M)
    valid = rows < G * N_Q
    return rows, valid, rows // N_Q, rows % N_Q


@triton.jit
def _attn_fwd_split(Q, K, V, OS, LSES, Lens, sm_scale,
                    stride_qz, stride_qh, stride_qm, stride_qk,
                    stride_kz, stride_kh, stride_kn, stride_kk,
                    stride_vz, stride_vh, stride_vn, stride_vk,
                    H_KV, N_Q, N_K, G, T_M, S, BPS,
                    ev_ptr, hdr_ptr, val_ptr,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                    CAUSAL: tl.constexpr, HAS_LENS: tl.constexpr, ELEM: tl.constexpr,
                    DOT_PREC: tl.constexpr, TRACE: tl.constexpr,
                    VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr,
                    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr,
                    STAGE: tl.constexpr, PDL: tl.constexpr):  # fmt: skip
    """One program: split ``s`` (K/V blocks ``[s * BPS, (s + 1) * BPS)``) of packed
    Q block ``i`` of batch-K/V-head ``bh``; writes ``O_s`` and ``LSE_s``. With
    ``PDL`` 1 (at its start) or 2 (after its K/V loop) it lets the reduce's
    programs launch (GPU, SM 9.0+): they wait in ``gdc_wait`` until this whole
    launch has finished and its stores are visible (:func:`pdl_mode`)."""
    if PDL == 1:
        tl.extra.cuda.gdc_launch_dependents()
    prog = tl.program_id(0)
    s = prog % S
    t = prog // S
    i = t % T_M
    bh = t // T_M
    off_z = (bh // H_KV).to(tl.int64)
    kvh = (bh % H_KV).to(tl.int64)
    if HAS_LENS:
        seq_len = tl.minimum(tl.maximum(tl.load(Lens + off_z), 0), N_K)
    else:
        seq_len = N_K
    K += off_z * stride_kz + kvh * stride_kh
    V += off_z * stride_vz + kvh * stride_vh
    rows, valid, g, r_q = _packed_rows(i, N_Q, G, BLOCK_M)
    head = kvh * G + g
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    n_rows = tl.minimum(G * N_Q - i * BLOCK_M, BLOCK_M)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, s, TC)

    q = tl.load(Q + off_z * stride_qz + head[:, None] * stride_qh
                + r_q[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM),
                other=0.0)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_Q, i, 0, q, n_rows * (HEAD_DIM * ELEM))
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2

    # the slice's blocks: unmasked [lo, mid), masked [mid, hi)
    n_blocks = tl.cdiv(seq_len, BLOCK_N)
    if CAUSAL:
        n_nomask = tl.maximum(seq_len - N_Q + 1, 0) // BLOCK_N
        kmax = r_q + (seq_len - N_Q)
    else:
        n_nomask = seq_len // BLOCK_N
        kmax = r_q * 0 + (seq_len - 1)
    lo = s * BPS
    hi = tl.minimum(lo + BPS, n_blocks)
    mid = tl.minimum(tl.maximum(n_nomask, lo), hi)
    acc, l_i, m_i, tr = _split_inner(
        acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn, stride_vk, i,
        sm_scale, qk_scale, lo, mid, kmax, seq_len, offs_n, offs_d, tr, TC,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, ELEM, DOT_PREC)  # fmt: skip
    acc, l_i, m_i, tr = _split_inner(
        acc, l_i, m_i, q, K, V, stride_kn, stride_kk, stride_vn, stride_vk, i,
        sm_scale, qk_scale, mid, hi, kmax, seq_len, offs_n, offs_d, tr, TC,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, ELEM, DOT_PREC)  # fmt: skip

    if PDL == 2:
        tl.extra.cuda.gdc_launch_dependents()
    # -- the slice's O_s = acc / l and LSE_s (no key: O_s = 0, LSE_s = -inf) --
    empty = l_i == 0.0
    o_s = acc / tl.where(empty, 1.0, l_i)[:, None]
    tr = rec(tr, TC, step.NORMALIZE_OS, i, s, o_s)
    lse_s = tl.where(empty, float("-inf"),
                     (m_i + tl.math.log2(tl.where(empty, 1.0, l_i))) * LN2)  # fmt: skip
    tr = rec(tr, TC, step.LSE_S, i, s, lse_s)
    base = ((bh.to(tl.int64) * T_M + i) * S + s) * BLOCK_M
    offs_m = tl.arange(0, BLOCK_M)
    tl.store(OS + (base + offs_m[:, None]) * BLOCK_D + offs_d[None, :], o_s,
             mask=valid[:, None] & (offs_d[None, :] < HEAD_DIM))  # fmt: skip
    tr = rec(tr, TC, step.STORE_OS, i, s, o_s, n_rows * (HEAD_DIM * 4))
    tl.store(LSES + base + offs_m, lse_s, mask=valid)
    tr = rec(tr, TC, step.STORE_LSES, i, s, lse_s, n_rows * 4)
    trace_stop(tr, TC)


@triton.jit
def _attn_fwd_merge(OS, LSES, O, LSE,  # noqa: E741
                    stride_oz, stride_oh, stride_om, stride_ok,
                    H, H_KV, N_Q, G, T_M, S,
                    ev_ptr, hdr_ptr, val_ptr,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_D: tl.constexpr, S_PAD: tl.constexpr, ELEM: tl.constexpr,
                    TRACE: tl.constexpr, VALUES: tl.constexpr,
                    GPU_CLOCK: tl.constexpr, MAX_EV: tl.constexpr,
                    MAX_VAL: tl.constexpr, PDL: tl.constexpr):  # fmt: skip
    """One program: packed row ``r`` of ``bh``; all ``S`` slices at once. With
    ``PDL`` the launch may start while the split launch still runs: the program
    waits for it (``gdc_wait``) before its trace starts and before any load."""
    prog = tl.program_id(0)
    r = prog % (G * N_Q)
    bh = prog // (G * N_Q)
    off_z = (bh // H_KV).to(tl.int64)
    head = (bh % H_KV).to(tl.int64) * G + r // N_Q
    r_q = r % N_Q
    offs_s = tl.arange(0, S_PAD)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < S
    d_ok = offs_d < HEAD_DIM
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, False)
    if PDL:
        tl.extra.cuda.gdc_wait()
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, r, TC)
    # row r of split s: row (((bh * T_M + i) * S + s) * BLOCK_M + r % BLOCK_M)
    base = (bh.to(tl.int64) * T_M + r // BLOCK_M) * S * BLOCK_M + r % BLOCK_M
    lse_s = tl.load(LSES + base + offs_s * BLOCK_M, mask=s_ok, other=float("-inf"))
    tr = rec(tr, TC, step.LOAD_LSES, r, 0, lse_s, S * 4)
    o_s = tl.load(OS + (base + offs_s[:, None] * BLOCK_M) * BLOCK_D + offs_d[None, :],
                  mask=s_ok[:, None] & d_ok[None, :], other=0.0)  # fmt: skip
    tr = rec(tr, TC, step.LOAD_OS, r, 0, o_s, S * (HEAD_DIM * 4))
    # weights exp(LSE_s - max): a slice that saw no key weighs 0; no key at all:
    # O = 0, LSE = +inf (as fa2's fully masked rows)
    m = tl.max(lse_s, 0)
    m_sub = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp(lse_s - m_sub)
    l = tl.sum(w, 0)  # noqa: E741
    none = l == 0.0
    o = tl.sum(w[:, None] * o_s, 0) / tl.where(none, 1.0, l)
    tr = rec(tr, TC, step.MERGE_O, r, 0, o)
    lse = tl.where(none, float("inf"), m + tl.log(tl.where(none, 1.0, l)))
    lse1 = tl.zeros([1], tl.float32) + lse
    tr = rec(tr, TC, step.LSE, r, 0, lse1)
    o_out = o.to(O.dtype.element_ty)
    tl.store(O + off_z * stride_oz + head * stride_oh + r_q * stride_om
             + offs_d * stride_ok, o_out, mask=d_ok)  # fmt: skip
    tr = rec(tr, TC, step.STORE_O, r, 0, o_out, HEAD_DIM * ELEM)
    tl.store(LSE + (off_z * H + head) * N_Q + r_q + tl.arange(0, 1), lse1)
    tr = rec(tr, TC, step.STORE_LSE, r, 0, lse1, 4)
    trace_stop(tr, TC)


# --------------------------------------------------------------------------------------
# Plan: blocks, splits, and the events each program records
# --------------------------------------------------------------------------------------


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=8)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """SMs of the device (:data:`INTERPRETER_SMS` in Triton's interpreter)."""
    if INTERPRET or device.type != "cuda":
        return INTERPRETER_SMS
    return _sm_count(cuda_index(device))


def use_pdl(device: torch.device) -> bool:
    """Whether the reduce is launched as a programmatic dependent launch (see
    :data:`PDL`): never in Triton's interpreter or below compute capability 9.0."""
    return PDL is not False and pdl_capable(device)


def pdl_mode(device: torch.device, reduce_programs: int, sms: int) -> int:
    """The split kernel's ``PDL`` constexpr: 0, the reduce is a plain launch after
    it; 1, the split lets it launch at its start (when the reduce's programs fit on
    the ``sms`` SMs one each); 2, after its K/V loop (more reduce programs than
    SMs). :data:`PDL_AT` forces 1 or 2."""
    if not use_pdl(device):
        return 0
    at = PDL_AT or ("start" if reduce_programs <= sms else "loop_end")
    if at not in ("start", "loop_end"):
        raise ValueError(
            f"decode.PDL_AT must be None, 'start' or 'loop_end', got {PDL_AT!r}"
        )
    return 1 if at == "start" else 2


def _plan(programs: int, wide: bool, sms: int) -> tuple[int, int, int, int]:
    """The :data:`DECODE_PLANS` entry for ``programs`` programs before splitting:
    ``"few"`` when they fit on the SMs one each, else ``"many"``; wide rows:
    :data:`WIDE_PLAN`."""
    if wide:
        return WIDE_PLAN
    return DECODE_PLANS["few" if programs <= sms else "many"]


def decode_plan(batch: int, heads_kv: int, rows: int, n_k: int, d: int,
                dtype: torch.dtype, sms: int) -> dict:  # fmt: skip
    """Default launch of the split path: ``block_m`` (the ``rows = G * N_q`` packed
    rows padded to a power of two, at most 64 (32 for wide rows), at least 16 on
    the GPU), ``block_n``, ``num_warps``, ``num_stages`` and ``per_sm`` of the
    :data:`DECODE_PLANS` entry that :func:`_plan` picks for ``batch x heads_kv x Q
    blocks`` programs on ``sms`` SMs. In Triton's interpreter: 32 x 32 blocks, one
    program per (assumed) SM."""
    lo, hi = BLOCK_RANGE
    wide = head_block(d) * elem_bytes(dtype) > 256
    if INTERPRET:
        bm, (bn, warps, stages, per_sm) = min(next_pow2(rows), 32), (32, 0, 0, 1)
    else:
        bm = min(next_pow2(rows), 32 if wide else 64)
        bm = min(max(bm, lo), hi)
        bn, warps, stages, per_sm = _plan(batch * heads_kv * _cdiv(rows, bm), wide,
                                          sms)  # fmt: skip
    bm = min(max(bm, lo), hi)
    bn = min(max(min(bn, next_pow2(n_k)), lo), hi)
    return dict(block_m=bm, block_n=bn, num_warps=warps, num_stages=stages,
                per_sm=per_sm)  # fmt: skip


def decode_blocks(rows: int, n_k: int, d: int, dtype: torch.dtype,
                  batch_heads_kv: int = 1,
                  sms: int | None = None) -> tuple[int, int]:  # fmt: skip
    """Default ``(BLOCK_M, BLOCK_N)`` of :func:`decode_plan` (``batch_heads_kv`` =
    batch x K/V heads; ``sms`` default: the kernel device's)."""
    if sms is None:
        sms = INTERPRETER_SMS if INTERPRET else _sm_count(0)
    p = decode_plan(batch_heads_kv, 1, rows, n_k, d, dtype, sms)
    return p["block_m"], p["block_n"]


def choose_splits(programs: int, n_blocks: int, sms: int, per_sm: int = 1,
                  block_n: int = 128) -> int:  # fmt: skip
    """How many slices to cut ``n_blocks`` K/V blocks of ``block_n`` keys into when
    ``programs`` programs (batch x K/V heads x Q blocks) run without splitting: as
    many as fit in one wave of ``per_sm`` programs per SM (``per_sm x sms //
    programs``: never a second, partial wave), at least :data:`MIN_SPLIT_KEYS` keys
    a slice, at most :data:`MAX_SPLITS` slices (1 when the programs already fill
    the SMs)."""
    want = (per_sm * sms) // max(programs, 1)
    min_blocks = max(1, _cdiv(MIN_SPLIT_KEYS, block_n))
    return max(1, min(want, n_blocks // min_blocks, MAX_SPLITS))


def use_split(batch: int, heads: int, heads_kv: int, n_q: int, n_k: int, d: int,
              dtype: torch.dtype, device: torch.device) -> bool:  # fmt: skip
    """Whether the split path pays for this shape: it cuts the cache into at least
    two slices (too few programs to fill the SMs, a cache long enough to split)."""
    g = heads // heads_kv
    sms = sm_count(device)
    if batch * heads_kv * _cdiv(g * n_q, 64) > sms:  # never two slices: quick exit
        return False
    p = decode_plan(batch, heads_kv, g * n_q, n_k, d, dtype, sms)
    programs = batch * heads_kv * _cdiv(g * n_q, p["block_m"])
    splits = choose_splits(programs, _cdiv(n_k, p["block_n"]), sms, p["per_sm"],
                           p["block_n"])  # fmt: skip
    return splits > 1


def _visited(s: int, bps: int, seq_len: int, n_q: int, block_n: int,
             causal: bool) -> list[tuple[int, bool]]:  # fmt: skip
    n_blocks = _cdiv(seq_len, block_n)
    n_nomask = max(seq_len - n_q + 1, 0) // block_n if causal else seq_len // block_n
    lo, hi = s * bps, min(s * bps + bps, n_blocks)
    return [(j, j >= n_nomask) for j in range(lo, hi)]


def program_events(launch: str, block: int, i: int, *, n_q: int, g: int,
                   seq_len: int, d: int, block_m: int, block_n: int, splits: int,
                   bps: int, causal: bool,
                   elem: int) -> list[tuple[str, str, int, int, int, int]]:  # fmt: skip
    """The events one program records, as the module docstring documents them.

    ``launch`` is ``"split"`` (``block`` = split ``s``, ``i`` the packed Q block)
    or ``"reduce"`` (``block`` = the packed row ``r``; ``i`` unused); ``seq_len``
    the sequence's number of valid keys. Returns
    ``(op, tensor, row, col, nbytes, n_values)`` tuples (``n_values``: the size of
    the snapshot when values are recorded)."""
    bd, bm, bn = head_block(d), block_m, block_n
    rows = min(bm, g * n_q - i * bm)
    ev: list[tuple[str, str, int, int, int, int]] = []
    if launch == "split":
        s = block
        ev.append(("load", "Q", i, 0, rows * d * elem, bm * bd))
        for j, masked in _visited(s, bps, seq_len, n_q, bn, causal):
            nb = min(bn, seq_len - j * bn) * d * elem
            ev += [("load", "K", j, 0, nb, bn * bd), ("load", "V", j, 0, nb, bn * bd),
                   ("qk", "S", i, j, 0, bm * bn)]  # fmt: skip
            if masked:
                ev.append(("mask", "S", i, j, 0, bm * bn))
            ev += [("rowmax", "m", i, 0, 0, bm), ("exp", "P", i, j, 0, bm * bn),
                   ("alpha", "alpha", i, 0, 0, bm), ("rowsum", "l", i, 0, 0, bm),
                   ("rescale", "acc", i, 0, 0, bm * bd),
                   ("pv", "acc", i, 0, 0, bm * bd)]  # fmt: skip
        ev += [("normalize", "O_s", i, s, 0, bm * bd), ("lse", "LSE_s", i, s, 0, bm),
               ("store", "O_s", i, s, rows * d * 4, bm * bd),
               ("store", "LSE_s", i, s, rows * 4, bm)]  # fmt: skip
    elif launch == "reduce":  # block: the packed row r
        r, sp = block, next_pow2(splits)
        ev += [("load", "LSE_s", r, 0, splits * 4, sp),
               ("load", "O_s", r, 0, splits * d * 4, sp * bd),
               ("merge", "O", r, 0, 0, bd), ("lse", "LSE", r, 0, 0, 1),
               ("store", "O", r, 0, d * elem, bd), ("store", "LSE", r, 0, 4, 1)]  # fmt: skip
    else:
        raise ValueError(f"unknown launch {launch!r}; one of 'split', 'reduce'")
    return ev


# --------------------------------------------------------------------------------------
# Input checks and launcher
# --------------------------------------------------------------------------------------


def _check(q, k, v, cache_seqlens):
    """Check the decoding inputs; return ``(B, H, H_kv, N_q, N_k, d)``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(
                f"{name} must be a 4-D tensor (batch, heads, seq_len, head_dim), "
                f"got {got}"
            )
    batch, heads, n_q, d = q.shape
    _, heads_kv, n_k, _ = k.shape
    if tuple(k.shape) != tuple(v.shape):
        raise ValueError(
            f"k and v must have the same shape, got {tuple(k.shape)} and "
            f"{tuple(v.shape)}"
        )
    if k.shape[0] != batch or k.shape[3] != d:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree in batch (dim 0) "
            "and head dim (dim 3)"
        )
    if heads_kv < 1 or heads % heads_kv:
        raise ValueError(
            f"the number of K/V heads must divide the number of query heads, got "
            f"{heads} query heads and {heads_kv} K/V heads"
        )
    if min(batch, n_q, n_k) < 1 or not 1 <= d <= 256:
        raise ValueError(
            f"sizes out of range: batch={batch}, N_q={n_q}, N_k={n_k} must be >= 1 "
            f"and 1 <= d={d} <= 256"
        )
    if len({q.dtype, k.dtype, v.dtype}) != 1 or q.dtype not in DTYPES:
        raise TypeError(
            f"q, k, v must share one dtype among float32, float16, bfloat16 (GPU), "
            f"got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if q.dtype == torch.bfloat16 and INTERPRET:
        raise ValueError(
            "bfloat16 is GPU-only: Triton's CPU interpreter computes bfloat16 "
            "wrongly; use torch.float32 or torch.float16 on the CPU"
        )
    check_device(q, k, v)
    if cache_seqlens is not None:
        ok = (
            isinstance(cache_seqlens, torch.Tensor)
            and cache_seqlens.dim() == 1
            and cache_seqlens.shape[0] == batch
            and cache_seqlens.dtype in (torch.int32, torch.int64)
        )
        if not ok:
            raise ValueError(
                f"cache_seqlens must be an int32/int64 tensor of shape ({batch},) "
                "(keys of each sequence's cache in use), got "
                + (f"{cache_seqlens.dtype} {tuple(cache_seqlens.shape)}"
                   if isinstance(cache_seqlens, torch.Tensor)
                   else type(cache_seqlens).__name__)
            )  # fmt: skip
        check_device(cache_seqlens)
    return int(batch), int(heads), int(heads_kv), int(n_q), int(n_k), int(d)


def _decode(q, k, v, causal=False, softmax_scale=None, cache_seqlens=None,
            num_splits=None, block_m=None, block_n=None, trace=False, values=False,
            num_warps=None, num_stages=None, out=None):  # fmt: skip
    """Launch the split and reduce kernels; return ``(o, lse, launches, info)``."""
    batch, heads, heads_kv, n_q, n_k, d = _check(q, k, v, cache_seqlens)
    g = heads // heads_kv
    scale = check_scale(softmax_scale, d)
    sms = sm_count(q.device)
    lp = decode_plan(batch, heads_kv, g * n_q, n_k, d, q.dtype, sms)
    dbm, dbn = lp["block_m"], lp["block_n"]
    bm, bn = check_blocks(dbm if block_m is None else block_m,
                          dbn if block_n is None else block_n)  # fmt: skip
    bd, elem = head_block(d), elem_bytes(q.dtype)
    t_m, n_blocks = _cdiv(g * n_q, bm), _cdiv(n_k, bn)
    programs = batch * heads_kv * t_m
    if num_splits is None:
        splits = choose_splits(programs, n_blocks, sms, lp["per_sm"], bn)
    elif (
        isinstance(num_splits, bool)
        or not isinstance(num_splits, int)
        or (num_splits < 1)
    ):
        raise ValueError(f"num_splits must be an int >= 1 or None, got {num_splits!r}")
    else:
        splits = min(num_splits, n_blocks)
    # the reduce holds all slices of a row at once: S_PAD x BLOCK_D <= 16k floats
    splits = min(splits, MAX_SPLITS, max(1, MAX_REDUCE_TILE // bd))
    bps = _cdiv(n_blocks, splits)
    splits = _cdiv(n_blocks, bps)  # no slice left without blocks of the cache
    if out is None:
        out = torch.empty((batch, heads, n_q, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    o_s = torch.empty((programs * splits * bm, bd), dtype=torch.float32,
                      device=q.device)  # fmt: skip
    lse_s = torch.empty((programs * splits * bm,), dtype=torch.float32,
                        device=q.device)  # fmt: skip
    lens = cache_seqlens if cache_seqlens is not None else lse
    stage = _stage(trace, values)
    launches = []

    def buffers(name, n_programs, room):
        b = None
        if trace:
            b = launch_buffers(n_programs, *room(), values, q.device,
                               fill=INTERPRET or values)  # fmt: skip
            launches.append(b)
        return trace_args(b, q.device, values)

    causal = bool(causal)
    reduce_programs = batch * heads_kv * g * n_q  # one per packed query row
    pdl = pdl_mode(q.device, reduce_programs, sms)
    plan = dict(n_q=n_q, g=g, d=d, block_m=bm, block_n=bn, splits=splits, bps=bps,
                causal=causal, elem=elem)  # fmt: skip
    # room for the largest program: a full slice, every block masked
    tptr, tflags = buffers("split", programs * splits, lambda: _split_room(**plan))
    opts = {} if INTERPRET else {
        "num_warps": num_warps or lp["num_warps"],
        "num_stages": num_stages or lp["num_stages"]}  # fmt: skip
    _attn_fwd_split[(programs * splits,)](
        q, k, v, o_s, lse_s, lens, scale,
        *q.stride(), *k.stride(), *v.stride(),
        heads_kv, n_q, n_k, g, t_m, splits, bps, *tptr,
        HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd, CAUSAL=causal,
        HAS_LENS=cache_seqlens is not None, ELEM=elem,
        DOT_PREC=_dot_precision(q.dtype), **tflags, STAGE=stage, PDL=pdl, **opts,
    )  # fmt: skip
    tptr, tflags = buffers("reduce", reduce_programs,
                           lambda: _sizes("reduce", 0, 0, n_k, **plan))  # fmt: skip
    s_pad = next_pow2(splits)
    _attn_fwd_merge[(reduce_programs,)](
        o_s, lse_s, out, lse, *out.stride(), heads, heads_kv, n_q, g, t_m, splits,
        *tptr, HEAD_DIM=d, BLOCK_M=bm, BLOCK_D=bd, S_PAD=s_pad, ELEM=elem, **tflags,
        PDL=pdl > 0,
        **({} if INTERPRET else {"num_warps": 8 if s_pad * bd > 4096 else 4}),
        **({"launch_pdl": True} if pdl else {}),
    )  # fmt: skip
    info = dict(plan, t_m=t_m, o_s=o_s, lse_s=lse_s)
    return out, lse, launches, info


def _sizes(launch, s, i, seq_len, **plan) -> tuple[int, int]:
    evs = program_events(launch, s, i, seq_len=seq_len, **plan)
    return max(len(evs), 1), sum(e[5] for e in evs)


def _split_room(n_q, g, d, block_m, block_n, splits, bps, causal,
                elem) -> tuple[int, int]:  # fmt: skip
    """Events and values of a split program with ``bps`` blocks, all masked: no
    program records more, whatever the sequences' lengths."""
    bm, bn, bd = block_m, block_n, head_block(d)
    # K, V; S, its mask, P; m, alpha, l; acc rescaled and after P V
    per_block = 2 * bn * bd + 3 * bm * bn + 3 * bm + 2 * bm * bd
    return 5 + 11 * bps, bm * bd + bps * per_block + 2 * bm * bd + 2 * bm


def attention_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    *,
    cache_seqlens: torch.Tensor | None = None,
    num_splits: int | None = None,
    block_m: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split-K/V forward (Flash-Decoding); forward only.

    Parameters
    ----------
    q
        ``(B, H, N_q, d)`` (any strides: a transposed ``(B, N_q, H, d)`` works).
    k, v
        ``(B, H_kv, N_k, d)`` with ``H_kv`` dividing ``H`` (GQA/MQA, never
        expanded); any strides.
    causal
        Bottom-right aligned: query ``r`` sees keys ``0 .. r + L - N_q`` (``L``: the
        sequence's length).
    cache_seqlens
        Optional int32/int64 ``(B,)``: keys ``0 .. L_b - 1`` of sequence ``b`` are
        used (clamped to ``[0, N_k]``); default all ``N_k``.
    num_splits
        Slices of the cache; ``None``: :func:`choose_splits`.
    out
        Optional ``(B, H, N_q, d)`` tensor (any strides) to write ``O`` into.

    Returns
    -------
    o, lse
        ``O`` ``(B, H, N_q, d)`` and the natural-log ``LSE`` ``(B, H, N_q)`` float32
        (``+inf`` for rows that see no key, whose ``O`` is 0).
    """
    o, lse, _, _ = _decode(q, k, v, causal, softmax_scale, cache_seqlens, num_splits,
                           block_m, block_n, False, False, num_warps, num_stages,
                           out)  # fmt: skip
    return o, lse


def _record(q, k, v, *, causal, softmax_scale, block_m, block_n, values, do,
            cache_seqlens=None, num_splits=None):  # fmt: skip
    del do  # (the recorders' uniform signature)
    o, lse, launches, info = _decode(q, k, v, causal, softmax_scale, cache_seqlens,
                                     num_splits, block_m, block_n, True,
                                     values)  # fmt: skip
    bm, s = info["block_m"], info["splits"]
    outputs = {
        "O": o, "LSE": lse,
        "O_s": info["o_s"].view(-1, s, bm, info["o_s"].shape[-1]),
        "LSE_s": info["lse_s"].view(-1, s, bm),
    }  # fmt: skip
    return launches, outputs, (bm, info["block_n"])


record_forward = recorder(
    "fa2-decode",
    ("split", "reduce"),
    _record,
    """\
Run the split path with ``TRACE=True``: kernel ``"fa2-decode"``, launches
``"split"`` and ``"reduce"``, outputs ``O``, ``LSE``, ``O_s``, ``LSE_s`` (the
scratch, packed ``(programs, S, BLOCK_M, BLOCK_D)`` and ``(programs, S,
BLOCK_M)``). Takes also ``cache_seqlens`` and ``num_splits`` (as
:func:`attention_decode`); ``do`` is ignored (the recorders' uniform signature).
""",
)
