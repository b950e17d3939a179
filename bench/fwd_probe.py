"""Probe: a bare FA2 forward (non-causal, N % BLOCK_N == 0, one K/V loop) with
Triton's automatic Hopper warp specialization (``WS``) or with the next block's
``Q K^T`` issued before this block's softmax (``PIPE``, FA3's intra-warpgroup
overlap by hand), against the package's plain call and SDPA's cuDNN and FLASH
backends. Q/K/V through host tensor descriptors over the flattened (B*H*N, d)
tensors (``HOST``) or in-kernel descriptors per head. Appends JSON lines to argv[1].

    python bench/fwd_probe.py OUT.jsonl [dt:d:N,...] [BMxBNxWxSxHOSTxWS[xPIPE],...]

``PBMxBNxWxSxPER_SMxFLATTEN``: a persistent kernel instead (``PER_SM`` programs per
SM, host descriptors; ``FLATTEN``: the tile loop fused with the K/V loop).

What it showed (Triton 3.6, NVIDIA H200; ``bench/NOTES.md``, session 13): with 8
warps ``warp_specialize=True`` compiles to the same PTX as without; with 4 warps and
every tile loaded by a descriptor it becomes a producer warp group and two consumer
groups (12 warps, ``setmaxnreg``), and then host descriptors hung the GPU (no
progress in 75 s: run WS launches under ``timeout``) and in-kernel descriptors gave
wrong outputs. ``PIPE``: Triton waits for each ``Q K^T`` (``wgmma.wait_group 0``)
before the next instruction, so nothing overlaps. The persistent kernel: correct but
slower without ``FLATTEN``; with it, wrong outputs.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, "bench")
from sweep_issue15 import Log, _peer_fwd, _qkv, graph_time  # noqa: E402

LN2, RCP_LN2 = fa2.LN2, fa2.RCP_LN2


@triton.jit
def _softmax_pv(acc, l_i, m_i, qk, v, qk_scale):
    m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    qk = qk * qk_scale - m_ij[:, None]
    p = tl.math.exp2(qk)
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, l_i, m_ij


@triton.jit
def _store_o_lse(acc, l_i, m_i, O, LSE, off_hz, offs_m, offs_d, N,  # noqa: E741
                 HEAD_DIM: tl.constexpr):  # fmt: skip
    """Store one Q block's ``O`` (``acc``, normalized) and ``LSE = m + log l``."""
    o_ptr = O + off_hz.to(tl.int64) * N * HEAD_DIM
    tl.store(o_ptr + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
             acc.to(O.dtype.element_ty))  # fmt: skip
    tl.store(LSE + off_hz.to(tl.int64) * N + offs_m, (m_i + tl.math.log2(l_i)) * LN2)


@triton.jit
def _fwd(Q, K, V, O, LSE,  # noqa: E741
         sm_scale, N, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
         BLOCK_N: tl.constexpr, HOST: tl.constexpr, WS: tl.constexpr,
         PIPE: tl.constexpr):  # fmt: skip
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    row0 = off_hz * N
    if HOST:
        Qd, Kd, Vd = Q, K, V
        q = Qd.load([row0 + start_m * BLOCK_M, 0])
    else:
        base = off_hz.to(tl.int64) * N * HEAD_DIM
        Qd = tl.make_tensor_descriptor(Q + base, shape=[N, HEAD_DIM],
                                       strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_M, HEAD_DIM])  # fmt: skip
        Kd = tl.make_tensor_descriptor(K + base, shape=[N, HEAD_DIM],
                                       strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])  # fmt: skip
        Vd = tl.make_tensor_descriptor(V + base, shape=[N, HEAD_DIM],
                                       strides=[HEAD_DIM, 1],
                                       block_shape=[BLOCK_N, HEAD_DIM])  # fmt: skip
        row0 = 0
        q = Qd.load([start_m * BLOCK_M, 0])
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * RCP_LN2
    if PIPE:  # S_{j+1} = Q K_{j+1}^T issued before the softmax of S_j
        k = Kd.load([row0, 0])
        qk = tl.dot(q, tl.trans(k))
        for start_n in tl.range(BLOCK_N, N, BLOCK_N):
            k = Kd.load([row0 + start_n, 0])
            v = Vd.load([row0 + start_n - BLOCK_N, 0])
            qk_next = tl.dot(q, tl.trans(k))
            acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, qk, v, qk_scale)
            qk = qk_next
        v = Vd.load([row0 + N - BLOCK_N, 0])
        acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, qk, v, qk_scale)
    else:
        for start_n in tl.range(0, N, BLOCK_N, warp_specialize=WS):
            k = Kd.load([row0 + start_n, 0])
            v = Vd.load([row0 + start_n, 0])
            qk = tl.dot(q, tl.trans(k))
            acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, qk, v, qk_scale)
    acc = acc / l_i[:, None]
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    _store_o_lse(acc, l_i, m_i, O, LSE, off_hz, offs_m, offs_d, N, HEAD_DIM)


@triton.jit
def _fwd_persistent(Q, K, V, O, LSE,  # noqa: E741
                    sm_scale, N, BH, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, FLATTEN: tl.constexpr):  # fmt: skip
    """Persistent: program ``p`` takes tiles ``p, p + P, ...`` (K/V through host
    descriptors, Q by pointers: with a descriptor the flattened loop fails in
    Triton 3.6's TMA lowering);
    ``FLATTEN``: Triton fuses the tile loop with the K/V loop, so that the next
    tile's first K/V copies are issued during this tile's epilogue."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    t_r = N // BLOCK_M
    qk_scale = sm_scale * RCP_LN2
    offs_d = tl.arange(0, HEAD_DIM)
    for tile in tl.range(pid, t_r * BH, nprog, flatten=FLATTEN):
        start_m = tile % t_r
        off_hz = tile // t_r
        row0 = off_hz * N
        offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
        q = tl.load(
            Q + (row0 + offs_m).to(tl.int64)[:, None] * HEAD_DIM + offs_d[None, :]
        )
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        for start_n in tl.range(0, N, BLOCK_N):
            k = K.load([row0 + start_n, 0])
            v = V.load([row0 + start_n, 0])
            qk = tl.dot(q, tl.trans(k))
            acc, l_i, m_i = _softmax_pv(acc, l_i, m_i, qk, v, qk_scale)
        acc = acc / l_i[:, None]
        _store_o_lse(acc, l_i, m_i, O, LSE, off_hz, offs_m, offs_d, N, HEAD_DIM)


def _outputs(q):
    """``O`` and ``LSE`` for a ``(B, H, N, d)`` query."""
    b, h, n, _ = q.shape
    return torch.empty_like(q), torch.empty((b, h, n), device=q.device,
                                            dtype=torch.float32)  # fmt: skip


def _host_desc(t, rows):
    """A host descriptor over ``t`` flattened to ``(B*H*N, d)``, ``rows`` x d tiles."""
    d = t.shape[-1]
    return TensorDescriptor.from_tensor(t.view(-1, d), [rows, d])


def persistent_fn(q, k, v, bm, bn, w, st, per_sm, flatten):
    b, h, n, d = q.shape
    o, lse = _outputs(q)
    args = [q, _host_desc(k, bn), _host_desc(v, bn)]
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    grid = (min(sms * per_sm, (n // bm) * b * h),)

    def run():
        _fwd_persistent[grid](*args, o, lse, d**-0.5, n, b * h, d, bm, bn, flatten,
                              num_warps=w, num_stages=st)  # fmt: skip
        return o

    return run


def probe_fn(q, k, v, bm, bn, w, st, host, ws, pipe=0):
    b, h, n, d = q.shape
    o, lse = _outputs(q)
    if host:
        args = [_host_desc(q, bm), _host_desc(k, bn), _host_desc(v, bn)]
    else:  # the descriptors are built on the device, in the package's scratch
        triton.set_allocator(fa2._tma_alloc)
        args = [q, k, v]
    grid = (n // bm, b * h)

    def run():
        _fwd[grid](*args, o, lse, d**-0.5, n, d, bm, bn, host, ws, pipe, num_warps=w,
                   num_stages=st)  # fmt: skip
        return o

    return run


def main() -> int:
    log = Log(Path(sys.argv[1]))
    shapes = (
        sys.argv[2]
        if len(sys.argv) > 2 and sys.argv[2]
        else ("bf16:128:1024,bf16:128:4096,bf16:128:16384,bf16:64:4096,bf16:64:16384")
    )
    cfgs = (
        sys.argv[3]
        if len(sys.argv) > 3 and sys.argv[3]
        else ("128x128x4x2x1x1,128x128x4x2x0x1,128x128x8x2x1x0")
    )
    for spec in shapes.split(","):
        dt, d, n = spec.split(":")
        d, n = int(d), int(n)
        q, k, v, _ = _qkv(dt, d, n)
        peers = {name: graph_time(_peer_fwd(name, q, k, v, False))
                 for name in ("cudnn", "flash")}  # fmt: skip
        plain = functools.partial(fa2.attention_forward, q, k, v, False)
        ref = plain()[0].float()
        t_plain = graph_time(plain)
        print(f"{dt} d{d} {n}: plain {t_plain:.4f} ms (x cuDNN "
              f"{peers['cudnn'] / t_plain:.3f})", flush=True)  # fmt: skip
        for c in cfgs.split(","):
            try:
                if c.startswith("P"):  # PBMxBNxWxSxPER_SMxFLATTEN: persistent
                    bm, bn, w, st, per_sm, flat = (int(x) for x in c[1:].split("x"))
                    fn = persistent_fn(q, k, v, bm, bn, w, st, per_sm, flat)
                else:
                    bm, bn, w, st, host, ws, pipe = (
                        int(x) for x in (c + "x0").split("x")[:7]
                    )
                    fn = probe_fn(q, k, v, bm, bn, w, st, host, ws, pipe)
                o = fn()
                torch.cuda.synchronize()
                diff = (o.float() - ref).abs().max().item()
                t = graph_time(fn)
            except Exception as exc:  # noqa: BLE001
                print(f"  {c}: {type(exc).__name__} {str(exc)[:160]}", flush=True)
                if "illegal" in str(exc):
                    return 1
                continue
            log(dtype=dt, d=d, n=n, cfg=c, ms=t, plain_ms=t_plain, diff=diff, **peers)
            print(f"  {c}: {t:.4f} ms, {t_plain / t:.3f}x plain, x cuDNN "
                  f"{peers['cudnn'] / t:.3f}, max diff {diff:.2e}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
