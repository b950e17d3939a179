"""The speed engine: Manim's frames, drawn faster, behind one switch.

Everything in the package that replaces or reaches into Manim internals lives
here, and nothing is replaced when a module is imported:

* :class:`FastRenderScene` (:mod:`~flashanim.engine.fastrender`): the base of
  :class:`flashanim.scene.TraceScene`. Its ``render`` turns the engine on for
  itself (:func:`engine_on`) and restores Manim's own code when it ends; it redraws
  per frame only what moves, and fits its own renderer, camera and file writer.
* :mod:`~flashanim.engine._speedups`: faster equivalents of
  ``Mobject.get_family``, ``__deepcopy__``, ``add_updater``,
  ``VMobject.get_subpaths_from_points`` and
  ``Scene.get_restructured_mobject_list``, in place only while the engine is on.
* :mod:`~flashanim.engine.text`: the text engine (:func:`cached_text`,
  :func:`themed_text`): a Text built once and copied, numbers composed from cached
  glyphs. Manim's own ``Text`` while the engine is off.
* :mod:`~flashanim.engine.versions`: the Manim and Triton versions it was written
  for. On any other, the engine stays off and Manim's own path runs (one warning
  line). The recorder's patch of Triton's interpreter
  (:mod:`flashanim.trace._interp`) asks the same question.

A user's own Manim scene in the same process (a plain :class:`manim.Scene`) is
never touched: the replacements are in place only while a flashanim scene renders.

The names below are loaded on first use, so that ``flashanim.engine.versions`` can
be imported without Manim.
"""

from __future__ import annotations

import importlib

__all__ = [
    "FastRenderScene",
    "engine_on",
    "is_on",
    "cached_text",
    "themed_text",
    "merge_glyphs",
    "x264_preset",
    "supported",
]

_WHERE = {
    "FastRenderScene": "fastrender",
    "x264_preset": "fastrender",
    "engine_on": "_switch",
    "is_on": "_switch",
    "cached_text": "text",
    "themed_text": "text",
    "merge_glyphs": "text",
    "supported": "versions",
}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flashanim.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
