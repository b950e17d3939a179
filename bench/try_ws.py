"""Does Triton's warp specialization of the forward's K/V loop pay on Hopper when K/V
come through tensor descriptors (TMA)? Session 2 tried it with pointer loads only (no
gain). The untraced forward as shipped, with ``FWD_TMA = "1"`` (descriptors, no
specialization) and with ``FWD_TMA = "1"`` and ``FWD_WS = True`` at a few launch
configurations, beside cuDNN; bf16, 16k tokens, H = 2048/d; GPU time (a CUDA graph
of 10 calls, median of 10 replays).

    python bench/try_ws.py warm K N      # compile the K-th of N slices of the jobs
    python bench/try_ws.py time OUT.jsonl
"""

from __future__ import annotations

import json
import sys

import flashanim.kernels.fa2 as fa2
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

sys.path.insert(0, "bench")
from sweep_issue15 import graph_time  # noqa: E402

# d = 128: the forward's gap to cuDNN (bench/NOTES.md, session 2)
SHAPES = [(128, False, 4096), (128, True, 4096), (128, False, 16384),
          (128, True, 16384)]  # fmt: skip
# (variant, (block_m, block_n, num_warps, num_stages) or None for the defaults)
VARIANTS = [("ship", None), ("tma", None), ("ws", None), ("ws", (128, 128, 8, 2)),
            ("ws", (128, 64, 8, 3))]  # fmt: skip


def jobs():
    return [(s, v) for s in SHAPES for v in VARIANTS]


def inputs(d, n):
    b, h = 16384 // n, 2048 // d
    g = torch.Generator(device="cuda").manual_seed(n + d)
    return [torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g)
            for _ in range(3)]  # fmt: skip


def fn(shape, variant, q, k, v):
    d, causal, n = shape
    name, cfg = variant
    bm, bn, w, st = cfg or (None, None, None, None)

    def run():
        fa2.FWD_TMA = "auto" if name == "ship" else "1"
        fa2.FWD_WS = name == "ws"
        try:
            return fa2.attention_forward(q, k, v, causal, None, bm, bn, num_warps=w,
                                         num_stages=st)  # fmt: skip
        finally:
            fa2.FWD_TMA, fa2.FWD_WS = "auto", False

    return run


def main() -> int:
    mode = sys.argv[1]
    if mode == "warm":
        part, parts = int(sys.argv[2]), int(sys.argv[3])
        for idx, (shape, variant) in enumerate(jobs()):
            if idx % parts != part:
                continue
            q, k, v = inputs(shape[0], 1024)  # compile only (the same kernels)
            try:
                fn(shape, variant, q, k, v)()
            except Exception as exc:  # noqa: BLE001
                print(f"warm {shape} {variant}: {type(exc).__name__}: {exc}"[:300])
        torch.cuda.synchronize()
        return 0
    out = open(sys.argv[2], "a")
    for shape in SHAPES:
        d, causal, n = shape
        q, k, v = inputs(d, n)
        flops = 4 * q.shape[0] * q.shape[1] * n * n * d / (2 if causal else 1)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            cu = graph_time(lambda: sdpa(q, k, v, is_causal=causal))  # noqa: B023
        ref = None
        for variant in VARIANTS:
            row = {"d": d, "causal": causal, "n": n, "variant": variant[0],
                   "cfg": variant[1], "cudnn_ms": cu}  # fmt: skip
            try:
                run = fn(shape, variant, q, k, v)
                o, _ = run()
                ref = o if ref is None else ref
                row["max_err_vs_ship"] = (o.float() - ref.float()).abs().max().item()
                row["ms"] = graph_time(run)
                row["tflops"] = flops / row["ms"] / 1e9
                row["x_cudnn"] = cu / row["ms"]
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
