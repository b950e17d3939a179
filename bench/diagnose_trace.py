"""Where does the tracing cost come from? Traced vs untraced FA2 forward per launch
configuration, with Triton's register and spill counts of both builds.

    python bench/diagnose_trace.py
"""

from __future__ import annotations

import functools
import json
import sys

import flashanim.kernels.fa2 as fa2
import torch
import triton


def ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median"))


def builds() -> dict:
    """(TRACE, BLOCK_M, BLOCK_N, warps, stages) -> (registers, spills) of compiled
    _attn_fwd variants in this process."""
    out = {}
    for cache in fa2._attn_fwd.device_caches.values():
        kc = cache[0] if isinstance(cache, tuple) else cache
        for kern in kc.values():
            ptx = kern.asm.get("ptx", "")
            traced = "%globaltimer" in ptx
            meta = kern.metadata
            key = (traced, meta.num_warps, meta.num_stages, len(ptx))
            out[str(key)] = {"regs": kern.n_regs, "spills": kern.n_spills}
    return out


def main() -> int:
    rows = []
    for d, causal, n, cfg in [
        (128, False, 4096, (128, 64, 8, 3)),
        (128, False, 4096, (128, 64, 8, 2)),
        (128, False, 4096, (128, 128, 8, 3)),
        (128, False, 4096, (128, 64, 4, 2)),
        (128, False, 4096, (64, 64, 4, 3)),
        (64, False, 4096, (128, 64, 4, 3)),
        (128, True, 4096, (128, 128, 8, 3)),
        (128, True, 4096, (128, 64, 8, 3)),
    ]:
        b, h = 16384 // n, 2048 // d
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.float16)
                   for _ in range(3))  # fmt: skip
        bm, bn, w, s = cfg
        untraced = ms(functools.partial(fa2.attention_forward, q, k, v, causal, None,
                                        bm, bn, num_warps=w, num_stages=s))  # fmt: skip
        traced = ms(functools.partial(fa2._forward, q, k, v, causal, None, bm, bn,
                                      True, False, w, s))  # fmt: skip
        row = dict(d=d, causal=causal, n=n, cfg=cfg, untraced=untraced, traced=traced,
                   ratio=traced / untraced)  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(builds(), indent=0))
    # the cuDNN gap at short sequences: d = 128, N = 512 and 1024
    for n in (512, 1024):
        b, h, d = 16384 // n, 16, 128
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                   for _ in range(3))  # fmt: skip
        flop = 4.0 * b * h * n * n * d
        res = []
        for bm, bn, w, s in [(64, 64, 4, 3), (64, 64, 4, 2), (64, 128, 4, 3),
                             (128, 64, 8, 3), (128, 64, 4, 2), (64, 32, 4, 3),
                             (128, 128, 8, 2)]:  # fmt: skip
            t = ms(functools.partial(fa2.attention_forward, q, k, v, False, None, bm, bn,
                                     num_warps=w, num_stages=s))  # fmt: skip
            res.append(((bm, bn, w, s), round(flop / t / 1e9)))
        print(f"d=128 N={n} bf16 fwd TFLOP/s by config:", res, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
