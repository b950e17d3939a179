"""Sweep launch configurations of the FA2 kernels on a GPU; print the best per shape.

    python bench/tune_fa2.py --out DIR [--mode fwd|bwd|both] [--budget SECONDS]

For each (head dim, causal, N) of the benchmark grid (fp16, batch * N = 16k tokens,
H = 2048 / d) it times every (BLOCK_M, BLOCK_N, num_warps, num_stages) of a small
space with ``triton.testing.do_bench`` (median) and writes all timings to
``tune_<mode>.json``. The chosen configurations are then written into
``default_blocks``/``_launch_opts`` by hand, with the figures in
``bench/NOTES.md``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
import time
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch
import triton

FWD_SPACE = {
    "blocks": [(128, 64), (128, 128), (64, 64), (64, 128)],
    "warps": [4, 8],
    "stages": [2, 3, 4],
}
BWD_SPACE = {
    "blocks": [(64, 64), (64, 128), (128, 64), (32, 64), (128, 128)],
    "warps": [4, 8],
    "stages": [1, 2, 3],
}


def flops(b, h, n, d, causal, mode):
    f = 4.0 * b * h * n * n * d * (0.5 if causal else 1.0)
    return f * (2.5 if mode == "bwd" else 1.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="media/bench")
    ap.add_argument("--mode", default="both", choices=["fwd", "bwd", "both"])
    ap.add_argument("--ns", default="1024,4096,16384")
    ap.add_argument("--ds", default="64,128")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds per mode")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16
    modes = ["fwd", "bwd"] if args.mode == "both" else [args.mode]
    for mode in modes:
        space = FWD_SPACE if mode == "fwd" else BWD_SPACE
        rows, t0 = [], time.time()
        for d, causal, n in itertools.product(
            [int(x) for x in args.ds.split(",")], (False, True),
            [int(x) for x in args.ns.split(",")],
        ):  # fmt: skip
            b, h = max(1, 16384 // n), 2048 // d
            q, k, v, do = (torch.randn(b, h, n, d, device="cuda", dtype=dtype)
                           for _ in range(4))  # fmt: skip
            o, lse = fa2.attention_forward(q, k, v, causal)
            best = None
            for (bm, bn), w, s in itertools.product(
                space["blocks"], space["warps"], space["stages"]
            ):
                if time.time() - t0 > args.budget:
                    break
                try:
                    if mode == "fwd":
                        fn = functools.partial(
                            fa2.attention_forward, q, k, v, causal, None, bm, bn,
                            num_warps=w, num_stages=s,
                        )  # fmt: skip
                    else:
                        fn = functools.partial(
                            fa2.attention_backward, q, k, v, o, lse, do, causal, None,
                            bm, bn, num_warps=w, num_stages=s,
                        )  # fmt: skip
                    ms = triton.testing.do_bench(fn, warmup=10, rep=40,
                                                 return_mode="median")  # fmt: skip
                except Exception as exc:  # out of resources, etc.
                    rows.append(
                        dict(
                            d=d,
                            causal=causal,
                            n=n,
                            bm=bm,
                            bn=bn,
                            warps=w,
                            stages=s,
                            error=str(exc).splitlines()[0][:120],
                        )
                    )
                    continue
                tf = flops(b, h, n, d, causal, mode) / ms / 1e9
                rows.append(dict(d=d, causal=causal, n=n, bm=bm, bn=bn, warps=w,
                                 stages=s, ms=ms, tflops=tf))  # fmt: skip
                if best is None or tf > best[0]:
                    best = (tf, bm, bn, w, s)
            print(f"{mode} d={d} causal={causal} N={n}: best {best}", flush=True)
            torch.cuda.empty_cache()
        (out / f"tune_{mode}.json").write_text(json.dumps(rows, indent=0))
        # the configuration that is best on average (geomean over shapes)
        by_cfg: dict[tuple, list[float]] = {}
        shapes = {(r["d"], r["causal"], r["n"]) for r in rows}
        for r in rows:
            if "tflops" in r:
                by_cfg.setdefault((r["d"], r["bm"], r["bn"], r["warps"], r["stages"]),
                                  []).append(r["tflops"])  # fmt: skip
        for d in sorted({s[0] for s in shapes}):
            n_shapes = sum(1 for s in shapes if s[0] == d)
            ranked = sorted(
                ((math.exp(sum(map(math.log, v)) / len(v)), cfg)
                 for cfg, v in by_cfg.items() if cfg[0] == d and len(v) == n_shapes),
                reverse=True,
            )  # fmt: skip
            print(f"{mode} d={d}: top configs (geomean TFLOP/s, (d, bm, bn, warps, "
                  f"stages)): {ranked[:4]}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
