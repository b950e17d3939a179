"""Do tensor descriptors (TMA) for the forward's K/V tiles pay on Hopper? The
untraced forward with ``FWD_TMA`` "0" (never) and "1" (wherever the layout allows),
per launch configuration, beside cuDNN, 16k tokens, H = 2048/d.

    python bench/try_tma.py
"""

from __future__ import annotations

import functools
import sys

import flashanim.kernels.fa2 as fa2
import torch
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa


def ms(fn) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def main() -> int:
    for d in (128, 64):
        for causal in (False, True):
            for n in (1024, 4096, 16384):
                b, h = 16384 // n, 2048 // d
                q, k, v = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16)
                           for _ in range(3))  # fmt: skip
                fl = 4 * b * h * n * n * d / (2 if causal else 1)
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    cu = ms(lambda: sdpa(q, k, v, is_causal=causal))  # noqa: B023
                line = f"d={d} causal={causal!s:5} N={n:5}: cudnn {fl / cu / 1e9:5.0f}"
                ref = None
                for ws in (False, True):
                    fa2.FWD_TMA = "1" if ws else "0"
                    for w, s in ((None, None), (8, 3), (4, 3)):
                        try:
                            o, _ = fa2.attention_forward(q, k, v, causal, None, None,
                                                         None, num_warps=w,
                                                         num_stages=s)  # fmt: skip
                            if ref is None:
                                ref = o
                            err = (o.float() - ref.float()).abs().max().item()
                            t = ms(functools.partial(
                                fa2.attention_forward, q, k, v, causal, None, None,
                                None, num_warps=w, num_stages=s))  # fmt: skip
                            line += (
                                f" | tma={int(ws)} w={w} s={s} {fl / t / 1e9:5.0f}"
                                f" ({t / cu:.2f}x cudnn time, err {err:.0e})"
                            )
                        except Exception as exc:  # noqa: BLE001
                            line += f" | tma={int(ws)} w={w} s={s} FAILED {type(exc).__name__}: {str(exc)[:80]}"
                print(line, flush=True)
    fa2.FWD_TMA = "auto"
    return 0


if __name__ == "__main__":
    sys.exit(main())
