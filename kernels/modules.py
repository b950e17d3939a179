"""Drop-in attention modules on flashanim's FlashAttention-2 kernels.

Three levels, each with the argument names, layouts and return values of the API it
replaces, so code written for that API runs unchanged:

* :func:`flash_attn_func`, :func:`flash_attn_qkvpacked_func`,
  :func:`flash_attn_kvpacked_func`: the ``flash_attn`` package's functions
  (``q (B, S_q, H, d)``, packed ``qkv (B, S, 3, H, d)`` and ``kv (B, S_k, 2, H_k,
  d)``; ``H_k`` may divide ``H``: multi-query / grouped-query attention).
* :class:`FlashSelfAttention`, :class:`FlashCrossAttention`: the modules of
  ``flash_attn.modules.mha`` (no projections: they take packed heads).
* :class:`FlashMultiheadAttention`: a subclass of :class:`torch.nn.MultiheadAttention`
  with the same constructor, parameters (``in_proj_weight``, ``in_proj_bias``,
  ``q/k/v_proj_weight`` when ``kdim``/``vdim`` differ, ``out_proj``), state dict and
  ``forward`` (``key_padding_mask``, ``attn_mask`` 2-D ``(L, S)`` or 3-D
  ``(B * H, L, S)``, bool or float, ``is_causal``, ``batch_first``), whose attention
  runs in the kernels: the ``(L, S)`` matrix of scores is never stored.

What differs, on purpose, and what is refused
---------------------------------------------
* Rows whose keys are all masked: output 0 and zero gradients, as PyTorch's
  ``scaled_dot_product_attention`` math backend (since 2.5) and flash-attn; a naive
  softmax, and ``nn.MultiheadAttention`` with ``need_weights=True``, give NaN.
* Attention dropout is not implemented in the kernels: ``dropout > 0`` raises
  :class:`NotImplementedError` in training mode (in eval mode dropout is off, as in
  PyTorch). Use ``dropout=0.0`` or dropout outside the attention.
* ``need_weights=True`` (``nn.MultiheadAttention``'s default): the output still
  comes from the kernel, and the weights are computed separately the naive way
  (``softmax(Q K^T / sqrt(d) + mask)``, materialising ``(B, [H,] L, S)`` as PyTorch
  does). Pass ``need_weights=False`` to get the memory saving; the output is then
  ``(attn_output, None)``.
* Not supported, with a clear error: ``add_bias_kv``, ``add_zero_attn``, variable
  length batches (``cu_seqlens``, ``max_seqlen``), ``window_size``, ``softcap``,
  ``alibi_slopes``, ``return_attn_probs``, masks that require grad.
* ``is_causal=True`` in :class:`FlashMultiheadAttention` uses the kernel's causal
  mask (top-left aligned, blocks above the diagonal skipped) and does not read
  ``attn_mask``, which PyTorch requires to be that causal mask (here it may be
  omitted). flash-attn's ``causal=True`` with ``S_q != S_k`` is aligned to the
  bottom-right corner, as in flash-attn 2.1 and later.

Examples
--------
>>> import torch
>>> from flashanim.kernels.modules import FlashMultiheadAttention
>>> mha = FlashMultiheadAttention(32, 4, batch_first=True)
>>> x = torch.randn(2, 10, 32)
>>> out, _ = mha(x, x, x, need_weights=False, is_causal=True)
>>> out.shape
torch.Size([2, 10, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._common import DTYPES, MAX_HEAD_DIM
from .attention import flash_attention
from .decode import attention_decode, use_split

__all__ = [
    "flash_attn_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_kvpacked_func",
    "flash_attn_with_kvcache",
    "FlashSelfAttention",
    "FlashCrossAttention",
    "FlashMultiheadAttention",
]


def _refuse_dropout(p: float) -> None:
    if p and p > 0.0:
        raise NotImplementedError(
            f"attention dropout (p={p}) is not implemented in flashanim's kernels; "
            "use dropout=0.0, or call .eval() (dropout is off in eval mode)"
        )


def _refuse(name: str, value, default) -> None:
    if value != default and not (value is None and default is None):
        raise NotImplementedError(
            f"{name}={value!r} is not supported by flashanim's kernels (only the "
            f"default {default!r})"
        )


def _bottom_right_causal(n_q: int, n_k: int, device: torch.device) -> torch.Tensor:
    """flash-attn's causal mask for ``n_q != n_k``: query ``i`` sees keys
    ``j <= i + n_k - n_q`` (``True`` = attend)."""
    i = torch.arange(n_q, device=device)[:, None]
    j = torch.arange(n_k, device=device)[None, :]
    return j <= i + (n_k - n_q)


def _wants_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _decode_pays(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether ``(B, S, H, d)`` inputs go to the split-K/V path: a cache the split
    heuristic cuts in two or more, or query heads sharing K/V heads with few
    queries (no expansion). Inputs the kernels would refuse go the general way,
    whose checks give the error."""
    if q.dtype != k.dtype or q.dtype != v.dtype or q.dtype not in DTYPES:
        return False
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        return False
    b, n_q, h, d = q.shape
    n_k, h_k = k.shape[1], k.shape[2]
    if min(b, n_q, n_k, h_k) < 1 or not 1 <= d <= MAX_HEAD_DIM:
        return False
    if h_k != h and n_q <= 16:
        return True
    return use_split(b, h, h_k, n_q, n_k, d, q.dtype, q.device)


def flash_attn_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> torch.Tensor:
    """``flash_attn.flash_attn_func`` on flashanim's kernels.

    Parameters
    ----------
    q
        ``(B, S_q, H, d)``.
    k, v
        ``(B, S_k, H_k, d)``; ``H_k`` must divide ``H`` (MQA/GQA: each group of
        ``H / H_k`` query heads shares a K/V head).
    dropout_p
        Must be 0 (dropout is not implemented).
    softmax_scale
        Scale of ``Q K^T``; ``1/sqrt(d)`` when ``None``.
    causal
        Causal mask aligned to the bottom-right corner when ``S_q != S_k`` (as in
        flash-attn >= 2.1; query rows that then see no key give 0).
    window_size, softcap, alibi_slopes, return_attn_probs
        Only their defaults are supported.
    deterministic
        Accepted and ignored: the kernels are deterministic (no atomics).

    Returns
    -------
    torch.Tensor
        ``(B, S_q, H, d)``, contiguous, in the inputs' dtype.

    When no gradient is wanted and the call is decoding-shaped (a cache long
    enough to split over the SMs, or at most 16 queries with K/V heads shared), the
    split-K/V kernels of :mod:`flashanim.kernels.decode` run: K/V heads are never
    expanded, the causal mask is never built. With autograd, the general kernels
    run (K/V expanded; they have a backward).
    """
    _refuse_dropout(dropout_p)
    _refuse("window_size", tuple(window_size), (-1, -1))
    _refuse("softcap", softcap, 0.0)
    _refuse("alibi_slopes", alibi_slopes, None)
    _refuse("return_attn_probs", return_attn_probs, False)
    del deterministic
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(
                f"{name} must be a 4-D tensor (batch, seqlen, nheads, headdim), got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t)}"
            )
    h, h_k = q.shape[2], k.shape[2]
    if v.shape[2] != h_k or h % h_k:
        raise ValueError(
            f"the number of K/V heads must divide the number of query heads, got "
            f"q: {h}, k: {h_k}, v: {v.shape[2]}"
        )
    n_q, n_k = q.shape[1], k.shape[1]
    if not _wants_grad(q, k, v) and _decode_pays(q, k, v):
        # decoding (few queries, or heads sharing K/V): the split-K/V kernels read
        # each K/V head once for its whole group, nothing expanded or masked in HBM
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        attention_decode(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                         bool(causal), softmax_scale,
                         out=out.transpose(1, 2))  # fmt: skip
        return out
    if h_k != h:  # MQA / GQA: repeat each K/V head for its group of query heads
        k = k.repeat_interleave(h // h_k, dim=2)
        v = v.repeat_interleave(h // h_k, dim=2)
    mask = None
    if causal and n_q != n_k:
        mask, causal = _bottom_right_causal(n_q, n_k, q.device), False
    o = flash_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal,
        softmax_scale, mask,
    )  # fmt: skip
    return o.transpose(1, 2).contiguous()


def flash_attn_with_kvcache(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    k: torch.Tensor | None = None,
    v: torch.Tensor | None = None,
    rotary_cos: torch.Tensor | None = None,
    rotary_sin: torch.Tensor | None = None,
    cache_seqlens: int | torch.Tensor | None = None,
    cache_batch_idx: torch.Tensor | None = None,
    cache_leftpad: torch.Tensor | None = None,
    block_table: torch.Tensor | None = None,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    rotary_interleaved: bool = True,
    alibi_slopes: torch.Tensor | None = None,
    num_splits: int = 0,
    return_softmax_lse: bool = False,
):
    """``flash_attn.flash_attn_with_kvcache`` on the split-K/V kernels (forward
    only, as flash-attn's).

    Parameters
    ----------
    q
        ``(B, S_q, H, d)``: the new queries.
    k_cache, v_cache
        ``(B, S_cache, H_k, d)``; ``H_k`` divides ``H`` (never expanded).
    k, v
        Optional new keys and values ``(B, S_new, H_k, d)``: written into the
        caches in place at positions ``cache_seqlens[b] ...`` (which must leave
        room: ``cache_seqlens + S_new <= S_cache``), then attended to.
    cache_seqlens
        Keys of each cache in use before ``k`` is appended: an int or an
        int32/int64 ``(B,)`` tensor; ``None``: the whole cache (no ``k``, ``v``).
    causal
        Bottom-right aligned: query ``r`` sees keys ``0 .. r + L - S_q`` of a
        sequence of ``L`` keys.
    num_splits
        Slices of the cache; 0: chosen by :func:`~flashanim.kernels.decode.choose_splits`.
    return_softmax_lse
        Also return the natural-log ``LSE`` ``(B, H, S_q)`` float32.
    rotary_cos, rotary_sin, cache_batch_idx, cache_leftpad, block_table,
    window_size, softcap, alibi_slopes
        Only their defaults are supported (``rotary_interleaved`` is then unused).

    Returns
    -------
    torch.Tensor or tuple
        ``(B, S_q, H, d)`` (and ``LSE`` with ``return_softmax_lse``).
    """
    for name, value in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin),
                        ("cache_batch_idx", cache_batch_idx),
                        ("cache_leftpad", cache_leftpad),
                        ("block_table", block_table),
                        ("alibi_slopes", alibi_slopes)):  # fmt: skip
        _refuse(name, value, None)
    _refuse("window_size", tuple(window_size), (-1, -1))
    _refuse("softcap", softcap, 0.0)
    del rotary_interleaved
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(
                f"{name} must be a 4-D tensor (batch, seqlen, nheads, headdim), got "
                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t)}"
            )
    if _wants_grad(q, k_cache, v_cache, *(t for t in (k, v) if t is not None)):
        raise RuntimeError(
            "flash_attn_with_kvcache is forward-only (as flash-attn's): call it under "
            "torch.no_grad() or inference_mode, or use flash_attn_func for training"
        )
    if (
        isinstance(num_splits, bool)
        or not isinstance(num_splits, int)
        or (num_splits < 0)
    ):
        raise ValueError(f"num_splits must be an int >= 0 (0: automatic), got "
                         f"{num_splits!r}")  # fmt: skip
    batch, s_cache = k_cache.shape[0], k_cache.shape[1]
    lens = cache_seqlens
    if isinstance(lens, bool):
        raise TypeError("cache_seqlens must be an int or an int tensor, not a bool")
    if isinstance(lens, int):
        if not 0 <= lens <= s_cache:
            raise ValueError(
                f"cache_seqlens={lens} must lie in [0, {s_cache}] (the cache's length)"
            )
        lens = torch.full((batch,), lens, dtype=torch.int32, device=q.device)
    elif lens is not None and not isinstance(lens, torch.Tensor):
        raise TypeError(
            f"cache_seqlens must be an int or an int32/int64 tensor of shape "
            f"({batch},), got {type(lens).__name__}"
        )
    if (k is None) != (v is None):
        raise ValueError("pass both k and v (the new keys and values), or neither")
    if k is not None:
        if lens is None:
            raise ValueError(
                "k and v are appended at cache_seqlens: pass cache_seqlens with them"
            )
        if (
            not isinstance(k, torch.Tensor)
            or k.dim() != 4
            or k.shape != v.shape
            or (k.shape[0] != batch or k.shape[2:] != k_cache.shape[2:])
        ):
            raise ValueError(
                f"k and v must both be (B, S_new, H_k, d) = ({batch}, S_new, "
                f"{k_cache.shape[2]}, {k_cache.shape[3]}), got "
                f"{tuple(getattr(k, 'shape', ()))} and {tuple(getattr(v, 'shape', ()))}"
            )
        if lens.dim() != 1 or lens.shape[0] != batch:
            raise ValueError(f"cache_seqlens must have shape ({batch},), got "
                             f"{tuple(lens.shape)}")  # fmt: skip
        s_new = k.shape[1]
        if int(lens.max()) + s_new > s_cache or int(lens.min()) < 0:
            raise ValueError(
                f"appending {s_new} keys at cache_seqlens (max {int(lens.max())}) "
                f"would run past the cache's {s_cache} positions"
            )
        pos = lens.long()[:, None] + torch.arange(s_new, device=lens.device)
        rows = torch.arange(batch, device=lens.device)[:, None]
        k_cache[rows, pos] = k.to(k_cache.dtype)
        v_cache[rows, pos] = v.to(v_cache.dtype)
        lens = lens + s_new
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    _, lse = attention_decode(
        q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2),
        bool(causal), softmax_scale, cache_seqlens=lens,
        num_splits=num_splits or None, out=out.transpose(1, 2),
    )  # fmt: skip
    return (out, lse) if return_softmax_lse else out


def flash_attn_qkvpacked_func(
    qkv: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> torch.Tensor:
    """``flash_attn.flash_attn_qkvpacked_func``: ``qkv (B, S, 3, H, d)`` ->
    ``(B, S, H, d)``; other arguments as :func:`flash_attn_func`."""
    if not isinstance(qkv, torch.Tensor) or qkv.dim() != 5 or qkv.shape[2] != 3:
        raise ValueError(
            "qkv must be a 5-D tensor (batch, seqlen, 3, nheads, headdim), got "
            f"{tuple(qkv.shape) if isinstance(qkv, torch.Tensor) else type(qkv)}"
        )
    q, k, v = qkv.unbind(dim=2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic,
                           return_attn_probs)  # fmt: skip


def flash_attn_kvpacked_func(
    q: torch.Tensor,
    kv: torch.Tensor,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
) -> torch.Tensor:
    """``flash_attn.flash_attn_kvpacked_func``: ``q (B, S_q, H, d)``, ``kv (B, S_k,
    2, H_k, d)`` -> ``(B, S_q, H, d)``; other arguments as :func:`flash_attn_func`."""
    if not isinstance(kv, torch.Tensor) or kv.dim() != 5 or kv.shape[2] != 2:
        raise ValueError(
            "kv must be a 5-D tensor (batch, seqlen_k, 2, nheads_k, headdim), got "
            f"{tuple(kv.shape) if isinstance(kv, torch.Tensor) else type(kv)}"
        )
    k, v = kv.unbind(dim=2)
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic,
                           return_attn_probs)  # fmt: skip


def _refuse_varlen(**kwargs) -> None:
    given = [name for name, value in kwargs.items() if value is not None]
    if given:
        raise NotImplementedError(
            f"{', '.join(given)}: variable-length (unpadded) batches are not supported "
            "by flashanim's kernels; pass padded (B, S, ...) tensors (and, with "
            "FlashMultiheadAttention, a key_padding_mask)"
        )


class _FlashModule(nn.Module):
    """What :class:`FlashSelfAttention` and :class:`FlashCrossAttention` share:
    their settings, and the refusal of flash-attn options the kernel lacks."""

    def __init__(
        self,
        causal: bool,
        softmax_scale: float | None,
        attention_dropout: float,
        window_size: tuple[int, int],
        alibi_slopes: torch.Tensor | None,
        deterministic: bool,
    ) -> None:
        super().__init__()
        _refuse("window_size", tuple(window_size), (-1, -1))
        _refuse("alibi_slopes", alibi_slopes, None)
        self.causal = causal
        self.softmax_scale = softmax_scale
        self.drop = nn.Dropout(attention_dropout)
        self.deterministic = deterministic


class FlashSelfAttention(_FlashModule):
    """``flash_attn.modules.mha.FlashSelfAttention``: softmax attention of packed
    ``qkv`` heads (no projections).

    Parameters
    ----------
    causal
        Default causal setting of :meth:`forward`.
    softmax_scale
        Scale of ``Q K^T``; ``1/sqrt(d)`` when ``None``.
    attention_dropout
        Stored as ``self.drop`` (an ``nn.Dropout``, as flash-attn); a nonzero rate
        raises in training mode (not implemented), and is off in eval mode.
    window_size, alibi_slopes, deterministic
        Accepted for signature compatibility; only the defaults are supported
        (``deterministic`` is ignored: the kernels are deterministic).
    """

    def __init__(
        self,
        causal: bool = False,
        softmax_scale: float | None = None,
        attention_dropout: float = 0.0,
        window_size: tuple[int, int] = (-1, -1),
        alibi_slopes: torch.Tensor | None = None,
        deterministic: bool = False,
    ) -> None:
        super().__init__(causal, softmax_scale, attention_dropout, window_size,
                         alibi_slopes, deterministic)  # fmt: skip

    def forward(
        self,
        qkv: torch.Tensor,
        causal: bool | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
    ) -> torch.Tensor:
        """Attention of ``qkv (B, S, 3, H, d)``; returns ``(B, S, H, d)``.

        ``causal`` overrides ``self.causal`` when given; ``cu_seqlens`` and
        ``max_seqlen`` (variable-length batches) are refused.
        """
        _refuse_varlen(cu_seqlens=cu_seqlens, max_seqlen=max_seqlen)
        causal = self.causal if causal is None else causal
        return flash_attn_qkvpacked_func(
            qkv, self.drop.p if self.training else 0.0,
            softmax_scale=self.softmax_scale, causal=causal,
        )  # fmt: skip


class FlashCrossAttention(_FlashModule):
    """``flash_attn.modules.mha.FlashCrossAttention``: softmax attention of query
    heads ``q`` over packed ``kv`` heads (no projections).

    Parameters are those of :class:`FlashSelfAttention`.
    """

    def __init__(
        self,
        causal: bool = False,
        softmax_scale: float | None = None,
        attention_dropout: float = 0.0,
        alibi_slopes: torch.Tensor | None = None,
        window_size: tuple[int, int] = (-1, -1),
        deterministic: bool = False,
    ) -> None:
        super().__init__(causal, softmax_scale, attention_dropout, window_size,
                         alibi_slopes, deterministic)  # fmt: skip

    def forward(
        self,
        q: torch.Tensor,
        kv: torch.Tensor,
        causal: bool | None = None,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        cu_seqlens_k: torch.Tensor | None = None,
        max_seqlen_k: int | None = None,
    ) -> torch.Tensor:
        """Attention of ``q (B, S_q, H, d)`` over ``kv (B, S_k, 2, H_k, d)``;
        returns ``(B, S_q, H, d)``. Variable-length arguments are refused."""
        _refuse_varlen(cu_seqlens=cu_seqlens, max_seqlen=max_seqlen,
                       cu_seqlens_k=cu_seqlens_k,
                       max_seqlen_k=max_seqlen_k)  # fmt: skip
        causal = self.causal if causal is None else causal
        if kv.dim() != 5 or q.dim() != 4 or kv.shape[0] != q.shape[0]:
            raise ValueError(
                f"q must be (B, S_q, H, d) and kv (B, S_k, 2, H_k, d) with the same "
                f"B, got q {tuple(q.shape)} and kv {tuple(kv.shape)}"
            )
        return flash_attn_kvpacked_func(
            q, kv, self.drop.p if self.training else 0.0,
            softmax_scale=self.softmax_scale, causal=causal,
        )  # fmt: skip


def _as_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """PyTorch's convention (bool ``True`` = masked) as an additive float bias."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask, float("-inf")
        )
    return mask


class FlashMultiheadAttention(nn.MultiheadAttention):
    """:class:`torch.nn.MultiheadAttention` whose attention runs in flashanim's
    FlashAttention-2 kernels.

    Same constructor, parameters and state dict as ``nn.MultiheadAttention`` (it
    is a subclass: ``load_state_dict`` of an ``nn.MultiheadAttention`` works both
    ways), and the same :meth:`forward`. See the module docstring for what differs:
    fully masked rows give 0 (never NaN); dropout raises in training mode;
    ``need_weights=True`` computes the weights separately, naively.

    Parameters
    ----------
    embed_dim, num_heads
        Model width and number of heads (``embed_dim % num_heads == 0``).
    dropout
        Attention dropout: must be 0 in training mode (not implemented).
    bias
        Biases of the input and output projections.
    add_bias_kv, add_zero_attn
        Must be False (not supported).
    kdim, vdim
        Widths of ``key`` and ``value`` (default ``embed_dim``); when they differ
        the projections are ``q_proj_weight``, ``k_proj_weight``,
        ``v_proj_weight``.
    batch_first
        Inputs and output are ``(B, L, E)`` instead of ``(L, B, E)``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError(
                "add_bias_kv and add_zero_attn are not supported by "
                "FlashMultiheadAttention; use nn.MultiheadAttention for them"
            )
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias,
                         kdim=kdim, vdim=vdim, batch_first=batch_first,
                         device=device, dtype=dtype)  # fmt: skip

    def _project(self, query, key, value):
        """``q, k, v`` of shape ``(B, N, E)`` from batch-first inputs."""
        e = self.embed_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(e)
        if self._qkv_same_embed_dim:
            if query is key and key is value:
                return F.linear(query, w, b).chunk(3, dim=-1)
            wq, wk, wv = w.split(e)
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def _masks(self, key_padding_mask, attn_mask, bsz, n_q, n_k, dtype):
        """PyTorch's two masks as one kernel mask (``True`` = attend, or additive),
        broadcastable to ``(B, H, L, S)``; ``None`` when there is none."""
        h = self.num_heads
        am = None
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
                raise TypeError(
                    f"only bool and floating types of attn_mask are supported, got "
                    f"{attn_mask.dtype}"
                )
            if attn_mask.dim() == 2:
                if tuple(attn_mask.shape) != (n_q, n_k):
                    raise ValueError(
                        f"the shape of the 2D attn_mask is {tuple(attn_mask.shape)}, "
                        f"but should be {(n_q, n_k)}"
                    )
                am = attn_mask.view(1, 1, n_q, n_k)
            elif attn_mask.dim() == 3:
                if tuple(attn_mask.shape) != (bsz * h, n_q, n_k):
                    raise ValueError(
                        f"the shape of the 3D attn_mask is {tuple(attn_mask.shape)}, "
                        f"but should be {(bsz * h, n_q, n_k)}"
                    )
                am = attn_mask.view(bsz, h, n_q, n_k)
            else:
                raise ValueError(
                    f"attn_mask must be 2-D (L, S) or 3-D (B * num_heads, L, S), got "
                    f"{attn_mask.dim()}-D"
                )
        kpm = None
        if key_padding_mask is not None:
            if (
                key_padding_mask.dtype != torch.bool
                and not key_padding_mask.is_floating_point()
            ):
                raise TypeError(
                    f"only bool and floating types of key_padding_mask are supported, "
                    f"got {key_padding_mask.dtype}"
                )
            if tuple(key_padding_mask.shape) != (bsz, n_k):
                raise ValueError(
                    f"expecting key_padding_mask shape of {(bsz, n_k)}, but got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            kpm = key_padding_mask.view(bsz, 1, 1, n_k)
        if am is None and kpm is None:
            return None
        if am is None or kpm is None:
            m = am if kpm is None else kpm
            return ~m if m.dtype == torch.bool else m.to(dtype)
        if am.dtype == torch.bool and kpm.dtype == torch.bool:
            return ~(am | kpm)  # materialised: (B, 1 or H, L, S)
        return _as_bias(am, dtype) + _as_bias(kpm, dtype)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``nn.MultiheadAttention.forward``, attention in the kernels.

        Parameters
        ----------
        query, key, value
            ``(L, B, E)``, ``(S, B, kdim)``, ``(S, B, vdim)`` (``(B, ., .)`` with
            ``batch_first``), or unbatched ``(L, E)``, ``(S, kdim)``, ``(S, vdim)``.
        key_padding_mask
            ``(B, S)`` (unbatched ``(S,)``): bool ``True`` = ignore that key, or
            floating, added to the scores.
        need_weights
            Also return the attention weights, computed separately the naive way
            (see the module docstring); ``False`` returns ``None`` for them.
        attn_mask
            ``(L, S)`` or ``(B * num_heads, L, S)``: bool ``True`` = not allowed to
            attend, or floating, added to the scores.
        average_attn_weights
            Average the returned weights over the heads.
        is_causal
            Causal attention with the kernel's own mask (``attn_mask`` not read).

        Returns
        -------
        attn_output : torch.Tensor
            ``(L, B, E)`` (``(B, L, E)`` with ``batch_first``; ``(L, E)`` unbatched).
        attn_weights : torch.Tensor or None
            ``(B, L, S)``, or ``(B, H, L, S)`` without averaging; ``None`` unless
            ``need_weights``.
        """
        if self.training:
            _refuse_dropout(self.dropout)
        batched = query.dim() == 3
        if (
            query.dim() not in (2, 3)
            or key.dim() != query.dim()
            or (value.dim() != query.dim())
        ):
            raise ValueError(
                f"query, key and value must all be 3-D (batched) or all 2-D "
                f"(unbatched), got {query.dim()}-D, {key.dim()}-D, {value.dim()}-D"
            )
        if not batched:  # a batch of one
            query, key, value = (x.unsqueeze(0) for x in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        # now batch-first: (B, L, E), (B, S, kdim), (B, S, vdim)
        bsz, n_q, e = query.shape
        n_k = key.shape[1]
        if e != self.embed_dim:
            raise ValueError(
                f"was expecting embedding dimension of {self.embed_dim}, but got {e}"
            )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != bsz:
            raise ValueError(
                f"key and value must have the same batch size and sequence length as "
                f"each other and the query's batch size, got key "
                f"{tuple(key.shape)}, value {tuple(value.shape)} (batch-first)"
            )
        h, d = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q, k, v = (x.unflatten(-1, (h, d)).transpose(1, 2) for x in (q, k, v))
        mask = self._masks(key_padding_mask, None if is_causal else attn_mask, bsz,
                           n_q, n_k, q.dtype)  # fmt: skip
        o = flash_attention(q, k, v, bool(is_causal), None, mask)  # (B, H, L, d)
        weights = None
        if need_weights:
            weights = self._naive_weights(q, k, mask, bool(is_causal))
            if average_attn_weights:
                weights = weights.mean(dim=1)
        o = o.transpose(1, 2).reshape(bsz, n_q, e)
        out = F.linear(o, self.out_proj.weight, self.out_proj.bias)
        if not batched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    @staticmethod
    def _naive_weights(q, k, mask, causal):
        """``softmax(Q K^T / sqrt(d) + mask)`` materialised, ``(B, H, L, S)``; rows
        with every key masked are 0 (as the kernel's output)."""
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
        if causal:
            keep = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
            s = s.masked_fill(~keep, float("-inf"))
        if mask is not None:
            s = (
                s.masked_fill(~mask, float("-inf"))
                if mask.dtype == torch.bool
                else (s + mask)
            )
        empty = torch.isneginf(s).all(dim=-1, keepdim=True)
        p = torch.softmax(s.masked_fill(empty, 0.0), dim=-1)
        return p.masked_fill(empty, 0.0)
