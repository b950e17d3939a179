"""Helpers for the kernel tests: inputs, flash-attn's tolerance rule, raw traces.

The tolerance rule (see :mod:`flashanim.kernels.reference`): a kernel's error
against a float64 reference may be at most ``factor`` times the error of plain
PyTorch attention computed in the inputs' own precision, plus a tiny ``atol``
(2x for outputs, 3x for gradients).
"""

from __future__ import annotations

import flashanim.kernels  # noqa: F401  (chooses the device before triton is imported)
import torch
from flashanim.kernels._common import BLOCK_RANGE
from flashanim.kernels._device import default_device
from flashanim.kernels._trace import OPS, TENSORS, TraceBuffers
from flashanim.kernels.reference import attention_ref, within_rule

__all__ = [
    "DEVICE",
    "blk",
    "make_qkv",
    "reference_grads",
    "assert_rule",
    "program_records",
]

DEVICE = default_device()


def blk(b: int) -> int:
    """Block size ``b``, raised to the backend's smallest (16 on the GPU)."""
    return max(b, BLOCK_RANGE[0])


def make_qkv(
    batch: int,
    heads: int,
    n_q: int,
    n_k: int,
    d: int,
    dtype: torch.dtype,
    seed: int = 0,
    requires_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded standard-normal ``q, k, v`` on the kernel device."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for n in (n_q, n_k, n_k):
        t = torch.randn(batch, heads, n, d, generator=gen).to(DEVICE, dtype)
        out.append(t.requires_grad_(requires_grad))
    return out[0], out[1], out[2]


def reference_grads(q, k, v, do, causal, softmax_scale, upcast):
    """``(o, dq, dk, dv)`` of naive attention (float64 when ``upcast``)."""
    qq, kk, vv = (
        (x.detach().double() if upcast else x.detach()).requires_grad_()
        for x in (q, k, v)
    )
    o = attention_ref(qq, kk, vv, causal, softmax_scale, upcast=False)
    o.backward(do.double() if upcast else do)
    return o.detach(), qq.grad, kk.grad, vv.grad


def assert_rule(name: str, out, out_pt, ref, factor: float, atol: float) -> None:
    """Assert flash-attn's rule with a message that names the tensor and numbers."""
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    ok, err, bound = within_rule(out, out_pt, ref, factor, atol)
    assert ok, f"{name}: max error {err:.3e} > bound {bound:.3e} ({factor}x PyTorch)"


def case_id(case) -> str:
    """A test id for a ``(B, H, N_q, N_k, d, BLOCK_M, BLOCK_N, causal, dtype)``
    case."""
    b, h, nq, nk, d, bm, bn, causal, dt = case
    c = "causal" if causal else "full"
    return f"{b}x{h}-{nq}x{nk}-d{d}-{bm}x{bn}-{c}-{str(dt)[6:]}"


def program_records(buf: TraceBuffers, program: int) -> list[dict]:
    """The events one program wrote, as dicts (``value``: snapshot or ``None``)."""
    n = int(buf.header[program, 0])
    assert 0 <= n <= buf.max_events, f"program {program}: {n} events overflow"
    recs = []
    for e in buf.events[program, :n].cpu().tolist():
        op, tensor, row, col, nbytes, voff, vrows, vcols = e[:8]
        value = None
        if voff >= 0:
            value = buf.values[program, voff : voff + vrows * vcols].cpu()
            value = value.double().reshape(vrows, vcols)
        recs.append(dict(op=OPS[op], tensor=TENSORS[tensor], row=row, col=col,
                         nbytes=nbytes, value=value, time=e[8]))  # fmt: skip
    return recs


class LaunchLog:
    """Stands in for a Triton kernel (``kernel[grid](*args, **kw)``): appends
    ``(name, PDL, launch_pdl)`` of each launch to ``seen`` and launches nothing."""

    def __init__(self, name, seen):
        self.name, self.seen = name, seen

    def __getitem__(self, grid):
        return lambda *args, **kw: self.seen.append(
            (self.name, kw.get("PDL"), kw.get("launch_pdl", False))
        )
