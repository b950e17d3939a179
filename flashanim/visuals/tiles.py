"""Tile grids (Q, K, V, O in HBM; Q_i, K_j, S_ij, P_ij, acc in SRAM) and the
animations that move tiles between them.

A :class:`TileGrid` is a matrix drawn cell by cell: each cell is shaded by its value
(a heat map in the tensor's fixed colour) and, for small sizes, shows the value with
few digits. Block boundaries (``BLOCK_M`` x ``BLOCK_N``) are drawn as thicker lines.

A load is a copy: :func:`make_load_animation` sends a copy of an HBM block to SRAM
while the original stays put. A store travels back and replaces the HBM block's
contents: :func:`make_store_animation`. Both are built on :class:`CopyTravel`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    Group,
    Line,
    Mobject,
    Rectangle,
    Square,
    Text,
    Transform,
    VGroup,
    smooth,
)

from ..engine.text import cached_text
from .theme import DARK, GRADIENT_OF, Theme

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "TileGrid",
    "tensor_swatch",
    "CopyTravel",
    "CrossFade",
    "format_value",
    "hidden_copy",
    "make_load_animation",
    "make_store_animation",
    "slot_tile",
    "make_compute_animation",
]


def format_value(v: float) -> str:
    """Format a tile value in at most four characters (five with a sign).

    ``-inf`` (a masked entry) is ``"−∞"``; ``|v| < 1`` drops the leading zero
    (``"−.53"``), ``|v| < 10`` keeps one decimal (``"3.1"``), larger values none.

    Examples
    --------
    >>> format_value(-0.534), format_value(3.14159), format_value(12.6)
    ('−.53', '3.1', '13')
    """
    v = float(v)
    if math.isnan(v):
        return "·"
    if math.isinf(v):
        return "−∞" if v < 0 else "∞"
    sign = "−" if v < 0 else ""
    a = abs(v)
    if round(a, 2) < 1:
        s = f"{a:.2f}"[1:]
        if s == ".00":
            return "0"
    elif round(a, 1) < 10:
        s = f"{a:.1f}"
    else:
        s = f"{a:.0f}"
    return sign + s


def hidden_copy(mob: Mobject) -> Mobject:
    """A copy of ``mob`` with every fill and stroke fully transparent (same family)."""
    hidden = mob.copy()
    for m in hidden.get_family():
        if hasattr(m, "set_fill"):
            m.set_fill(opacity=0)
            m.set_stroke(opacity=0)
            if hasattr(m, "background_stroke_opacity"):
                m.set_stroke(opacity=0, background=True)
    return hidden


#: Gap between the diagonal lines of a gradient tile's hatch (scene units).
HATCH_GAP = 0.16


#: One cell (a VGroup holding its rectangle) at the origin per (width, height,
#: stroke colour): copied, not built, for each cell of a grid.
_CELL_PROTOS: dict[tuple, tuple[VGroup, np.ndarray]] = {}


def _cell(width: float, height: float, stroke_color, center: np.ndarray) -> VGroup:
    """A cell's VGroup holding its outlined rectangle, centred on ``center``:
    what ``VGroup(Rectangle(...)).move_to(center)`` gives, point for point.

    Tiles are made on nearly every event (a 4 x 4 block is 16 cells); building a
    Rectangle took ~1.5 ms here, a copy of a built one and a shift ~0.13 ms. The
    shift is the one ``move_to`` computes from the same points, so the points are
    the same to the bit."""
    key = (float(width), float(height), str(stroke_color))
    hit = _CELL_PROTOS.get(key)
    if hit is None:
        if len(_CELL_PROTOS) > 256:  # (a few sizes a scene; bound it anyway)
            _CELL_PROTOS.clear()
        proto = VGroup(Rectangle(width=width, height=height, stroke_width=0.6,
                                 stroke_color=stroke_color, stroke_opacity=0.6))  # fmt: skip
        hit = _CELL_PROTOS[key] = (proto, proto.get_critical_point(ORIGIN))
    proto, proto_center = hit
    cell = proto.copy()
    cell.shift(np.asarray(center, dtype=float) - proto_center)
    return cell


def _hatch(width: float, height: float, color) -> VGroup:
    """Diagonal lines (falling to the right) over a ``width`` x ``height`` box whose
    top-left corner is the origin: one mobject per line, cut at the box's edges."""
    lines = VGroup()
    c = -height + HATCH_GAP / 2
    while c < width:
        # the line x - y = c, with y measured downwards from the top edge
        x0, y0 = max(c, 0.0), max(-c, 0.0)
        x1 = min(width, c + height)
        lines.add(Line([x0, -y0, 0], [x1, -(x1 - c), 0], stroke_width=1.2,
                       color=color, stroke_opacity=0.45))  # fmt: skip
        c += HATCH_GAP
    return lines


def tensor_swatch(name: str, side: float = 0.22, theme: Theme = DARK) -> VGroup:
    """A legend swatch of ``name``'s colour; a gradient's (``dK``) also has its
    tensor's outline and hatch, as its tiles do."""
    sw = Square(side_length=side, stroke_width=0).set_fill(theme.color(name), 1)
    base = GRADIENT_OF.get(name)
    if base is None:
        return VGroup(sw)
    sw.set_stroke(theme.color(base), width=2)
    hatch = _hatch(side, side, theme.hatch_color(base)).move_to(sw)
    return VGroup(sw, hatch.set_stroke(opacity=0.8))


class TileGrid(VGroup):
    """A matrix drawn as shaded cells, with block lines, indices and optional numbers.

    Parameters
    ----------
    tensor
        Tensor name; sets the colour (``"Q"``, ``"S"``, ``"m"``, ...).
    values
        ``(rows, cols)`` array, or ``None`` for an empty (unshaded) grid of
        ``shape``. ``-inf`` entries are drawn as masked.
    shape
        ``(rows, cols)`` when ``values`` is ``None``.
    numbers
        Write each value in its cell (small sizes only).
    cell_width, cell_height
        Cell size in scene units.
    block_rows, block_cols
        Draw a block boundary every this many rows/columns (``None``: none).
    label
        Text above the grid (e.g. ``"Q_i"``), or ``None``.
    row_indices
        Write the index of each block's first row on the left.
    row_offset
        Index of the first row (for :attr:`row_indices`).
    value_range
        ``(lo, hi)`` mapped to the lightest/deepest shade; default: the values' own.
    shade_strength
        How far the deepest shade goes towards the tensor colour (lower keeps
        numbers readable).
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene
        from flashanim.visuals import TileGrid

        class OneTile(Scene):
            def construct(self):
                vals = np.arange(16.0).reshape(4, 4) / 10
                self.add(TileGrid("Q", vals, numbers=True, label="Q_i"))
    """

    def __init__(
        self,
        tensor: str,
        values: np.ndarray | None = None,
        *,
        shape: tuple[int, int] | None = None,
        numbers: bool = False,
        cell_width: float = 0.6,
        cell_height: float = 0.3,
        block_rows: int | None = None,
        block_cols: int | None = None,
        label: str | None = None,
        label_size: float | None = None,
        row_indices: bool = False,
        row_offset: int = 0,
        value_range: tuple[float, float] | None = None,
        shade_strength: float = 1.0,
        number_size: float | None = None,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if values is None:
            if shape is None:
                raise ValueError("give values or shape")
            values = np.full(shape, np.nan)
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        self.tensor = tensor
        self.theme = theme
        self.values = values.copy()
        self.n_rows, self.n_cols = values.shape
        self.show_numbers = numbers
        self.cell_width = cell_width
        self.cell_height = cell_height
        self.shade_strength = shade_strength
        self.number_size = number_size or theme.body_size
        self.value_range = value_range or _finite_range(values)

        self.cells = VGroup(*(
            _cell(cell_width, cell_height, theme.panel_stroke,
                  np.array([(c + 0.5) * cell_width, -(r + 0.5) * cell_height, 0]))
            for r in range(self.n_rows) for c in range(self.n_cols)))  # fmt: skip
        self._paint(self.cells, self.values)

        width, height = self.n_cols * cell_width, self.n_rows * cell_height
        # a gradient's tile: outline in its tensor's colour, hatch in its hue (dK: K)
        base = GRADIENT_OF.get(tensor)
        color = theme.color(base or tensor)
        self.block_lines = VGroup()
        if block_rows:
            for r in range(0, self.n_rows + 1, block_rows):
                y = -r * cell_height
                self.block_lines.add(
                    Line([0, y, 0], [width, y, 0], stroke_width=2, color=color)
                )
        if block_cols:
            for c in range(0, self.n_cols + 1, block_cols):
                x = c * cell_width
                self.block_lines.add(
                    Line([x, 0, 0], [x, -height, 0], stroke_width=2, color=color)
                )
        self.frame = Rectangle(width=width, height=height, stroke_width=2.5)
        self.frame.set_stroke(color=color).move_to([width / 2, -height / 2, 0])
        self.hatch = (_hatch(width, height, theme.hatch_color(base)) if base
                      else VGroup())  # fmt: skip
        self.add(self.cells, self.hatch, self.block_lines, self.frame)

        self.index_labels = VGroup()
        if row_indices:
            step = block_rows or 1
            for r in range(0, self.n_rows, step):
                t = cached_text(
                    str(r + row_offset), theme.mono_font, theme.small_size, theme.muted
                )
                t.next_to(self.cells[r * self.n_cols], LEFT, buff=0.06)
                t.align_to(self.cells[r * self.n_cols], UP)
                self.index_labels.add(t)
            self.add(self.index_labels)

        self.label = None
        if label is not None:
            self.label = cached_text(
                label, theme.font, label_size or theme.label_size, theme.foreground
            )
            self.label.next_to(self.frame, UP, buff=0.08)
            self.add(self.label)

    # -- geometry -------------------------------------------------------------------
    def cell(self, row: int, col: int = 0) -> VGroup:
        """The cell at ``(row, col)`` (its rectangle and, if shown, its number)."""
        return self.cells[row * self.n_cols + col]

    def region(self, r0: int, r1: int, c0: int = 0, c1: int | None = None) -> VGroup:
        """The cells of rows ``r0:r1``, columns ``c0:c1`` (references, not copies)."""
        c1 = self.n_cols if c1 is None else c1
        r1 = min(r1, self.n_rows)
        return VGroup(
            *(
                self.cell(r, c)
                for r in range(r0, r1)
                for c in range(c0, min(c1, self.n_cols))
            )
        )

    def body(self) -> VGroup:
        """The cells, hatch, block lines and frame, without label and indices."""
        return VGroup(self.cells, self.hatch, self.block_lines, self.frame)

    # -- values ---------------------------------------------------------------------
    def _shade(self, v: float):
        th = self.theme
        if not math.isfinite(v):
            return (th.masked, 1.0) if v == -math.inf else (th.cell_low, 0.6)
        lo, hi = self.value_range
        t = 0.5 if hi <= lo else (v - lo) / (hi - lo)
        return th.shade(self.tensor, t * self.shade_strength), 1.0

    def _number(self, v: float, cell: Mobject) -> Text:
        th = self.theme
        t = cached_text(
            format_value(v),
            th.mono_font,
            self.number_size,
            th.muted if v == -math.inf else th.foreground,
        )
        t.move_to(cell.get_center())
        return t

    def _paint(self, cells: VGroup, values: np.ndarray) -> None:
        """Shade (and number) ``cells`` in place from ``values`` (same layout)."""
        flat = np.asarray(values, dtype=float).reshape(-1)
        for cell, v in zip(cells, flat, strict=False):
            rect = cell[0]
            color, opacity = self._shade(v)
            if math.isnan(v):
                rect.set_fill(self.theme.panel_fill, opacity=0.0)
            else:
                rect.set_fill(color, opacity=opacity)
            if self.show_numbers:
                num = self._number(v, rect) if not math.isnan(v) else None
                if len(cell) > 1:
                    cell.remove(*cell.submobjects[1:])
                if num is not None:
                    cell.add(num)

    def set_values(self, values: np.ndarray, r0: int = 0, c0: int = 0) -> TileGrid:
        """Set the values of the block at ``(r0, c0)`` in place; return ``self``."""
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        r1, c1 = r0 + values.shape[0], c0 + values.shape[1]
        self.values[r0:r1, c0:c1] = values
        self._paint(self.region(r0, r1, c0, c1), values)
        return self

    def make_update_animation(
        self, values: np.ndarray, r0: int = 0, c0: int = 0, **kwargs
    ) -> Animation:
        """Animate the block at ``(r0, c0)`` changing to ``values``.

        Shades cross-fade and numbers morph; afterwards :attr:`values` holds the new
        values.
        """
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        r1, c1 = r0 + values.shape[0], c0 + values.shape[1]
        cells = self.region(r0, r1, c0, c1)
        target = cells.copy()
        self._paint(target, values)
        self.values[r0:r1, c0:c1] = values
        anims = []
        for cell, new in zip(cells, target, strict=True):
            if self.show_numbers and len(cell) < len(new):
                cell.add(hidden_copy(new[1]))
            if self.show_numbers and len(cell) > len(new):
                new.add(hidden_copy(cell[1]))
            anims.append(Transform(cell, new))
        return AnimationGroup(*anims, **kwargs)


def _finite_range(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    return (float(v.min()), float(v.max()))


class _Opacities:
    """The fill and stroke opacities of a mobject's family, to scale without copies.

    The family's colour arrays are moved into one buffer (each mobject keeps a
    view of its own rows, with the same values), so that scaling every opacity is
    one NumPy operation a frame instead of three per leaf; an array that was
    replaced since (e.g. by ``set_fill``) is scaled on its own, as before.
    """

    _NAMES = ("fill_rgbas", "stroke_rgbas", "background_stroke_rgbas")

    def __init__(self, mob: Mobject) -> None:
        found = []  # (mobject, attribute, its array)
        rows = 0
        for m in mob.get_family():
            if hasattr(m, "fill_rgbas") and len(m.fill_rgbas):
                for name in self._NAMES:
                    arr = getattr(m, name)
                    ok = (
                        isinstance(arr, np.ndarray)
                        and arr.ndim == 2
                        and arr.shape[1] == 4
                        and arr.dtype == np.float64
                    )
                    found.append((m, name, arr, ok))
                    rows += len(arr) if ok else 0
        self.buffer = np.empty((rows, 4))
        views: dict[int, np.ndarray] = {}  # an array shared stays shared
        self.items = []  # (mobject, attribute, view into buffer or None, alphas)
        pos = 0
        for m, name, arr, ok in found:
            if not ok:  # (not an (n, 4) float array: scaled on its own)
                self.items.append((m, name, None, arr[:, 3].copy()))
                continue
            view = views.get(id(arr))
            if view is None:
                view = self.buffer[pos : pos + len(arr)]
                view[:] = arr
                pos += len(arr)
                views[id(arr)] = view
            setattr(m, name, view)
            self.items.append((m, name, view, view[:, 3].copy()))
        self.buffer = self.buffer[:pos]
        self.base = self.buffer[:, 3].copy()

    def apply(self, factor: float) -> None:
        np.multiply(self.base, factor, out=self.buffer[:, 3])
        for m, name, view, base in self.items:
            now = getattr(m, name)
            if now is not view and len(now) == len(base):
                now[:, 3] = base * factor


def _fill_colors(mob: Mobject) -> list[np.ndarray]:
    return [m.fill_rgbas.copy() for m in mob.get_family() if hasattr(m, "fill_rgbas")]


class CopyTravel(Animation):
    """A copy of ``source`` travels onto ``target`` and becomes it.

    The source stays where it is. During the first ``travel`` part of the run the
    copy moves (and stretches) onto the target's bounding box; in the rest it fades
    while the target fades in, or, when ``target_end`` is given, while ``target``
    (already on screen) takes the fills of ``target_end`` (a store replacing the
    HBM block's contents; same family structure).

    Only the travelling copy is copied: opacities and positions are interpolated in
    place, which keeps long traces fast to render.

    Parameters
    ----------
    source
        What is copied (left untouched).
    target
        Where the copy lands: a new mobject that fades in, or an existing one.
    target_end
        If given, the state ``target`` takes at the end.
    travel
        Fraction of the run spent travelling (0: a cross-fade in place).
    path_arc
        Height of the path's bow, in scene units.

    Examples
    --------
    .. code-block:: python

        from manim import Scene, Square, Circle, LEFT, RIGHT
        from flashanim.visuals import CopyTravel

        class Copy(Scene):
            def construct(self):
                a = Square().shift(3 * LEFT)
                self.add(a)
                self.play(CopyTravel(a, Circle().shift(3 * RIGHT)))
    """

    def __init__(
        self,
        source: Mobject,
        target: Mobject,
        *,
        target_end: Mobject | None = None,
        travel: float = 0.65,
        path_arc: float = 0.0,
        **kwargs,
    ) -> None:
        self.traveller = source.copy() if travel > 0 else VGroup()
        self.target = target
        self.travel = travel
        self.path_arc = path_arc
        self.target_end = target_end
        self._start = (source.get_center(), max(source.width, 1e-3),
                       max(source.height, 1e-3))  # fmt: skip
        self._end = (target.get_center(), max(target.width, 1e-3),
                     max(target.height, 1e-3))  # fmt: skip
        kwargs.setdefault("rate_func", lambda t: t)
        super().__init__(Group(self.traveller, target), **kwargs)

    def create_starting_mobject(self) -> Mobject:
        return Mobject()  # unused: states are interpolated in place

    def begin(self) -> None:
        self._trav_op = _Opacities(self.traveller)
        self._tgt_op = _Opacities(self.target)
        if self.target_end is not None:
            fam = [m for m in self.target.get_family() if hasattr(m, "fill_rgbas")]
            end = [m for m in self.target_end.get_family() if hasattr(m, "fill_rgbas")]
            self._pairs = [
                (m, m.fill_rgbas.copy(), e.fill_rgbas.copy())
                for m, e in zip(fam, end, strict=False)
                if len(m.fill_rgbas) == len(e.fill_rgbas)
            ]
        super().begin()

    def _place(self, t: float) -> None:
        (c0, w0, h0), (c1, w1, h1) = self._start, self._end
        w, h = w0 + (w1 - w0) * t, h0 + (h1 - h0) * t
        c = c0 + (c1 - c0) * t + np.sin(np.pi * t) * self.path_arc * UP
        # stretched about its centre to (w, h), centred on c: computed from the
        # points it started with, in one pass (the same as stretch + move_to)
        if not hasattr(self, "_leaves"):
            tr = self.traveller
            self._leaves = [(m, m.points.copy()) for m in tr.get_family()
                            if len(m.points)]  # fmt: skip
            self._origin = tr.get_center()
            self._size = (tr.width, tr.height)
        width, height = self._size
        scale = np.ones(3)
        if width > 0 and height > 0:
            scale[0], scale[1] = w / width, h / height
        for m, p in self._leaves:
            m.points = c + (p - self._origin) * scale

    def interpolate_mobject(self, alpha: float) -> None:
        a = self.rate_func(alpha)
        t = smooth(min(a / self.travel, 1.0)) if self.travel > 0 else 1.0
        u = max(a - self.travel, 0.0) / max(1.0 - self.travel, 1e-9)
        if self.travel > 0:
            self._place(t)
            self._trav_op.apply(1.0 - u)
        if self.target_end is None:
            self._tgt_op.apply(smooth(u))
        else:
            k = smooth(u)
            for m, f0, f1 in self._pairs:
                m.fill_rgbas = f0 + (f1 - f0) * k

    def _replace_carrier(self, scene) -> bool:
        """Take the traveller and the carrier off the scene in one step, if it can
        be done without walking the scene; ``False`` if not (nothing changed).

        The carrier (made here, added by the play at the top level) and the
        traveller (made here, only in the carrier) are nowhere else, so removing
        the traveller leaves the carrier's other mobjects (the target) in its
        place, and the emptied carrier is then gone: the list the two
        ``scene.remove`` calls give, without two walks over every mobject.
        """
        carrier = self.mobject
        at = [i for i, m in enumerate(scene.mobjects) if m is carrier]
        if len(at) != 1 or scene.foreground_mobjects or self.is_remover():
            return False
        rest = [m for m in carrier.submobjects if m is not self.traveller]
        carrier.remove(*carrier.submobjects)
        scene.mobjects[at[0] : at[0] + 1] = rest
        return True

    def clean_up_from_scene(self, scene) -> None:
        super().clean_up_from_scene(scene)
        carrier = self.mobject
        if not self._replace_carrier(scene):
            scene.remove(self.traveller)
            # empty the carrier group before removing it: removing it whole
            # would also take the target (e.g. cells of an HBM grid) off the scene
            carrier.remove(*carrier.submobjects)
            scene.remove(carrier)
        if self.target_end is None:
            self._tgt_op.apply(1.0)
            scene.add(self.target)


class CrossFade(Animation):
    """``old`` fades out while ``new`` fades in at its own place (no copies).

    Examples
    --------
    .. code-block:: python

        from manim import Scene, Square, Circle
        from flashanim.visuals import CrossFade

        class Swap(Scene):
            def construct(self):
                a = Square()
                self.add(a)
                self.play(CrossFade(a, Circle()))
    """

    def __init__(self, old: Mobject | None, new: Mobject, **kwargs) -> None:
        self.old, self.new = old, new
        kwargs.setdefault("rate_func", smooth)
        super().__init__(Group(*([old] if old is not None else []), new), **kwargs)

    def create_starting_mobject(self) -> Mobject:
        return Mobject()

    def begin(self) -> None:
        self._old = _Opacities(self.old) if self.old is not None else None
        self._new = _Opacities(self.new)
        super().begin()

    def interpolate_mobject(self, alpha: float) -> None:
        a = self.rate_func(alpha)
        if self._old is not None:
            self._old.apply(1.0 - a)
        self._new.apply(a)

    def clean_up_from_scene(self, scene) -> None:
        super().clean_up_from_scene(scene)
        self.mobject.remove(*self.mobject.submobjects)
        # (one walk of the scene for both: the emptied carrier holds nothing)
        scene.remove(self.mobject, *([self.old] if self.old is not None else []))
        if self.old is not None:
            self._old.apply(1.0)
        self._new.apply(1.0)
        scene.add(self.new)


def make_load_animation(source: Mobject, target: Mobject, **kwargs) -> Animation:
    """A load: a copy of the HBM block ``source`` travels into SRAM and becomes
    ``target`` (a new tile that fades in). The HBM block stays.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene, RIGHT
        from flashanim.visuals import TileGrid, make_load_animation

        class Load(Scene):
            def construct(self):
                q = TileGrid("Q", np.random.rand(8, 4), block_rows=4).shift(4 * LEFT)
                qi = TileGrid("Q", q.values[:4], numbers=True).shift(3 * RIGHT)
                self.add(q)
                self.play(make_load_animation(q.region(0, 4), qi))
    """
    return CopyTravel(source, target, **kwargs)


def make_store_animation(
    source: Mobject,
    grid: TileGrid,
    values: np.ndarray,
    r0: int,
    c0: int = 0,
    **kwargs,
) -> Animation:
    """A store: a copy of the SRAM tile ``source`` travels to HBM and replaces the
    contents of ``grid``'s block at ``(r0, c0)`` with ``values``.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene, RIGHT
        from flashanim.visuals import TileGrid, make_store_animation

        class Store(Scene):
            def construct(self):
                o = TileGrid("O", shape=(8, 4), block_rows=4).shift(4 * LEFT)
                oi = TileGrid("O", np.ones((4, 4)), numbers=True).shift(3 * RIGHT)
                self.add(o, oi)
                self.play(make_store_animation(oi, o, oi.values, r0=0))
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    r1, c1 = r0 + values.shape[0], c0 + values.shape[1]
    block = grid.region(r0, r1, c0, c1)
    end = block.copy()
    grid._paint(end, values)
    grid.values[r0:r1, c0:c1] = values
    return CopyTravel(source, block, target_end=end, **kwargs)


def make_compute_animation(
    sources: Sequence[Mobject], target: Mobject, **kwargs
) -> Animation:
    """Copies of ``sources`` (e.g. ``Q_i`` and ``K_j``) travel into ``target`` (e.g.
    ``S_ij``), which fades in as they merge: a result computed from its inputs.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene, LEFT, RIGHT, DOWN
        from flashanim.visuals import TileGrid, make_compute_animation

        class QK(Scene):
            def construct(self):
                q = TileGrid("Q", np.ones((4, 4))).shift(2 * LEFT)
                k = TileGrid("K", np.ones((4, 4))).shift(2 * RIGHT)
                s = TileGrid("S", np.ones((4, 4)), numbers=True).shift(2 * DOWN)
                self.add(q, k)
                self.play(make_compute_animation([q.body(), k.body()], s))
    """
    return CopyTravel(VGroup(*sources), target, **kwargs)


_ = (DOWN, RIGHT, _fill_colors)


def slot_tile(
    tensor: str,
    values: np.ndarray | None,
    *,
    shape: tuple[int, int],
    cell_width: float,
    cell_height: float,
    label: str,
    stat: bool,
    numbers: bool,
    placeholder: bool,
    value_range: tuple[float, float] | None,
    shade_strength: float,
    theme: Theme,
) -> TileGrid:
    """The tile of one SRAM slot; a placeholder (where a tile will land) is faint.

    Statistic columns (``m_i``, ``l_i``...) get a smaller label than tiles.
    """
    tile = TileGrid(
        tensor,
        values,
        shape=shape,
        numbers=numbers and not placeholder,
        cell_width=cell_width,
        cell_height=cell_height,
        label=label,
        label_size=theme.small_size + 1 if stat else theme.body_size,
        value_range=value_range,
        shade_strength=shade_strength,
        number_size=theme.small_size,
        theme=theme,
    )
    if placeholder:
        tile.frame.set_stroke(opacity=0.35)
        tile.cells.set_stroke(opacity=0.2)
        tile.label.set_opacity(0.45)
    return tile
