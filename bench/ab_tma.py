"""A/B of the forward's K/V loads, non-causal: pointer loads (``FWD_TMA = "auto"``,
as shipped for non-causal calls) against tensor descriptors (``"1"``), alternated
twice in one process, GPU time (a CUDA graph of 10 calls, median of 10 replays),
cuDNN beside; 16k tokens, H = 2048/d. Appends JSON lines to argv[1].

    python bench/ab_tma.py OUT.jsonl
"""

from __future__ import annotations

import functools
import statistics
import sys
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch

sys.path.insert(0, "bench")
from sweep_issue15 import DT, Log, _peer_fwd, _qkv, ab_line, graph_time  # noqa: E402


def main() -> int:
    log = Log(Path(sys.argv[1]))
    for dt in ("bf16", "fp16"):
        for d in (128, 64):
            for n in (4096, 16384):
                q, k, v, _ = _qkv(dt, d, n)
                cu = graph_time(_peer_fwd("cudnn", q, k, v, False))
                times = {"auto": [], "1": []}
                outs = {}
                for _ in range(2):
                    for mode in times:
                        fa2.FWD_TMA = mode
                        try:
                            outs[mode] = fa2.attention_forward(q, k, v, False)[0]
                            run = functools.partial(fa2.attention_forward, q, k, v,
                                                    False)  # fmt: skip
                            times[mode].append(graph_time(run))
                        finally:
                            fa2.FWD_TMA = "auto"
                row = {"dtype": dt, "d": d, "n": n, "dtype_t": str(DT[dt]),
                       "cudnn_ms": cu, "ptr_ms": statistics.mean(times["auto"]),
                       "tma_ms": statistics.mean(times["1"]), "runs": times,
                       "same_bits": torch.equal(outs["auto"], outs["1"])}  # fmt: skip
                row["tma_speedup"] = row["ptr_ms"] / row["tma_ms"]
                log(**row)
                print(ab_line(f"{dt} d={d} N={n}", "pointer", row["ptr_ms"], "TMA",
                              row["tma_ms"], cu) + f"; same bits {row['same_bits']}",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
