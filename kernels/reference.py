"""Naive attention in plain PyTorch: the reference every kernel is checked against.

flash-attn's rule: an implementation in precision ``p`` passes when its error
against a float64 reference is at most a small multiple of the error of plain
PyTorch attention computed in the same precision ``p``:
``max|out - ref64| <= factor * max|out_pt - ref64| + atol``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["attention_ref", "error_bound", "within_rule"]


def attention_ref(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    upcast: bool = True,
) -> torch.Tensor:
    """``softmax(Q K^T * scale [+ causal mask]) V`` computed naively.

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)``.
    causal
        Mask keys after the query's position. With ``N_q != N_k`` the mask is
        aligned to the top-left corner (query ``i`` sees keys ``0..i``), as in the
        kernels; rows that see no key at all (none with this alignment) would be 0.
    upcast
        Compute in float64 (the reference); else in the inputs' own dtype (the
        "plain PyTorch in the same precision" baseline of the tolerance rule).
    """
    dtype = q.dtype
    if upcast:
        q, k, v = q.double(), k.double(), v.double()
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        n_q, n_k = q.shape[-2], k.shape[-2]
        keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    p = torch.softmax(s.float() if s.dtype in (torch.float16, torch.bfloat16) else s,
                      dim=-1).to(v.dtype)  # fmt: skip
    o = torch.matmul(p, v)
    return o if upcast else o.to(dtype)


def error_bound(
    out_pt: torch.Tensor, ref: torch.Tensor, factor: float = 2.0, atol: float = 1e-5
) -> float:
    """flash-attn's bound: ``factor * max|out_pt - ref| + atol``."""
    return factor * (out_pt.double() - ref.double()).abs().max().item() + atol


def within_rule(
    out: torch.Tensor,
    out_pt: torch.Tensor,
    ref: torch.Tensor,
    factor: float = 2.0,
    atol: float = 1e-5,
) -> tuple[bool, float, float]:
    """Return ``(ok, err, bound)`` for flash-attn's rule."""
    if out.numel() == 0:
        return True, 0.0, 0.0
    err = (out.double() - ref.double()).abs().max().item()
    bound = error_bound(out_pt, ref, factor, atol)
    return err <= bound and math.isfinite(err), err, bound
