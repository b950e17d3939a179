"""EXPERIMENT (not part of the package): the backward with dQ fused into the dK/dV pass.

Measured slower than the package's backward, so it is not in ``kernels/``: on an
NVIDIA H200 (``bench/bench_bwd_fused.py``, ``bench/NOTES.md`` session 7, results in
``media/bench/bwd_fused_NVIDIA_H200.json``) its best of 16 launch configurations took
1.02-1.13x the three-kernel backward's time at d = 64 and 1.21-1.52x at d = 128
(N >= 1k; bf16 and fp16, through autograd). ``flashanim.kernels`` computes dQ without atomics (three kernels: D, then
dK/dV per K/V block, then dQ per Q block), the same bits on every run; this module
is kept so that the measurement can be repeated.

The three kernels compute S, P and dP twice: once per column (dK/dV) and once per row
(dQ), 7 matrix products per visited tile. The fused path, as FA2-CUDA, FA3 and cuDNN
do it, makes one pass, by columns: the dK/dV program also forms dQ_i's share
dS_ij K_j (5 products per tile) and adds it into a float32 accumulator ``DQA``
(``(B * H, T_r * BLOCK_M, BLOCK_D)``, rows and columns padded: no masks needed) with
atomic adds (``DQ_TMA``: a TMA reduce through a tensor descriptor, else pointer
``red.global.add.f32``). ``_attn_bwd_pre_fused`` computes ``D`` and zeroes ``DQA``;
``_attn_bwd_dq_cast`` scales it by ``softmax_scale`` and casts it. Adds in float32
land in whatever order the programs run: dQ differs from run to run by rounding.
Never traced; no ``attn_mask``.

:func:`fused_backward` launches it (the signature of
``flashanim.kernels.fa2.attention_backward``, plus the launch configuration);
:func:`fused_attention` is differentiable (the package's forward, this backward).
The tests are in ``tests/test_fused_bwd_experiment.py`` (Triton's interpreter).
"""

from __future__ import annotations

import flashanim.kernels.fa2 as fa2  # (first: it sets up Triton's interpreter)
import torch
import triton
import triton.language as tl
from flashanim.kernels._common import (
    check_like,
    check_qkv,
    check_scale,
    elem_bytes,
    head_block,
    resolve_blocks,
)
from flashanim.kernels._device import INTERPRET
from flashanim.kernels.fa2 import (
    RCP_LN2,
    _cdiv,
    _dot_precision,
    _load_tile,
    _store_tile,
    _tma_alloc,
)

# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@triton.jit
def _attn_bwd_pre_fused(O, DO, Delta, DQA,  # noqa: E741
                        stride_oz, stride_oh, stride_om, stride_ok,
                        stride_dz, stride_dh, stride_dm, stride_dk,
                        H, N_Q,
                        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                        BLOCK_D: tl.constexpr, EVEN_M: tl.constexpr):  # fmt: skip
    """``D_i = rowsum(dO_i * O_i)`` and ``DQA_i = 0`` for one Q block."""
    prog = tl.program_id(0)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    start_m = prog % T_R
    off_hz = prog // T_R
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    o = _load_tile(O + off_z * stride_oz + off_h * stride_oh
                   + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                   offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    do = _load_tile(DO + off_z * stride_dz + off_h * stride_dh
                    + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                    offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    Delta += off_hz.to(tl.int64) * N_Q
    if EVEN_M:
        tl.store(Delta + offs_m, delta)
    else:
        tl.store(Delta + offs_m, delta, mask=offs_m < N_Q)
    DQA += off_hz.to(tl.int64) * (T_R * BLOCK_M * BLOCK_D)
    tl.store(DQA + offs_m[:, None] * BLOCK_D + offs_d[None, :],
             tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32))  # fmt: skip


@triton.jit
def _attn_bwd_fused_inner(dk, dv, k, v, Q, DO, DQA, LSE, Delta, stride_qm, stride_qk,
                          stride_dm, stride_dk, qk_scale, lo, hi, offs_n, offs_m0,
                          offs_d, N_Q, N_K,
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                          MASK: tl.constexpr, CAUSAL: tl.constexpr,
                          EVEN_M: tl.constexpr, DOT_PREC: tl.constexpr,
                          DQ_TMA: tl.constexpr, TMA: tl.constexpr, dq_sum,
                          DQ_DIAG: tl.constexpr):  # fmt: skip
    """Accumulate ``dK_j, dV_j`` over Q blocks ``lo <= i < hi`` and add each
    ``dS_ij K_j`` into ``DQA_i`` (``DQ_DIAG``, for costing the adds only, wrong
    dQ: 1 plain stores, 2 no dQ traffic, the shares summed in ``dq_sum``)."""
    for start_m in range(lo * BLOCK_M, hi * BLOCK_M, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + offs_m0
        if TMA:  # Q and dO through tensor descriptors: zeros past N_Q and HEAD_DIM
            q = Q.load([start_m, 0])
            do = DO.load([start_m, 0])
        else:
            q = _load_tile(Q + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                           offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
            do = _load_tile(DO + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                            offs_m, N_Q, offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip
        if EVEN_M:
            lse = tl.load(LSE + offs_m)
            Di = tl.load(Delta + offs_m)
        else:
            lse = tl.load(LSE + offs_m, mask=offs_m < N_Q, other=float("inf"))
            Di = tl.load(Delta + offs_m, mask=offs_m < N_Q, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        if MASK:
            keep = offs_n[None, :] < N_K
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        p = tl.math.exp2(qk * qk_scale - lse[:, None] * RCP_LN2)
        dv = tl.dot(tl.trans(p.to(do.dtype)), do, dv, input_precision=DOT_PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        ds = (p * (dp - Di[:, None])).to(q.dtype)
        dk = tl.dot(tl.trans(ds), q, dk, input_precision=DOT_PREC)
        # dQ_i += dS_ij K_j (softmax_scale applied by the cast kernel)
        dq = tl.dot(ds, k, input_precision=DOT_PREC)
        if DQ_DIAG == 1:
            tl.store(DQA + offs_m[:, None] * BLOCK_D + offs_d[None, :], dq)
        elif DQ_DIAG == 2:
            dq_sum += dq
        elif DQ_TMA:
            DQA.atomic_add([start_m, 0], dq)
        else:
            tl.atomic_add(DQA + offs_m[:, None] * BLOCK_D + offs_d[None, :], dq,
                          sem="relaxed")  # fmt: skip
    return dk, dv, dq_sum


@triton.jit
def _attn_bwd_fused(Q, K, V, DO, DK, DV, DQA, LSE, Delta, sm_scale,
                    stride_qz, stride_qh, stride_qm, stride_qk,
                    stride_kz, stride_kh, stride_kn, stride_kk,
                    stride_vz, stride_vh, stride_vn, stride_vk,
                    stride_dz, stride_dh, stride_dm, stride_dk,
                    stride_gz, stride_gh, stride_gn, stride_gk,
                    H, N_Q, N_K,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                    CAUSAL: tl.constexpr, EVEN_M: tl.constexpr,
                    EVEN_N: tl.constexpr, DOT_PREC: tl.constexpr,
                    DQ_TMA: tl.constexpr, TMA: tl.constexpr,
                    DQ_DIAG: tl.constexpr = 0):  # fmt: skip
    """One program: K/V block ``pid_n`` of a batch-head; writes ``dK_j, dV_j`` and
    adds its share of every ``dQ_i`` into ``DQA`` (the visits of
    :func:`_attn_bwd_dkdv`)."""
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
    DQA += off_hz.to(tl.int64) * (T_R * BLOCK_M * BLOCK_D)
    LSE += off_hz.to(tl.int64) * N_Q
    Delta += off_hz.to(tl.int64) * N_Q
    if TMA:
        Q = tl.make_tensor_descriptor(Q, shape=[N_Q, HEAD_DIM], strides=[stride_qm, 1],
                                      block_shape=[BLOCK_M, BLOCK_D])  # fmt: skip
        DO = tl.make_tensor_descriptor(DO, shape=[N_Q, HEAD_DIM], strides=[stride_dm, 1],
                                       block_shape=[BLOCK_M, BLOCK_D])  # fmt: skip
    if DQ_TMA:
        DQA = tl.make_tensor_descriptor(DQA, shape=[T_R * BLOCK_M, BLOCK_D],
                                        strides=[BLOCK_D, 1],
                                        block_shape=[BLOCK_M, BLOCK_D])  # fmt: skip

    start_n = pid_n * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    k = _load_tile(K + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                   offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    v = _load_tile(V + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                   offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D, not EVEN_N)  # fmt: skip
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2

    # the Q blocks of _attn_bwd_dkdv: [i_lo, T_R), masked ones first: [i_lo, i_me)
    if CAUSAL:
        i_lo = tl.where(start_n < N_Q, start_n // BLOCK_M, T_R)
        i_me = tl.cdiv(start_n + BLOCK_N - 1, BLOCK_M)
        i_me = tl.minimum(tl.maximum(i_me, i_lo), T_R)
    else:
        i_lo = 0
        i_me = 0
    if not EVEN_N:
        i_me = tl.where(start_n + BLOCK_N > N_K, T_R, i_me)
    dq_sum = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    dk, dv, dq_sum = _attn_bwd_fused_inner(
        dk, dv, k, v, Q, DO, DQA, LSE, Delta, stride_qm, stride_qk, stride_dm,
        stride_dk, qk_scale, i_lo, i_me, offs_n, offs_m0, offs_d, N_Q, N_K,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, True, CAUSAL, EVEN_M, DOT_PREC, DQ_TMA,
        TMA, dq_sum, DQ_DIAG)  # fmt: skip
    dk, dv, dq_sum = _attn_bwd_fused_inner(
        dk, dv, k, v, Q, DO, DQA, LSE, Delta, stride_qm, stride_qk, stride_dm,
        stride_dk, qk_scale, i_me, T_R, offs_n, offs_m0, offs_d, N_Q, N_K,
        HEAD_DIM, BLOCK_M, BLOCK_N, BLOCK_D, False, CAUSAL, EVEN_M, DOT_PREC, DQ_TMA,
        TMA, dq_sum, DQ_DIAG)  # fmt: skip
    if DQ_DIAG == 2:
        tl.store(DQA + offs_m0[:, None] * BLOCK_D + offs_d[None, :], dq_sum)

    dk = dk * sm_scale
    _store_tile(DK + offs_n[:, None] * stride_gn + offs_d[None, :] * stride_gk,
                dk.to(DK.dtype.element_ty), offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D,
                not EVEN_N)  # fmt: skip
    _store_tile(DV + offs_n[:, None] * stride_gn + offs_d[None, :] * stride_gk,
                dv.to(DV.dtype.element_ty), offs_n, N_K, offs_d, HEAD_DIM, BLOCK_D,
                not EVEN_N)  # fmt: skip


@triton.jit
def _attn_bwd_dq_cast(DQA, DQ, sm_scale,
                      stride_gz, stride_gh, stride_gm, stride_gk,
                      H, N_Q,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_D: tl.constexpr, EVEN_M: tl.constexpr):  # fmt: skip
    """``dQ_i = softmax_scale * DQA_i`` in the inputs' dtype, for one Q block."""
    prog = tl.program_id(0)
    T_R = tl.cdiv(N_Q, BLOCK_M)
    start_m = prog % T_R
    off_hz = prog // T_R
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    DQA += off_hz.to(tl.int64) * (T_R * BLOCK_M * BLOCK_D)
    dq = tl.load(DQA + offs_m[:, None] * BLOCK_D + offs_d[None, :]) * sm_scale
    _store_tile(DQ + off_z * stride_gz + off_h * stride_gh + offs_m[:, None] * stride_gm
                + offs_d[None, :] * stride_gk, dq.to(DQ.dtype.element_ty), offs_m, N_Q,
                offs_d, HEAD_DIM, BLOCK_D, not EVEN_M)  # fmt: skip


# --------------------------------------------------------------------------------------
# Launcher
# --------------------------------------------------------------------------------------

#: Set by the benchmark only (wrong dQ, for costing the adds): 1 = plain stores
#: instead of atomic adds, 2 = no dQ traffic at all.
DQ_DIAG: int = 0


def fallback_config(d: int, dtype: torch.dtype) -> tuple:
    """``(BLOCK_M, BLOCK_N, num_warps, num_stages, dQ by TMA reduce, Q/dO by TMA)``
    where none is given: the fastest of ``bench/bench_bwd_fused.py``'s sweep on an
    H200 (``bench/NOTES.md``, session 7) for 16-bit ``d = 64`` (64 x 64, 4 warps, 3
    stages, dQ by TMA reduce) and ``d = 128`` (128 x 64, 8 warps, 2 stages, pointer
    atomics); 32 x 32 for wider rows."""
    width = head_block(d) * elem_bytes(dtype)
    if width <= 128:
        return (64, 64, 4, 3, True, False)
    if width <= 256 and dtype != torch.float32:
        return (128, 64, 8, 2, False, False)
    return (32, 32, 4, 2, False, False)


def fused_backward(
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
    num_warps: int | None = None,
    num_stages: int | None = None,
    dq_tma: bool | None = None,
    tma: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dQ, dK, dV`` by the fused-dQ path (preprocess + zeroing, one pass, cast).

    Arguments as ``fa2.attention_backward`` (no ``attn_mask``). Blocks and launch
    options not given: :func:`fallback_config` on the GPU, the package's default
    blocks in the interpreter. ``dq_tma`` (dQ added by a TMA reduce, else pointer
    atomics) and ``tma`` (Q and dO loaded through tensor descriptors): GPU only
    (the interpreter has pointer atomics only); ``None`` = the configuration's.
    """
    batch, heads, n_q, n_k, d = check_qkv(q, k, v)
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
    dtype = q.dtype
    if INTERPRET:
        dm, dn = resolve_blocks(None, None, n_q, n_k, d, dtype, backward=True,
                                causal=causal)  # fmt: skip
        cfg = (dm, dn, 4, 1, False, False)
    else:
        cfg = fallback_config(d, dtype)
    block_m, block_n = resolve_blocks(
        cfg[0] if block_m is None else block_m, cfg[1] if block_n is None else block_n,
        n_q, n_k, d, dtype, backward=True, causal=causal,
    )  # fmt: skip
    bd = head_block(d)
    opts = {}
    if not INTERPRET:
        opts = {"num_warps": cfg[2] if num_warps is None else num_warps,
                "num_stages": cfg[3] if num_stages is None else num_stages}  # fmt: skip
    dq_tma = bool(cfg[4] if dq_tma is None else dq_tma) and not INTERPRET
    tma = (
        bool(cfg[5] if tma is None else tma)
        and not INTERPRET
        and q.is_cuda
        and fa2._tma_layout(q, do)
    )
    even_m = n_q % block_m == 0
    small = dict(HEAD_DIM=d, BLOCK_M=block_m, BLOCK_D=bd, EVEN_M=even_m)
    consts = dict(small, BLOCK_N=block_n, CAUSAL=causal, EVEN_N=n_k % block_n == 0,
                  DOT_PREC=_dot_precision(dtype), **opts)  # fmt: skip
    lse = lse.contiguous()
    bh = batch * heads
    t_r, t_c = _cdiv(n_q, block_m), _cdiv(n_k, block_n)
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    delta = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    dqa = torch.empty((bh, t_r * block_m, bd), dtype=torch.float32, device=q.device)
    if dq_tma or tma:  # the descriptors are built on the device, in this scratch
        triton.set_allocator(_tma_alloc)
    _attn_bwd_pre_fused[(t_r * bh,)](
        o, do, delta, dqa, *o.stride(), *do.stride(), heads, n_q, **small,
    )  # fmt: skip
    _attn_bwd_fused[(t_c * bh,)](
        q, k, v, do, dk, dv, dqa, lse, delta, scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dk.stride(),
        heads, n_q, n_k, **consts, DQ_TMA=dq_tma, TMA=tma, DQ_DIAG=DQ_DIAG,
    )  # fmt: skip
    _attn_bwd_dq_cast[(t_r * bh,)](
        dqa, dq, scale, *dq.stride(), heads, n_q, **small,
    )  # fmt: skip
    return dq, dk, dv


class FusedAttentionFunction(torch.autograd.Function):
    """``apply(q, k, v, causal, softmax_scale, config)``: the package's forward
    (``fa2.attention_forward``), the fused-dQ backward (``config``: ``None`` or
    :func:`fallback_config`'s tuple)."""

    @staticmethod
    def forward(ctx, q, k, v, causal=False, softmax_scale=None, config=None):
        o, lse = fa2.attention_forward(q, k, v, causal, softmax_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.softmax_scale, ctx.config = causal, softmax_scale, config
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        cfg = ctx.config or (None,) * 6
        dq, dk, dv = fused_backward(
            q, k, v, o, lse, do.to(q.dtype), ctx.causal, ctx.softmax_scale,
            cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5],
        )  # fmt: skip
        return dq, dk, dv, None, None, None


def fused_attention(q, k, v, causal=False, softmax_scale=None, config=None):
    """Differentiable attention whose backward is :func:`fused_backward`."""
    return FusedAttentionFunction.apply(q, k, v, causal, softmax_scale, config)
