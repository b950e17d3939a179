"""The trace protocol's names and its format error.

The operation and tensor codes live in :mod:`flashanim.trace.names`, a module
without imports that the kernels (:mod:`flashanim.kernels._trace`) and the decoder
share, so decoding, loading and validating a trace imports neither torch nor Triton.
"""

from __future__ import annotations

from .names import OPS, TENSORS

__all__ = ["TraceFormatError", "ops", "tensors"]


class TraceFormatError(ValueError):
    """A trace (a kernel's raw buffers or a JSON file) is malformed.

    The message names the problem and where it is (the file, the key, the event).
    """


def ops() -> tuple[str, ...]:
    """Operation names in code order (:data:`flashanim.trace.names.OPS`)."""
    return OPS


def tensors() -> tuple[str, ...]:
    """Tensor names in code order (:data:`flashanim.trace.names.TENSORS`)."""
    return TENSORS
