"""Print the README's benchmark table (Markdown) from a benchmark JSON.

python bench/report.py media/bench/bench_NVIDIA_H200.json
"""

from __future__ import annotations

import json
import math
import sys


def main(path: str) -> int:
    r = json.load(open(path))
    dev = r["device"]
    by: dict[tuple, dict[str, float]] = {}
    for row in r["grid"]:
        if row.get("tflops"):
            key = (row["mode"], row["dtype"], row["d"], row["causal"], row["n"])
            by.setdefault(key, {})[row["impl"]] = row["tflops"]
    print(f"{dev['gpu']}, driver {dev['driver']}, PyTorch {dev['torch']}, Triton "
          f"{dev['triton']}, {dev['date'][:10]}; TFLOP/s (FA2 paper's count), "
          f"ratios in the same run. bf16 matmul ceiling "
          f"{r['ceilings']['matmul_bf16_tflops']:.0f} TFLOP/s.\n")  # fmt: skip
    print("| pass | dtype | d | causal | N | ours | ×FLASH | ×cuDNN | MATH |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key in sorted(by):
        mode, dt, d, causal, n = key
        if n not in (1024, 4096, 16384) or dt != "bf16":
            continue
        v = by[key]
        math_s = f"{v['math']:.0f}" if "math" in v else "–"
        print(f"| {mode} | {dt} | {d} | {'yes' if causal else 'no'} | {n} | "
              f"{v['ours']:.0f} | {v['ours'] / v['flash']:.2f} | "
              f"{v['ours'] / v['cudnn']:.2f} | {math_s} |")  # fmt: skip
    for mode in ("fwd", "bwd"):
        for peer in ("flash", "cudnn"):
            xs = [v["ours"] / v[peer] for k, v in by.items() if k[0] == mode
                  and peer in v and "ours" in v]  # fmt: skip
            gm = math.exp(sum(map(math.log, xs)) / len(xs))
            lo = min(v["ours"] / v[peer] for k, v in by.items() if k[0] == mode
                     and k[4] >= 1024 and peer in v)  # fmt: skip
            print(f"\n{mode} vs {peer.upper()}: geomean {gm:.3f}× over the whole "
                  f"grid (bf16 and fp16, N = 512 … 16k), lowest at N ≥ 1k "
                  f"{lo:.2f}×", end="")  # fmt: skip
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  "media/bench/bench_NVIDIA_H200.json"))  # fmt: skip
