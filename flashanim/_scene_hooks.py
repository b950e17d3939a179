"""Render-time wrappers around a scene, used by ``flashanim render`` (not by scenes).

``flashanim render`` writes a two-line module per scene that calls
:func:`wrap_scene`; ``manim render`` then renders the class it returns, which is the
scene itself plus:

- a hook on ``play`` that records each animation's start and end time in the video
  (Manim's ``renderer.time``), the trace events it played and the caption it set;
- a hook on ``next_section`` that records where each section starts;
- with ``slides=True``, :class:`manim_slides.Slide` as a base, whose ``next_section``
  also calls ``next_slide`` (manim-slides 5.7 makes ``next_section`` an alias of
  ``next_slide``, which calls ``Scene.next_section``): one slide per section.

The record is written as JSON to ``$FLASHANIM_RENDER_RECORD`` when the render ends.
What an animation shows comes from the tags every player
(:class:`~flashanim.visuals.EventPlayer`) and every caption
(:class:`~flashanim.visuals.Caption`) put on it, so it works for every scene; nothing
is wrapped or patched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

__all__ = ["wrap_scene", "RECORD_ENV", "SLIDES_ENV"]

RECORD_ENV = "FLASHANIM_RENDER_RECORD"
SLIDES_ENV = "FLASHANIM_SLIDES_DIR"


def _event_dict(e) -> dict:
    return {
        "index": e.index,
        "program": e.program,
        "step": e.step,
        "op": e.op,
        "tensor": e.tensor,
        "row": e.row,
        "col": e.col,
        "nbytes": e.nbytes,
        "bh": e.bh,
    }


class _Recorder:
    """Mixin: record plays and sections with their times in the video."""

    def _fa_record(self) -> dict:
        rec = self.__dict__.get("_fa_rec")
        if rec is None:
            rec = self.__dict__["_fa_rec"] = {"sections": [], "plays": []}
        return rec

    def next_section(self, name: str = "unnamed", *args, **kwargs) -> None:
        self._fa_record()["sections"].append(
            {"name": name, "start": float(self.renderer.time)}
        )
        super().next_section(name, *args, **kwargs)

    def play(self, *args, **kwargs) -> None:
        start = float(self.renderer.time)
        from flashanim.visuals import caption_of, events_of

        events, caption = [], None
        for a in args:
            events.extend(_event_dict(e) for e in events_of(a))
            caption = caption_of(a) or caption
        super().play(*args, **kwargs)
        self._fa_record()["plays"].append(
            {"start": start, "end": float(self.renderer.time), "events": events,
             "caption": caption}
        )  # fmt: skip

    def render(self, *args, **kwargs):
        out = super().render(*args, **kwargs)
        path = os.environ.get(RECORD_ENV)
        if path:
            rec = self._fa_record()
            rec["scene"] = type(self).__name__
            rec["duration"] = float(self.renderer.time)
            Path(path).write_text(json.dumps(rec), encoding="utf-8")
        return out


def _load(path: str, cls: str) -> type:
    scenes_dir = str(Path(path).resolve().parent)
    if scenes_dir not in sys.path:
        sys.path.insert(0, scenes_dir)
    name = f"_flashanim_scene_{Path(path).stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return getattr(module, cls)


def _hex_background(self) -> str:
    from manim import ManimColor

    return ManimColor(self.renderer.camera.background_color).to_hex()


def wrap_scene(path: str, cls: str, module: str, slides: bool = False) -> type:
    """The class ``cls`` of the scene file ``path`` with the render hooks (and
    :class:`manim_slides.Slide`), named ``cls`` and placed in ``module`` so that
    Manim finds it there and names its files after it."""
    base = _load(path, cls)
    bases: tuple[type, ...] = (_Recorder, base)
    ns: dict = {"__module__": module, "__qualname__": cls}
    if slides:
        from manim_slides import Slide

        bases = (_Recorder, Slide, base)
        ns["skip_reversing"] = True  # reversed clips are for `present` only
        folder = Path(os.environ.get(SLIDES_ENV, "slides"))

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("output_folder", folder)
            super(wrapped, self).__init__(*args, **kwargs)

        ns["__init__"] = __init__
        # Scenes may set camera.background_color to a hex string; manim-slides
        # expects a ManimColor there.
        ns["_background_color"] = property(_hex_background)
    wrapped = type(cls, bases, ns)
    return wrapped
