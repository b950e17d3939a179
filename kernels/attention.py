"""FlashAttention as a differentiable PyTorch function.

:class:`FlashAttentionFunction` runs the FlashAttention-2 forward kernel and, on
``backward``, the FlashAttention-2 backward kernels of :mod:`flashanim.kernels.fa2`
(``P`` recomputed from the saved ``LSE``, never stored). :func:`flash_attention` is
the functional form, a drop-in for
``torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask,
is_causal=causal, scale=softmax_scale)`` on ``(B, H, N, d)`` tensors (an
``attn_mask`` broadcastable to ``(B, H, N_q, N_k)``: bool ``True`` = attend, float
= added to the scores; rows with every key masked give 0, not NaN).

Examples
--------
>>> import torch
>>> from flashanim.kernels.attention import flash_attention
>>> q, k, v = (torch.randn(1, 2, 16, 8, requires_grad=True) for _ in range(3))
>>> o = flash_attention(q, k, v, causal=True)
>>> o.sum().backward()
"""

from __future__ import annotations

from typing import Any

import torch

from ._common import DTYPES, MAX_HEAD_DIM
from .decode import attention_decode, use_split
from .fa2 import attention_backward, attention_forward

__all__ = ["FlashAttentionFunction", "flash_attention"]


class FlashAttentionFunction(torch.autograd.Function):
    """``O = softmax(scale * Q K^T [+ causal mask] [+ attn_mask]) V`` with
    FlashAttention-2 kernels for the forward and the backward.

    ``apply(q, k, v, causal, softmax_scale, attn_mask=None)``; gradients flow to
    ``q, k, v`` (never to ``attn_mask``: a mask that requires grad is refused).
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        causal: bool = False,
        softmax_scale: float | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        o, lse = attention_forward(q, k, v, causal, softmax_scale, attn_mask=attn_mask)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.attn_mask = attn_mask
        ctx.causal = causal
        ctx.softmax_scale = softmax_scale
        return o

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(
            q, k, v, o, lse, do.to(q.dtype), ctx.causal, ctx.softmax_scale,
            attn_mask=ctx.attn_mask,
        )  # fmt: skip
        return dq, dk, dv, None, None, None


#: :func:`_split_pays`'s answers by shapes, dtypes and device (bounded).
_SPLIT_PAYS: dict[tuple, bool] = {}


def _split_pays(q, k, v) -> bool:
    """Whether :mod:`.decode`'s split path serves this call (well-formed 4-D inputs
    of one shape family; anything else goes to :func:`attention_forward`, whose
    checks give the error). Answers for plain tensors are remembered by shapes,
    dtypes and device: the same shapes come back call after call."""
    if type(q) is not torch.Tensor or type(k) is not torch.Tensor:
        return _split_pays_uncached(q, k, v)
    if type(v) is not torch.Tensor:
        return _split_pays_uncached(q, k, v)
    key = (q.shape, k.shape, v.shape, q.dtype, k.dtype, v.dtype, q.device)
    pays = _SPLIT_PAYS.get(key)
    if pays is None:
        pays = _split_pays_uncached(q, k, v)
        if len(_SPLIT_PAYS) >= 4096:
            _SPLIT_PAYS.clear()
        _SPLIT_PAYS[key] = pays
    return pays


def _split_pays_uncached(q, k, v) -> bool:
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v)):
        return False
    if q.shape[:2] != k.shape[:2] or k.shape != v.shape or q.shape[3] != k.shape[3]:
        return False
    if min(q.shape) < 1 or k.shape[2] < 1 or q.dtype != k.dtype or q.dtype != v.dtype:
        return False
    if q.dtype not in DTYPES or q.shape[3] > MAX_HEAD_DIM:
        return False
    b, h, n_q, d = q.shape
    return use_split(b, h, h, n_q, k.shape[2], d, q.dtype, q.device)


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    softmax_scale: float | None = None,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """FlashAttention-2, differentiable.

    Parameters
    ----------
    q, k, v
        ``(B, H, N_q, d)``, ``(B, H, N_k, d)``, ``(B, H, N_k, d)``, float32 or
        float16 (bfloat16 on the GPU only), on the kernels' device.
    causal
        Mask keys after the query (top-left aligned, as PyTorch's ``is_causal``).
    softmax_scale
        Scale of ``Q K^T``; ``1/sqrt(d)`` when ``None``.
    attn_mask
        Optional bool (``True`` = attend) or floating (added to the scores) tensor
        broadcastable to ``(B, H, N_q, N_k)``, as in
        ``scaled_dot_product_attention``; broadcast dimensions cost no memory. Rows
        whose keys are all masked give ``O = 0`` and zero gradients (never NaN).
        Not differentiable (a mask that requires grad is refused).

    Returns
    -------
    torch.Tensor
        ``O``, ``(B, H, N_q, d)`` in the inputs' dtype.

    Without ``causal`` and ``attn_mask``, when no gradient is wanted and the
    problem is too small to fill the GPU while its keys are many (decoding: one or
    a few queries against a long cache), the split-K/V kernels of
    :mod:`flashanim.kernels.decode` run instead (same result, within rounding).
    """
    if not torch.is_grad_enabled() or not (
        q.requires_grad or k.requires_grad or v.requires_grad
    ):
        # no gradient wanted: the forward kernel alone, without autograd's bookkeeping;
        # few queries against many keys: the split-K/V path (decoding)
        if attn_mask is None and not causal and _split_pays(q, k, v):
            return attention_decode(q, k, v, False, softmax_scale)[0]
        return attention_forward(q, k, v, causal, softmax_scale, attn_mask=attn_mask)[0]
    return FlashAttentionFunction.apply(q, k, v, causal, softmax_scale, attn_mask)
