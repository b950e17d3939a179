"""Backward launch options for one (d, causal) with the installed flashanim: GPU ms
of fa2.attention_backward (CUDA graph, sweep_issue15.graph_time) per configuration
(BLOCK_M, BLOCK_N, warps, stages; "default": the package's choice). Appends JSON
lines to argv[1]; argv[2] labels them; argv[3] = d, argv[4] = causal (0/1)."""

import functools
import json
import sys

import torch

sys.path.insert(0, "bench")
from flashanim.kernels import fa2  # noqa: E402
from sweep_issue15 import _qkv, graph_time  # noqa: E402

out = open(sys.argv[1], "a")
label, d, causal = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
CFGS = [
    "default",
    (128, 64, 4, 2),
    (128, 64, 4, 3),
    (128, 64, 8, 2),
    (128, 64, 8, 3),
    (64, 64, 4, 2),
    (64, 64, 4, 3),
    (64, 128, 4, 2),
    (64, 128, 8, 2),
    (32, 128, 4, 3),
    (128, 128, 8, 2),
]
if len(sys.argv) > 5 and sys.argv[5] == "default":
    CFGS = ["default"]
for dt in ("bf16", "fp16"):
    for n in (1024, 4096, 16384):
        q, k, v, do = _qkv(dt, d, n, seed=1)
        o, lse = fa2.attention_forward(q, k, v, causal)
        line = []
        for cfg in CFGS:
            try:
                args = (q, k, v, o, lse, do, causal)
                if cfg == "default":
                    fn = functools.partial(fa2.attention_backward, *args)
                else:
                    bm, bn, w, st = cfg
                    fn = functools.partial(fa2.attention_backward, *args, None, bm, bn,
                                           num_warps=w, num_stages=st)  # fmt: skip
                ms = graph_time(fn)
            except Exception as exc:  # noqa: BLE001
                ms = None
                line.append(f"{cfg}: {type(exc).__name__}")
            out.write(
                json.dumps(
                    {
                        "label": label,
                        "dtype": dt,
                        "d": d,
                        "causal": causal,
                        "n": n,
                        "cfg": cfg,
                        "ms": ms,
                    }
                )
                + "\n"
            )
            out.flush()
            if ms:
                line.append(f"{cfg}: {ms:.3f}")
            torch.cuda.empty_cache()
        print(
            f"{label} {dt} d={d} causal={causal} n={n}: " + "  ".join(line), flush=True
        )
