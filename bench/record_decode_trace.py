"""Record the decoding (split-K/V) kernel's trace on a GPU, without and with splits.

    python bench/record_decode_trace.py [--out media/traces]

One new query (N_q = 1) of 32 heads sharing 4 K/V heads (GQA 8:1, d = 128, bf16)
against a cache of 32k keys, batch 1: the shape where one program per K/V head
leaves almost every SM idle. Two recordings of the real kernel (``TRACE=True``,
events only; each program's header carries its SM and its start and end
``%globaltimer``), each after a warm-up launch so compilation stays out:

* ``decode_nosplit.json.gz``: ``num_splits=1``: 4 programs walk the whole cache;
* ``decode_split.json.gz``: the split count :func:`choose_splits` picks: one program
  per slice, then the reduce launch.

Kernel name ``"fa2-decode"``, launches ``"split"`` and ``"reduce"``. Q rows are packed
(``kernels/decode.py``): ``heads`` in the meta is the query heads (32), ``heads_kv``
the K/V heads (4), ``num_splits`` the slices; timings are written beside the traces
in ``decode_traces.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("FLASHANIM_DEVICE", "cuda")

import torch  # noqa: E402
import triton  # noqa: E402
from flashanim.kernels import decode  # noqa: E402

from flashanim.trace import save_trace  # noqa: E402
from flashanim.trace.decode import decode as decode_raw  # noqa: E402
from flashanim.trace.model import TraceMeta  # noqa: E402

B, H, H_KV, N_Q, N_K, D = 1, 32, 4, 1, 32768, 128


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="media/traces")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(B, H, N_Q, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(B, H_KV, N_K, D, device="cuda", dtype=torch.bfloat16,
                    generator=gen)  # fmt: skip
    v = torch.randn(B, H_KV, N_K, D, device="cuda", dtype=torch.bfloat16,
                    generator=gen)  # fmt: skip
    summary = {"batch": B, "heads": H, "heads_kv": H_KV, "n_q": N_Q, "n_k": N_K,
               "head_dim": D, "dtype": "bfloat16", "traces": {}}  # fmt: skip
    for name, splits in (("nosplit", 1), ("split", None)):
        o_ref, _ = decode.attention_decode(q, k, v, num_splits=splits)
        decode.record_forward(q, k, v, num_splits=splits)  # warm-up: compile
        torch.cuda.synchronize()
        raw = decode.record_forward(q, k, v, num_splits=splits)
        torch.cuda.synchronize()
        err = (raw.outputs["O"].float() - o_ref.float()).norm() / o_ref.float().norm()
        meta = TraceMeta(
            kernel=raw.kernel, batch=B, heads=H, seq_len_q=N_Q, seq_len_k=N_K,
            head_dim=D, block_m=raw.block_m, block_n=raw.block_n, causal=False,
            dtype="bfloat16", softmax_scale=1 / math.sqrt(D), device="cuda",
            values=False, triton_version=triton.__version__,
            torch_version=torch.__version__, gpu_name=torch.cuda.get_device_name(0),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seed=0,
            heads_kv=H_KV,
        )  # fmt: skip
        n_split = len(raw.launches[0].header)
        meta = replace(meta, num_splits=n_split // (B * H_KV * meta.t_r))
        trace = decode_raw(raw, meta)
        path = out / f"decode_{name}.json.gz"
        save_trace(trace, path)
        progs = trace.programs
        launches = {}
        for p in progs:
            lo, hi, sms = launches.get(p.launch, (None, None, set()))
            lo = p.start_ns if lo is None else min(lo, p.start_ns)
            hi = p.end_ns if hi is None else max(hi, p.end_ns)
            sms.add(p.sm)
            launches[p.launch] = (lo, hi, sms)
        t0 = min(p.start_ns for p in progs)
        t1 = max(p.end_ns for p in progs)
        info = {
            "file": path.name, "splits": meta.num_splits,
            "programs": len(progs), "events": len(trace.events),
            "span_us": (t1 - t0) / 1e3, "bytes": path.stat().st_size,
            "rel_err_vs_untraced": float(err),  # same splits, untraced
            "launches": {n: {"span_us": (hi - lo) / 1e3, "sms": len(s)}
                         for n, (lo, hi, s) in launches.items()},
        }  # fmt: skip
        summary["traces"][name] = info
        print(json.dumps(info), flush=True)
    summary["gpu"] = torch.cuda.get_device_name(0)
    summary["triton"], summary["torch"] = triton.__version__, torch.__version__
    (out / "decode_traces.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
