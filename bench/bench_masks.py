"""What a mask costs: flashanim's FA2 kernel and PyTorch's SDPA, with and without one.

Runs as-is on a GPU machine with only PyTorch and Triton (no Manim)::

    python bench/bench_masks.py --out media/bench [--quick] [--dtype bf16]

Masks (bool, ``True`` = attend, as ``scaled_dot_product_attention``):

* ``none``: no mask;
* ``kpm``: a key padding mask ``(B, 1, 1, N)`` (each sequence's last 0..25 % keys
  padded), read in place by our kernel (stride 0 over heads and rows);
* ``bool``: an arbitrary ``(N, N)`` mask (about half the keys, the diagonal always
  kept), broadcast over batch and heads.

Implementations: ours (``flash_attention(..., attn_mask=)``), SDPA with the
EFFICIENT_ATTENTION and MATH backends (both take masks), and for ``none`` also
SDPA's FLASH_ATTENTION backend (which takes no mask). Batch * N = 16k tokens, 16
heads of d = 64; N in {512, 1k, 2k, 4k} ({512, 2k} with ``--quick``). Times are
``triton.testing.do_bench`` medians of the forward and of forward + backward
(``dQ, dK, dV``); TFLOP/s use the FA2 paper's count (4 B H N^2 d; x3.5 for
forward + backward) whatever the mask keeps. A backend that refuses a case or runs
out of memory is recorded as ``null``.

Writes ``masks_<gpu>.json`` under ``--out`` (not ``bench_*.json``, which names the attention benchmark the IO-complexity scene reads) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
from pathlib import Path

import torch
import triton
from flashanim.kernels.attention import flash_attention
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PEERS = {
    "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa-math": SDPBackend.MATH,
    "sdpa-flash": SDPBackend.FLASH_ATTENTION,
}
MASKS = ("none", "kpm", "bool")


def make_mask(kind: str, b: int, n: int, device) -> torch.Tensor | None:
    gen = torch.Generator(device="cpu").manual_seed(0)
    if kind == "none":
        return None
    if kind == "kpm":
        pad = torch.randint(0, n // 4 + 1, (b,), generator=gen)
        keep = torch.arange(n)[None, :] < (n - pad)[:, None]
        return keep.view(b, 1, 1, n).to(device)
    keep = torch.rand(n, n, generator=gen) < 0.5
    keep.fill_diagonal_(True)
    return keep.to(device)


def bench_ms(fn) -> float | None:
    try:
        fn()
        torch.cuda.synchronize()
        return float(triton.testing.do_bench(fn, warmup=10, rep=50,
                                             return_mode="median"))  # fmt: skip
    except (RuntimeError, torch.OutOfMemoryError) as err:  # refused or out of memory
        torch.cuda.empty_cache()
        print(f"    ({type(err).__name__}: {str(err).splitlines()[0][:90]})")
        return None


def run_point(n: int, dtype: torch.dtype, tokens: int, heads: int, d: int) -> list:
    b = max(tokens // n, 1)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(n)
    q, k, v = (torch.randn(b, heads, n, d, device=dev, dtype=dtype, generator=gen)
               .requires_grad_() for _ in range(3))  # fmt: skip
    do = torch.randn_like(q)
    fl = 4.0 * b * heads * n * n * d
    rows = []
    for kind in MASKS:
        mask = make_mask(kind, b, n, dev)
        impls = {"ours": lambda m=mask: flash_attention(q, k, v, attn_mask=m)}
        for name, backend in PEERS.items():
            if name == "sdpa-flash" and mask is not None:
                continue

            def peer(m=mask, backend=backend):
                with sdpa_kernel(backend):
                    return sdpa(q, k, v, attn_mask=m)

            impls[name] = peer
        for name, fwd in impls.items():

            def fwd_bwd(fwd=fwd):
                o = fwd()
                torch.autograd.grad(o, (q, k, v), do)

            with torch.no_grad():
                t_f = bench_ms(fwd)
            t_fb = bench_ms(fwd_bwd)
            rows.append({
                "n": n, "batch": b, "heads": heads, "head_dim": d,
                "dtype": str(dtype).replace("torch.", ""), "mask": kind,
                "impl": name, "fwd_ms": t_f, "fwd_bwd_ms": t_fb,
                "fwd_tflops": fl / t_f / 1e9 if t_f else None,
                "fwd_bwd_tflops": 3.5 * fl / t_fb / 1e9 if t_fb else None,
            })  # fmt: skip
            f = f"{t_f:8.3f}" if t_f else "       -"
            fb = f"{t_fb:8.3f}" if t_fb else "       -"
            print(f"N={n:5d} {kind:>5} {name:>15}  fwd {f} ms  fwd+bwd {fb} ms")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("media/bench"))
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--quick", action="store_true", help="N in {512, 2048} only")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench_masks.py needs a CUDA GPU")
    ns = (512, 2048) if args.quick else (512, 1024, 2048, 4096)
    rows = []
    for n in ns:
        rows += run_point(n, DTYPES[args.dtype], tokens=16384, heads=16, d=64)
    # the cost of each mask relative to no mask, per implementation
    base = {(r["n"], r["impl"]): r for r in rows if r["mask"] == "none"}
    print(f"\nslowdown vs no mask (fwd+bwd), {args.dtype}, B*N = 16k, H = 16, d = 64")
    print(f"{'N':>6} {'impl':>15} {'kpm':>7} {'bool':>7}")
    for n in ns:
        for impl in ("ours", "sdpa-efficient", "sdpa-math"):
            b = base.get((n, impl))
            cells = []
            for kind in ("kpm", "bool"):
                r = next((r for r in rows if (r["n"], r["impl"], r["mask"])
                          == (n, impl, kind)), None)  # fmt: skip
                ok = b and r and b["fwd_bwd_ms"] and r["fwd_bwd_ms"]
                cells.append(f"{r['fwd_bwd_ms'] / b['fwd_bwd_ms']:6.2f}x" if ok
                             else "      -")  # fmt: skip
            print(f"{n:6d} {impl:>15} {cells[0]:>7} {cells[1]:>7}")
    gpu = torch.cuda.get_device_name()
    meta = {
        "gpu": gpu, "torch": torch.__version__, "triton": triton.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dtype": args.dtype,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"masks_{gpu.replace(' ', '_').replace('/', '_')}.json"
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
