"""The fused-dQ backward EXPERIMENT against the three-kernel path, FLASH and cuDNN.

    python bench/bench_bwd_fused.py warm --shard I/N     # compile (run N at once)
    python bench/bench_bwd_fused.py time --out DIR [--parts sweep,table]
    python bench/bench_bwd_fused.py bitwise --dump FILE | --compare FILE

``sweep``: at N = 1k, 4k, 16k (batch * N = 16k tokens, H = 2048 / d), bf16, d 64 and
128, causal and not, every launch configuration of :data:`CONFIGS` of the fused
kernel (``fused_bwd.fused_backward``, the experiment in ``bench/fused_bwd.py``:
blocks, warps, stages, dQ added by pointer atomics or by a TMA reduce, Q/dO loaded
by pointer or TMA) and the three-kernel path at its defaults, each timed as GPU time (a CUDA
graph of calls, median of replays), each fused result checked against the
three-kernel one (largest error relative to the largest gradient entry).

``table``: the grid of ``bench_attention.py`` (bf16 and fp16, d 64/128, causal
and not, N = 128 ... 16k), backward only, through autograd as that benchmark times
it (``torch.autograd.grad`` of the forward's output, in a CUDA graph):
``flash_attention`` (the package: three kernels), ``fused_bwd.fused_attention``
with the sweep's best configuration per (d, causal) (``--table``: no sweep,
``fused_bwd.fallback_config``'s, the first run's best), SDPA's FLASH and CUDNN
backends. Ratios against FLASH and cuDNN printed per point
and as geomeans.

``bitwise``: dump (or compare with a dump from another checkout) the package's
backward's gradients on a few shapes: the three-kernel path before and after a
change, bit for bit.

One JSON line per measurement goes to ``DIR/bwd_fused.jsonl`` as it is taken (a run
stopped at its limit keeps what it measured); a summary goes to
``DIR/bwd_fused_<gpu>.json``.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the sweep's inputs (batch·N = 16k tokens, H = 2048/d, seeded by N and d)
from sweep_issue15 import DT, _qkv  # noqa: E402

#: (BLOCK_M, BLOCK_N, warps, stages, dQ by TMA reduce, Q/dO by TMA)
CONFIGS = [
    (32, 128, 4, 2, 0, 0), (32, 128, 4, 3, 0, 0), (64, 128, 4, 2, 0, 0),
    (64, 128, 8, 2, 0, 0), (64, 128, 8, 3, 0, 0), (64, 64, 4, 2, 0, 0),
    (64, 64, 4, 3, 0, 0), (128, 64, 8, 2, 0, 0), (128, 128, 8, 2, 0, 0),
    (32, 128, 4, 3, 1, 0), (64, 128, 4, 2, 1, 0), (64, 128, 8, 2, 1, 0),
    (64, 64, 4, 3, 1, 0), (128, 64, 8, 2, 1, 0),
    (64, 128, 8, 2, 1, 1), (32, 128, 4, 3, 1, 1),
    # spill-free at d = 128 with 131 KB of shared memory (bench/kernel_resources.py,
    # Triton 3.6; bench/NOTES.md session 11): not timed yet
    (64, 64, 8, 2, 0, 0), (64, 64, 8, 3, 0, 0),
]  # fmt: skip
SWEEP_NS = (1024, 4096, 16384)
SWEEP_DS = (64, 128)  # (--ds)
#: ``diag``: what the dQ adds cost (N = 4096, bf16): the best configurations of the
#: first sweep with dQ added by pointer atomics, by TMA reduce, written by plain
#: stores (racy: wrong dQ) and not written at all (the shares summed in registers:
#: wrong dQ), plus more pipelining depths and smaller blocks (pointer atomics).
DIAG_CFGS = {
    64: [(64, 64, 4, 3), (128, 128, 8, 2)],
    128: [(64, 64, 4, 3), (128, 64, 8, 2)],
}
DIAG_MODES = (("ptr", 0), ("tma", 0), ("store", 1), ("none", 2))
DIAG_EXTRA = [(64, 64, 4, 4), (64, 64, 8, 3), (32, 64, 4, 3), (64, 32, 4, 3),
              (32, 32, 4, 3), (128, 32, 8, 3)]  # fmt: skip
TABLE_NS = (128, 256, 512, 1024, 4096, 16384)


def configs(d: int) -> list[tuple]:
    # 128 x 128 blocks keep two 128 x 128 float32 accumulators: d = 64 only
    return [c for c in CONFIGS if not (d > 64 and c[0] * c[1] > 128 * 64)]


def _fused_call(t, o, lse, causal, cfg):
    import fused_bwd

    bm, bn, w, st, dq_tma, tma = cfg
    q, k, v, do = t
    return lambda: fused_bwd.fused_backward(q, k, v, o, lse, do, causal, None, bm, bn,
                                            w, st, bool(dq_tma), bool(tma))  # fmt: skip


def sweep_jobs(dts=("bf16",)):
    for dt, d, causal in itertools.product(dts, (64, 128), (False, True)):
        for cfg in configs(d):
            yield dt, d, causal, cfg


def diag_jobs():
    for d, causal in itertools.product((64, 128), (False, True)):
        for cfg in DIAG_CFGS[d]:
            for mode in DIAG_MODES:
                yield "bf16", d, causal, (cfg, mode)
        for cfg in DIAG_EXTRA:
            yield "bf16", d, causal, (cfg, ("ptr", 0))


def _diag_call(t, o, lse, causal, job):
    import fused_bwd

    (bm, bn, w, st), (atomic, diag) = job
    fused_bwd.DQ_DIAG = diag
    return _fused_call(t, o, lse, causal, (bm, bn, w, st, atomic == "tma", 0))


def diag(out: Path) -> None:
    import fused_bwd
    from flashanim.kernels import fa2

    n = 4096
    for d, causal in itertools.product((64, 128), (False, True)):
        t = _qkv("bf16", d, n)
        q, k, v, do = t
        o, lse = fa2.attention_forward(q, k, v, causal)
        ms_det = _graph(functools.partial(fa2.attention_backward, q, k, v, o, lse,
                                          do, causal), n)  # fmt: skip
        _write(out, dict(part="diag", d=d, causal=causal, n=n, impl="det", ms=ms_det))
        line = [f"diag d={d} causal={causal} N={n}: det {ms_det:.3f} ms"]
        for _dt, dd, cc, job in diag_jobs():
            if (dd, cc) != (d, causal):
                continue
            try:
                ms = _graph(_diag_call(t, o, lse, causal, job), n)
                row = dict(part="diag", d=d, causal=causal, n=n, impl="fused",
                           cfg=list(job[0]), mode=job[1][0], ms=ms,
                           vs_det=ms_det / ms)  # fmt: skip
                line.append(f"{job[0]} {job[1][0]}: {ms:.3f} ({ms_det / ms:.2f}x det)")
            except Exception as exc:  # noqa: BLE001
                row = dict(part="diag", d=d, causal=causal, n=n, impl="fused",
                           cfg=list(job[0]), mode=job[1][0],
                           error=f"{type(exc).__name__}: {str(exc)[:200]}")  # fmt: skip
                line.append(f"{job[0]} {job[1][0]}: ERROR {row['error'][:80]}")
            fused_bwd.DQ_DIAG = 0
            _write(out, row)
        print("\n   ".join(line), flush=True)
        torch.cuda.empty_cache()


def warm(shard: str, diag_only: bool = False) -> None:
    """Compile this shard's share of the fused configurations (both dtypes) and of
    the three-kernel path into Triton's disk cache."""
    import fused_bwd
    from flashanim.kernels import fa2

    i, n = (int(x) for x in shard.split("/"))
    t0 = time.time()
    jobs = [
        ("det", dt, d, c, None)
        for dt, d, c in itertools.product(DT, (64, 128), (False, True))
    ]
    if diag_only:
        jobs += [("diag", *job) for job in diag_jobs()]
    else:
        jobs += [("fused", *job) for job in sweep_jobs(("bf16", "fp16"))]
    done = 0
    for idx, (kind, dt, d, causal, cfg) in enumerate(jobs):
        if idx % n != i:
            continue
        t = _qkv(dt, d, 1024)
        o, lse = fa2.attention_forward(*t[:3], causal)
        try:
            if kind == "det":
                fa2.attention_backward(*t[:3], o, lse, t[3], causal)
            elif kind == "diag":
                _diag_call(t, o, lse, causal, cfg)()
                fused_bwd.DQ_DIAG = 0
            else:
                _fused_call(t, o, lse, causal, cfg)()
            done += 1
        except Exception as exc:  # noqa: BLE001  (reported, the sweep goes on)
            print(f"warm {dt} d={d} causal={causal} {cfg}: {type(exc).__name__}: "
                  f"{str(exc)[:300]}", flush=True)  # fmt: skip
    torch.cuda.synchronize()
    print(f"warm {shard}: {done} jobs in {time.time() - t0:.0f} s", flush=True)


def _write(out: Path, row: dict) -> None:
    with open(out / "bwd_fused.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _graph(fn, n: int) -> float:
    from bench_attention import graph_ms

    calls = 10 if n <= 4096 else 3
    return graph_ms(fn, calls=calls, reps=10 if n <= 4096 else 5)


def sweep(out: Path) -> dict:
    """Time every configuration; return the best per (d, causal) over the N's
    (geomean of time relative to the three-kernel path)."""
    from flashanim.kernels import fa2

    rel: dict[tuple, dict[tuple, list[float]]] = {}
    for d, causal in itertools.product(SWEEP_DS, (False, True)):
        for n in SWEEP_NS:
            t = _qkv("bf16", d, n)
            q, k, v, do = t
            o, lse = fa2.attention_forward(q, k, v, causal)
            ref = fa2.attention_backward(q, k, v, o, lse, do, causal)
            ms_det = _graph(functools.partial(fa2.attention_backward, q, k, v, o, lse,
                                              do, causal), n)  # fmt: skip
            row = dict(part="sweep", dt="bf16", d=d, causal=causal, n=n, impl="det",
                       ms=ms_det)  # fmt: skip
            _write(out, row)
            line = [f"d={d} causal={causal} N={n}: det {ms_det:.3f} ms"]
            for cfg in configs(d):
                try:
                    fn = _fused_call(t, o, lse, causal, cfg)
                    got = fn()
                    err = max(float((a.float() - b.float()).abs().max()
                                    / b.float().abs().max())
                              for a, b in zip(got, ref, strict=True))  # fmt: skip
                    ms = _graph(fn, n)
                    row = dict(part="sweep", dt="bf16", d=d, causal=causal, n=n,
                               impl="fused", cfg=list(cfg), ms=ms, err=err,
                               vs_det=ms_det / ms)  # fmt: skip
                    if err < 0.02:
                        rel.setdefault((d, causal), {}).setdefault(cfg, []).append(
                            ms / ms_det
                        )
                    line.append(f"{cfg}: {ms:.3f} ({ms_det / ms:.2f}x, err {err:.1e})")
                except Exception as exc:  # noqa: BLE001
                    row = dict(part="sweep", dt="bf16", d=d, causal=causal, n=n,
                               impl="fused", cfg=list(cfg),
                               error=f"{type(exc).__name__}: {str(exc)[:300]}")  # fmt: skip
                    line.append(f"{cfg}: ERROR {row['error'][:80]}")
                _write(out, row)
                torch.cuda.empty_cache()
            print("\n   ".join(line), flush=True)
            torch.cuda.empty_cache()
    best = {}
    for key, by_cfg in rel.items():
        full = {c: r for c, r in by_cfg.items() if len(r) == len(SWEEP_NS)}
        gm = {c: math.exp(sum(map(math.log, r)) / len(r)) for c, r in full.items()}
        c = min(gm, key=gm.get)
        best[key] = c
        print(f"best d={key[0]} causal={key[1]}: {c} at {1 / gm[c]:.3f}x det "
              f"(geomean over N {SWEEP_NS})", flush=True)  # fmt: skip
    return best


def table(out: Path, best: dict) -> list[dict]:
    """Backward through autograd: det, fused, FLASH, cuDNN at the grid's points."""
    import fused_bwd
    from flashanim.kernels.attention import flash_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    peers = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    rows = []
    for dt, d, causal in itertools.product(DT, (64, 128), (False, True)):
        for n in TABLE_NS:
            q, k, v, do = _qkv(dt, d, n, seed=1, grad=True)
            cfg = tuple(best.get((d, causal)) or fused_bwd.fallback_config(d, DT[dt]))
            ms = {}
            for impl in ("det", "fused", "flash", "cudnn"):
                o = None
                try:
                    if impl == "det":
                        o = flash_attention(q, k, v, causal=causal)
                    elif impl == "fused":
                        o = fused_bwd.fused_attention(q, k, v, causal, None, cfg)
                    else:
                        with sdpa_kernel(peers[impl]):
                            o = sdpa(q, k, v, is_causal=causal)
                    ms[impl] = _graph(functools.partial(torch.autograd.grad, o,
                                                        (q, k, v), do,
                                                        retain_graph=True), n)  # fmt: skip
                except Exception as exc:  # noqa: BLE001
                    ms[impl] = None
                    print(f"{impl} {dt} d={d} causal={causal} N={n}: "
                          f"{type(exc).__name__}: {str(exc)[:200]}", flush=True)  # fmt: skip
                del o
                torch.cuda.empty_cache()
            row = dict(part="table", dt=dt, d=d, causal=causal, n=n, cfg=list(cfg),
                       **{f"ms_{k}": x for k, x in ms.items()})  # fmt: skip
            rows.append(row)
            _write(out, row)
            r = functools.partial(_ratio, ms)
            print(f"{dt} d={d:3d} causal={causal!s:5} N={n:5d}: det {ms['det'] or math.nan:.3f} "
                  f"fused {ms['fused'] or math.nan:.3f} ms | fused/det {r('fused', 'det'):.2f} "
                  f"fused/FLASH {r('fused', 'flash'):.2f} det/FLASH "
                  f"{r('det', 'flash'):.2f} fused/cuDNN {r('fused', 'cudnn'):.2f} "
                  f"det/cuDNN {r('det', 'cudnn'):.2f}", flush=True)  # fmt: skip
            torch.cuda.empty_cache()
    return rows


def _ratio(ms: dict, a: str, b: str) -> float:
    return ms[b] / ms[a] if ms[a] and ms[b] else float("nan")


def summarize(rows: list[dict]) -> list[str]:
    lines = []
    for lo, hi, label in ((1024, 1 << 30, "N>=1k"), (0, 1023, "N<1k")):
        pts = [r for r in rows if lo <= r["n"] <= hi]
        for a, b in itertools.product(("fused", "det"), ("flash", "cudnn")):
            vals = [r[f"ms_{b}"] / r[f"ms_{a}"] for r in pts
                    if r.get(f"ms_{a}") and r.get(f"ms_{b}")]  # fmt: skip
            if vals:
                gm = math.exp(sum(map(math.log, vals)) / len(vals))
                lines.append(f"{label} {a}/{b}: geomean {gm:.3f}, min {min(vals):.3f}, "
                             f"max {max(vals):.3f} ({len(vals)} points)")  # fmt: skip
    return lines


def bitwise(dump: str | None, compare: str | None) -> int:
    """The package's backward's gradients on a few shapes: saved, or compared."""
    from flashanim.kernels import fa2

    res = {}
    for dt, d, causal, n_q, n_k in (("bf16", 64, True, 1000, 1000),
                                    ("fp16", 128, False, 1000, 1500),
                                    ("bf16", 128, True, 4096, 4096),
                                    ("fp16", 64, False, 3000, 2000)):  # fmt: skip
        g = torch.Generator(device="cuda").manual_seed(n_q + d)
        q = torch.randn(2, 4, n_q, d, device="cuda", dtype=DT[dt], generator=g)
        k, v = (torch.randn(2, 4, n_k, d, device="cuda", dtype=DT[dt], generator=g)
                for _ in range(2))  # fmt: skip
        do = torch.randn_like(q)
        o, lse = fa2.attention_forward(q, k, v, causal)
        grads = fa2.attention_backward(q, k, v, o, lse, do, causal)
        res[f"{dt}-{d}-{causal}-{n_q}x{n_k}"] = [x.cpu() for x in (o, lse, *grads)]
    if dump:
        torch.save(res, dump)
        print(f"bitwise: dumped {len(res)} cases to {dump}")
        return 0
    old = torch.load(compare)
    bad = 0
    for key, new in res.items():
        same = [torch.equal(a, b) for a, b in zip(old[key], new, strict=True)]
        print(f"bitwise {key}: O, LSE, dQ, dK, dV equal to the old checkout: {same}")
        bad += not all(same)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["warm", "time", "bitwise"])
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--out", default="media/bench")
    ap.add_argument("--parts", default="sweep,table")
    ap.add_argument("--table", action="store_true",
                    help="table without a sweep: the fused configurations of "
                    "fused_bwd.fallback_config (the first run's best)")  # fmt: skip
    ap.add_argument("--configs", help="sweep only these: BMxBNxWxSxDQTMAxTMA,...")
    ap.add_argument("--ds", help="sweep only these head dims: 64,128")
    ap.add_argument("--dump")
    ap.add_argument("--compare")
    args = ap.parse_args(argv)
    global CONFIGS, SWEEP_DS
    if args.configs:
        CONFIGS = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    if args.ds:
        SWEEP_DS = tuple(int(x) for x in args.ds.split(","))
    if args.what == "warm":
        warm(args.shard, args.parts == "diag")
        return 0
    if args.what == "bitwise":
        return bitwise(args.dump, args.compare)
    from bench_attention import device_info

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    info = device_info()
    print(json.dumps(info), flush=True)
    t0 = time.time()
    res = {"device": info, "timer": "GPU time: CUDA graph of 10 calls (3 at N > 4k), "
           "median of 10 replays (5)", "tokens": 16384, "hidden": 2048}  # fmt: skip
    best = {}
    if "diag" in parts:
        diag(out)
    if "sweep" in parts:
        best = sweep(out)
        res["best"] = {f"d{d}-{'causal' if c else 'full'}": list(cfg)
                       for (d, c), cfg in best.items()}  # fmt: skip
    if "table" in parts and args.table:
        best = {}  # fused_bwd.fallback_config's
    if "table" in parts:
        rows = table(out, best)
        res["table"] = rows
        res["summary"] = summarize(rows)
        print("\n".join(res["summary"]), flush=True)
    res["wall_s"] = time.time() - t0
    gpu = info["gpu"].replace(" ", "_")
    (out / f"bwd_fused_{gpu}.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
