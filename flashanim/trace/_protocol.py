"""The trace protocol's names, read lazily from :mod:`flashanim.kernels._trace`.

The operation and tensor codes live in one place, next to the kernels that write
them. Importing :mod:`flashanim.kernels` chooses the process's device and imports
Triton, so this module does it only when a name table is first needed (decoding,
loading, validating), never when :mod:`flashanim.trace` is imported.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["TraceFormatError", "ops", "tensors"]


class TraceFormatError(ValueError):
    """A trace (a kernel's raw buffers or a JSON file) is malformed.

    The message names the problem and where it is (the file, the key, the event).
    """


@lru_cache(maxsize=1)
def _names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from flashanim.kernels._trace import OPS, TENSORS

    return tuple(OPS), tuple(TENSORS)


def ops() -> tuple[str, ...]:
    """Operation names in code order (:data:`flashanim.kernels._trace.OPS`)."""
    return _names()[0]


def tensors() -> tuple[str, ...]:
    """Tensor names in code order (:data:`flashanim.kernels._trace.TENSORS`)."""
    return _names()[1]
