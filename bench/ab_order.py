"""A/B of the causal forward's program order (``fa2.CAUSAL_ORDER``, ``_attn_fwd``'s
``HEAVY_FIRST``): each batch-head's Q blocks in index order ("0") against from the
last, the heaviest ("1"), alternated twice in one process with the order of the two
swapped in the second round (the column timed second has come out a few per cent
slower on identical code); GPU time (a CUDA graph of 10 calls, median of 10
replays), SDPA's cuDNN beside; bf16 and fp16, causal, 16k tokens, H = 2048/d. The
outputs of both compared bit for bit (each program computes the same thing; only
the order they start in differs). Appends JSON lines to argv[1].

    python bench/ab_order.py OUT.jsonl [d:N,...]

(Session 12 also tried the heaviest blocks of every batch-head first, and the dQ
pass's Q blocks from the last: ``bench/NOTES.md``.)
"""

from __future__ import annotations

import functools
import statistics
import sys
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch

sys.path.insert(0, "bench")
from sweep_issue15 import Log, _peer_fwd, _qkv, ab_line, graph_time  # noqa: E402

SHAPES = ",".join(
    f"{d}:{n}" for d in (64, 128) for n in (1024, 2048, 4096, 8192, 16384)
)


def _run(fn, order):
    fa2.CAUSAL_ORDER = order
    try:
        return fn(), graph_time(fn)
    finally:
        fa2.CAUSAL_ORDER = "auto"


def main() -> int:
    log = Log(Path(sys.argv[1]))
    shapes = sys.argv[2] if len(sys.argv) > 2 else SHAPES
    for dt in ("bf16", "fp16"):
        for spec in shapes.split(","):
            d, n = (int(x) for x in spec.split(":"))
            q, k, v, _ = _qkv(dt, d, n)
            cu = graph_time(_peer_fwd("cudnn", q, k, v, True))
            fwd = functools.partial(fa2.attention_forward, q, k, v, True)
            times = {"0": [], "1": []}
            outs = {}
            for modes in ("01", "10"):
                for m in modes:
                    outs[m], t = _run(fwd, m)
                    times[m].append(t)
            same = all(
                torch.equal(a, b) for a, b in zip(outs["0"], outs["1"], strict=True)
            )
            m = {key: statistics.mean(ts) for key, ts in times.items()}
            log(dtype=dt, d=d, causal=True, n=n, cudnn_ms=cu, ms=m, runs=times,
                same_bits=same)  # fmt: skip
            print(ab_line(f"{dt} d={d} N={n}", "index order", m["0"], "heaviest first",
                          m["1"], cu) + f"; runs {times}; same bits {same}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
