"""Registers, spills and shared memory of FA2 launch configurations, without a GPU.

    python bench/kernel_resources.py --pass dkdv --d 128 --configs 64x64x4x2,64x128x8x3
    python bench/kernel_resources.py --pass fused --d 128 --causal --configs 64x64x4x3

Each configuration ``BLOCK_MxBLOCK_NxWARPSxSTAGES`` of one kernel (``fwd``, ``dkdv``,
``dq`` of ``kernels/fa2.py``, or ``fused``: the dK/dV pass with dQ added by atomics,
``bench/fused_bwd.py``) is captured as its launch would be made (16-bit inputs,
``--n`` rows, untraced), compiled for a Hopper GPU (``cuda:90``, as
``bench/compiled_code.py`` does), assembled with the ``ptxas`` that Triton uses
for it, and reported: registers per thread, spill stores/loads (bytes), the kernel's shared
memory, and the local-memory instructions (``STL``/``LDL``) inside its loops (the
spills that cost on every iteration). A screen for a GPU sweep: configurations
that spill in their loops are unlikely to win. The lent GPU has Triton 3.6, which
assembles sm_90 code with CUDA 12.8's ptxas; this machine's Triton 3.9 uses CUDA
13's, and the two allocate registers differently. To see what the GPU runs, put a
Triton 3.6 first on the path (``pip install --target /tmp/t36 triton==3.6.0``, then
``PYTHONPATH=/tmp/t36``); only a GPU run decides.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "bench")
import compiled_code as cc  # noqa: E402  (pretends to be a CUDA process)
import torch  # noqa: E402
import triton  # noqa: E402
from compiled_code import fa2  # noqa: E402

KERNELS = {"fwd": "_attn_fwd", "dkdv": "_attn_bwd_dkdv", "dq": "_attn_bwd_dq",
           "fused": "_attn_bwd_fused"}  # fmt: skip


def _tools() -> tuple[Path, Path]:
    """(ptxas, nvdisasm): the ptxas this Triton assembles sm_90 code with."""
    from triton.backends.nvidia.compiler import get_ptxas

    ptxas = Path(get_ptxas(90).path)
    return ptxas, ptxas.parent / "nvdisasm"


def capture(kind: str, d: int, n: int, dtype, causal: bool, cfg) -> tuple:
    """The launch ``kind`` with configuration ``cfg``: ``(fn, args, opts)``."""
    bm, bn, warps, stages = cfg
    g = torch.Generator().manual_seed(0)
    q, k, v, do = (torch.randn(1, 2, n, d, generator=g).to(dtype) for _ in range(4))
    o = torch.empty_like(q)
    lse = torch.zeros(1, 2, n)
    cc.CAPTURED.clear()
    if kind == "fwd":
        fa2._forward(q, k, v, causal, None, bm, bn, False, False, warps, stages)
    elif kind == "fused":
        import fused_bwd

        fused_bwd.fused_backward(q, k, v, o, lse, do, causal, None, bm, bn, warps,
                                 stages, False, False)  # fmt: skip
    else:
        fa2._backward(q, k, v, o, lse, do, causal, None, bm, bn, False, False, warps,
                      stages)  # fmt: skip
    for fn, args, opts in cc.CAPTURED:
        if fn.__name__ == KERNELS[kind]:
            return fn, args, opts
    raise SystemExit(f"no {KERNELS[kind]} launch was made for {kind}")


def resources(ptx: str, ptxas: Path, nvdisasm: Path) -> dict:
    """ptxas' report and the loops' local-memory instructions of one kernel."""
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        rep = subprocess.run([ptxas, "-arch=sm_90a", "-v", src, "-o", cubin],
                             capture_output=True, text=True, check=True).stderr  # fmt: skip
        sass = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True,
                              check=True).stdout.splitlines()  # fmt: skip
    regs = int(re.search(r"Used (\d+) registers", rep).group(1))
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", rep)
    labels = {m.group(1): i for i, line in enumerate(sass)
              if (m := re.match(r"(\.L_x_\d+):", line))}  # fmt: skip
    loops = []  # (first, last) line of each backward branch's body
    for i, line in enumerate(sass):
        m = re.search(r"BRA `\((\.L_x_\d+)\)", line)
        if m and labels.get(m.group(1), i + 1) < i:
            loops.append((labels[m.group(1)], i))
    local = [i for i, line in enumerate(sass) if re.search(r"\b(STL|LDL)\b", line)]
    in_loops = sum(any(a <= i <= b for a, b in loops) for i in local)
    return {"regs": regs, "spill_st": int(spill.group(1)) if spill else 0,
            "spill_ld": int(spill.group(2)) if spill else 0, "loops": len(loops),
            "local_in_loops": in_loops, "local_all": len(local)}  # fmt: skip


def _spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""

    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for t in range(i, j + 1):
                r[order[t]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx) ** 0.5
    vy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (vx * vy) if vx and vy else float("nan")


def _measured(path: str, kind: str, d: int, causal: bool) -> dict:
    """``{cfg: {N: ms}}`` of one pass from ``bench/bwd_pass_sweep.py``'s JSON lines
    (the whole backward's GPU time with that pass's configuration)."""
    out: dict[tuple, dict[int, float]] = {}
    for line in open(path):
        row = json.loads(line)
        if (row["pass"], row["d"], row["causal"]) == (kind, d, causal) and row.get(
            "ms"
        ):
            out.setdefault(tuple(row["cfg"]), {})[row["n"]] = row["ms"]
    if not out:
        raise SystemExit(f"{path} has no {kind} rows for d={d}, causal={causal}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pass", dest="kind", choices=sorted(KERNELS), required=True)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--configs", help="comma-separated BLOCK_MxBLOCK_NxWARPSxSTAGES")
    ap.add_argument("--against", metavar="SWEEP.jsonl",
                    help="take the configurations of this pass from a "
                         "bench/bwd_pass_sweep.py result and set the measured times "
                         "beside them, with their rank correlation")  # fmt: skip
    args = ap.parse_args(argv)
    if bool(args.configs) == bool(args.against):
        raise SystemExit("give --configs BLOCK_MxBLOCK_NxWARPSxSTAGES,... or --against")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    ptxas, nvdisasm = _tools()
    measured = {}
    if args.against:
        measured = _measured(args.against, args.kind, args.d, args.causal)
        specs = ["x".join(map(str, c)) for c in measured]
    else:
        specs = args.configs.split(",")
    ns = sorted({n for ms in measured.values() for n in ms})
    print(f"{args.kind} d={args.d} N={args.n} {args.dtype} "
          f"{'causal' if args.causal else 'non-causal'} (Triton {triton.__version__}, "
          f"{ptxas.name}, sm_90a)")  # fmt: skip
    print("config            regs  spill st/ld (B)  smem (B)  local ops in loops / all"
          + "".join(f"  ms N={n}" for n in ns))  # fmt: skip
    pairs = {n: [] for n in ns}
    for spec in specs:
        cfg = tuple(int(x) for x in spec.lower().split("x"))
        if len(cfg) != 4:
            raise SystemExit(f"config {spec!r}: want BLOCK_MxBLOCK_NxWARPSxSTAGES")
        fn, fargs, opts = capture(args.kind, args.d, args.n, dtype, args.causal, cfg)
        try:
            kernel = cc.compile_kernel(fn, fargs, opts)
        except Exception as exc:  # noqa: BLE001  (out of shared memory, etc.)
            print(f"{spec:<16}  does not compile: {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:80]}")  # fmt: skip
            continue
        r = resources(kernel.asm["ptx"], ptxas, nvdisasm)
        shared = int(kernel.metadata.shared)
        times = measured.get(cfg, {})
        for n in ns:
            if n in times:
                pairs[n].append((r["local_in_loops"], times[n]))
        print(f"{spec:<16}  {r['regs']:>4}  {r['spill_st']:>6}/{r['spill_ld']:<6}  "
              f"{shared:>9}  {r['local_in_loops']:>5} / {r['local_all']:<5}"
              + "".join(f"  {times[n]:>8.3f}" if n in times else "  " + " " * 8
                        for n in ns))  # fmt: skip
    for n, pts in pairs.items():
        if len(pts) > 2:
            rho = _spearman([p[0] for p in pts], [p[1] for p in pts])
            print(f"rank correlation, loop local ops against time at N={n}: "
                  f"{rho:+.2f} ({len(pts)} configurations)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
