"""Record every traced kernel's raw trace buffers on awkward shapes, or compare two
such recordings array by array.

    python bench/trace_refs.py record DIR     # from one checkout (CPU interpreter)
    python bench/trace_refs.py compare A B    # exit 1 on any difference

A refactoring of the kernels' instrumentation must leave every recording equal: the
event records, the program headers, the value snapshots and the outputs, bit for bit
(NaN equal to NaN). The shapes: FA2 forward and backward, FA1, standard attention,
causal and not, with and without values, N not a multiple of the block, BLOCK_M !=
BLOCK_N, d not a power of two, float16, several batch-heads, and split-K/V decoding
(GQA, ragged cache lengths, three splits). ``FLASHANIM_TRACE_STAGE=0`` records the
one-store-per-event path. The decoding scratch ``O_s``/``LSE_s`` is left out of the
comparison (its padding rows are never written: uninitialised memory).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch


def _inputs(b, h, nq, nk, d, dtype=torch.float32, hkv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, nq, d, generator=g).to(dtype)
    k = torch.randn(b, hkv or h, nk, d, generator=g).to(dtype)
    v = torch.randn(b, hkv or h, nk, d, generator=g).to(dtype)
    do = torch.randn(b, h, nq, d, generator=g).to(dtype)
    return q, k, v, do


def record(out: str) -> None:
    import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
    from flashanim.kernels import decode, fa1, fa2, standard

    os.makedirs(out, exist_ok=True)

    def save(name, raw):
        arrs = {}
        for li, (lname, buf) in enumerate(zip(raw.names, raw.launches, strict=True)):
            arrs[f"{li}_{lname}_events"] = buf.events.cpu().numpy()
            arrs[f"{li}_{lname}_header"] = buf.header.cpu().numpy()
            arrs[f"{li}_{lname}_values"] = buf.values.cpu().numpy()
        for k, t in raw.outputs.items():
            arrs[f"out_{k}"] = t.float().cpu().numpy()
        np.savez(os.path.join(out, name + ".npz"), **arrs)
        n = sum(int(b.header[:, 0].sum()) for b in raw.launches)
        print(name, raw.kernel, raw.names, "events", n, flush=True)

    kernels = (("fa2fwd", fa2.record_forward), ("fa2bwd", fa2.record_backward),
               ("fa1fwd", fa1.record_forward), ("std", standard.record))  # fmt: skip
    shapes = (("13x6_m4n8", (1, 2, 13, 13, 6), 4, 8),
              ("q11k9_m8n4", (1, 1, 11, 9, 4), 8, 4))  # fmt: skip
    for causal in (False, True):
        for values in (False, True):
            for kname, fn in kernels:
                for sname, shp, bm, bn in shapes:
                    if kname == "fa2fwd" and sname == "q11k9_m8n4":
                        shp = (2, 1, 10, 19, 4)  # batch 2, N_k > N_q
                    q, k, v, do = _inputs(*shp)
                    raw = fn(q, k, v, causal=causal, values=values, do=do,
                             block_m=bm, block_n=bn)  # fmt: skip
                    save(f"{kname}_{sname}_c{int(causal)}v{int(values)}", raw)
    for causal in (False, True):
        q, k, v, do = _inputs(1, 1, 9, 9, 8, torch.float16)
        c = int(causal)
        save(f"fa2fwd_f16_c{c}", fa2.record_forward(
            q, k, v, causal=causal, block_m=4, block_n=4, values=True))  # fmt: skip
        save(f"fa2bwd_f16_c{c}", fa2.record_backward(
            q, k, v, causal=causal, block_m=4, block_n=4, do=do))  # fmt: skip
    for causal in (False, True):
        for values in (False, True):
            tag = f"c{int(causal)}v{int(values)}"
            q, k, v, _ = _inputs(2, 4, 2, 37, 6, hkv=2)
            lens = torch.tensor([37, 21], dtype=torch.int32)
            save(f"dec_{tag}", decode.record_forward(
                q, k, v, causal=causal, values=values, block_n=4, num_splits=3,
                cache_seqlens=lens))  # fmt: skip
            q, k, v, _ = _inputs(1, 2, 1, 29, 4, hkv=1)
            save(f"dec1_{tag}", decode.record_forward(
                q, k, v, causal=causal, values=values, block_n=8))  # fmt: skip


def compare(a: str, b: str) -> int:
    fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
    bad = 0
    if fa != fb:
        print("file lists differ:", sorted(set(fa) ^ set(fb)))
        bad += 1
    for f in sorted(set(fa) & set(fb)):
        x, y = np.load(os.path.join(a, f)), np.load(os.path.join(b, f))
        if sorted(x.files) != sorted(y.files):
            print(f, "arrays differ:", sorted(set(x.files) ^ set(y.files)))
            bad += 1
            continue
        for k in x.files:
            if k in ("out_O_s", "out_LSE_s"):  # scratch: padding rows never written
                continue
            if x[k].shape != y[k].shape or not np.array_equal(
                x[k], y[k], equal_nan=True
            ):
                print(f, k, "DIFFERS")
                bad += 1
    print(f"{len(fa)} recordings compared, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "record":
        record(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__.split("\n\n")[1])
