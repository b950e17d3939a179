"""The engine's switch: Manim's internals are replaced only while it is on.

:func:`engine_on` turns the engine on for the block it guards (a scene's render;
nested blocks share one switch) and puts Manim's own code back when the outermost
block ends. On a Manim version the engine was not written for it stays off (one
warning line) and Manim's own code runs.
"""

from __future__ import annotations

import contextlib
import threading

from .versions import supported

__all__ = ["engine_on", "is_on"]

_lock = threading.RLock()
_depth = 0


def is_on() -> bool:
    """Whether the engine is on now (inside :func:`engine_on`)."""
    return _depth > 0


@contextlib.contextmanager
def engine_on():
    """Turn the speed engine on for this block; yields whether it is on."""
    global _depth
    if not supported("manim"):
        yield False
        return
    from . import _speedups, fastrender

    with _lock:
        if _depth == 0:
            _speedups.install()
            fastrender.install()
        _depth += 1
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                fastrender.uninstall()
                _speedups.uninstall()
