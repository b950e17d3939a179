"""Where standard attention spends its time: each step on the GPU, beside the fused kernel.

The FlashAttention paper's Fig. 1 (right) splits the runtime of GPT-2's attention in
PyTorch into its matmuls and its memory-bound steps (mask, softmax, dropout) and sets
the one fused kernel beside it. This script measures the same split on the GPU it runs
on, for standard attention written the way PyTorch models write it::

    S = Q @ K^T              # matmul (compute-bound)
    S = S * scale            # scale  (elementwise: read S, write S)
    S = S.masked_fill(...)   # mask   (elementwise: read S, write S)
    P = softmax(S)           # softmax (read S, write P)
    P = dropout(P)           # dropout (optional; read P, write P and its mask)
    O = P @ V                # matmul (compute-bound)

each step timed with CUDA events (median over many repetitions of the whole sequence,
events between the steps), and our fused FlashAttention-2 kernel (``flash_attention``,
no dropout) on the same inputs. Bytes moved per step are counted from the tensor
shapes (what each step must read and write in HBM at least).

Runs on a CUDA machine with only PyTorch and Triton (no Manim)::

    python bench/breakdown_standard.py --out media/bench

Writes ``breakdown_<gpu>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import platform
import statistics
import sys
from pathlib import Path

import torch
import triton
from flashanim.kernels.attention import flash_attention

#: (B, H, N, d): GPT-2 medium's attention as in the paper's Fig. 1 (seq 1024, 16 heads
#: of 64, batch 8), then a longer sequence.
SETTINGS = ((8, 16, 1024, 64), (2, 16, 4096, 64))
STEPS = ("matmul_qk", "scale", "mask", "softmax", "dropout", "matmul_pv")


def step_bytes(b: int, h: int, n: int, d: int, elt: int) -> dict[str, int]:
    """Least HBM bytes each step reads plus writes (from the tensor shapes)."""
    qkv = b * h * n * d * elt
    scores = b * h * n * n * elt
    return {
        "matmul_qk": 2 * qkv + scores,
        "scale": 2 * scores,
        "mask": 2 * scores,  # the boolean mask is broadcast (N x N bytes, negligible)
        "softmax": 2 * scores,
        "dropout": 2 * scores + b * h * n * n,  # + its boolean keep-mask
        "matmul_pv": scores + 2 * qkv,
        "fused": 4 * qkv,  # Q, K, V read once, O written once (the least possible)
    }


def measure(b: int, h: int, n: int, d: int, dtype, reps: int, p_drop: float) -> dict:
    torch.manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=dtype) for _ in range(3))
    scale = 1.0 / math.sqrt(d)
    causal = torch.ones(n, n, device="cuda", dtype=torch.bool).triu(1)

    def standard(events=None):
        def mark(i):
            if events is not None:
                events[i].record()

        mark(0)
        s = torch.matmul(q, k.transpose(-1, -2))
        mark(1)
        s = s * scale
        mark(2)
        s = s.masked_fill(causal, float("-inf"))
        mark(3)
        p = torch.softmax(s, dim=-1)
        mark(4)
        p = torch.nn.functional.dropout(p, p=p_drop, training=True)
        mark(5)
        o = torch.matmul(p, v)
        mark(6)
        return o

    def fused():
        return flash_attention(q, k, v, causal=True)

    # correctness: the fused kernel equals the standard steps without dropout
    with torch.no_grad():
        s = (q.float() @ k.float().transpose(-1, -2)) * scale
        ref = torch.softmax(s.masked_fill(causal, float("-inf")), -1) @ v.float()
        err = (fused().float() - ref).abs().max().item()
        del s, ref
    for _ in range(10):
        standard()
        fused()
    torch.cuda.synchronize()
    per_step: dict[str, list[float]] = {k_: [] for k_ in STEPS}
    totals: list[float] = []
    for _ in range(reps):
        ev = [torch.cuda.Event(enable_timing=True) for _ in range(len(STEPS) + 1)]
        standard(ev)
        torch.cuda.synchronize()
        for i, name in enumerate(STEPS):
            per_step[name].append(ev[i].elapsed_time(ev[i + 1]))
        totals.append(ev[0].elapsed_time(ev[-1]))
    fused_ms = float(
        triton.testing.do_bench(fused, warmup=25, rep=200, return_mode="median")
    )
    elt = torch.finfo(dtype).bits // 8
    return {
        "B": b,
        "H": h,
        "N": n,
        "d": d,
        "causal": True,
        "dropout_p": p_drop,
        "ms": {name: statistics.median(vals) for name, vals in per_step.items()},
        "standard_total_ms": statistics.median(totals),
        "fused_ms": fused_ms,
        "fused_max_abs_err_vs_fp32": err,
        "bytes": step_bytes(b, h, n, d, elt),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="media/bench", help="output folder")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    parser.add_argument("--dropout", type=float, default=0.1)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("breakdown_standard: error: needs a CUDA GPU", file=sys.stderr)
        return 2
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    props = torch.cuda.get_device_properties(0)
    rows = [measure(*s, dtype, args.reps, args.dropout) for s in SETTINGS]
    result = {
        "gpu": props.name,
        "sms": props.multi_processor_count,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": "CUDA events between the steps of standard attention (median of "
        f"{args.reps} runs); fused: triton.testing.do_bench median",
        "steps": list(STEPS),
        "settings": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"breakdown_{props.name.replace(' ', '_')}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"B={r['B']} H={r['H']} N={r['N']} d={r['d']} ({args.dtype}, causal)")
        for name in STEPS:
            gb = r["bytes"][name] / 1e9
            print(f"  {name:<10} {r['ms'][name]:8.3f} ms  {gb:7.3f} GB")
        print(f"  {'standard':<10} {r['standard_total_ms']:8.3f} ms")
        print(f"  {'fused':<10} {r['fused_ms']:8.3f} ms  (max err vs fp32 "
              f"{r['fused_max_abs_err_vs_fp32']:.2e})")  # fmt: skip
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
