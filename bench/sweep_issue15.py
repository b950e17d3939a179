"""Issue 15 sweep (session 6): split-decoding options and short-sequence configs.

    python bench/sweep_issue15.py warm --shard I/N      # compile (run N at once)
    python bench/sweep_issue15.py time --out DIR [--parts decode,host,fwd,bwd,...]

(parts: ``decode``, ``host``, ``fwd``, ``bwd``, ``dec8``, ``plans``.)

``warm`` runs every configuration of the sweep once (its shard of them), so that
Triton's on-disk cache holds the compiled kernels before the one timing process
starts (compiling hundreds of variants in one process takes longer than the
timing). ``time`` writes one JSON line per measurement to ``DIR/sweep.jsonl``
(flushed as it goes, so a run stopped at its limit keeps what it measured) and a
summary at the end.

Decoding (GQA 32:4, d = 128, bf16; as ``bench_decode.py``): every ``(BLOCK_M,
BLOCK_N, warps, stages)`` x a split count per "programs per SM" target, each timed
in a CUDA graph over input copies larger than L2 (``bench_decode.graph_ms``), with
SDPA's FLASH and cuDNN backends in the same run.

Short sequences (N = 128, 256, 512; batch * N = 16k tokens, H = 2048 / d): ours
and SDPA's FLASH and cuDNN, forward and backward, timed two ways: as the grid of
``bench_attention.py`` times them (``do_bench``, one launch from Python per call,
so host time the GPU waits for is counted) and as GPU time (a CUDA graph of 10
calls); the host's enqueue time per call; then every launch configuration of
ours, graph-timed.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import itertools
import json
import math
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

H, H_KV, D = 32, 4, 128
CACHES = (4096, 16384, 32768, 65536, 131072)
DEC1 = [(b, n_k, 1) for b in (1, 8) for n_k in CACHES]
DEC8 = [(1, 16384, 8), (1, 65536, 8), (8, 16384, 8), (8, 131072, 8)]
DEC_CFG = {  # (block_m, block_n, warps, stages)
    1: list(itertools.product((16,), (64, 128), (4,), (2, 3, 4)))
    + list(itertools.product((64,), (64, 128), (4, 8), (2, 3, 4))),
    8: list(itertools.product((64,), (64, 128), (4,), (2, 3, 4))),
}
WAVES = (1, 2, 4, 8)

SHORT = list(itertools.product(("bf16", "fp16"), (64, 128), (False, True),
                               (128, 256, 512)))  # fmt: skip
FWD_CFG = list(itertools.product(((64, 64), (128, 64), (64, 128), (128, 128)),
                                 (4, 8), (2, 3)))  # fmt: skip
BWD_CFG = list(itertools.product(((64, 64), (32, 64), (128, 64), (64, 128)), (4, 8),
                                 (2, 3)))  # fmt: skip
DT = {"bf16": torch.bfloat16, "fp16": torch.float16}


def sms() -> int:
    return torch.cuda.get_device_properties(0).multi_processor_count


def dec_splits(b: int, n_k: int, n_q: int, bm: int, bn: int) -> list[int]:
    from flashanim.kernels import decode

    programs = b * H_KV * math.ceil(H // H_KV * n_q / bm)
    nb = math.ceil(n_k / bn)
    out = {decode.choose_splits(programs, nb, sms(), 1, bn)}
    for w in WAVES:
        out.add(max(1, min(nb, 128, round(w * sms() / programs))))
    return sorted(out)


def dec_jobs(parts):
    for b, n_k, n_q in (DEC1 if "decode" in parts else []) + (
        DEC8 if "dec8" in parts else []
    ):
        for bm, bn, w, st in DEC_CFG[n_q]:
            for s in dec_splits(b, n_k, n_q, bm, bn):
                yield ("dec", b, n_k, n_q, bm, bn, w, st, s)


def short_jobs(parts):
    for mode, space in (("fwd", FWD_CFG), ("bwd", BWD_CFG)):
        if mode not in parts:
            continue
        for dt, d, causal, n in SHORT:
            for (bm, bn), w, st in space:
                yield (mode, dt, d, causal, n, bm, bn, w, st)


def _qkv(dt, d, n, grad=False, seed=0):
    b, h = 16384 // n, 2048 // d
    g = torch.Generator(device="cuda").manual_seed(seed + n + d)
    t = [torch.randn(b, h, n, d, device="cuda", dtype=DT[dt], generator=g)
         for _ in range(4)]  # fmt: skip
    if grad:
        for x in t[:3]:
            x.requires_grad_(True)
    return t


def _short_fn(job, t, o=None, lse=None):
    from flashanim.kernels import fa2

    mode, dt, d, causal, n, bm, bn, w, st = job
    q, k, v, do = t
    if mode == "fwd":
        return functools.partial(fa2.attention_forward, q, k, v, causal, None, bm, bn,
                                 num_warps=w, num_stages=st)  # fmt: skip
    return functools.partial(fa2.attention_backward, q, k, v, o, lse, do, causal,
                             None, bm, bn, num_warps=w, num_stages=st)  # fmt: skip


def warm(shard: str, parts) -> None:
    """Run each job of this shard once (compiles into Triton's disk cache)."""
    from flashanim.kernels import decode, fa2

    i, n = (int(x) for x in shard.split("/"))
    t0 = time.time()
    data = {}
    done = errs = 0
    for idx, job in enumerate(itertools.chain(dec_jobs(parts), short_jobs(parts))):
        if idx % n != i:
            continue
        try:
            if job[0] == "dec":
                _, b, n_k, n_q, bm, bn, w, st, s = job
                key = ("dec", b, n_k, n_q)
                if key not in data:
                    data.clear()
                    torch.cuda.empty_cache()
                    # the timing pass's layout: (B, N, H, d) viewed as (B, H, N, d)
                    data[key] = [torch.randn(b, nn, hh, D, device="cuda",
                                             dtype=torch.bfloat16).transpose(1, 2)
                                 for hh, nn in ((H, n_q), (H_KV, n_k), (H_KV, n_k))]  # fmt: skip
                decode.attention_decode(*data[key], num_splits=s, block_m=bm,
                                        block_n=bn, num_warps=w, num_stages=st)  # fmt: skip
            else:
                mode, dt, d, causal, nn = job[:5]
                key = ("short", dt, d, nn)
                if key not in data:
                    data.clear()
                    torch.cuda.empty_cache()
                    t = _qkv(dt, d, nn)
                    o, lse = fa2.attention_forward(*t[:3], causal)
                    data[key] = (t, o, lse)
                t, o, lse = data[key]
                if mode == "bwd":
                    o, lse = fa2.attention_forward(*t[:3], causal)
                _short_fn(job, t, o, lse)()
            done += 1
        except Exception as exc:  # out of resources: recorded by the timing pass
            errs += 1
            del exc
    torch.cuda.synchronize()
    print(f"warm {shard}: {done} ran, {errs} failed, {time.time() - t0:.0f} s",
          flush=True)  # fmt: skip


def graph_time(fn, calls: int = 10, reps: int = 10) -> float:
    """GPU ms of one call: a CUDA graph of ``calls`` calls, median of ``reps``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / calls)
    del g
    return statistics.median(ts)


def host_us(fn, calls: int = 50) -> float:
    """Host seconds per call, enqueue only (the GPU is not waited for)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t = (time.perf_counter() - t0) / calls
    torch.cuda.synchronize()
    return t * 1e6


def do_bench_ms(fn) -> float:
    import triton

    return float(triton.testing.do_bench(fn, warmup=10, rep=50,
                                         return_mode="median"))  # fmt: skip


def ab_line(head: str, a: str, ms_a: float, b: str, ms_b: float,
            cudnn_ms: float | None = None) -> str:  # fmt: skip
    """One A/B result for the log: both times, B's speed-up over A, and both
    against cuDNN's time (when given)."""
    line = f"{head}: {a} {ms_a:.4f} ms, {b} {ms_b:.4f} ms ({ms_a / ms_b:.3f}x)"
    if cudnn_ms:
        line += f"; x cuDNN {cudnn_ms / ms_a:.3f} -> {cudnn_ms / ms_b:.3f}"
    return line


class Log:
    def __init__(self, path: Path):
        self.f = path.open("a")

    def __call__(self, **row):
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()


def time_decode(log, parts, deadline):
    import bench_decode as bd
    from flashanim.kernels import decode
    from torch.nn.attention import SDPBackend

    shapes = (DEC1 if "decode" in parts else []) + (DEC8 if "dec8" in parts else [])
    for b, n_k, n_q in shapes:
        if time.time() > deadline:
            print("decode: deadline", flush=True)
            return
        sets = bd._sets(b, n_q, n_k, H_KV, seed=b * 7 + n_k + n_q)
        kvb = 2 * b * H_KV * n_k * D * 2
        ref = None
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION),
                         ("cudnn", SDPBackend.CUDNN_ATTENTION)):  # fmt: skip
            try:
                ms = bd.graph_ms([bd._sdpa_fn(be, *s, True) for s in sets], reps=15)
                log(kind="dec_peer", b=b, n_k=n_k, n_q=n_q, impl=name, ms=ms,
                    gbps=kvb / ms / 1e6)  # fmt: skip
            except Exception as exc:
                log(kind="dec_peer", b=b, n_k=n_k, n_q=n_q, impl=name,
                    error=str(exc)[:120])  # fmt: skip
        ts = [(s[0].transpose(1, 2), s[1].transpose(1, 2), s[2].transpose(1, 2))
              for s in sets]  # fmt: skip
        ref = decode.attention_decode(*ts[0])[0].float()
        default = dict(decode.DECODE_PLANS)
        best = None
        for bm, bn, w, st in DEC_CFG[n_q]:
            for s in dec_splits(b, n_k, n_q, bm, bn):
                kw = dict(num_splits=s, block_m=bm, block_n=bn, num_warps=w,
                          num_stages=st)  # fmt: skip
                try:
                    o = decode.attention_decode(*ts[0], **kw)[0].float()
                    err = float((o - ref).norm() / ref.norm())
                    ms = bd.graph_ms([functools.partial(decode.attention_decode, *t,
                                                        **kw) for t in ts], reps=15)  # fmt: skip
                except Exception as exc:
                    log(kind="dec", b=b, n_k=n_k, n_q=n_q, bm=bm, bn=bn, w=w, st=st,
                        s=s, error=str(exc).splitlines()[0][:100])  # fmt: skip
                    continue
                row = dict(kind="dec", b=b, n_k=n_k, n_q=n_q, bm=bm, bn=bn, w=w,
                           st=st, s=s, ms=ms, gbps=kvb / ms / 1e6, err=err)  # fmt: skip
                log(**row)
                if best is None or ms < best["ms"]:
                    best = row
        print(f"dec B={b} N_k={n_k} N_q={n_q}: best {best} (default {default})",
              flush=True)  # fmt: skip
        del sets, ts
        torch.cuda.empty_cache()


BATCH_CHECK = (2, 3, 4, 5, 6, 12, 16, 24)


def time_plans(log, deadline, n_k: int = 32768):
    """The plan rule between the measured batches (1 and 8): at each batch the
    rule's choice, each plan with its one-wave split count, session 5's rule
    (64-key blocks, ``cdiv(SMs, programs)`` slices) and cuDNN, N_q = 1."""
    import bench_decode as bd
    from flashanim.kernels import decode
    from torch.nn.attention import SDPBackend

    for b in BATCH_CHECK:
        if time.time() > deadline:
            print("plans: deadline", flush=True)
            return
        sets = bd._sets(b, 1, n_k, H_KV, seed=b)
        kvb = 2 * b * H_KV * n_k * D * 2
        ts = [tuple(t.transpose(1, 2) for t in s) for s in sets]
        programs = b * H_KV
        rule = decode.decode_plan(b, H_KV, 8, n_k, D, torch.bfloat16, sms())
        cands = {"rule": {}}
        for name, (bn, w, st, per_sm) in decode.DECODE_PLANS.items():
            s = decode.choose_splits(programs, n_k // bn, sms(), per_sm, bn)
            cands[name] = dict(block_n=bn, num_warps=w, num_stages=st, num_splits=s)
        cands["session5"] = dict(block_n=64, num_warps=4, num_stages=3,
                                 num_splits=max(1, min(-(-sms() // programs),
                                                       n_k // 64 // 4)))  # fmt: skip
        try:
            ms = bd.graph_ms([bd._sdpa_fn(SDPBackend.CUDNN_ATTENTION, *s, True)
                              for s in sets], reps=15)  # fmt: skip
            log(kind="plan", b=b, n_k=n_k, impl="cudnn", ms=ms, gbps=kvb / ms / 1e6)
        except Exception as exc:
            log(kind="plan", b=b, n_k=n_k, impl="cudnn", error=str(exc)[:100])
        for name, kw in cands.items():
            try:
                ms = bd.graph_ms([functools.partial(decode.attention_decode, *t, **kw)
                                  for t in ts], reps=15)  # fmt: skip
                log(kind="plan", b=b, n_k=n_k, impl=name, kw=kw, ms=ms,
                    gbps=kvb / ms / 1e6, rule_block_n=rule["block_n"])  # fmt: skip
                print(f"plan B={b} {name} {kw}: {ms * 1e3:.1f} us", flush=True)
            except Exception as exc:
                log(kind="plan", b=b, n_k=n_k, impl=name, error=str(exc)[:100])
        del sets, ts
        torch.cuda.empty_cache()


def _peer_fwd(name, q, k, v, causal):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    be = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}

    def run():
        with sdpa_kernel(be[name]):
            return sdpa(q, k, v, is_causal=causal)

    return run


def time_short_ref(log, deadline):
    """Ours (defaults) and the peers at each short shape, three timers."""
    from flashanim.kernels.attention import flash_attention

    for dt, d, causal, n in SHORT:
        if time.time() > deadline:
            print("short ref: deadline", flush=True)
            return
        q, k, v, do = _qkv(dt, d, n, grad=True)
        for impl in ("ours", "flash", "cudnn"):
            if impl == "ours":
                fwd = functools.partial(flash_attention, q, k, v, causal=causal)
            else:
                fwd = _peer_fwd(impl, q, k, v, causal)
            row = dict(kind="short_ref", dtype=dt, d=d, causal=causal, n=n, impl=impl)
            try:
                with torch.no_grad():
                    row["fwd_bench"] = do_bench_ms(fwd)
                    row["fwd_graph"] = graph_time(fwd)
                    row["fwd_host_us"] = host_us(fwd)
                o = fwd()

                def bwd(o=o, qkv=(q, k, v), do=do):
                    return torch.autograd.grad(o, qkv, do, retain_graph=True)

                row["bwd_bench"] = do_bench_ms(bwd)
                row["bwd_graph"] = graph_time(bwd)
                row["bwd_host_us"] = host_us(bwd)
            except Exception as exc:
                row["error"] = str(exc).splitlines()[0][:160]
            log(**row)
            torch.cuda.empty_cache()
        print(f"short ref {dt} d={d} causal={causal} N={n}", flush=True)


def profile_host(out: Path):
    """cProfile of ours' forward and backward at one short shape (host time)."""
    from flashanim.kernels.attention import flash_attention

    q, k, v, do = _qkv("bf16", 128, 128, grad=True)
    fwd = functools.partial(flash_attention, q, k, v, causal=False)
    with torch.no_grad():
        fwd()
    o = fwd()
    bwd = lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True)  # noqa: E731
    bwd()
    torch.cuda.synchronize()
    text = []
    for name, fn, ctx in (("fwd", fwd, torch.no_grad), ("bwd", bwd, torch.enable_grad)):
        pr = cProfile.Profile()
        with ctx():
            pr.enable()
            for _ in range(100):
                fn()
            pr.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
        text.append(f"==== {name} (100 calls)\n{s.getvalue()}")
    (out / "host_profile.txt").write_text("\n".join(text))


def time_short_cfg(log, parts, deadline):
    from flashanim.kernels import fa2

    cur = None
    for job in short_jobs(parts):
        if time.time() > deadline:
            print("short cfg: deadline", flush=True)
            return
        mode, dt, d, causal, n = job[:5]
        if cur != (mode, dt, d, causal, n):
            cur = (mode, dt, d, causal, n)
            t = _qkv(dt, d, n)
            o, lse = fa2.attention_forward(*t[:3], causal)
        row = dict(kind="short_cfg", mode=mode, dtype=dt, d=d, causal=causal, n=n,
                   bm=job[5], bn=job[6], w=job[7], st=job[8])  # fmt: skip
        try:
            row["ms"] = graph_time(_short_fn(job, t, o, lse))
        except Exception as exc:
            row["error"] = str(exc).splitlines()[0][:100]
        log(**row)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["warm", "time"])
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--out", default="sweep_out")
    ap.add_argument("--parts", default="decode,host,fwd,bwd,dec8")
    ap.add_argument("--budget", type=float, default=300.0, help="seconds (time)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    if args.what == "warm":
        warm(args.shard, parts)
        return 0
    import bench_decode as bd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "sweep.jsonl")
    t0 = time.time()
    log(kind="device", gpu=torch.cuda.get_device_name(0), sms=sms(),
        torch=torch.__version__, copy=bd.copy_tbps(),
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # fmt: skip
    end = t0 + args.budget
    if "decode" in parts:
        time_decode(log, {"decode"}, t0 + 0.35 * args.budget)
    if "host" in parts:
        time_short_ref(log, t0 + 0.55 * args.budget)
        profile_host(out)
    if "fwd" in parts:
        time_short_cfg(log, {"fwd"}, t0 + 0.75 * args.budget)
    if "bwd" in parts:
        time_short_cfg(log, {"bwd"}, t0 + 0.92 * args.budget)
    if "dec8" in parts:
        time_decode(log, {"dec8"}, end)
    if "plans" in parts:
        time_plans(log, end)
    print(f"time: {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
