"""Untraced FA2 forward/backward times (triton.testing.do_bench, median ms) for one
installed tree; prints one JSON line per case."""
import json
import sys

import torch
import triton

import flashanim.kernels  # noqa: F401
from flashanim.kernels import fa2

tag = sys.argv[1]
torch.manual_seed(0)
for d, n, causal in ((64, 4096, False), (128, 4096, True), (128, 1024, False),
                     (64, 1024, True)):
    b, h = 16384 // n, 2048 // d
    q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                   for _ in range(4))
    o, lse = fa2.attention_forward(q, k, v, causal)
    fa2.attention_backward(q, k, v, o, lse, do, causal)
    torch.cuda.synchronize()
    f = triton.testing.do_bench(lambda: fa2.attention_forward(q, k, v, causal),
                                warmup=10, rep=60, return_mode="median")
    g = triton.testing.do_bench(
        lambda: fa2.attention_backward(q, k, v, o, lse, do, causal),
        warmup=10, rep=60, return_mode="median")
    flops = 4 * b * h * n * n * d * (0.5 if causal else 1.0)
    print(json.dumps(dict(tree=tag, d=d, n=n, b=b, h=h, causal=causal,
                          fwd_ms=round(f, 4), bwd_ms=round(g, 4),
                          fwd_tflops=round(flops / f / 1e9, 1),
                          bwd_tflops=round(2.5 * flops / g / 1e9, 1))), flush=True)
