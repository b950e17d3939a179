"""Host time and eager time of short attention calls: ours against SDPA's backends.

Runs on a GPU machine with PyTorch and Triton (no Manim), against whichever
flashanim is importable (install two trees with ``pip install --target`` and put
one on ``PYTHONPATH`` to compare them):

    python bench/host_time.py --tag new --out OUT [--ns 128,256,512,1024]
    python bench/host_time.py --warm 0/8      # compile only (shard 0 of 8)
    python bench/host_time.py --compare OUT/host_old.json OUT/host_new.json

Points: bf16, head dim 64 and 128, causal and not, batch * N = 16k tokens, H =
2048 / d (``bench/bench_attention.py``'s grid). For each of ours
(``flash_attention``), SDPA FLASH and SDPA cuDNN, forward (under ``no_grad``) and
backward (``torch.autograd.grad`` of one forward, as a training step's backward):

* ``host_us``: host microseconds per call, enqueue only (50 calls, GPU not waited
  for), median of 5 rounds;
* ``eager_us``: a plain loop of 50 calls then ``torch.cuda.synchronize``, per call,
  median of 5 rounds (what a user's eager loop sees);
* ``bench_us``: ``triton.testing.do_bench`` median (warmup 10 ms, rep 50 ms);
* ``graph_us``: GPU time (a CUDA graph of 10 calls, median of 10 replays).

``--compare`` prints, per point, the host time and the eager ratio (peer time /
our time: above 1 ours is faster) of the two files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

DTYPE = "bf16"
DS = (64, 128)
CAUSALS = (False, True)
PEERS = ("flash", "cudnn")


def _points(ns):
    return list(itertools.product(DS, CAUSALS, ns))


def _timings(fn, torch, triton, graph_ms) -> dict:
    fn()
    torch.cuda.synchronize()
    host, eager = [], []
    for _ in range(5):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        host.append((t1 - t0) / 50 * 1e6)
        eager.append((t2 - t0) / 50 * 1e6)
    row = {
        "host_us": statistics.median(host),
        "eager_us": statistics.median(eager),
        "bench_us": 1e3
        * float(triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median")),
    }
    try:
        row["graph_us"] = 1e3 * graph_ms(fn)
    except RuntimeError as exc:  # a failed capture: the other figures stand
        torch.cuda.synchronize()
        row["graph_error"] = str(exc).splitlines()[0][:160]
    return row


def run(ns, warm_only: bool = False, shard: tuple[int, int] = (0, 1)) -> list[dict]:
    import torch
    import triton
    from flashanim.kernels.attention import flash_attention
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_attention import graph_ms

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }
    rows = []
    for idx, (d, causal, n) in enumerate(_points(ns)):
        if idx % shard[1] != shard[0]:
            continue
        b, h = 16384 // n, 2048 // d
        gen = torch.Generator(device="cuda").manual_seed(n * 7 + d)
        q, k, v, do = (
            torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=gen)
            for _ in range(4)
        )
        impls = ["ours"] if warm_only else ["ours", *PEERS]
        for name in impls:
            for mode in ("fwd", "bwd"):
                qq, kk, vv = (
                    t.detach().clone().requires_grad_(mode == "bwd") for t in (q, k, v)
                )
                if name == "ours":

                    def fwd(qq=qq, kk=kk, vv=vv, causal=causal):
                        return flash_attention(qq, kk, vv, causal=causal)
                else:

                    def fwd(qq=qq, kk=kk, vv=vv, causal=causal, be=backends[name]):
                        with sdpa_kernel(be):
                            return sdpa(qq, kk, vv, is_causal=causal)

                if mode == "fwd":
                    with torch.no_grad():
                        if warm_only:
                            fwd()
                            continue
                        row = _timings(fwd, torch, triton, graph_ms)
                else:
                    o = fwd()
                    fn = functools.partial(
                        torch.autograd.grad, o, (qq, kk, vv), do, retain_graph=True
                    )
                    if warm_only:
                        fn()
                        continue
                    row = _timings(fn, torch, triton, graph_ms)
                rows.append(
                    dict(
                        dtype=DTYPE,
                        d=d,
                        causal=causal,
                        n=n,
                        b=b,
                        h=h,
                        impl=name,
                        mode=mode,
                        **row,
                    )  # fmt: skip
                )
                print(json.dumps(rows[-1]), flush=True)
    torch.cuda.synchronize()
    return rows


def compare(old_path: str, new_path: str) -> list[str]:
    old, new = (json.loads(Path(p).read_text()) for p in (old_path, new_path))

    def index(res):
        return {(r["d"], r["causal"], r["n"], r["impl"], r["mode"]): r
                for r in res["rows"]}  # fmt: skip

    o, w = index(old), index(new)
    lines = [
        f"old: {old['device']}",
        "| pass | d | causal | N | host µs old → new | eager µs old → new | "
        "×FLASH eager old → new | ×cuDNN eager old → new | ×FLASH graph |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("fwd", "bwd"):
        for d, causal, n in _points(sorted({k[2] for k in w})):
            key = (d, causal, n, "ours", mode)
            if key not in o or key not in w:
                continue
            a, b = o[key], w[key]
            cells = []
            for peer in PEERS:
                pk = (d, causal, n, peer, mode)
                ro = o[pk]["eager_us"] / a["eager_us"] if pk in o else float("nan")
                rn = w[pk]["eager_us"] / b["eager_us"] if pk in w else float("nan")
                cells.append(f"{ro:.2f} → {rn:.2f}")
            fk = (d, causal, n, "flash", mode)
            g = (
                f"{w[fk]['graph_us'] / b['graph_us']:.2f}"
                if fk in w and "graph_us" in b and "graph_us" in w[fk]
                else "–"
            )
            lines.append(
                f"| {mode} | {d} | {'yes' if causal else 'no'} | {n} | "
                f"{a['host_us']:.0f} → {b['host_us']:.0f} | "
                f"{a['eager_us']:.0f} → {b['eager_us']:.0f} | "
                + " | ".join(cells)
                + f" | {g} |"
            )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="128,256,512,1024")
    ap.add_argument("--out", default="media/bench")
    ap.add_argument("--tag", default="")
    ap.add_argument("--warm", default=None, metavar="I/N",
                    help="compile only: our calls of shard I of N")  # fmt: skip
    ap.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"))
    args = ap.parse_args(argv)
    if args.compare:
        print("\n".join(compare(*args.compare)))
        return 0
    import torch
    import triton

    if not torch.cuda.is_available():
        print("host_time: needs a CUDA GPU (none found)", file=sys.stderr)
        return 2
    ns = [int(x) for x in args.ns.split(",")]
    if args.warm:
        i, n_sh = (int(x) for x in args.warm.split("/"))
        run(ns, warm_only=True, shard=(i, n_sh))
        return 0
    import flashanim

    info = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "flashanim_path": str(Path(flashanim.__file__).parent),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    rows = run(ns)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"host{args.tag}.json"
    path.write_text(json.dumps({"device": info, "rows": rows}, indent=1))
    print(f"results -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
