"""Blocks and launch options of each backward pass on its own (issue #15 item 2).

The dK/dV pass keeps one K/V block and streams Q blocks past it; the dQ pass keeps a
Q block and streams K/V. With one (BLOCK_M, BLOCK_N) for both, a shape good for one
is the other's transpose. This sweep gives one pass a configuration through
``_common.BWD_PASS_TABLE`` while the other keeps the package's default, and times
the whole ``fa2.attention_backward`` (GPU ms: a CUDA graph of 10 calls, median of
10 replays, ``sweep_issue15.graph_time``); the passes are separate launches, so the
fastest of each combine.

    python bench/bwd_pass_sweep.py warm --shard I/N   # compile (run N at once)
    python bench/bwd_pass_sweep.py time OUT.jsonl     # one process, every job
    python bench/bwd_pass_sweep.py pick OUT.jsonl BEST.json

``pick`` writes, per (d, causal), the fastest configuration of each pass by geomean
over N (only where it beats the default by more than 1 %), as the table's JSON.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import sys
import time

import torch

sys.path.insert(0, "bench")
from sweep_issue15 import _qkv, graph_time  # noqa: E402

DKDV = [  # (BLOCK_M: Q rows streamed, BLOCK_N: K/V rows kept, warps, stages)
    (32, 128, 4, 2), (32, 128, 4, 3), (32, 128, 4, 4), (32, 128, 8, 2),
    (32, 128, 8, 3), (64, 128, 4, 2), (64, 128, 8, 2), (64, 128, 8, 3),
    (64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 4, 4), (32, 64, 4, 3),
    (32, 64, 4, 4), (128, 128, 8, 2),
]  # fmt: skip
DQ = [  # (BLOCK_M: Q rows kept, BLOCK_N: K/V rows streamed, warps, stages)
    (128, 32, 4, 2), (128, 32, 4, 3), (128, 32, 4, 4), (128, 32, 8, 2),
    (128, 32, 8, 3), (128, 64, 4, 2), (128, 64, 8, 2), (128, 64, 8, 3),
    (64, 64, 4, 2), (64, 64, 4, 3), (64, 64, 4, 4), (64, 32, 4, 3),
    (64, 32, 4, 4), (128, 128, 8, 2),
]  # fmt: skip
SHAPES = [(d, c) for d in (64, 128) for c in (False, True)]
NS = (1024, 4096, 16384)


def jobs():
    yield from ((d, c, "default", None) for d, c in SHAPES)
    for (d, c), (name, cfgs) in itertools.product(SHAPES, (("dkdv", DKDV), ("dq", DQ))):
        yield from ((d, c, name, cfg) for cfg in cfgs)


def _set(d, causal, name, cfg):
    """The table with this one pass's configuration (none: every default)."""
    from flashanim.kernels import _common

    load(None)
    if cfg is not None:
        _common.BWD_PASS_TABLE[(d, causal)] = ((0, {name: tuple(cfg)}),)


def _fn(t, causal):
    from flashanim.kernels import fa2

    q, k, v, do = t
    o, lse = fa2.attention_forward(q, k, v, causal)
    return functools.partial(fa2.attention_backward, q, k, v, o, lse, do, causal)


def warm(shard: str) -> None:
    i, n = (int(x) for x in shard.split("/"))
    t0, ok, bad = time.time(), 0, 0
    t = _qkv("bf16", 64, 4096), _qkv("bf16", 128, 4096)
    for idx, (d, causal, name, cfg) in enumerate(jobs()):
        if idx % n != i:
            continue
        _set(d, causal, name, cfg)
        try:
            _fn(t[d == 128], causal)()
            ok += 1
        except Exception:  # noqa: BLE001 (out of resources: the timing pass records it)
            bad += 1
    torch.cuda.synchronize()
    print(f"warm {shard}: {ok} ran, {bad} failed, {time.time() - t0:.0f} s", flush=True)


def run(path: str) -> None:
    out = open(path, "a")
    for d, causal in SHAPES:
        for n in NS:
            t = _qkv("bf16", d, n, seed=1)
            best = {}  # pass -> its fastest row at this (d, causal, n)
            for dd, cc, name, cfg in jobs():
                if (dd, cc) != (d, causal):
                    continue
                _set(d, causal, name, cfg)
                row = {"d": d, "causal": causal, "n": n, "pass": name, "cfg": cfg}
                try:
                    row["ms"] = graph_time(_fn(t, causal))
                except Exception as exc:  # noqa: BLE001
                    row["ms"], row["err"] = None, f"{type(exc).__name__}: {exc}"[:200]
                out.write(json.dumps(row) + "\n")
                out.flush()
                torch.cuda.empty_cache()
                if row["ms"] and (name not in best or row["ms"] < best[name]["ms"]):
                    best[name] = row
            del t
            print(f"d={d} causal={causal} n={n}: "
                  + "  ".join(f"{k} {v['cfg']} {v['ms']:.3f}" for k, v in best.items()),
                  flush=True)  # fmt: skip
    _set(64, False, "default", None)


def pick(path: str, best_path: str) -> None:
    rows = [json.loads(x) for x in open(path)]
    table = {}
    for d, causal in SHAPES:
        mine = [r for r in rows if (r["d"], r["causal"]) == (d, causal)]
        default = {r["n"]: r["ms"] for r in mine if r["pass"] == "default" and r["ms"]}
        entry = {}
        for name in ("dkdv", "dq"):
            scores = {}
            for cfg in {tuple(r["cfg"]) for r in mine if r["pass"] == name}:
                ms = {r["n"]: r["ms"] for r in mine
                      if r["pass"] == name and tuple(r["cfg"]) == cfg}  # fmt: skip
                if all(ms.get(n) for n in default):
                    scores[cfg] = math.exp(sum(math.log(ms[n] / default[n])
                                               for n in default) / len(default))  # fmt: skip
            if scores:
                cfg, s = min(scores.items(), key=lambda kv: kv[1])
                print(f"d={d} causal={causal} {name}: best {cfg} at {s:.3f} x default")
                if s < 0.99:
                    entry[name] = list(cfg)
        if entry:
            table[f"{d},{int(causal)}"] = entry
    json.dump(table, open(best_path, "w"), indent=1)
    print(json.dumps(table))


def load(best_path: str | None) -> None:
    """Replace the installed package's table by ``pick``'s (from N = 1k on); by an
    empty one (every pass at the default) with ``None``."""
    from flashanim.kernels import _common, fa2

    _common.BWD_PASS_TABLE.clear()
    fa2._PLANS.clear()
    entries = json.load(open(best_path)) if best_path else {}
    for key, entry in entries.items():
        d, c = (int(x) for x in key.split(","))
        _common.BWD_PASS_TABLE[(d, bool(c))] = (
            (1024, {k: tuple(v) for k, v in entry.items()}),
        )  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["warm", "time", "pick"])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--shard", default="0/1")
    a = ap.parse_args()
    if a.what == "warm":
        warm(a.shard)
    elif a.what == "time":
        run(a.paths[0])
    else:
        pick(*a.paths)
