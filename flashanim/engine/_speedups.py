"""Faster equivalents of Manim internals that the scenes call thousands of times.

Installed by :func:`install` while the engine is on
(:func:`flashanim.engine.engine_on`, around a scene's render) and removed by
:func:`uninstall` after. Each replacement returns exactly what Manim's own code
returns; tests in ``tests/test_speedups.py`` compare them on random trees.

* :meth:`manim.Mobject.get_family` recurses, building a list and removing
  repeats at every level of the tree (one scene calls it ~10⁵ times a render,
  10-16 % of the render time). The family is the depth-first pre-order of the
  tree with each mobject kept at its *last* occurrence; removing repeats once at
  the end gives the same list as removing them at every level, since only the
  order of last occurrences decides it.
* :meth:`manim.Mobject.__deepcopy__` (every ``copy()``, and Transform copies
  each mobject twice when it begins) deep-copies each attribute through
  :func:`copy.deepcopy`; the attributes are mostly numbers, enums and NumPy
  arrays. Those are copied directly (arrays with ``ndarray.copy(order="K")``,
  which is what ``ndarray.__deepcopy__`` does, through the same memo, so shared
  arrays stay shared); anything else still goes through :func:`copy.deepcopy`.
* :meth:`manim.Scene.get_restructured_mobject_list` (every ``Scene.remove``,
  so every animation's clean-up) builds the whole family of every mobject in
  the scene to intersect it with what is removed. A depth-first search that
  stops at the first removed mobject answers "does this family hold any?" without
  building lists; only families that do are then taken apart as Manim does.
* :meth:`manim.Scene.update_mobjects` calls ``update`` on every mobject of the
  scene, which recurses through the whole tree each frame only to find that no
  mobject has an updater. A mobject's ``updaters`` can only be filled through
  :meth:`manim.Mobject.add_updater` (copies copy lists that one filled), so
  :func:`updaters_possible` is ``False`` until ``add_updater`` is first called in
  this process (or some class overrides ``update``), and the walk is skipped
  until then.
* Manim's partial-movie encoder (``_PartialMovieEncodeJob._encode_and_write_frame``)
  builds each frame with PyAV's ``from_ndarray`` (~15 ms for a 1080p RGBA frame
  here, against ~1.5 ms for a copy into the frame's plane), converts it to YUV
  with swscale (11-14 ms at 1080p) and converts a still frame written ``n`` times
  (a ``wait``) ``n`` times; :func:`_encode_repeats_once` converts with OpenCV
  (:func:`rgba_to_yuv420p`, ~5 ms), once per still stretch, and copies the
  planes into each frame. This one changes pixels: Y within 1 of swscale's, the
  chroma that of each 2 x 2 pixels' mean colour, within 1.5 of the exact value.
* :meth:`manim.VMobject.get_subpaths_from_points` (every ``align_points`` of a
  Transform between different shapes) compares consecutive anchors with one
  ``np.allclose`` call per curve; Manim's own vectorised
  :meth:`~manim.VMobject.get_subpath_split_indices_from_points` finds the same
  splits in one pass, and the same subpaths are cut from them.
"""

from __future__ import annotations

import copy
import enum
import types

import av
import numpy as np
from manim import ManimColor, Mobject, Scene, VMobject
from manim.scene import scene_file_writer

__all__ = [
    "install",
    "uninstall",
    "get_family",
    "deepcopy_mobject",
    "MANIM_GET_FAMILY",
    "MANIM_DEEPCOPY",
    "MANIM_RESTRUCTURED",
    "get_restructured_mobject_list",
    "updaters_possible",
    "updaters_seen",
    "get_subpaths_from_points",
    "rgba_to_yuv420p",
    "even_rgba",
    "opencv_available",
    "Yuv420p",
]

#: Manim's own implementations (kept for tests and for :func:`uninstall`).
MANIM_GET_FAMILY = Mobject.get_family
MANIM_DEEPCOPY = Mobject.__deepcopy__
MANIM_RESTRUCTURED = Scene.get_restructured_mobject_list
MANIM_ADD_UPDATER = Mobject.add_updater
MANIM_SUBPATHS = VMobject.get_subpaths_from_points
MANIM_UPDATE = Mobject.update

#: Whether :meth:`manim.Mobject.add_updater` has been called in this process.
_updater_added = False

# what copy.deepcopy returns unchanged
_ATOMIC = {
    type(None), int, float, bool, complex, bytes, str, type, range,
    types.BuiltinFunctionType, types.FunctionType, types.CodeType, property,
}  # fmt: skip
_OTHER = 0
_SAME = 1
_ARRAY = 2
_COLOR = 3
_KIND: dict[type, int] = {}


def _kind(t: type) -> int:
    """How :func:`deepcopy_mobject` copies an attribute of type ``t`` (cached)."""
    if t in _ATOMIC or (issubclass(t, enum.Enum) and "__deepcopy__" not in
                        t.__dict__):  # fmt: skip
        k = _SAME  # (Enum.__deepcopy__ returns the member itself)
    elif t is np.ndarray:
        k = _ARRAY
    elif t is ManimColor:
        k = _COLOR
    else:
        k = _OTHER
    _KIND[t] = k
    return k


_COLOR_STATE = {"_ManimColor__value"}


def _remember(memo: dict, v, c):
    """Record ``c`` as the copy of ``v`` in ``memo``, and keep ``v`` alive while
    the memo lives, as :func:`copy.deepcopy` does."""
    memo[id(v)] = c
    memo.setdefault(id(memo), []).append(v)
    return c


def _array(v: np.ndarray, memo: dict) -> np.ndarray:
    """``copy.deepcopy(v, memo)`` of a NumPy array without Python objects."""
    c = memo.get(id(v))
    return _remember(memo, v, v.copy(order="K")) if c is None else c


def deepcopy_mobject(self: Mobject, memo: dict) -> Mobject:
    """:meth:`manim.Mobject.__deepcopy__` with a fast path for plain attributes."""
    cls = self.__class__
    result = cls.__new__(cls)
    memo[id(self)] = result
    out = result.__dict__
    get = memo.get
    deep = copy.deepcopy
    for k, v in self.__dict__.items():
        kind = _KIND.get(type(v))
        if kind is None:
            kind = _kind(type(v))
        if kind == _SAME:
            out[k] = v
        elif kind == _OTHER and type(v) is list and not v:
            c = get(id(v))
            out[k] = _remember(memo, v, []) if c is None else c
        elif kind == _COLOR and set(v.__dict__) == _COLOR_STATE:
            c = get(id(v))
            if c is None:  # as deepcopy: __new__, then a deep copy of the state
                c = _remember(memo, v, ManimColor.__new__(ManimColor))
                value = v.__dict__["_ManimColor__value"]
                if type(value) is np.ndarray and not value.dtype.hasobject:
                    value = _array(value, memo)
                else:
                    value = deep(value, memo)
                c.__dict__["_ManimColor__value"] = value
            out[k] = c
        elif kind == _ARRAY and not v.dtype.hasobject:
            out[k] = _array(v, memo)
        else:
            out[k] = deep(v, memo)
    result.original_id = str(id(self))
    return result


def get_family(self: Mobject, recurse: bool = True) -> list[Mobject]:
    """:meth:`manim.Mobject.get_family`, without recursion."""
    subs = self.submobjects
    if not subs:
        return [self]
    out = [self]
    stack = list(reversed(subs))
    pop, push, add = stack.pop, stack.extend, out.append
    while stack:
        m = pop()
        add(m)
        s = m.submobjects
        if s:
            push(reversed(s))
    if len(set(map(id, out))) == len(out):
        return out
    seen: set[int] = set()
    kept = []
    for m in reversed(out):
        if id(m) not in seen:
            seen.add(id(m))
            kept.append(m)
    kept.reverse()
    return kept


def _holds_any(mob: Mobject, ids: set[int]) -> bool:
    """Whether ``mob``'s family holds a mobject whose ``id`` is in ``ids``."""
    stack = [mob]
    pop, push = stack.pop, stack.extend
    while stack:
        m = pop()
        if id(m) in ids:
            return True
        s = m.submobjects
        if s:
            push(s)
    return False


def get_restructured_mobject_list(self, mobjects, to_remove) -> list[Mobject]:
    """:meth:`manim.Scene.get_restructured_mobject_list` without building the
    family of every mobject that holds nothing to remove."""
    new_mobjects: list[Mobject] = []

    def add_safe_mobjects_from_list(list_to_examine, set_to_remove) -> None:
        ids = {id(m) for m in set_to_remove}
        for mob in list_to_examine:
            if mob in set_to_remove:
                continue
            if not _holds_any(mob, ids):
                new_mobjects.append(mob)
                continue
            intersect = set_to_remove.intersection(mob.get_family())
            if intersect:
                add_safe_mobjects_from_list(mob.submobjects, intersect)
            else:
                new_mobjects.append(mob)

    add_safe_mobjects_from_list(mobjects, set(to_remove))
    return new_mobjects


def add_updater(self, *args, **kwargs):
    """:meth:`manim.Mobject.add_updater`, noting that updaters now exist."""
    global _updater_added
    _updater_added = True
    return MANIM_ADD_UPDATER(self, *args, **kwargs)


def _overrides_update(cls: type) -> bool:
    for sub in cls.__subclasses__():
        if "update" in sub.__dict__ or _overrides_update(sub):
            return True
    return False


def updaters_possible(classes: bool | None = None) -> bool:
    """Whether ``Mobject.update`` could do anything: some mobject may hold an
    updater (``add_updater`` was called since :func:`install`), or some class
    overrides ``update`` (``classes``: that answer, if already known; finding it
    walks every subclass of Mobject). When ``False``, updating the scene's
    mobjects is a walk over the tree that changes nothing."""
    if _updater_added or Mobject.add_updater is not add_updater:
        return True
    if Mobject.update is not MANIM_UPDATE:
        return True
    return _overrides_update(Mobject) if classes is None else classes


def updaters_seen() -> None:
    """A mobject with an updater was found (one given it before :func:`install`):
    the update walk runs from now on."""
    global _updater_added
    _updater_added = True


def get_subpaths_from_points(self, points) -> list:
    """:meth:`manim.VMobject.get_subpaths_from_points`, the splits found in one
    vectorised pass (Manim's ``get_subpath_split_indices_from_points``)."""
    nppcc = self.n_points_per_cubic_curve
    splits = self.get_subpath_split_indices_from_points(points)
    if len(splits) == 0:  # (fewer points than a curve: Manim's gives none too)
        return []
    return [points[a:b] for a, b in splits.tolist() if b - a >= nppcc]


def _frame_from_array(arr: np.ndarray, fmt: str) -> av.VideoFrame:
    """``av.VideoFrame.from_ndarray(arr, format=fmt)`` for ``rgba`` (``h x w x 4``)
    and ``yuv420p`` (``3h/2 x w``) uint8 arrays, by one copy into the new frame's
    planes. PyAV 18's ``from_ndarray`` took ~15 ms for a 1080p RGBA frame here
    (a plain copy of its 8 MB: ~1.5 ms); the frame's pixels are the same."""
    if fmt == "rgba":
        h, w = arr.shape[0], arr.shape[1]
        rows = (arr.reshape(h, w * 4),)
    else:  # yuv420p, laid out as to_ndarray gives it
        h, w = arr.shape[0] * 2 // 3, arr.shape[1]
        flat = arr.reshape(-1)
        y, c = h * w, (h // 2) * (w // 2)
        rows = (flat[:y].reshape(h, w), flat[y:y + c].reshape(h // 2, w // 2),
                flat[y + c:y + 2 * c].reshape(h // 2, w // 2))  # fmt: skip
    frame = av.VideoFrame(w, h, fmt)
    for plane, src in zip(frame.planes, rows, strict=True):
        dst = np.frombuffer(plane, np.uint8).reshape(src.shape[0], plane.line_size)
        dst[:, : src.shape[1]] = src
    return frame


#: OpenCV's module once imported (``False``: not installed; ``None``: not tried).
_cv2 = None


def _opencv():
    """OpenCV (``cv2``) set to convert in the calling thread, or ``None`` when
    it is not installed (then PyAV's swscale converts)."""
    global _cv2
    if _cv2 is None:
        try:
            import cv2
        except ImportError:
            _cv2 = False
        else:
            # Its own worker threads only add CPU when every core runs a render
            # (1.5 ms of CPU a 1080p frame in one thread, 2.5 ms in two).
            cv2.setNumThreads(0)
            _cv2 = cv2
    return _cv2 or None


#: Limited-range chroma over full-range (JPEG) chroma: 224 levels in 255.
_CHROMA_RANGE = 224 / 255


def opencv_available() -> bool:
    """Whether :func:`rgba_to_yuv420p` converts (OpenCV is installed)."""
    return _opencv() is not None


class Yuv420p(np.ndarray):
    """A frame already in yuv420p (``3h/2 x w``, as :func:`rgba_to_yuv420p` gives
    it), handed to the partial-movie encoder in place of the RGBA pixels: the
    renderer converts straight from the camera's pixels, without the copy of them
    that Manim queues (:func:`flashanim.engine.fastrender._skip_invisible`)."""


def even_rgba(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a frame the yuv420p conversions here take: C-contiguous
    ``h x w x 4`` uint8 with ``h`` and ``w`` even."""
    return (arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 4
            and arr.flags.c_contiguous
            and arr.shape[0] % 2 == 0 and arr.shape[1] % 2 == 0)  # fmt: skip


def rgba_to_yuv420p(arr: np.ndarray) -> np.ndarray | None:
    """An RGBA frame (``h x w x 4`` uint8, ``h`` and ``w`` even) as yuv420p laid
    out as PyAV's ``to_ndarray`` gives it (``3h/2 x w``: Y, then U, then V), in
    BT.601 limited range as swscale converts by default; ``None`` without OpenCV.

    Y is OpenCV's I420 luma (within 1 of swscale's: rounding). OpenCV's I420
    takes each chroma sample from one pixel of its 2 x 2; here the chroma is that
    of the 2 x 2 pixels' mean colour (the frame halved by area, converted to
    full-range Cb, Cr and scaled to 16-240), within 1.5 levels of the exact mean
    (``tests/test_speedups.py`` checks both against BT.601 in floating point).
    5 ms of CPU a 1080p frame here against 11-14 ms for swscale's (PyAV's
    ``reformat``, any interpolation)."""
    cv2 = _opencv()
    if cv2 is None:
        return None
    h, w = arr.shape[0], arr.shape[1]
    out = cv2.cvtColor(arr, cv2.COLOR_RGBA2YUV_I420)
    half = cv2.resize(arr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    ycc = cv2.cvtColor(half, cv2.COLOR_RGB2YCrCb)  # (the 4th channel is dropped)
    flat, n, c = out.reshape(-1), h * w, (h // 2) * (w // 2)
    for k, channel in ((0, 2), (1, 1)):  # U from Cb, V from Cr
        full = cv2.extractChannel(ycc, channel)
        dst = flat[n + k * c : n + (k + 1) * c].reshape(h // 2, w // 2)
        cv2.addWeighted(full, _CHROMA_RANGE, full, 0, 128 * (1 - _CHROMA_RANGE),
                        dst=dst)  # fmt: skip
    return out


def _encode_repeats_once(job_class) -> None:
    """Make Manim's partial-movie encoder build frames faster and convert a
    repeated frame once.

    A frame is converted from RGBA to the stream's yuv420p by
    :func:`rgba_to_yuv420p` (OpenCV; where OpenCV is missing, by swscale as
    Manim does) and reaches PyAV through :func:`_frame_from_array` (one copy;
    PyAV's own ``from_ndarray`` was ten times slower at 1080p). A still stretch
    (a ``wait``) reaches the encoder as one frame to be written ``n`` times;
    Manim converts it for each of the ``n``; here it is converted once and the
    converted planes are encoded ``n`` times.
    """
    original = job_class._encode_and_write_frame
    if getattr(original, "_flashanim", False):
        return

    def _encode_and_write_frame(self, frame, num_frames: int) -> None:
        stream = self.stream
        fmt = getattr(getattr(stream, "codec_context", None), "pix_fmt", None)
        if isinstance(frame, Yuv420p) and fmt == "yuv420p":
            planes = frame.view(np.ndarray)
        else:
            if not even_rgba(frame) or fmt != "yuv420p":
                return original(self, frame, num_frames)
            planes = rgba_to_yuv420p(frame)
        if planes is None:
            av_frame = _frame_from_array(frame, "rgba")
            if num_frames < 2:
                for packet in stream.encode(av_frame):
                    self.container.mux(packet)
                return
            planes = av_frame.reformat(format=fmt).to_ndarray()
        for _ in range(num_frames):
            for packet in stream.encode(_frame_from_array(planes, fmt)):
                self.container.mux(packet)

    _encode_and_write_frame._flashanim = True
    _encode_and_write_frame._original = original
    job_class._encode_and_write_frame = _encode_and_write_frame


def install() -> None:
    """Put the faster equivalents in place (idempotent)."""
    Mobject.get_family = get_family
    Mobject.__deepcopy__ = deepcopy_mobject
    Scene.get_restructured_mobject_list = get_restructured_mobject_list
    if Mobject.add_updater is not add_updater:
        Mobject.add_updater = add_updater
    VMobject.get_subpaths_from_points = get_subpaths_from_points
    job = getattr(scene_file_writer, "_PartialMovieEncodeJob", None)
    if job is not None and hasattr(job, "_encode_and_write_frame"):
        _encode_repeats_once(job)


def uninstall() -> None:
    """Restore Manim's own implementations."""
    Mobject.get_family = MANIM_GET_FAMILY
    Mobject.__deepcopy__ = MANIM_DEEPCOPY
    Scene.get_restructured_mobject_list = MANIM_RESTRUCTURED
    Mobject.add_updater = MANIM_ADD_UPDATER
    VMobject.get_subpaths_from_points = MANIM_SUBPATHS
    job = getattr(scene_file_writer, "_PartialMovieEncodeJob", None)
    f = getattr(job, "_encode_and_write_frame", None)
    if getattr(f, "_flashanim", False):
        job._encode_and_write_frame = f._original
