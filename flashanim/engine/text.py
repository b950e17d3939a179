"""The text engine: Manim :class:`~manim.Text` built once, copied many times.

A new :class:`~manim.Text` costs a Pango layout, an SVG file and its parse
(~15-30 ms); the scenes write the same few strings again and again, and new numbers
nearly every event. :func:`cached_text` returns a copy of one prototype per
distinct string (its glyphs joined into one path, :func:`merge_glyphs`), and
composes single-line strings in a monospace font of :data:`GLYPH_FONTS` from
cached glyphs. :func:`themed_text` is the one text helper of the scenes.

While the engine is off (outside a :class:`~flashanim.engine.FastRenderScene`
render, or on a Manim version it was not written for), these return Manim's own
``Text``: the same strings, drawn Manim's way.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache

import numpy as np
from manim import ManimColor, Text, VGroup, VMobject, config
from manim.mobject.text.text_mobject import TEXT_MOB_SCALE_FACTOR

from ._switch import is_on

__all__ = [
    "GLYPH_FONTS",
    "cached_text",
    "themed_text",
    "merge_glyphs",
    "drawing_style",
    "use_private_text_dir",
]

#: Fonts whose strings may be composed from glyphs (the themes' monospace font;
#: a test holds every theme's ``mono_font`` to it).
GLYPH_FONTS = frozenset({"DejaVu Sans Mono"})

_TEXT_DIR: str | None = None


def use_private_text_dir() -> str:
    """Point Manim's ``text_dir`` at a folder of this process's own, one per frame
    size; returns it.

    :class:`~manim.Text` writes each string's SVG into ``text_dir`` and reuses a
    file of the same name if it finds one there. Renders running side by side
    (``make video``: one scene per core) build the same strings, so one could
    read the other's half-written file: a glyph atlas that failed that way left
    a whole scene building slow Texts (12 % of its render), and a caption could
    come out with glyphs missing. Writing the SVG again costs ~1 ms (parsing it,
    which every Text does anyway, costs tens). The folder goes when the process
    ends. Called by :class:`~flashanim.visuals.FastRenderScene` and before every
    Text built here.

    Pango lays a Text out in a box as wide as the frame in pixels, but the SVG's
    name leaves the frame size out: a string first written at another size (a
    wrapped line at a tiny width) would be read back as it was then. So each
    frame size (``pixel_width`` x ``pixel_height``) gets a folder of its own
    inside this process's folder.
    """
    global _TEXT_DIR
    if _TEXT_DIR is None or not os.path.isdir(_TEXT_DIR):
        _TEXT_DIR = tempfile.mkdtemp(prefix=f"flashanim-text-{os.getpid()}-")
        atexit.register(shutil.rmtree, _TEXT_DIR, True)
    folder = os.path.join(_TEXT_DIR, "{}x{}".format(*_frame_pixels()))
    if str(config.text_dir) != folder:
        os.makedirs(folder, exist_ok=True)
        config.text_dir = folder
    return folder


def _frame_pixels() -> tuple[int, int]:
    """The frame size that Pango lays Texts out in (part of every cache key)."""
    return int(config.pixel_width), int(config.pixel_height)


@lru_cache(maxsize=4096)
def _text_proto(
    text: str, font: str, size: float, color: str, frame: tuple[int, int]
) -> Text:
    """``Text(text, ...)`` built once per frame size ``frame`` (the current one,
    :func:`_frame_pixels`: Pango wraps lines wider than the frame, see
    :func:`use_private_text_dir`)."""
    use_private_text_dir()
    t = Text(text, font=font, font_size=size, color=color)
    for m in t.get_family():
        # the parsed SVG path of each glyph: only needed while building, and
        # deep-copying it makes every copy of the text ~50x slower
        if getattr(m, "path_obj", None) is not None:
            m.path_obj = None
    return t


# -- monospace strings composed from cached glyphs ---------------------------------
#
# Counters, tile numbers and byte totals are new strings nearly every time, and a new
# Text costs a Pango layout, an SVG file and its parse (~15-30 ms). In a monospace
# font every character takes the same advance, and a line without kerning or
# ligatures is just its glyphs side by side: copy the glyphs of "atlas" Texts (per
# font and size) into their cells and centre the result as Text does.

_GLYPH_FONTS = GLYPH_FONTS
#: Characters the atlases hold: printable ASCII, and the signs the scenes write in
#: the monospace font (minus, infinity, arrows, dashes, ...).
_GLYPH_CHARS = "".join(map(chr, range(33, 127))) + "−∞→←↑↓×·…–—ᵀΣ∘≤≥≈±µΔΘ²"
#: Most characters per atlas Text: with their references 65 glyphs, a third of the
#: frame's width at font size 24 and 480p, so that Pango never wraps an atlas.
_GLYPH_PIECE = 32


def _glyph_pieces() -> tuple[str, ...]:
    """:data:`_GLYPH_CHARS` in the pieces an atlas builds one at a time, when a
    string first needs one of their characters: numbers need only the first."""
    first = ("0123456789.,−+-=·∞()/:%×…–—", "abcdefghijklmnopqrstuvwxyz_",
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # fmt: skip
    rest = "".join(c for c in _GLYPH_CHARS if c not in "".join(first))
    pieces = (
        *first,
        *(rest[i : i + _GLYPH_PIECE] for i in range(0, len(rest), _GLYPH_PIECE)),
    )
    assert sorted("".join(pieces)) == sorted(_GLYPH_CHARS)
    assert max(map(len, pieces)) <= _GLYPH_PIECE
    return pieces


_GLYPH_PIECES = _glyph_pieces()
_GLYPH_PIECE_OF = {c: k for k, piece in enumerate(_GLYPH_PIECES) for c in piece}
#: Reference glyph written between the atlas characters: where each copy of it lands
#: gives the advance and shows that the character before it took exactly one cell.
_GLYPH_REF = "0"
#: Largest misplacement (scene units) of a reference glyph still taken as on its cell.
_GLYPH_TOL = 1e-4


class _GlyphAtlas:
    """The glyphs of one monospace font at one size, each in the cell at the origin.

    Each piece of :data:`_GLYPH_PIECES` is one Text, ``"0" + "c0"`` for each of its
    characters ``c``, built the first time a string needs one of them: the reference
    glyphs ``0`` sit on even cells, the characters on the odd cells between them.
    The advance is half the median distance between neighbouring ``0`` of the first
    piece built; a character whose next ``0`` is not exactly two cells on from the
    one before it (a glyph from a fallback font, of another width), or not on the
    same line, is left out (strings with it are real Texts).
    """

    def __init__(self, font: str, size: float) -> None:
        self.font, self.size = font, size
        self.advance: float | None = None
        self.glyphs: dict[str, VMobject] = {}  # character -> glyph
        self.shell: Text | None = None  # an empty Text: composed texts copy it
        self._built: set[int] = set()

    def glyph(self, c: str) -> VMobject | None:
        """The glyph of ``c`` (its cell's origin at ``(0, 0)``), or ``None``."""
        g = self.glyphs.get(c)
        if g is None:
            k = _GLYPH_PIECE_OF.get(c)
            if k is not None and k not in self._built:
                self._built.add(k)
                self._build(_GLYPH_PIECES[k])
                g = self.glyphs.get(c)
        return g

    def _build(self, piece: str) -> None:
        layout = _GLYPH_REF + "".join(c + _GLYPH_REF for c in piece)
        use_private_text_dir()
        try:
            t = Text(layout, font=self.font, font_size=self.size, color="#FFFFFF")
        except Exception:  # noqa: BLE001  (any failure: those strings stay Texts)
            return
        subs = t.submobjects
        if len(subs) != len(layout) or any(len(g.points) == 0 for g in subs):
            return  # glyphs and characters do not pair up (ligatures?)
        for g in subs:
            g.path_obj = None  # as in _text_proto: copies stay cheap
        refs = np.array([g.get_center() for g in subs[0::2]])
        steps = np.diff(refs[:, 0])
        if self.advance is None:
            advance = float(np.median(steps)) / 2
            if not advance > 0:
                return
            self.advance = advance
        advance = self.advance
        ok = (
            (np.abs(steps - 2 * advance) < _GLYPH_TOL)
            & (np.abs(refs[1:, 1] - refs[0, 1]) < _GLYPH_TOL)
            & (np.abs(refs[:-1, 1] - refs[0, 1]) < _GLYPH_TOL)
        )
        for k, c in enumerate(piece):
            if ok[k]:
                g = subs[2 * k + 1]
                # the origin of its cell: one advance right of the "0" before it
                g.points -= refs[k] + np.array([advance, 0.0, 0.0])
                self.glyphs[c] = g
        if self.shell is None:
            t.submobjects = []  # its glyphs now belong to the atlas
            t.chars = VGroup()
            t.id_to_vgroup_dict = {}
            t.file_name = None
            self.shell = t


def _glyph_atlas(font: str, size: float) -> _GlyphAtlas | None:
    """The atlas of ``font`` (one of :data:`_GLYPH_FONTS`) at ``size`` for the
    current frame size (``None``: compose nothing in that font).

    One atlas per frame size: Pango lays the atlas Texts out as wide as the frame,
    and one first built in a frame too narrow for its pieces (wrapped lines) has
    none of their glyphs; kept for every size, it left every later string a slow
    real Text for the rest of the process.
    """
    return _atlas_for(font, size, _frame_pixels())


@lru_cache(maxsize=64)
def _atlas_for(font: str, size: float, frame: tuple[int, int]) -> _GlyphAtlas | None:
    if font not in Text.font_list():
        return None  # (not in the list: Pango would substitute another font)
    return _GlyphAtlas(font, size)


def _glyph_text(
    text: str, font: str, size: float, color: str, merge: bool = False
) -> Text | None:
    """``Text(text, ...)`` composed from atlas glyphs, or ``None`` where it cannot be
    (with ``merge``, its glyphs joined into one path: :func:`merge_glyphs`).

    Only strings in a font of :data:`_GLYPH_FONTS` whose characters are all spaces
    or atlas glyphs, with at least one glyph, and short enough that Pango would not
    wrap them.
    """
    if font not in _GLYPH_FONTS:
        return None
    atlas = _glyph_atlas(font, size)
    if atlas is None:
        return None
    cells = []
    for i, c in enumerate(text):
        if c != " ":
            g = atlas.glyph(c)
            if g is None:
                return None
            cells.append((i, g))
    advance = atlas.advance
    if not cells or advance is None or atlas.shell is None:
        return None
    # Pango wraps a line wider than the frame's pixel width (Text's layout width)
    if (len(text) + 2) * advance / TEXT_MOB_SCALE_FACTOR > config.pixel_width:
        return None
    rgba = ManimColor(color).to_rgba()
    out = []
    for i, g in cells:
        g = g.copy()
        g.points[:, 0] += i * advance
        g.fill_rgbas = np.array([rgba])  # atlas glyphs are white; Text fills its own
        out.append(g)
    # centre as Text does: its SVG is centred on the box of all anchors
    n = out[0].n_points_per_cubic_curve
    anchors = np.concatenate(
        [p for g in out for p in (g.points[::n], g.points[n - 1 :: n])]
    )
    centre = (anchors.min(axis=0) + anchors.max(axis=0)) / 2
    ys = []
    for g in out:
        g.points -= centre
        ys.append(g.points[:, 1])
    ys = np.concatenate(ys)
    t = atlas.shell.copy()
    t.submobjects = out
    t.chars = VGroup(*out)
    t.id_to_vgroup_dict = {"root": t.chars}
    if merge:
        merge_glyphs(t)
    t.original_text = text
    t.text = text.replace(" ", "")
    t.initial_height = ys.max() - ys.min()
    return t


def themed_text(
    theme,
    s: str,
    size: float | None = None,
    color=None,
    *,
    mono: bool = False,
    **kwargs,
) -> Text:
    """``s`` in ``theme``'s font (``mono``: its monospace font), at ``size``
    (default the body size) in ``color`` (default the foreground): a
    :func:`cached_text`, or a new :class:`~manim.Text` when other ``Text``
    arguments are given. The scenes' text helpers all come here.

    ``theme`` is a :class:`flashanim.visuals.theme.Theme` (only its ``font``,
    ``mono_font``, ``body_size`` and ``foreground`` are read: the engine sits
    below the visuals)."""
    font = theme.mono_font if mono else theme.font
    size, color = size or theme.body_size, color or theme.foreground
    if kwargs:
        return Text(s, font=font, font_size=size, color=color, **kwargs)
    return cached_text(s, font, size, color)


def drawing_style(m, _nd=np.ndarray) -> tuple:
    """Everything but the points that decides how a VMobject leaf is drawn:
    its class, colours, stroke widths, sheen, line join and cap, background
    image, z-index (as a hashable tuple; used to fingerprint leaves)."""
    sheen = m.sheen_direction
    if sheen is not None:
        sheen = (sheen if type(sheen) is _nd else np.asarray(sheen, float)).tobytes()
    return (
        id(type(m)),
        m.fill_rgbas.tobytes(),
        m.stroke_rgbas.tobytes(),
        m.background_stroke_rgbas.tobytes(),
        float(m.stroke_width),
        float(m.background_stroke_width),
        float(m.sheen_factor),
        sheen,
        m.joint_type,
        m.cap_style,
        m.background_image is not None,
        m.z_index,
    )


class _JoinedGlyphs:
    """Mixed into the class of a joined path (see :func:`merge_glyphs`): it keeps
    where each glyph's points end, so that a morph into another joined text goes
    glyph by glyph, as it went between the separate glyphs (each glyph into the
    glyph at its place; a glyph without a partner grows from, or shrinks to, its
    centre) instead of pairing subpaths across the whole string."""

    glyph_sizes: list[int]

    def _glyphs(self) -> list[np.ndarray] | None:
        sizes = getattr(self, "glyph_sizes", None)
        if not sizes or sum(sizes) != len(self.points):
            return None  # points changed count since (not by a morph): plain
        return np.split(self.points, np.cumsum(sizes)[:-1])

    def align_points(self, vmobject):
        mine = self._glyphs()
        theirs = vmobject._glyphs() if isinstance(vmobject, _JoinedGlyphs) else None
        if mine is None or theirs is None:
            return super().align_points(vmobject)
        self.align_rgbas(vmobject)  # (as VMobject.align_points does first)
        n = max(len(mine), len(theirs))
        for glyphs in (mine, theirs):
            while len(glyphs) < n:
                last = glyphs[-1]
                centre = (last.min(axis=0) + last.max(axis=0)) / 2
                glyphs.append(np.repeat(centre[None, :], last.shape[0], axis=0))
        a, b = VMobject(), VMobject()
        out_a, out_b = [], []
        for pa, pb in zip(mine, theirs, strict=True):
            a.points, b.points = pa, pb
            VMobject.align_points(a, b)
            out_a.append(a.points)
            out_b.append(b.points)
        self.points = np.concatenate(out_a)
        self.glyph_sizes = [len(p) for p in out_a]
        vmobject.points = np.concatenate(out_b)
        vmobject.glyph_sizes = [len(p) for p in out_b]
        return self


@lru_cache(maxsize=16)
def _joined_class(base: type) -> type:
    return type(f"Joined{base.__name__}", (_JoinedGlyphs, base), {})


def merge_glyphs(text: Text) -> Text:
    """Join ``text``'s glyphs into one path drawn in one go; returns ``text``.

    A :class:`~manim.Text` is one leaf per glyph, and a scene walks, fingerprints,
    copies and draws every leaf at each ``play``: the numbers in the tiles were
    about half of a big scene's leaves. The joined path holds every glyph's
    subpaths in order, in the same style, so it fills the same shapes (pixels
    where two glyphs' edges meet may differ by an antialiasing level). Only when
    every glyph is a leaf of one style; otherwise ``text`` stays as it is. The
    text then has one submobject (``text.chars`` too): index it by character no
    longer.
    """
    glyphs = text.submobjects
    if len(glyphs) < 2 or any(g.submobjects or not len(g.points) for g in glyphs):
        return text
    style = drawing_style(glyphs[0])
    if any(drawing_style(g) != style for g in glyphs[1:]):
        return text
    joined = glyphs[0].copy()
    joined.__class__ = _joined_class(type(joined))
    joined.points = np.concatenate([g.points for g in glyphs])
    joined.glyph_sizes = [len(g.points) for g in glyphs]
    text.submobjects = [joined]
    text.chars = VGroup(joined)
    text.id_to_vgroup_dict = {"root": text.chars}
    return text


@lru_cache(maxsize=4096)
def _merged_proto(
    text: str, font: str, size: float, color: str, frame: tuple[int, int]
) -> Text:
    return merge_glyphs(_text_proto(text, font, size, color, frame).copy())


def cached_text(text: str, font: str, size: float, color) -> Text:
    """A fresh copy of ``Text(text, ...)``, built once per distinct argument set.

    Building a :class:`~manim.Text` parses an SVG (tens of milliseconds); tiles
    repeat the same few strings, so copies of one prototype save most of it.
    Single-line strings in the themes' monospace font are composed from copies of
    cached glyphs instead (see :func:`_glyph_text`): counters and numbers are new
    strings nearly every time. The result is the same Text, its glyphs joined
    into one path (:func:`merge_glyphs`).
    """
    if not is_on():
        return Text(text, font=font, font_size=size, color=color)
    size, color = float(size), str(ManimColor(color))
    t = _glyph_text(text, font, size, color, merge=True)
    if t is not None:
        return t
    return _merged_proto(text, font, size, color, _frame_pixels()).copy()
