"""Untraced FA2 forward and backward times of one installed tree, for comparing two
trees in one device call (``bench/NOTES.md``, "Kernel instrumentation rewritten").

    python3 bench/time_untraced.py TAG     # one JSON line per case

bf16, B·N = 16k tokens, H = 2048 / d; ``triton.testing.do_bench`` median
(warmup 10 ms, rep 60 ms) after one warm-up call of each.
"""

import functools
import json
import sys

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import torch
import triton
from flashanim.kernels import fa2

tag = sys.argv[1]
torch.manual_seed(0)
for d, n, causal in ((64, 4096, False), (128, 4096, True), (128, 1024, False),
                     (64, 1024, True)):  # fmt: skip
    b, h = 16384 // n, 2048 // d
    q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                   for _ in range(4))  # fmt: skip
    o, lse = fa2.attention_forward(q, k, v, causal)
    fa2.attention_backward(q, k, v, o, lse, do, causal)
    torch.cuda.synchronize()
    fwd = functools.partial(fa2.attention_forward, q, k, v, causal)
    bwd = functools.partial(fa2.attention_backward, q, k, v, o, lse, do, causal)
    f = triton.testing.do_bench(fwd, warmup=10, rep=60, return_mode="median")
    g = triton.testing.do_bench(bwd, warmup=10, rep=60, return_mode="median")
    flops = 4 * b * h * n * n * d * (0.5 if causal else 1.0)
    print(json.dumps(dict(tree=tag, d=d, n=n, b=b, h=h, causal=causal,
                          fwd_ms=round(f, 4), bwd_ms=round(g, 4),
                          fwd_tflops=round(flops / f / 1e9, 1),
                          bwd_tflops=round(2.5 * flops / g / 1e9, 1))),
          flush=True)  # fmt: skip
