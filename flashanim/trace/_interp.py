"""Triton's interpreter without re-patching the language at every device call.

In the interpreter a kernel launch (``GridExecutor.__call__``) patches
``triton.language`` once for the run (and restores it at the end); then every
call of a ``@triton.jit`` helper from inside the kernel (``InterpretedFunction
.__call__``) patches it again, member by member through ``inspect.getmembers``,
with the same values, and drops the record of that second patch. Our kernels call
their trace helper (``rec``, :mod:`flashanim.kernels._trace`) for every event: the
repeated patching was ~15 % of a recording.

:func:`patch_once` skips a device call's patch while a launch has the language
patched and the helper sees no module the launch did not patch (its ``tl`` /
``tl.core`` are the same module objects), which leaves the language exactly as
the repeated patch would. It is in place only inside the block, and only on a
Triton version it was written for (:mod:`flashanim.engine.versions`); on another
it changes nothing and says so in one warning line.
"""

from __future__ import annotations

import contextlib
import inspect
import threading

__all__ = ["patch_once"]

_lock = threading.Lock()


def _langs(fn, tl) -> frozenset[int]:
    return frozenset(
        id(v)
        for v in fn.__globals__.values()
        if inspect.ismodule(v) and v in (tl, tl.core)
    )


@contextlib.contextmanager
def patch_once():
    """Within this block, device calls in Triton's interpreter reuse the
    launch's patch of ``triton.language`` (see the module's docstring)."""
    from flashanim.engine.versions import supported

    if not supported("triton"):
        yield
        return
    try:
        import triton.language as tl
        from triton.runtime import interpreter as it
    except ImportError:  # pragma: no cover
        yield
        return
    grid = getattr(it, "GridExecutor", None)
    patch = getattr(it, "_patch_lang", None)
    if grid is None or patch is None or not hasattr(it, "_LangPatchScope"):
        yield
        return
    with _lock:
        state = {"launches": 0, "patched": []}  # langs patched by each launch
        seen: dict[int, frozenset[int]] = {}

        def _patch_lang(fn):
            if state["launches"] > len(state["patched"]):
                # the launch's own patch (the first call in GridExecutor.__call__)
                scope = patch(fn)
                state["patched"].append(_langs(fn, tl))
                return scope
            if state["patched"]:
                key = id(fn)
                langs = seen.get(key)
                if langs is None:
                    langs = seen[key] = _langs(fn, tl)
                if langs and langs <= state["patched"][-1]:
                    return it._LangPatchScope()  # already patched: nothing to undo
            return patch(fn)

        call = grid.__call__

        def __call__(self, *args, **kwargs):
            state["launches"] += 1
            depth = len(state["patched"])
            try:
                return call(self, *args, **kwargs)
            finally:
                state["launches"] -= 1
                del state["patched"][depth:]

        it._patch_lang = _patch_lang
        grid.__call__ = __call__
        try:
            yield
        finally:
            grid.__call__ = call
            it._patch_lang = patch
