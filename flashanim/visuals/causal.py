"""Causal masking on the ``T_r x T_c`` block grid, from a recorded FA2 trace.

Each block ``(i, j)`` (Q block ``i``, K/V block ``j``) of the score matrix ``S`` is
drawn as its ``BLOCK_M x BLOCK_N`` entries. Played events fill it in: a ``qk`` event
shades block ``(i, j)`` (it was visited), a ``mask`` event greys exactly the entries
its ``S`` snapshot holds as ``-inf``; blocks that no event ever touched are marked
as skipped afterwards (never loaded).

* :class:`BlockMap` -- the block grid, with markers and axis labels;
* :class:`CountLine` -- a labelled integer that ticks;
* :class:`CausalPlayer` -- one event, one animation; records the played events and
  the ``S`` tiles it showed;
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    Line,
    Rectangle,
    Transform,
    VGroup,
    Wait,
)

from ..engine.text import cached_text
from .eventplayer import EventPlayer
from .theme import DARK, Theme
from .tiles import CrossFade, TileGrid

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .counters import TrafficCounter

__all__ = [
    "BlockMap",
    "CountLine",
    "CausalPlayer",
    "CAUSAL_DURATIONS",
]

#: Seconds per operation at speed 1 (the softmax steps are not this scene's topic).
CAUSAL_DURATIONS: dict[str, float] = {
    "load": 0.5,
    "store": 0.3,
    "qk": 0.7,
    "mask": 1.2,
    "rowmax": 0.2,
    "exp": 0.2,
    "alpha": 0.2,
    "rowsum": 0.2,
    "rescale": 0.2,
    "pv": 0.25,
    "normalize": 0.25,
    "lse": 0.2,
}


class BlockMap(VGroup):
    """The score matrix as ``T_r x T_c`` blocks of ``BLOCK_M x BLOCK_N`` entries.

    Parameters
    ----------
    n_q, n_k
        Query and key lengths.
    block_m, block_n
        Block sizes.
    size
        Side of the drawn matrix (scene units, the longer side).
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.causal import BlockMap

        class Blocks(Scene):
            def construct(self):
                bm = BlockMap(16, 16, 4, 4)
                self.add(bm)
                self.play(bm.make_visit_animation(1, 0))
    """

    def __init__(self, n_q: int, n_k: int, block_m: int, block_n: int, *,
                 size: float = 4.8, theme: Theme = DARK, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.theme = th = theme
        self.n_q, self.n_k, self.block_m, self.block_n = n_q, n_k, block_m, block_n
        self.t_r, self.t_c = -(-n_q // block_m), -(-n_k // block_n)
        self.cell = c = size / max(n_q, n_k)
        self.entries = VGroup()
        for r in range(n_q):
            for k in range(n_k):
                sq = Rectangle(
                    width=c,
                    height=c,
                    stroke_width=0.4,
                    stroke_color=th.panel_stroke,
                    stroke_opacity=0.35,
                )
                sq.set_fill(th.panel_fill, opacity=0.0)
                sq.move_to([(k + 0.5) * c, -(r + 0.5) * c, 0])  # fmt: skip
                self.entries.add(sq)
        self.lines = VGroup()
        w, h = n_k * c, n_q * c
        for i in range(self.t_r + 1):
            y = -min(i * block_m, n_q) * c
            self.lines.add(Line([0, y, 0], [w, y, 0], stroke_width=2,
                                color=th.panel_stroke))  # fmt: skip
        for j in range(self.t_c + 1):
            x = min(j * block_n, n_k) * c
            self.lines.add(Line([x, 0, 0], [x, -h, 0], stroke_width=2,
                                color=th.panel_stroke))  # fmt: skip
        self.diagonal = Line([0, 0, 0], [min(w, h), -min(w, h), 0], stroke_width=1.5,
                             color=th.muted).set_opacity(0.6)  # fmt: skip
        fs = th.small_size
        self.col_labels = VGroup(*(
            cached_text(str(j), th.mono_font, fs, th.muted).move_to(
                [self._block_center(0, j)[0], 0.2, 0]) for j in range(self.t_c)
        ))  # fmt: skip
        self.row_labels = VGroup(*(
            cached_text(str(i), th.mono_font, fs, th.muted).move_to(
                [-0.2, self._block_center(i, 0)[1], 0]) for i in range(self.t_r)
        ))  # fmt: skip
        self.axis_j = cached_text("K/V block j →", th.font, th.body_size, th.foreground)
        self.axis_j.next_to(self.col_labels, UP, buff=0.1).align_to(self.lines, LEFT)
        self.axis_i = cached_text("Q block i ↓", th.font, th.body_size, th.foreground)
        self.axis_i.next_to(self.row_labels, LEFT, buff=0.15).align_to(
            self.row_labels, UP
        )
        self.marker = Rectangle(
            width=block_n * c,
            height=block_m * c,
            stroke_width=3.5,
            stroke_color=th.highlight,
        )
        self.marker.set_stroke(opacity=0.0)  # fmt: skip
        self.marker.move_to(self._block_center(0, 0))
        self.add(self.entries, self.lines, self.diagonal, self.col_labels,
                 self.row_labels, self.axis_j, self.axis_i, self.marker)  # fmt: skip

    # -- geometry -------------------------------------------------------------------
    def _block_center(self, i: int, j: int) -> np.ndarray:
        """Centre of block ``(i, j)`` in this group's own (unshifted) coordinates."""
        r0, r1 = i * self.block_m, min((i + 1) * self.block_m, self.n_q)
        c0, c1 = j * self.block_n, min((j + 1) * self.block_n, self.n_k)
        return np.array([(c0 + c1) / 2 * self.cell, -(r0 + r1) / 2 * self.cell, 0])

    def block_entries(self, i: int, j: int) -> VGroup:
        """The entry squares of block ``(i, j)``, row by row."""
        r0, r1 = i * self.block_m, min((i + 1) * self.block_m, self.n_q)
        c0, c1 = j * self.block_n, min((j + 1) * self.block_n, self.n_k)
        return VGroup(*(self.entries[r * self.n_k + k]
                        for r in range(r0, r1) for k in range(c0, c1)))  # fmt: skip

    def block_box(self, i: int, j: int) -> Rectangle:
        """A rectangle the size and place of block ``(i, j)``."""
        b = self.block_entries(i, j)
        r = Rectangle(width=b.width, height=b.height, stroke_width=0)
        return r.move_to(b.get_center())

    # -- animations -------------------------------------------------------------------
    def make_marker_animation(self, i: int, j: int | None) -> Animation:
        """Light block ``(i, j)`` (``j`` ``None``: the whole row of blocks ``i``)."""
        target = self.marker.copy()
        if j is None:
            row = VGroup(*(self.block_entries(i, jj) for jj in range(self.t_c)))
            target.stretch_to_fit_width(row.width).stretch_to_fit_height(row.height)
            target.move_to(row.get_center())
        else:
            box = self.block_box(i, j)
            target.stretch_to_fit_width(box.width).stretch_to_fit_height(box.height)
            target.move_to(box.get_center())
        target.set_stroke(opacity=1.0)
        return Transform(self.marker, target)

    def make_visit_animation(self, i: int, j: int) -> Animation:
        """Shade block ``(i, j)``: its ``S`` tile was computed."""
        cells = self.block_entries(i, j)
        target = cells.copy()
        for sq in target:
            sq.set_fill(self.theme.color("S"), opacity=0.75)
        return Transform(cells, target)

    def make_mask_animation(self, i: int, j: int, s_tile: np.ndarray) -> Animation:
        """Grey the entries of block ``(i, j)`` that ``s_tile`` holds as ``-inf``."""
        cells = self.block_entries(i, j)
        rows = min(self.block_m, self.n_q - i * self.block_m)
        cols = min(self.block_n, self.n_k - j * self.block_n)
        masked = np.isneginf(np.asarray(s_tile, dtype=float)[:rows, :cols]).reshape(-1)
        target = cells.copy()
        for sq, m in zip(target, masked, strict=True):
            if m:
                sq.set_fill(self.theme.masked, opacity=1.0)
        return Transform(cells, target)

    def skip_marks(self, blocks: Iterable[tuple[int, int]]) -> VGroup:
        """A cross over each of ``blocks`` (skipped: never loaded)."""
        th = self.theme
        marks = VGroup()
        for i, j in blocks:
            box = self.block_box(i, j)
            pad = 0.18 * min(box.width, box.height)
            ul = box.get_corner(UP + LEFT) + pad * (RIGHT + DOWN)
            dr = box.get_corner(DOWN + RIGHT) + pad * (LEFT + UP)
            ur = box.get_corner(UP + RIGHT) + pad * (LEFT + DOWN)
            dl = box.get_corner(DOWN + LEFT) + pad * (RIGHT + UP)
            marks.add(
                VGroup(Line(ul, dr), Line(ur, dl)).set_stroke(th.muted, 2, opacity=0.8)
            )
        return marks  # fmt: skip


class CountLine(VGroup):
    """``label: n`` whose number ticks (Transform of the number)."""

    def __init__(self, label: str, value: int = 0, suffix: str = "", *,
                 color=None, theme: Theme = DARK, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.theme, self.suffix = theme, suffix
        self.value = value
        self.color = theme.ink(color or theme.foreground)  # reads on both themes
        self.label = cached_text(label, theme.font, theme.body_size, theme.foreground)
        self.number = self._num(value)
        self.number.next_to(self.label, RIGHT, buff=0.15)
        self.add(self.label, self.number)

    def _num(self, n: int):
        th = self.theme
        return cached_text(f"{n:,}{self.suffix}", th.mono_font, th.body_size,
                           self.color)  # fmt: skip

    def make_set_animation(self, n: int) -> Animation:
        """Animate the number changing to ``n``."""
        self.value = n
        new = self._num(n).move_to(self.number).align_to(self.number, LEFT)
        return Transform(self.number, new)


class CausalPlayer(EventPlayer):
    """Plays FA2 forward events (one head) on a :class:`BlockMap`.

    Parameters
    ----------
    blocks
        The block grid.
    counter
        K/V bytes counter (ticks on K and V loads).
    computed
        Count of ``S`` tiles computed (ticks on ``qk``).
    op_line
        Shows the operation being played.
    s_slot
        Top-left corner where the real ``S`` tile of each ``qk``/``mask`` is shown
        (``None``: no tile).
    numbers
        Write the values in the ``S`` tile.

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.
    shown_tiles
        ``(event index, S tile shown)`` for each ``qk`` and ``mask`` event shown.
    """

    def __init__(self, blocks: BlockMap, counter: TrafficCounter, computed: CountLine,
                 op_line: CountLine | None = None, s_slot=None, *,
                 numbers: bool = True, s_range=None) -> None:  # fmt: skip
        super().__init__()
        self.blocks, self.counter, self.computed = blocks, counter, computed
        self.op_line = op_line
        self.s_slot = s_slot
        self.numbers = numbers
        self.s_range = s_range
        self.shown_tiles: list[tuple[int, np.ndarray]] = []
        self.s_tile: TileGrid | None = None
        self.op_text = None
        self._i = 0

    durations = CAUSAL_DURATIONS

    def event_animations(self, event) -> list[Animation]:
        """The op on the block grid, and the op line."""
        main = getattr(self, f"_op_{event.op}", self._op_other)(event)
        return [main, self._op_label(event)]

    # -- helpers ----------------------------------------------------------------------
    def _op_label(self, e) -> Animation:
        th = self.blocks.theme
        where = f"({e.row}, {e.col})" if e.tensor in ("S", "P") else f"({e.row})"
        t = cached_text(f"{e.op} {e.tensor}{where}", th.mono_font, th.body_size,
                        th.highlight)  # fmt: skip
        if self.op_line is not None:
            t.next_to(self.op_line.label, RIGHT, buff=0.15)
        old, self.op_text = self.op_text, t
        return CrossFade(old, t)

    def _show_s(self, e, title: str) -> Animation:
        if self.s_slot is None or e.value is None:
            return Wait()
        b, th = self.blocks, self.blocks.theme
        rows = min(b.block_m, b.n_q - e.row * b.block_m)
        cols = min(b.block_n, b.n_k - e.col * b.block_n)
        vals = np.asarray(e.value, dtype=float)[:rows, :cols]
        self.shown_tiles.append((e.index, vals.copy()))
        tile = TileGrid("S", vals, numbers=self.numbers, cell_width=0.55,
                        cell_height=0.34, label=title, label_size=th.body_size,
                        value_range=self.s_range, shade_strength=0.6,
                        number_size=th.small_size, theme=th)  # fmt: skip
        tile.label.align_to(tile.frame, LEFT)
        tile.shift(np.asarray(self.s_slot) - tile.frame.get_corner(UP + LEFT))
        old, self.s_tile = self.s_tile, tile
        return CrossFade(old, tile)

    # -- one factory per op ---------------------------------------------------------
    def _op_load(self, e) -> Animation:
        if e.tensor == "Q":
            self._i = e.row
            return self.blocks.make_marker_animation(e.row, None)
        anims = [self.counter.make_tick_animation("load", e.tensor, e.nbytes)]
        if e.tensor == "K":
            anims.append(self.blocks.make_marker_animation(self._i, e.row))
        return AnimationGroup(*anims)

    def _op_qk(self, e) -> Animation:
        return AnimationGroup(
            self.blocks.make_marker_animation(e.row, e.col),
            self.blocks.make_visit_animation(e.row, e.col),
            self.computed.make_set_animation(self.computed.value + 1),
            self._show_s(e, f"S tile ({e.row}, {e.col}): real values"),
        )

    def _op_mask(self, e) -> Animation:
        return AnimationGroup(
            self.blocks.make_mask_animation(e.row, e.col, e.value)
            if e.value is not None else Wait(),
            self._show_s(e, f"S tile ({e.row}, {e.col}) after mask: −∞ above "
                            "the diagonal"),
        )  # fmt: skip

    def _op_other(self, e) -> Animation:
        return Wait()  # the softmax steps: the op line says what happens


_ = (DOWN, LEFT)
