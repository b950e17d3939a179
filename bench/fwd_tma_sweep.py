"""Forward launch configurations with K/V loaded by pointers and by tensor
descriptors (TMA), on the GPU at hand; then the best of the sweep against the
package's default, alternated twice in one process. Appends JSON lines to argv[1].

    python bench/fwd_tma_sweep.py OUT.jsonl [--dtype bf16] [--deadline SECONDS]
        [--shapes 128:nc:4096,64:c:16384,...]

Shapes are ``d:nc|c:N`` (non-causal or causal), 16k tokens per batch, H = 2048/d.
GPU time: a CUDA graph of 10 calls, median of 10 replays (``sweep_issue15.graph_time``);
cuDNN timed beside each shape. The sweep's first pass picks; only the alternated
second pass is evidence (identical code timed twice has come out 2-3 % apart).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
import time
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch

sys.path.insert(0, "bench")
from sweep_issue15 import Log, _peer_fwd, _qkv, graph_time  # noqa: E402

BLOCKS = [(128, 64), (128, 128), (64, 128)]
WARPS = [4, 8]
STAGES = [2, 3, 4]
SHAPES = ("128:nc:2048,128:nc:4096,128:nc:16384,64:nc:2048,64:nc:4096,64:nc:16384,"
          "64:c:2048,64:c:4096,64:c:16384,128:c:1024")  # fmt: skip


def _time(q, k, v, causal, cfg):
    """GPU ms of one forward with ``cfg`` = (tma, bm, bn, warps, stages) or
    ``None`` (the package's default choice, its own TMA rule)."""
    if cfg is None:
        return graph_time(functools.partial(fa2.attention_forward, q, k, v, causal))
    tma, bm, bn, w, st = cfg
    fa2.FWD_TMA = "1" if tma else "0"
    try:
        run = functools.partial(fa2.attention_forward, q, k, v, causal, None, bm, bn,
                                num_warps=w, num_stages=st)  # fmt: skip
        return graph_time(run)
    finally:
        fa2.FWD_TMA = "auto"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--deadline", type=float, default=420.0)
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--configs", help="only these launches, both load paths: "
                    "BMxBNxWxS,... (the spill-free ones: bench/kernel_resources.py)")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.time()
    log = Log(Path(args.out))
    for spec in args.shapes.split(","):
        d, c, n = spec.split(":")
        d, n, causal = int(d), int(n), c == "c"
        q, k, v, _ = _qkv(args.dtype, d, n)
        cu = graph_time(_peer_fwd("cudnn", q, k, v, causal))
        sweep = {}
        launches = [(bm, bn, w, st) for (bm, bn), w, st in
                    itertools.product(BLOCKS, WARPS, STAGES)]  # fmt: skip
        if args.configs:
            launches = [tuple(int(x) for x in c.split("x"))
                        for c in args.configs.split(",")]  # fmt: skip
        for tma, (bm, bn, w, st) in itertools.product((0, 1), launches):
            if time.time() - t0 > args.deadline:
                break
            try:
                sweep[(tma, bm, bn, w, st)] = _time(
                    q, k, v, causal, (tma, bm, bn, w, st)
                )
            except Exception as e:  # out of shared memory, compile failure: skip
                print(
                    f"  {spec} {(tma, bm, bn, w, st)}: {type(e).__name__}", flush=True
                )
                torch.cuda.synchronize()
        if not sweep:
            break
        best = min(sweep, key=sweep.get)
        best_ptr = min((c for c in sweep if not c[0]), key=sweep.get, default=None)
        alt = {"default": [], "best": [], "best_ptr": []}
        for _ in range(2):
            alt["default"].append(_time(q, k, v, causal, None))
            alt["best"].append(_time(q, k, v, causal, best))
            if best_ptr is not None:
                alt["best_ptr"].append(_time(q, k, v, causal, best_ptr))
        row = {"dtype": args.dtype, "d": d, "causal": causal, "n": n, "cudnn_ms": cu,
               "best": best, "best_ptr": best_ptr,
               "sweep": {":".join(map(str, k)): t for k, t in sweep.items()},
               "alt": alt}  # fmt: skip
        log(**row)
        m = {key: statistics.mean(ts) for key, ts in alt.items() if ts}
        print(f"{args.dtype} d={d} {'causal' if causal else 'non-causal'} N={n}: "
              f"default {m['default']:.4f} ms (x cuDNN {cu / m['default']:.3f}); "
              f"best {best} {m['best']:.4f} ({m['default'] / m['best']:.3f}x); "
              f"best pointer {best_ptr} {m.get('best_ptr', float('nan')):.4f}",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
