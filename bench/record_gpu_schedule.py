"""Record the FA2 forward's trace on a GPU for the ``gpu_schedule`` scene.

    python bench/record_gpu_schedule.py [--out media/traces]

Runs the real kernel (``TRACE=True``, events only, ``GPU_CLOCK`` on: every event
carries ``%globaltimer`` and the program's ``%smid``) at a realistic size, causal and
not, after a warm-up launch so that compilation stays out of the timeline, and saves
each trace as gzip'ed JSON with its metadata (GPU, Triton and PyTorch versions,
date). ``make gpu-trace`` runs this; it needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Choose the GPU before the kernels (and Triton) are imported.
os.environ.setdefault("FLASHANIM_DEVICE", "cuda")

from flashanim.trace import record, save_trace  # noqa: E402

#: The recorded configuration: 16 heads of 4k tokens, d = 64, fp16, the tuned
#: forward blocks (128 x 64): 32 Q blocks per head, 512 programs on 132 SMs.
CONFIG = dict(kernel="fa2-fwd", seq_len=4096, head_dim=64, block_m=128, block_n=64,
              batch=2, heads=8, dtype="float16", values=False, seed=0)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="media/traces")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for causal in (False, True):
        record(**CONFIG, causal=causal)  # warm-up: compile outside the timeline
        trace = record(**CONFIG, causal=causal)
        name = "causal" if causal else "noncausal"
        path = out / f"gpu_schedule_{name}.json.gz"
        save_trace(trace, path)
        t0 = min(p.start_ns for p in trace.programs)
        t1 = max(p.end_ns for p in trace.programs)
        sms = len({p.sm for p in trace.programs})
        print(f"{path}: {len(trace.programs)} programs on {sms} SMs, "
              f"{len(trace.events)} events, {(t1 - t0) / 1e3:.1f} us, "
              f"{path.stat().st_size / 1e6:.2f} MB ({trace.meta.gpu_name}, "
              f"Triton {trace.meta.triton_version})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
