"""A :class:`~manim.Scene` base that redraws only what moves (Cairo renderer).

Manim's Cairo renderer paints the mobjects that do not move into a background image
once per ``play`` and redraws the moving ones on every frame. Which ones move it
decides by z-order: everything from the first animated mobject onwards counts as
moving (:meth:`manim.Scene.get_moving_mobjects`). The scenes here animate a counter,
a code highlight and a progress line in every event, and those sit low in the
z-order, so nearly the whole screen was redrawn on every frame.

:class:`FastRenderScene` decides by what actually moves and where it is:

* moving = the families of the animations' mobjects, of mobjects with updaters and
  of foreground mobjects (what Manim itself treats as moving);
* a still mobject above a moving one in z-order is redrawn with it only if their
  bounding boxes meet. This is checked on every frame against the moving
  mobjects' boxes at that frame; when a new one has to be promoted (with every
  still mobject above it that it meets), the background is painted again without
  it. The z-order of every pair of mobjects that meet on screen is Manim's.

So each frame draws the same mobjects in the same order where they overlap, and the
pixels are the same as Manim's, but most frames draw a few tiles instead of the
whole screen.

It also sets x264 faster for the partial movie files (Manim uses libx264's
default, ``medium``): ``FLASHANIM_X264_PRESET``, by default :data:`DEFAULT_PRESET`
with :data:`DEFAULT_X264_PARAMS` and no B-frames, or :data:`PREVIEW_PRESET` for
previews of 480 rows or fewer, at the same constant rate factor (see
:func:`x264_options`).
"""

from __future__ import annotations

import gc
import math
import os
import types
import weakref
from typing import TYPE_CHECKING

import numpy as np
from manim import Camera, Mobject, Scene, VMobject, config
from manim.camera.camera import CAP_STYLE_MAP, LINE_JOIN_MAP
from manim.constants import CapStyleType, LineJointType, RendererType
from manim.utils.family import extract_mobject_family_members
from manim.utils.iterables import list_update

from . import _speedups
from ._switch import engine_on
from .text import drawing_style, use_private_text_dir

if TYPE_CHECKING:
    from collections.abc import Iterable

    from manim import Animation

__all__ = [
    "FastRenderScene",
    "DEFAULT_PRESET",
    "PREVIEW_PRESET",
    "PRESET_ENV",
    "x264_preset",
    "x264_options",
    "DEFAULT_X264_PARAMS",
    "THREADS_ENV",
    "x264_threads",
]

#: Most background checkpoints kept (one frame each).
_CHECKPOINTS = 3
#: Fewest leaves worth a checkpoint.
_MIN_RUN = 16

#: Garbage-collector thresholds while a scene plays (Python's: 700, 10, 10).
_GC_THRESHOLDS = (20000, 20, 100)

#: Environment variable naming the x264 preset of the partial movie files.
PRESET_ENV = "FLASHANIM_X264_PRESET"
#: The preset used when :data:`PRESET_ENV` is not set (above 480 rows).
DEFAULT_PRESET = "veryfast"
#: x264 settings added to :data:`DEFAULT_PRESET` when no preset is chosen, with
#: no B-frames (``bf`` 0): a diamond motion search at whole pixels, 16 x 16
#: partitions only, a 10-frame look-ahead, no weighted prediction. On 720 real
#: 1080p frames of two scenes (one x264 thread): 11 ms a frame against 19 ms for
#: plain ``veryfast`` and 17 ms for ``veryfast`` without B-frames; files 1.24x
#: and 1.08x the size, luma PSNR 47.1 dB against 48.1 and 48.2 (``superfast``:
#: 13.8 ms, 1.8x the size; ``ultrafast``: 8.7 ms, 3.8x).
DEFAULT_X264_PARAMS = "me=dia:subme=0:partitions=none:rc-lookahead=10:weightp=0"
#: The preset of previews (480 rows or fewer) when :data:`PRESET_ENV` is not set:
#: about 5 % less CPU than ``veryfast`` for a 480p scene, files about twice as big.
PREVIEW_PRESET = "ultrafast"


#: Environment variable naming x264's own thread count for the partial movie
#: files: unset, x264 decides (about 1.5 threads a core); the talk's runner sets
#: it to 1 while its renders occupy every core (:func:`flashanim.talk.render_scenes`).
THREADS_ENV = "FLASHANIM_X264_THREADS"

#: x264's presets, fastest first.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                "slow", "slower", "veryslow", "placebo")  # fmt: skip


def x264_threads(environ=None) -> str | None:
    """x264's thread count from :data:`THREADS_ENV` (``None``: x264's own choice).

    With every core already running a render, x264's frame threads only add
    work: a 1080p frame cost 19-21 ms of CPU in one thread against 24-28 ms
    with x264's default threads (2 cores, 600 frames of the backward scene).
    """
    env = os.environ if environ is None else environ
    chosen = env.get(THREADS_ENV, "").strip()
    if not chosen:
        return None
    if not chosen.isdigit() or int(chosen) < 1:
        raise ValueError(
            f"{THREADS_ENV}={chosen!r} is not a thread count; give a whole number "
            "of at least 1 (or leave it unset for x264's own choice)"
        )
    return str(int(chosen))


def x264_preset(pixel_height: int, environ=None) -> str:
    """The x264 preset of the partial movie files of a render ``pixel_height``
    rows high: :data:`PRESET_ENV` if set, else :data:`PREVIEW_PRESET` up to 480
    rows and :data:`DEFAULT_PRESET` above."""
    env = os.environ if environ is None else environ
    chosen = env.get(PRESET_ENV, "").strip().lower()
    if chosen:
        if chosen not in X264_PRESETS:
            # (the parameter table refuses it before a render; this guards the rest)
            raise ValueError(
                f"{PRESET_ENV}={chosen!r} is not an x264 preset; choose one of "
                f"{', '.join(X264_PRESETS)}"
            )
        return chosen
    return PREVIEW_PRESET if pixel_height <= 480 else DEFAULT_PRESET


def x264_options(pixel_height: int, environ=None) -> dict[str, str]:
    """x264's options (besides the rate factor and threads) for the partial movie
    files of a render ``pixel_height`` rows high: the preset of
    :func:`x264_preset`, and with :data:`DEFAULT_PRESET` when it was not chosen,
    :data:`DEFAULT_X264_PARAMS` without B-frames. The cut's join encodes with the
    same options, so that its parameter sets are the clips' own."""
    env = os.environ if environ is None else environ
    preset = x264_preset(pixel_height, env)
    if env.get(PRESET_ENV, "").strip() or preset != DEFAULT_PRESET:
        return {"preset": preset}
    return {"preset": preset, "bf": "0", "x264-params": DEFAULT_X264_PARAMS}


_PRE_DISPLAY = Camera.transform_points_pre_display
_MANIM_SET_PATH = Camera.set_cairo_context_path

# Stands in a frame's draw list so that it is never empty (an empty list makes the
# renderer draw every mobject of the scene).
_EMPTY = Mobject()

# Bounding boxes are taken from points; strokes and antialiasing reach a little
# further (scene units; a 1080p pixel is 0.0074 units).
_MARGIN = 0.08


def _boxes(mobs: list[Mobject]) -> np.ndarray:
    """``(n, 4)`` array of ``xmin, ymin, xmax, ymax`` of each mobject's own points."""
    out = np.empty((len(mobs), 4))
    for k, m in enumerate(mobs):
        p = m.points
        if len(p) == 0:
            out[k] = (np.inf, np.inf, -np.inf, -np.inf)
            continue
        lo = p.min(axis=0)
        hi = p.max(axis=0)
        out[k] = (lo[0], lo[1], hi[0], hi[1])
    out[:, :2] -= _MARGIN
    out[:, 2:] += _MARGIN
    return out


def _meets(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` booleans: box ``a[i]`` meets box ``b[j]``."""
    return (
        (a[:, None, 0] <= b[None, :, 2])
        & (b[None, :, 0] <= a[:, None, 2])
        & (a[:, None, 1] <= b[None, :, 3])
        & (b[None, :, 1] <= a[:, None, 3])
    )


def _animation_mobjects(animations: Iterable[Animation]) -> list[Mobject]:
    out: list[Mobject] = []
    for anim in animations:
        out.extend(anim.mobject.get_family())
        inner = getattr(anim, "animations", None)
        if inner:
            out.extend(_animation_mobjects(inner))
    return out


class FastRenderScene(Scene):
    """A :class:`~manim.Scene` whose frames redraw only what moves.

    Use it as the base of a scene instead of :class:`~manim.Scene`; nothing else
    changes.

    Examples
    --------
    .. code-block:: python

        from manim import Square, Circle, Text, LEFT, RIGHT
        from flashanim.engine import FastRenderScene

        class Demo(FastRenderScene):
            def construct(self):
                dot = Circle(radius=0.2).shift(3 * LEFT)
                self.add(dot, *[Square(0.5).shift(i * RIGHT) for i in range(3)])
                self.play(dot.animate.shift(6 * RIGHT))  # drawn over the squares? no:
                # the squares come later in z-order, so they are redrawn over it
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fr_on = False  # the engine serves this scene (while it renders)
        self._fr_split: _Split | None = None

    def _fr_start(self) -> None:
        """Fit this scene's renderer, camera and file writer (engine on)."""
        if getattr(self, "_fr_fitted", False):
            return
        self._fr_fitted = True
        use_private_text_dir()  # (renders side by side: see its docstring)
        self._fr_static = _StaticCache(self.renderer)
        if hasattr(self.renderer, "render"):
            _skip_invisible(self.renderer)
        camera = getattr(self.renderer, "camera", None)
        if camera is not None and hasattr(camera, "set_cairo_context_path"):
            camera.set_cairo_context_path = types.MethodType(_set_path, camera)
        writer = getattr(self.renderer, "file_writer", None)
        if writer is not None and hasattr(writer, "open_partial_movie_stream"):
            _use_preset(writer, x264_options(config.pixel_height), x264_threads(),
                        getattr(self, "X264_OPTIONS", None))  # fmt: skip

    def add_mobjects_from_animations(self, animations: list[Animation]) -> None:
        """As Manim's, without a walk of the whole scene for each mobject added.

        Manim adds each animated mobject that is not in the scene with
        :meth:`add`, which first removes it and every member of its family from
        everywhere in the scene (a walk over every mobject). When none of them is
        in the scene and there are no foreground mobjects (which ``add`` also
        moves), that removal changes nothing, so the mobject is appended
        directly; ``moving_mobjects`` is replaced when the animations begin,
        right after.
        """
        if (
            not self._fr_on
            or self.foreground_mobjects
            or config.renderer != RendererType.CAIRO
        ):
            return super().add_mobjects_from_animations(animations)
        present = {id(m) for m in self.get_mobject_family_members()}
        for animation in animations:
            if animation.is_introducer():
                continue
            mob = animation.mobject
            if mob is not None and id(mob) not in present:
                family = [id(m) for m in mob.get_family()]
                if present.isdisjoint(family):
                    self.mobjects.append(mob)
                else:  # add takes its family's members out of the scene first
                    self.add(mob)
                present.update(family)

    # Manim calls this from ``begin_animations`` (Cairo renderer only).
    def get_moving_and_static_mobjects(
        self, animations: Iterable[Animation]
    ) -> tuple[list[Mobject], list[Mobject]]:
        if not self._fr_on:
            return super().get_moving_and_static_mobjects(animations)
        animations = list(animations)
        roots = list_update(self.mobjects, self.foreground_mobjects)
        z = self.renderer.camera.use_z_index
        members = extract_mobject_family_members(roots, use_z_index=z)
        everything = [m for m in members if m.has_points()]
        moving_ids = {id(m) for m in _animation_mobjects(animations)}
        for m in members:
            if m.updaters:
                moving_ids.update(id(f) for f in m.get_family())
        for fg in self.foreground_mobjects:
            moving_ids.update(id(f) for f in fg.get_family())
        self._fr_split = None
        # no updaters anywhere: updating the mobjects each frame does nothing
        self._fr_still = (
            None if any(m.updaters for m in members) else len(self.mobjects)
        )
        if self._fr_still is None:
            _speedups.updaters_seen()  # (added before the engine was on)
        if not any(id(m) in moving_ids for m in everything):
            # as Manim: the moving mobjects without points (a Wait's, a group's)
            # stand for the moving ones, so a frozen frame is not drawn over its
            # background again
            return [m for m in members if id(m) in moving_ids], everything
        split = _Split(everything, moving_ids)
        self._fr_split = split
        split.check()  # the state the animations begin in
        return split.draw_list(), split.static_list()

    def update_mobjects(self, dt: float) -> None:
        if not self._fr_on:
            return super().update_mobjects(dt)
        if not _speedups.updaters_possible(getattr(self, "_fr_class_update", None)):
            return  # no mobject can hold an updater: the walk would change nothing
        still = getattr(self, "_fr_still", None)
        if still is not None and still == len(self.mobjects) and dt != 0:
            return  # (as at the start of the play: nothing has an updater)
        super().update_mobjects(dt)

    def update_to_time(self, t: float) -> None:
        super().update_to_time(t)
        split = self._fr_split
        if split is not None and split.check():
            # a moving mobject now meets a still one above it: repaint the
            # background without it and draw it on every frame from now on
            # (keeping what the play added to the scene meanwhile, as Manim does)
            extras = [m for m in self.moving_mobjects if id(m) not in split.ids]
            self.moving_mobjects = split.draw_list() + extras
            self.renderer.save_static_frame_data(self, split.static_list())

    def render(self, preview: bool = False):
        """Render with the speed engine on (Manim's own path where it cannot be:
        see :mod:`flashanim.engine`); Manim's internals are restored after."""
        thresholds = gc.get_threshold()
        with engine_on() as on:
            self._fr_on = on
            if on:
                self._fr_start()
            try:
                return super().render(preview)
            finally:
                self._fr_on = False
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    def play(self, *args, **kwargs) -> None:
        if not self._fr_on:
            return super().play(*args, **kwargs)
        if not getattr(self, "_fr_gc", False):
            # Everything made before the first play (imported modules, the
            # recorded trace, the layout) lives to the end: leave it out of
            # the garbage collector's scans, and scan less often. Full
            # collections over those objects took ~10 % of a render.
            self._fr_gc = True
            gc.collect()
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLDS)
        # whether a class overrides Mobject.update: asked once a play, not a frame
        self._fr_class_update = _speedups._overrides_update(Mobject)
        super().play(*args, **kwargs)

    def play_internal(self, skip_rendering: bool = False) -> None:
        try:
            super().play_internal(skip_rendering)
        finally:
            self._fr_split = None
            self._fr_still = None


def _fingerprint(m: Mobject, _vm=VMobject):
    """What a leaf draws, hashed to one int (a fresh object if unknown)."""
    if not isinstance(m, _vm):
        return object()
    return hash((id(m), m.points.tobytes(), *drawing_style(m)))


def _draws_nothing(m: Mobject) -> bool:
    """A leaf with no visible fill or stroke whose drawing leaves Cairo as it was."""
    if not isinstance(m, VMobject) or m.get_background_image() is not None:
        return False
    if len(m.fill_rgbas) and m.fill_rgbas[:, 3].max() > 0:
        return False
    for width, rgbas in (
        (m.stroke_width, m.stroke_rgbas),
        (m.background_stroke_width, m.background_stroke_rgbas),
    ):
        if width == 0:
            continue
        if len(rgbas) and rgbas[:, 3].max() > 0:
            return False
        if m.joint_type != LineJointType.AUTO or m.cap_style != CapStyleType.AUTO:
            return False  # its stroke would set the line join or cap
    return True


class _StaticCache:
    """The renderer's background painting, repaired where it changed.

    Manim paints every still mobject into a fresh background at each ``play``.
    Between two plays few still mobjects change, so this

    1. compares what each leaf draws (:func:`_fingerprint`) with the previous
       background's leaves; if the leaves common to both are in the same order
       and the line join and cap Cairo starts from are the same, it takes the
       previous background and repaints only the pixel rectangles where a leaf
       appeared, disappeared or changed (the leaves' boxes with a margin for
       strokes and antialiasing): the rectangles are reset to the camera's
       background and every leaf that meets them is drawn again, in z-order,
       each with the line join and cap it would have been drawn with in a full
       painting, on a scratch frame whose rectangles are then copied in (a Cairo
       clip would composite some edge pixels one level differently);
    2. otherwise paints it whole, resuming from a checkpoint: the background as
       it was after the first ``k`` leaves (for a few ``k``), when the new
       background begins with the same ``k`` leaves.

    Leaves that draw nothing are skipped. The pixels are the same as Manim's.
    """

    def __init__(self, renderer) -> None:
        self.renderer = renderer
        self.prints: list = []
        self.checkpoints: dict[int, tuple[np.ndarray, tuple]] = {}
        self.hits = self.leaves_drawn = self.leaves_total = self.repairs = 0
        self._prev: dict | None = None
        self._scratch: np.ndarray | None = None
        if hasattr(renderer, "save_static_frame_data"):
            renderer.save_static_frame_data = self.save_static_frame_data

    def save_static_frame_data(self, scene, static_mobjects):
        r = self.renderer
        r.static_image = None
        if not static_mobjects:
            return None
        cam = r.camera
        leaves = cam.get_mobjects_to_display(static_mobjects)
        prints = [_fingerprint(m) for m in leaves]
        ctx = cam.get_cairo_context(cam.pixel_array)
        state = (ctx.get_line_join(), ctx.get_line_cap())
        common = 0
        for a, b in zip(self.prints, prints, strict=False):
            if a != b:
                break
            common += 1
        boxes = self._repair(cam, ctx, leaves, prints, state)
        if boxes is None:
            boxes = self._paint(cam, leaves, prints, common)
        else:
            self.repairs += 1
            self.checkpoints = {
                k: v for k, v in self.checkpoints.items() if k <= common
            }
        self.leaves_total += len(leaves)
        self.prints = prints
        r.static_image = r.get_frame()
        self._prev = {
            "prints": prints,
            "boxes": boxes,
            "state": state,
            "image": r.static_image,
            "frame": _frame_key(cam),
        }
        return r.static_image

    def _paint(self, cam, leaves, prints, common) -> dict:
        """Paint the whole background (from a checkpoint where one fits)."""
        keep = {k: v for k, v in self.checkpoints.items() if k <= common}
        start = max(keep, default=0)
        ctx = cam.get_cairo_context(cam.pixel_array)
        if start:
            image, (join, cap) = keep[start]
            cam.set_frame_to_background(image)
            ctx.set_line_join(join)
            ctx.set_line_cap(cap)
            self.hits += 1
        else:
            cam.reset()
        stops = [start]
        if common - start >= _MIN_RUN:
            stops.append(common)  # drawn the same twice running: worth keeping
        stops.append(len(leaves))
        for a, b in zip(stops, stops[1:], strict=False):
            todo = [m for m in leaves[a:b] if not _draws_nothing(m)]
            self.leaves_drawn += len(todo)
            if todo:
                cam.capture_mobjects(todo, include_submobjects=False)
            if b == common and b != len(leaves):
                ctx = cam.get_cairo_context(cam.pixel_array)
                keep[b] = (cam.pixel_array.copy(),
                           (ctx.get_line_join(), ctx.get_line_cap()))  # fmt: skip
        self.checkpoints = dict(sorted(keep.items())[-_CHECKPOINTS:])
        old = self._prev["boxes"] if self._prev else {}
        return _leaf_boxes(cam, leaves, prints, old)

    def _repair(self, cam, ctx, leaves, prints, state) -> dict | None:
        """Repaint only what changed since the previous background; the boxes of
        the leaves that draw, or ``None`` where it cannot."""
        prev = self._prev
        if prev is None or prev["state"] != state or prev["frame"] != _frame_key(cam):
            return None
        if any(not isinstance(m, VMobject) or m.get_background_image() is not None
               for m in leaves):  # fmt: skip
            return None
        old_boxes = prev["boxes"]
        boxes = _leaf_boxes(cam, leaves, prints, old_boxes)
        new_set = set(boxes)
        old_order = [p for p in prev["prints"] if p in new_set]
        new_order = [p for p in prints if p in old_boxes]
        if old_order != new_order:
            return None  # the common leaves changed places in z-order
        dirty = [b for p, b in old_boxes.items() if p not in new_set]
        dirty += [b for p, b in boxes.items() if p not in old_boxes]
        cam.set_frame_to_background(prev["image"])
        if not dirty:
            return boxes
        rects = np.array(dirty, dtype=np.int64)
        h, w = cam.pixel_array.shape[:2]
        rects[:, [0, 2]] = rects[:, [0, 2]].clip(0, w)
        rects[:, [1, 3]] = rects[:, [1, 3]].clip(0, h)
        rects = rects[(rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])]
        area = ((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])).sum()
        if area > _MAX_REPAIR * w * h:
            return None
        if len(rects) == 0:
            return boxes
        background = cam.background
        for x0, y0, x1, y1 in rects.tolist():
            cam.pixel_array[y0:y1, x0:x1] = background[y0:y1, x0:x1]
        # the leaves to draw again, and the line join/cap each is drawn with
        drawing = [(m, p) for m, p in zip(leaves, prints, strict=True) if p in boxes]
        lb = np.array([boxes[p] for _, p in drawing], dtype=np.int64).reshape(-1, 4)
        meets = (
            (lb[:, None, 0] < rects[None, :, 2])
            & (rects[None, :, 0] < lb[:, None, 2])
            & (lb[:, None, 1] < rects[None, :, 3])
            & (rects[None, :, 1] < lb[:, None, 3])
        ).any(axis=1)
        # drawn unclipped on a scratch frame whose rectangles start as the
        # background, then those rectangles copied in: in them, the same pixels
        # as a full painting (a clip would composite differently by one level)
        scratch = self._scratch
        if scratch is None or scratch.shape != cam.pixel_array.shape:
            scratch = self._scratch = np.empty_like(cam.pixel_array)
        for x0, y0, x1, y1 in rects.tolist():
            scratch[y0:y1, x0:x1] = background[y0:y1, x0:x1]
        sctx = cam.get_cairo_context(scratch)
        join, cap = state
        todo = 0
        for (m, _), redraw in zip(drawing, meets.tolist(), strict=True):
            if redraw:
                sctx.set_line_join(join)
                sctx.set_line_cap(cap)
                cam.display_vectorized(m, sctx)
                todo += 1
            join, cap = _state_after(m, join, cap)
        for x0, y0, x1, y1 in rects.tolist():
            cam.pixel_array[y0:y1, x0:x1] = scratch[y0:y1, x0:x1]
        ctx.set_line_join(join)
        ctx.set_line_cap(cap)
        self.leaves_drawn += todo
        return boxes


#: Largest share of the frame repaired in place (above it, paint it whole).
_MAX_REPAIR = 0.5


def _frame_key(cam) -> tuple:
    return (cam.pixel_array.shape, cam.frame_width, cam.frame_height,
            tuple(np.asarray(cam.frame_center, dtype=float)),
            id(cam.background))  # fmt: skip


def _state_after(m: VMobject, join, cap) -> tuple:
    """Cairo's line join and cap after Manim draws ``m`` (see ``apply_stroke``)."""
    if m.joint_type is LineJointType.AUTO and m.cap_style is CapStyleType.AUTO:
        return join, cap
    if m.get_stroke_width(True) == 0 and m.get_stroke_width(False) == 0:
        return join, cap
    if m.joint_type != LineJointType.AUTO:
        join = LINE_JOIN_MAP[m.joint_type]
    if m.cap_style != CapStyleType.AUTO:
        cap = CAP_STYLE_MAP[m.cap_style]
    return join, cap


def _leaf_boxes(cam, leaves, prints, known: dict) -> dict:
    """``{fingerprint: (x0, y0, x1, y1)}`` in pixels of each leaf that draws
    something, with a margin for its strokes (miters included) and antialiasing."""
    pw, ph = cam.pixel_array.shape[1], cam.pixel_array.shape[0]
    sx, sy = pw / cam.frame_width, ph / cam.frame_height
    cx, cy = cam.frame_center[0], cam.frame_center[1]
    out = {}
    for m, p in zip(leaves, prints, strict=True):
        box = known.get(p)
        if box is None:
            if _draws_nothing(m):
                continue
            pts = m.points
            if len(pts) == 0:
                continue
            lo = pts.min(axis=0)
            hi = pts.max(axis=0)
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                out[p] = (0, 0, 0, 0)  # Manim draws nothing for it (but strokes)
                continue
            width = max(m.get_stroke_width(True), m.get_stroke_width(False))
            # half the line width, times Cairo's miter limit (10), plus 2 px
            pad = 2 + math.ceil(width * cam.cairo_line_width_multiple * sx * 5)
            box = (
                math.floor((lo[0] - cx) * sx + pw / 2) - pad,
                math.floor((cy - hi[1]) * sy + ph / 2) - pad,
                math.ceil((hi[0] - cx) * sx + pw / 2) + pad,
                math.ceil((cy - lo[1]) * sy + ph / 2) + pad,
            )
        out[p] = box
    return out


class _Split:
    """The moving/still split of one ``play``, grown frame by frame."""

    def __init__(self, everything: list[Mobject], moving_ids: set[int]) -> None:
        self.everything = everything
        self.ids = {id(m) for m in everything}
        self.is_moving = np.array([id(m) in moving_ids for m in everything])
        self.drawn = self.is_moving.copy()  # moving, or promoted still mobjects
        self.moving_idx = np.flatnonzero(self.is_moving)
        first = self.moving_idx[0]
        # still mobjects above the lowest moving one: the only ones that may have
        # to be drawn over a moving mobject
        self.cand_idx = np.array(
            [k for k in range(first + 1, len(everything)) if not self.is_moving[k]],
            dtype=int,
        )
        self.cand_boxes = _boxes([everything[k] for k in self.cand_idx])
        self._cand_meets: np.ndarray | None = None
        self._draw: list[Mobject] | None = None

    def draw_list(self) -> list[Mobject]:
        if self._draw is None:
            self._draw = [m for m, d in zip(self.everything, self.drawn, strict=True)
                          if d]  # fmt: skip
        return list(self._draw)

    def static_list(self) -> list[Mobject]:
        return [m for m, d in zip(self.everything, self.drawn, strict=True) if not d]

    def check(self) -> bool:
        """Promote the still mobjects that now meet a moving one below them;
        ``True`` if any was promoted."""
        if len(self.cand_idx) == 0:
            return False
        waiting = ~self.drawn[self.cand_idx]
        if not waiting.any():
            return False
        boxes = _boxes([self.everything[k] for k in self.moving_idx])
        hit = _meets(boxes, self.cand_boxes)
        hit &= self.moving_idx[:, None] < self.cand_idx[None, :]
        new = hit.any(axis=0) & waiting
        if not new.any():
            return False
        self._promote(new)
        return True

    def _promote(self, new: np.ndarray) -> None:
        # still mobjects above a promoted one that meet it are promoted too
        if self._cand_meets is None:
            meets = _meets(self.cand_boxes, self.cand_boxes)
            self._cand_meets = meets & (self.cand_idx[:, None] < self.cand_idx[None, :])
        todo = list(np.flatnonzero(new))
        self._draw = None
        promoted = np.zeros(len(self.cand_idx), dtype=bool)
        while todo:
            j = todo.pop()
            if promoted[j]:
                continue
            promoted[j] = True
            self.drawn[self.cand_idx[j]] = True
            todo.extend(
                k
                for k in np.flatnonzero(self._cand_meets[j])
                if not self.drawn[self.cand_idx[k]]
            )


def _skip_invisible(renderer) -> None:
    """Leave out of each frame the leaves that draw nothing in it (faded out),
    and hand the encoder each frame already in YUV where it can take it
    (:func:`_yuv_direct`)."""
    original = renderer.render

    def render(scene, time, moving_mobjects=None):
        if moving_mobjects and getattr(scene, "_fr_split", None) is not None:
            moving_mobjects = [_EMPTY] + [
                m for m in moving_mobjects if m.submobjects or not _draws_nothing(m)
            ]
        if not _yuv_direct(renderer):
            return original(scene, time, moving_mobjects)
        # Manim's CairoRenderer.render, with the frame converted from the camera's
        # pixels instead of copied out of them first (8 MB, ~2 ms at 1080p)
        renderer.update_frame(scene, moving_mobjects)
        yuv = _speedups.rgba_to_yuv420p(renderer.camera.pixel_array)
        renderer.add_frame(yuv.view(_speedups.Yuv420p))

    renderer.render = render


def _yuv_direct(renderer) -> bool:
    """Whether the frame being rendered goes only to an x264 yuv420p partial movie
    (no PNG frames, no GIF capture, even sizes, OpenCV there), so the encoder can
    be handed YUV planes instead of the RGBA pixels."""
    writer = getattr(renderer, "file_writer", None)
    job = getattr(writer, "_current_encode_job", None)
    ctx = getattr(getattr(job, "stream", None), "codec_context", None)
    if ctx is None or ctx.name != "libx264" or ctx.pix_fmt != "yuv420p":
        return False
    from manim.scene.scene_file_writer import SceneFileWriter

    return (
        not config.transparent
        and config.format in (None, "mp4")
        and not getattr(SceneFileWriter.write_frame, "_flashanim_capture", False)
        and _speedups.even_rgba(renderer.camera.pixel_array)
        and _speedups.opencv_available()
    )


def _set_path(camera, ctx, vmobject):
    """:meth:`manim.Camera.set_cairo_context_path` in plain Python floats.

    Manim finds the subpaths with a dozen NumPy calls and then indexes a NumPy
    array six times a curve; for the few dozen points of a glyph the overhead is
    most of the time. This makes the same Cairo calls with the same numbers (the
    same finiteness check, the same closeness test as ``np.isclose`` with
    ``rtol=1e-5`` and the mobject's ``atol``), so the path is the same.

    A leaf drawn twice with the same points under the same matrix (a tile fading
    in, a still mobject painted again) keeps Cairo's copy of its path and
    replays it (one ``append_path`` instead of a call per curve); a moving leaf
    keeps nothing.
    """
    if type(camera).transform_points_pre_display is not _PRE_DISPLAY:
        return _MANIM_SET_PATH(camera, ctx, vmobject)
    n = len(vmobject.points)
    if n == 0:
        return camera
    # the same points under the same matrix as last time: replay that path
    key = (hash(vmobject.points.tobytes()), n, tuple(ctx.get_matrix()),
           vmobject.tolerance_for_point_equality)  # fmt: skip
    try:
        seen = _PATHS.get(vmobject)
    except TypeError:  # (a leaf that cannot be weakly referenced or hashed)
        _build_path(ctx, vmobject, n)
        return camera
    if seen is not None and seen[0] == key:
        if seen[1] is not None:
            ctx.new_path()
            ctx.append_path(seen[1])
            return camera
        keep = True  # drawn twice alike: worth keeping from now on
    else:
        _PATHS[vmobject] = (key, None)  # (moving, perhaps: keep nothing yet)
        keep = False
    _build_path(ctx, vmobject, n)
    if keep:
        _PATHS[vmobject] = (key, ctx.copy_path())
    return camera


#: Per leaf: the key of the path last drawn for it, and that path once it was
#: drawn twice alike (weak: it goes with the leaf).
_PATHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _build_path(ctx, vmobject, n: int) -> None:
    flat = vmobject.points.ravel().tolist()
    ctx.new_path()
    nppcc = vmobject.n_points_per_cubic_curve
    if n < nppcc or not all(map(math.isfinite, flat)):
        return  # (Manim draws one point at the origin: nothing)
    xs, ys = flat[0::3], flat[1::3]
    atol, rtol = vmobject.tolerance_for_point_equality, 1.0e-5
    starts = [0]
    for b in range(nppcc, n, nppcc):
        sx, sy = xs[b], ys[b]
        if abs(xs[b - 1] - sx) > atol + rtol * abs(sx) or abs(
            ys[b - 1] - sy
        ) > atol + rtol * abs(sy):
            starts.append(b)
    starts.append(n)
    move_to, curve_to = ctx.move_to, ctx.curve_to
    for start, end in zip(starts, starts[1:], strict=False):
        if end - start < nppcc:
            continue
        ctx.new_sub_path()
        move_to(xs[start], ys[start])
        for i in range(start + 1, end - nppcc + 2, nppcc):
            curve_to(xs[i], ys[i], xs[i + 1], ys[i + 1], xs[i + 2], ys[i + 2])
        if vmobject.consider_points_equals_2d(
            (xs[start], ys[start]), (xs[end - 1], ys[end - 1])
        ):
            ctx.close_path()


def _use_preset(writer, x264: dict[str, str], threads: str | None = None,
                extra: dict[str, str] | None = None) -> None:  # fmt: skip
    """Make ``writer`` open its partial movie streams with the ``x264`` options
    (:func:`x264_options`; and ``threads`` x264 threads, when given, and a scene
    class's ``X264_OPTIONS``, ``extra``)."""
    options = {**x264, **(extra or {})}
    if threads is not None:
        options["threads"] = threads
    if (
        not options.get("preset")
        or getattr(writer, "_flashanim_preset", None) == options
    ):
        return
    original = writer.open_partial_movie_stream

    def open_partial_movie_stream(*args, **kwargs):
        original(*args, **kwargs)
        job = getattr(writer, "_current_encode_job", None)
        stream = getattr(job, "stream", None)
        ctx = getattr(stream, "codec_context", None)
        if (
            ctx is not None
            and not ctx.is_open
            and ctx.name == "libx264"
            and not config.transparent
        ):
            ctx.options = {**ctx.options, **options}

    writer.open_partial_movie_stream = open_partial_movie_stream
    writer._flashanim_preset = options
