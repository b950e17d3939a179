"""Benchmark flashanim's FlashAttention-2 kernel against PyTorch's own attention.

Runs as-is on a GPU machine with only PyTorch and Triton (no Manim):

    python bench/bench_attention.py --out media/bench [--quick]

The grid is the FlashAttention papers': bf16 and fp16; head dim 64 and 128; causal
and not; N in {128, 256, 512, 1k, 2k, 4k, 8k, 16k} with batch * N = 16k tokens and 2048 hidden
(H = 2048 / d). Peers in the same run: ``scaled_dot_product_attention`` with the
FLASH_ATTENTION backend (FlashAttention-2 inside PyTorch), CUDNN_ATTENTION and MATH
(naive), plus the device's bf16 matmul rate (8192^3) and copy bandwidth as
ceilings. TFLOP/s use the FA2 paper's count: 4 * B * H * N^2 * d, halved for causal,
x2.5 for the backward. Times are ``triton.testing.do_bench`` medians on fresh random
inputs (never zeros): one launch from Python per call, so where the host takes
longer to launch than the GPU to run (short sequences) the GPU waits and the time is
the host's. Each point is also timed as GPU time (``ms_graph``: a CUDA graph of 10
calls, median of 10 replays; the backward through autograd, as in eager) and the
host's enqueue time per call (``host_us``), for ours, FLASH and cuDNN.

Also: the decoding table of ``bench/bench_decode.py`` (split-K/V against SDPA's
backends, GQA 8:1; ``--only decode``), peak memory of our kernel against the MATH backend as N grows (until the naive
one runs out of memory), and the cost of tracing (a traced launch, events only,
against an untraced one), with a check of the untraced build's PTX that no
instrumentation survives in it.

Writes ``bench_<gpu>.json`` (with GPU name, driver, Triton and PyTorch versions and
the date) and, where matplotlib is installed, a PNG plot, and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import flashanim.kernels.fa2 as fa2
import torch
import triton
from flashanim.kernels.attention import flash_attention
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

PEERS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def flops(b: int, h: int, n: int, d: int, causal: bool, mode: str) -> float:
    f = 4.0 * b * h * n * n * d
    if causal:
        f *= 0.5
    if mode == "bwd":
        f *= 2.5
    return f


def bench_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep,
                                         return_mode="median"))  # fmt: skip


def graph_ms(fn, calls: int = 10, reps: int = 10, mode: str = "global") -> float:
    """GPU time of one call: a CUDA graph of ``calls`` calls, median of ``reps``
    replays (launch overhead left out, as for every implementation alike);
    ``mode``: the capture's error mode."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, capture_error_mode=mode):
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
    return sorted(ts)[len(ts) // 2]


def host_us(fn, calls: int = 50) -> float:
    """Host microseconds per call, enqueue only (the GPU is not waited for)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t = (time.perf_counter() - t0) / calls
    torch.cuda.synchronize()
    return t * 1e6


def _gpu_timings(fn, row: dict, flops: float) -> None:
    """``ms_graph``, ``tflops_graph``, ``host_us`` of ``fn`` into ``row`` (a failed
    capture is retried once in relaxed mode: a first backward capture on the H200
    once failed for every implementation alike; then ``graph_error``)."""
    for attempt in (0, 1):
        try:
            row["ms_graph"] = graph_ms(fn, mode="relaxed" if attempt else "global")
            row["tflops_graph"] = flops / row["ms_graph"] / 1e9
            break
        except RuntimeError as exc:
            torch.cuda.synchronize()
            if attempt:
                row["graph_error"] = str(exc).splitlines()[0][:160]
    row["host_us"] = host_us(fn)


def device_info() -> dict:
    props = torch.cuda.get_device_properties(0)
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        driver = "unknown"
    return {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "driver": driver,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def ceilings() -> dict:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = bench_ms(lambda: a @ b)
    mm = 2 * 8192**3 / ms / 1e9
    x = torch.randn(2**28, device="cuda", dtype=torch.float32)  # 1 GiB
    y = torch.empty_like(x)
    ms = bench_ms(lambda: y.copy_(x))
    bw = 2 * x.numel() * 4 / ms / 1e9  # bytes read + written per second, in TB/s
    return {"matmul_bf16_tflops": mm, "copy_tbps": bw}


def run_point(dtype_name: str, d: int, causal: bool, n: int, tokens: int,
              hidden: int, with_math: bool,
              with_graph: bool = True) -> list[dict]:  # fmt: skip
    dtype = DTYPES[dtype_name]
    b, h = max(1, tokens // n), hidden // d
    gen = torch.Generator(device="cuda").manual_seed(n * 7 + d)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=gen)
               for _ in range(3))  # fmt: skip
    do = torch.randn(b, h, n, d, device="cuda", dtype=dtype, generator=gen)
    rows = []
    impls = {"ours": None, **{p: be for p, be in PEERS.items()
                              if p != "math" or with_math}}  # fmt: skip
    for name, backend in impls.items():
        for mode in ("fwd", "bwd"):
            qq, kk, vv = (t.detach().clone().requires_grad_(mode == "bwd")
                          for t in (q, k, v))  # fmt: skip
            try:
                if backend is None:
                    fwd = lambda: flash_attention(qq, kk, vv, causal=causal)  # noqa: B023
                else:

                    def fwd(backend=backend, qq=qq, kk=kk, vv=vv):
                        with sdpa_kernel(backend):
                            return sdpa(qq, kk, vv, is_causal=causal)

                fl = flops(b, h, n, d, causal, mode)
                extra = {}
                if mode == "fwd":
                    with torch.no_grad():
                        ms = bench_ms(fwd)
                        if with_graph and name != "math":
                            _gpu_timings(fwd, extra, fl)
                else:
                    o = fwd()
                    ms = bench_ms(lambda o=o: o.backward(do, retain_graph=True))
                    if with_graph and name != "math":
                        _gpu_timings(lambda o=o, t=(qq, kk, vv): torch.autograd.grad(
                            o, t, do, retain_graph=True), extra, fl)  # fmt: skip
                tf = fl / ms / 1e9
                rows.append(dict(dtype=dtype_name, d=d, causal=causal, n=n, b=b, h=h,
                                 impl=name, mode=mode, ms=ms, tflops=tf, **extra))  # fmt: skip
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                rows.append(dict(dtype=dtype_name, d=d, causal=causal, n=n, b=b, h=h,
                                 impl=name, mode=mode, ms=None, tflops=None,
                                 error=str(exc).splitlines()[0][:200]))  # fmt: skip
            finally:
                torch.cuda.empty_cache()
    return rows


def memory_curve(dtype=torch.float16, d: int = 64, h: int = 16) -> list[dict]:
    """Peak memory of one forward as N grows: ours vs the MATH backend."""
    rows = []
    math_ok = True
    for n in [1024 * 2**i for i in range(0, 8)]:  # 1k .. 128k
        gen = torch.Generator(device="cuda").manual_seed(n)
        q, k, v = (torch.randn(1, h, n, d, device="cuda", dtype=dtype, generator=gen)
                   for _ in range(3))  # fmt: skip
        base = torch.cuda.memory_allocated()
        row = {"n": n, "b": 1, "h": h, "d": d, "dtype": str(dtype).split(".")[-1]}
        for name in ("ours", "math"):
            if name == "math" and not math_ok:
                row[name + "_mib"] = None
                continue
            torch.cuda.reset_peak_memory_stats()
            try:
                with torch.no_grad():
                    if name == "ours":
                        o = flash_attention(q, k, v)
                    else:
                        with sdpa_kernel(SDPBackend.MATH):
                            o = sdpa(q, k, v)
                torch.cuda.synchronize()
                row[name + "_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                del o
            except torch.OutOfMemoryError:
                row[name + "_mib"] = None
                row[name + "_oom"] = True
                if name == "math":
                    math_ok = False
            torch.cuda.empty_cache()
        rows.append(row)
        del q, k, v
        torch.cuda.empty_cache()
    return rows


def _compiled_kernels(jit_fn) -> list:
    """Every compiled variant of a Triton kernel in this process (Triton 3.x cache)."""
    out = []
    for cache in getattr(jit_fn, "device_caches", {}).values():
        kernel_cache = cache[0] if isinstance(cache, tuple) else cache
        out.extend(kernel_cache.values())
    return out


def _ptx_facts(ptx: str) -> dict:
    """What instrumentation a kernel's PTX holds: clock/SM reads, global stores, and
    the pointer parameters it declares but never reads."""
    import re

    params = re.findall(r"\.param \.u64 [^ ]*?(\w+_param_\d+)", ptx)
    unread = [p for p in params if ptx.count(p) == 1]
    return {
        "globaltimer_reads": ptx.count("%globaltimer"),
        "smid_reads": ptx.count("%smid"),
        "global_stores": len(re.findall(r"\bst\.global", ptx)),
        "pointer_params": len(params),
        "unread_pointer_params": len(unread),
        "ptx_lines": ptx.count("\n"),
    }


def tracing_cost(n: int = 4096, dtype=torch.float16) -> dict:
    """A traced forward (events only: buffers allocated, kernel run with TRACE=True,
    no decoding) against an untraced one, at d = 64 and 128, causal and not; the
    traced run as shipped (staged: one store per K/V iteration) and with one store
    per event (``FLASHANIM_TRACE_STAGE=0``) for comparison; and what the untraced
    and traced builds' PTX holds."""
    from flashanim.kernels._common import GPU_CLOCK

    out = {"n": n, "dtype": str(dtype).split(".")[-1], "clock_level": GPU_CLOCK,
           "cases": []}  # fmt: skip
    was = fa2.TRACE_STAGE
    for d in (64, 128):
        b, h = 16384 // n, 2048 // d
        q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype)
                   for _ in range(3))  # fmt: skip
        for causal in (False, True):
            row = {"d": d, "causal": causal, "b": b, "h": h}
            fwd = functools.partial(fa2.attention_forward, q, k, v, causal)
            rec = functools.partial(fa2.record_forward, q, k, v, causal=causal)
            row["untraced_ms"] = bench_ms(fwd)
            for staged in (True, False):
                fa2.TRACE_STAGE = staged
                key = "traced_ms" if staged else "traced_per_event_ms"
                row[key] = bench_ms(rec)
            fa2.TRACE_STAGE = was
            raw = fa2.record_forward(q, k, v, causal=causal)
            row["events"] = int(sum(int(x.header[:, 0].sum()) for x in raw.launches))
            row["ratio"] = row["traced_ms"] / row["untraced_ms"]
            row["ratio_per_event"] = row["traced_per_event_ms"] / row["untraced_ms"]
            out["cases"].append(row)
            print(f"tracing d={d} causal={causal}: untraced {row['untraced_ms']:.3f} ms"
                  f", traced {row['traced_ms']:.3f} ms ({row['ratio']:.2f}x), one "
                  f"store per event {row['traced_per_event_ms']:.3f} ms "
                  f"({row['ratio_per_event']:.2f}x), {row['events']:,} events",
                  flush=True)  # fmt: skip
            del raw
            torch.cuda.empty_cache()
    # the untraced and traced builds of _attn_fwd compiled above, side by side
    builds = {}
    for kern in _compiled_kernels(fa2._attn_fwd):
        ptx = kern.asm.get("ptx", "")
        facts = _ptx_facts(ptx)
        kind = "traced" if facts["globaltimer_reads"] else "untraced"
        builds.setdefault(kind, facts)
    out["ptx"] = builds
    return out


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in results["grid"] if r["tflops"]]
    combos = sorted({(r["dtype"], r["d"], r["causal"], r["mode"]) for r in rows})
    dtypes = sorted({c[0] for c in combos})
    fig, axes = plt.subplots(len(dtypes) * 2, 4, figsize=(18, 4 * len(dtypes) * 2),
                             squeeze=False)  # fmt: skip
    colors = {"ours": "#d62728", "flash": "#1f77b4", "cudnn": "#2ca02c",
              "math": "#7f7f7f"}  # fmt: skip
    for dt, d, causal, mode in combos:
        r_i = dtypes.index(dt) * 2 + (0 if mode == "fwd" else 1)
        c_i = (0 if d == 64 else 2) + (1 if causal else 0)
        ax = axes[r_i][c_i]
        for impl, col in colors.items():
            pts = sorted((r["n"], r["tflops"]) for r in rows if r["impl"] == impl
                         and (r["dtype"], r["d"], r["causal"], r["mode"])
                         == (dt, d, causal, mode))  # fmt: skip
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=col,
                        label=impl)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_title(f"{mode} {dt} d={d} {'causal' if causal else 'non-causal'}")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("TFLOP/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"flashanim FA2 vs PyTorch SDPA on {results['device']['gpu']} "
                 f"({results['device']['date'][:10]})")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return True


def summarize(results: dict) -> list[str]:
    lines = []
    grid = results["grid"]
    key = lambda r: (r["dtype"], r["d"], r["causal"], r["n"], r["mode"])  # noqa: E731
    by, gpu = {}, {}
    for r in grid:
        by.setdefault(key(r), {})[r["impl"]] = r["tflops"]
        gpu.setdefault(key(r), {})[r["impl"]] = r.get("tflops_graph")
    mm = results["ceilings"]["matmul_bf16_tflops"]
    lines.append(f"{'dtype':5} {'d':>4} {'causal':>6} {'N':>6} {'mode':4} "
                 f"{'ours':>7} {'flash':>7} {'cudnn':>7} {'math':>7} "
                 f"{'/flash':>7} {'/cudnn':>7} {'/ceil':>6} {'GPU/fl':>7} "
                 f"{'GPU/cu':>7}")  # fmt: skip
    ratios = {"fwd_flash": [], "fwd_cudnn": [], "bwd_flash": [], "bwd_cudnn": [],
              "fwd_flash_gpu": [], "fwd_cudnn_gpu": [], "bwd_flash_gpu": [],
              "bwd_cudnn_gpu": []}  # fmt: skip
    for k in sorted(by):
        v = by[k]
        ours, fl, cu, ma = (v.get(i) for i in ("ours", "flash", "cudnn", "math"))
        rf = ours / fl if ours and fl else None
        rc = ours / cu if ours and cu else None
        go, gf, gc = (gpu[k].get(i) for i in ("ours", "flash", "cudnn"))
        grf = go / gf if go and gf else None
        grc = go / gc if go and gc else None
        for name, r in (("flash", rf), ("cudnn", rc), ("flash_gpu", grf),
                        ("cudnn_gpu", grc)):  # fmt: skip
            if r:
                ratios[f"{k[4]}_{name}"].append((k, r))
        f = lambda x: f"{x:7.1f}" if x else "      -"  # noqa: E731
        g = lambda x: f"{x:7.2f}" if x else "      -"  # noqa: E731
        lines.append(f"{k[0]:5} {k[1]:4d} {str(k[2]):>6} {k[3]:6d} {k[4]:4} "
                     f"{f(ours)} {f(fl)} {f(cu)} {f(ma)} {g(rf)} {g(rc)} "
                     f"{(ours or 0) / mm:6.2f} {g(grf)} {g(grc)}")  # fmt: skip
    for name, vals in ratios.items():
        if vals:
            gm = math.exp(sum(math.log(x) for _, x in vals) / len(vals))
            worst = min(vals, key=lambda kv: kv[1])
            lines.append(f"{name}: geomean {gm:.3f}, min {worst[1]:.3f} at {worst[0]}")
            results.setdefault("summary", {})[name] = {
                "geomean": gm, "min": worst[1], "min_at": list(worst[0])}  # fmt: skip
        # the targets: forward >= 1.2x flash and backward >= 1.0x flash for N >= 1k
    for mode, timer in itertools.product(("fwd", "bwd"), ("", "_gpu")):
        pts = [(k, r) for k, r in ratios[f"{mode}_flash{timer}"] if k[3] < 1024]
        if pts:
            worst = min(pts, key=lambda kv: kv[1])
            lines.append(f"{mode} vs flash{timer}, N<1k: min {worst[1]:.3f} "
                         f"(target 1.0) at {worst[0]}")  # fmt: skip
    for (mode, target), timer in itertools.product((("fwd", 1.2), ("bwd", 1.0)),
                                                   ("", "_gpu")):  # fmt: skip
        pts = [(k, r) for k, r in ratios[f"{mode}_flash{timer}"] if k[3] >= 1024]
        if pts:
            worst = min(pts, key=lambda kv: kv[1])
            lines.append(f"{mode} vs flash{timer}, N>=1k: min {worst[1]:.3f} "
                         f"(target {target}) at {worst[0]}")  # fmt: skip
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="media/bench")
    ap.add_argument("--quick", action="store_true", help="a small grid, for checking")
    ap.add_argument("--only", choices=["grid", "memory", "trace", "decode"],
                    nargs="*")  # fmt: skip
    ap.add_argument(
        "--ns",
        default=None,
        help="comma-separated sequence lengths (default: 128 ... 16k)",
    )
    ap.add_argument(
        "--tag", default="", help="suffix of the results file: bench_<gpu><tag>.json"
    )
    ap.add_argument("--no-math", action="store_true", help="leave MATH out")
    ap.add_argument("--warm", default=None, metavar="I/N",
                    help="compile only: run ours once at shard I of N of the grid "
                    "(N processes at once fill Triton's cache before a timed run)")  # fmt: skip
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_attention: needs a CUDA GPU (none found)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(args.only or ["grid", "memory", "trace", "decode"])
    t0 = time.time()
    results = {"device": device_info(), "ceilings": ceilings(),
               "flop_count": "4*B*H*N^2*d, /2 causal, x2.5 backward",
               "timer": "triton.testing.do_bench median (warmup 25 ms, rep 100 ms); "
               "ms_graph: CUDA graph of 10 calls, median of 10 replays",
               "grid": []}  # fmt: skip
    print(json.dumps(results["device"]), flush=True)
    print(json.dumps(results["ceilings"]), flush=True)
    ns = [256, 1024, 4096] if args.quick else [128, 256, 512, 1024, 2048, 4096,
                                               8192, 16384]  # fmt: skip
    if args.ns:
        ns = [int(x) for x in args.ns.split(",")]
    if args.warm:
        i, n_sh = (int(x) for x in args.warm.split("/"))
        pts = itertools.product(DTYPES, (64, 128), (False, True), ns)
        for idx, (dtype_name, d, causal, n) in enumerate(pts):
            if idx % n_sh == i:
                q, k, v, do = (torch.randn(16384 // n, 2048 // d, n, d, device="cuda",
                                           dtype=DTYPES[dtype_name])
                               for _ in range(4))  # fmt: skip
                for t in (q, k, v):
                    t.requires_grad_(True)
                flash_attention(q, k, v, causal=causal).backward(do)
                with torch.no_grad():
                    flash_attention(q, k, v, causal=causal)
        torch.cuda.synchronize()
        return 0
    if "grid" in parts:
        for dtype_name in DTYPES:
            for d in (64, 128):
                for causal in (False, True):
                    for n in ns:
                        rows = run_point(dtype_name, d, causal, n, 16384, 2048,
                                         with_math=n <= 4096 and not args.no_math)  # fmt: skip
                        results["grid"].extend(rows)
                        partial = out / f"partial_grid{args.tag}.json"  # if stopped
                        partial.write_text(json.dumps(results))
                        print(
                            f"{dtype_name} d={d} causal={causal} N={n}: "
                            + ", ".join(
                                f"{r['impl']}/{r['mode']}={r['tflops']:.0f}"
                                if r["tflops"]
                                else f"{r['impl']}/{r['mode']}=ERR"
                                for r in rows
                            ),
                            flush=True,
                        )
    if "memory" in parts:
        results["memory"] = memory_curve()
        print("memory:", json.dumps(results["memory"]), flush=True)
    if "trace" in parts:
        results["tracing"] = tracing_cost()
        print("tracing:", json.dumps(results["tracing"]), flush=True)
    if "decode" in parts:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_decode

        results["decode"] = bench_decode.run()
    results["wall_s"] = time.time() - t0
    lines = summarize(results) if results["grid"] else []
    gpu = results["device"]["gpu"].replace(" ", "_")
    path = out / f"bench_{gpu}{args.tag}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, path)
    if results["grid"] and plot(results, out / f"bench_{gpu}{args.tag}.png"):
        print(f"plot -> {out / f'bench_{gpu}{args.tag}.png'}")
    print("\n".join(lines))
    if "decode" in results:
        print("\n".join(results["decode"]["table"]))
    print(f"results -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
