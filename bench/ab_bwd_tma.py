"""A/B of the backward's streamed loads: pointers (``fa2.BWD_TMA = "0"``) against
tensor descriptors (``"1"``: Q/dO in the dK/dV pass, K/V in the dQ pass), alternated
twice in one process, GPU time of ``fa2.attention_backward`` (a CUDA graph of 10
calls, median of 10 replays), cuDNN's backward through autograd beside; 16k tokens,
H = 2048/d; the gradients of both compared bit for bit, and on ragged shapes first.
Appends JSON lines to argv[1].

    python bench/ab_bwd_tma.py OUT.jsonl [N,N,...]
"""

from __future__ import annotations

import functools
import json
import statistics
import sys

import flashanim.kernels.fa2 as fa2
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

sys.path.insert(0, "bench")
from sweep_issue15 import DT, _qkv, graph_time  # noqa: E402

RAGGED = [(1000, 1500, 40, True), (1500, 1000, 128, False), (777, 2100, 64, True),
          (3000, 3000, 128, True)]  # fmt: skip


def _grads(mode, q, k, v, o, lse, do, causal):
    fa2.BWD_TMA = mode
    try:
        return fa2.attention_backward(q, k, v, o, lse, do, causal)
    finally:
        fa2.BWD_TMA = "0"


def _cudnn_time(oc, inputs, do):
    """cuDNN's backward through autograd, graph-timed; the first capture of a
    process has failed before (the autograd thread's CUDA context): run it
    eagerly first, and try the capture twice."""
    run = functools.partial(torch.autograd.grad, oc, inputs, do, retain_graph=True)
    run()
    torch.cuda.synchronize()
    for _ in range(2):
        try:
            return graph_time(run)
        except Exception as exc:  # noqa: BLE001
            print(f"cuDNN capture failed: {type(exc).__name__}", flush=True)
            torch.cuda.synchronize()
    return float("nan")


def ragged(out) -> bool:
    ok = True
    for dt in ("bf16", "fp16"):
        for n_q, n_k, d, causal in RAGGED:
            g = torch.Generator(device="cuda").manual_seed(n_q + n_k + d)
            q = torch.randn(2, 3, n_q, d, device="cuda", dtype=DT[dt], generator=g)
            k, v = (torch.randn(2, 3, n_k, d, device="cuda", dtype=DT[dt], generator=g)
                    for _ in range(2))  # fmt: skip
            do = torch.randn_like(q)
            o, lse = fa2.attention_forward(q, k, v, causal)
            a = _grads("0", q, k, v, o, lse, do, causal)
            b = _grads("1", q, k, v, o, lse, do, causal)
            same = all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
            ok &= same
            row = {"ragged": [n_q, n_k, d, causal], "dtype": dt, "same_bits": same}
            out.write(json.dumps(row) + "\n")
            print(f"ragged {dt} {n_q}x{n_k} d={d} causal={causal}: same bits {same}")
    return ok


def main() -> int:
    out = open(sys.argv[1], "a")
    ns = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "1024,4096,16384")
          .split(",")]  # fmt: skip
    ragged(out)
    for dt in ("bf16", "fp16"):
        for d in (128, 64):
            for causal in (False, True):
                for n in ns:
                    q, k, v, do = _qkv(dt, d, n, seed=1)
                    o, lse = fa2.attention_forward(q, k, v, causal)
                    qc, kc, vc = (x.detach().clone().requires_grad_(True)
                                  for x in (q, k, v))  # fmt: skip
                    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                        oc = sdpa(qc, kc, vc, is_causal=causal)
                    cu = _cudnn_time(oc, (qc, kc, vc), do)
                    times = {"0": [], "1": []}
                    grads = {}
                    for _ in range(2):
                        for mode in times:
                            grads[mode] = _grads(mode, q, k, v, o, lse, do, causal)
                            fa2.BWD_TMA = mode
                            try:
                                run = functools.partial(fa2.attention_backward, q, k, v,
                                                        o, lse, do, causal)  # fmt: skip
                                times[mode].append(graph_time(run))
                            finally:
                                fa2.BWD_TMA = "0"
                    same = all(torch.equal(x, y)
                               for x, y in zip(grads["0"], grads["1"], strict=True))  # fmt: skip
                    row = {"dtype": dt, "d": d, "causal": causal, "n": n,
                           "cudnn_ms": cu, "ptr_ms": statistics.mean(times["0"]),
                           "tma_ms": statistics.mean(times["1"]), "runs": times,
                           "same_bits": same}  # fmt: skip
                    row["tma_speedup"] = row["ptr_ms"] / row["tma_ms"]
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"{dt} d={d} causal={causal} N={n}: pointer "
                          f"{row['ptr_ms']:.4f} ms, TMA {row['tma_ms']:.4f} ms "
                          f"({row['tma_speedup']:.3f}x), x cuDNN {cu / row['ptr_ms']:.3f}"
                          f" -> {cu / row['tma_ms']:.3f}, same bits {same}",
                          flush=True)  # fmt: skip
                    del oc, qc, kc, vc
                    torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
