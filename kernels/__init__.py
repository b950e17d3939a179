"""flashanim's Triton kernels (installed as ``flashanim.kernels``).

Importing this package never imports Manim: GPU machines that run the kernels and
benchmarks need only PyTorch and Triton. The device is chosen once per process (see
:mod:`flashanim.kernels._device`) before Triton is imported.

Each kernel module offers a *recorder*, ``record(q, k, v, *, causal, softmax_scale,
block_m, block_n, values, do=None) -> RawTrace``, which runs the kernel with
``TRACE=True`` and returns its raw trace buffers; :func:`recorder` finds it by the
kernel's command-line name.
"""

from __future__ import annotations

import importlib

from ._device import BACKEND, INTERPRET, default_device  # noqa: I001  (must be first)
from .attention import FlashAttentionFunction, flash_attention
from .decode import attention_decode
from .fa2 import attention_backward, attention_forward
from .modules import (
    FlashCrossAttention,
    FlashMultiheadAttention,
    FlashSelfAttention,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
    flash_attn_with_kvcache,
)

__all__ = [
    "BACKEND",
    "INTERPRET",
    "FlashAttentionFunction",
    "FlashCrossAttention",
    "FlashMultiheadAttention",
    "FlashSelfAttention",
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_with_kvcache",
    "attention_decode",
    "RECORDERS",
    "attention_backward",
    "attention_forward",
    "default_device",
    "flash_attention",
    "recorder",
]

#: Kernel name -> (module, recorder function).
RECORDERS: dict[str, tuple[str, str]] = {
    "fa2-fwd": ("fa2", "record_forward"),
    "fa2-bwd": ("fa2", "record_backward"),
    "fa2-decode": ("decode", "record_forward"),
    "fa1-fwd": ("fa1", "record_forward"),
    "standard": ("standard", "record"),
}


def recorder(kernel: str):
    """The recorder function of ``kernel`` (one of :data:`RECORDERS`)."""
    if kernel not in RECORDERS:
        raise ValueError(
            f"unknown kernel {kernel!r}; choose one of {', '.join(RECORDERS)}"
        )
    module, fn = RECORDERS[kernel]
    return getattr(importlib.import_module(f"{__name__}.{module}"), fn)
