"""A/B of the package's backward (whichever flashanim is installed) against SDPA's
cuDNN and FLASH backends in the same process: GPU ms of the backward through
autograd (``torch.autograd.grad`` of the forward's output in a CUDA graph of 10
calls, median of 10 replays: sweep_issue15.graph_time), as bench_bwd_fused's table
times it; bf16/fp16, d 64/128, causal and not, 16k tokens per batch. Appends JSON
lines to argv[1]; argv[2] labels the rows; argv[3]: the N (comma-separated);
argv[4], if given: ``empty`` (the backward without its per-pass table,
``_common.BWD_PASS_TABLE``) or a table to use instead of the package's
(``bwd_pass_sweep.py pick``'s JSON). ``AB_DTYPES``: the dtypes (``bf16,fp16``)."""

import functools
import json
import os
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

sys.path.insert(0, "bench")
from flashanim.kernels.attention import flash_attention  # noqa: E402
from sweep_issue15 import _qkv, graph_time  # noqa: E402

out = open(sys.argv[1], "a")
label = sys.argv[2]
NS = [
    int(x) for x in (sys.argv[3] if len(sys.argv) > 3 else "1024,4096,16384").split(",")
]
if len(sys.argv) > 4:
    from bwd_pass_sweep import load

    load(None if sys.argv[4] == "empty" else sys.argv[4])
PEERS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}
DTYPES = os.environ.get("AB_DTYPES", "bf16,fp16").split(",")
for dt in DTYPES:
    for d in (64, 128):
        for causal in (False, True):
            for n in NS:
                q, k, v, do = _qkv(dt, d, n, seed=1, grad=True)
                row = {"label": label, "dtype": dt, "d": d, "causal": causal, "n": n}
                for impl in ("ours", "cudnn", "flash"):
                    try:
                        if impl == "ours":
                            o = flash_attention(q, k, v, causal=causal)
                        else:
                            with sdpa_kernel(PEERS[impl]):
                                o = sdpa(q, k, v, is_causal=causal)
                        row[impl] = graph_time(
                            functools.partial(
                                torch.autograd.grad, o, (q, k, v), do, retain_graph=True
                            )
                        )
                    except Exception as exc:  # noqa: BLE001
                        row[impl] = None
                        row[impl + "_err"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                    o = None
                    torch.cuda.empty_cache()
                out.write(json.dumps(row) + "\n")
                out.flush()
                c, ours = row.get("cudnn"), row.get("ours")
                print(
                    f"{label} {dt} d={d} causal={causal} n={n}: ours {ours} ms"
                    + (f", x cuDNN {c / ours:.3f}" if c and ours else ""),
                    flush=True,
                )
