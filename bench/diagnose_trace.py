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
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    rows = []
    # d, causal, n, untraced config (the default), traced configs to try
    cases = [
        (128, False, 4096, (128, 64, 8, 3),
         [(128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3)]),
        (64, False, 4096, (128, 64, 4, 3), [(128, 64, 4, 3), (128, 128, 8, 3)]),
        (128, True, 4096, (128, 128, 8, 3), [(128, 128, 8, 3), (128, 64, 8, 3)]),
        (64, True, 4096, (128, 64, 4, 3), [(128, 64, 4, 3), (128, 128, 8, 3)]),
    ]  # fmt: skip
    was = fa2.TRACE_STAGE
    for d, causal, n, base, tries in cases:
        b, h = 16384 // n, 2048 // d
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.float16)
                   for _ in range(3))  # fmt: skip
        bm, bn, w, s = base
        untraced = ms(functools.partial(fa2.attention_forward, q, k, v, causal, None,
                                        bm, bn, num_warps=w, num_stages=s))  # fmt: skip
        for bm, bn, w, s in tries:
            for staged in (False, True):
                fa2.TRACE_STAGE = staged
                traced = ms(functools.partial(fa2._forward, q, k, v, causal, None, bm,
                                              bn, True, False, w, s))  # fmt: skip
                row = dict(d=d, causal=causal, n=n, untraced_cfg=base, staged=staged,
                           traced_cfg=(bm, bn, w, s), untraced_ms=untraced,
                           traced_ms=traced, ratio=traced / untraced)  # fmt: skip
                rows.append(row)
                print(f"d={d} causal={causal} untraced {base} {untraced:.3f} ms | "
                      f"traced {'staged' if staged else 'per-event'} {(bm, bn, w, s)} "
                      f"{traced:.3f} ms: {traced / untraced:.2f}x", flush=True)  # fmt: skip
        fa2.TRACE_STAGE = was
    with open(f"{out}/diagnose_trace.json", "w") as fh:
        json.dump({"rows": rows, "builds": builds()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
