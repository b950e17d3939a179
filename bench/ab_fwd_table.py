"""A/B of the forward's per-GPU table (``_common.GPU_FWD_TABLE``): the plain call
(``fa2.attention_forward`` with default blocks) with the table emptied ("rules")
and with it ("table"), alternated twice in one process, GPU time (a CUDA graph of 10
calls, median of 10 replays), SDPA's cuDNN and FLASH backends beside; bf16 and fp16,
16k tokens, H = 2048/d. Outputs of both compared (within 2 ulp of the output dtype
per unit of |O|: different blocks sum in a different order). Appends JSON lines to
argv[1].

    python bench/ab_fwd_table.py OUT.jsonl [d:nc|c:N,... [ENTRIES]]

``ENTRIES`` (``d:nc|c:N_MIN:BMxBNxWxSxTMA,...``): candidate rows added to the GPU's
table for the "table" column (one row per (d, causal)).
"""

from __future__ import annotations

import functools
import statistics
import sys
from pathlib import Path

import flashanim.kernels._common as common
import flashanim.kernels.fa2 as fa2
import torch

sys.path.insert(0, "bench")
from sweep_issue15 import DT, Log, _peer_fwd, _qkv, ab_line, graph_time  # noqa: E402

SHAPES = ",".join(
    f"{d}:nc:{n}" for d in (128, 64) for n in (1024, 2048, 4096, 8192, 16384)
)
TABLE = dict(common.GPU_FWD_TABLE)


def _run(q, k, v, causal, table):
    common.GPU_FWD_TABLE = TABLE if table else {}
    fa2._PLANS.clear()
    fn = functools.partial(fa2.attention_forward, q, k, v, causal)
    out = fn()[0]
    t = graph_time(fn)
    common.GPU_FWD_TABLE = TABLE
    fa2._PLANS.clear()
    return out, t


def main() -> int:
    log = Log(Path(sys.argv[1]))
    shapes = sys.argv[2] if len(sys.argv) > 2 else SHAPES
    if len(sys.argv) > 3:
        model = next(
            m for m in common.GPU_FWD_TABLE if m[0] in torch.cuda.get_device_name()
        )[0]
        for e in sys.argv[3].split(","):
            d, c, n_min, cfg = e.split(":")
            bm, bn, w, st, tma = (int(x) for x in cfg.split("x"))
            TABLE[(model, int(d), c == "c")] = (
                (int(n_min), (bm, bn, w, st, bool(tma))),
            )
        print(f"table: {TABLE}", flush=True)
    for dt in ("bf16", "fp16"):
        for spec in shapes.split(","):
            d, c, n = spec.split(":")
            d, n, causal = int(d), int(n), c == "c"
            q, k, v, _ = _qkv(dt, d, n)
            peers = {name: graph_time(_peer_fwd(name, q, k, v, causal))
                     for name in ("cudnn", "flash")}  # fmt: skip
            times = {"rules": [], "table": []}
            outs = {}
            for _ in range(2):
                for mode in times:
                    outs[mode], t = _run(q, k, v, causal, mode == "table")
                    times[mode].append(t)
            diff = (outs["rules"].float() - outs["table"].float()).abs().max().item()
            scale = outs["rules"].float().abs().max().item()
            close = diff <= 2 * torch.finfo(DT[dt]).eps * max(scale, 1.0)
            m = {key: statistics.mean(ts) for key, ts in times.items()}
            row = {"dtype": dt, "d": d, "causal": causal, "n": n, **peers,
                   "rules_ms": m["rules"], "table_ms": m["table"], "runs": times,
                   "max_diff": diff, "close": close}  # fmt: skip
            log(**row)
            print(ab_line(f"{dt} {spec}", "rules", m["rules"], "table", m["table"],
                          peers["cudnn"]) + f"; x FLASH {peers['flash'] / m['table']:.3f}"
                  f"; close {close}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
