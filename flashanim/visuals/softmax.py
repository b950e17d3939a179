"""The online softmax of ONE query row, number by number, from a recorded FA2 trace.

The FA2 forward kernel works on a ``BLOCK_M``-row Q block; this module follows one
row ``r`` of it. Every event of the row's program is played (loads, ``qk``,
``mask``, ``rowmax``, ``exp``, ``alpha``, ``rowsum``, ``rescale``, ``pv``, then
``normalize``, ``lse`` and the stores) and each shows the row's slice of the
event's value snapshot:

* :func:`row_values` -- the row's slice of a snapshot (valid columns only);
* :func:`pick_row` -- a default row whose running max rises the most often;
* :func:`implied_weights` -- the softmax weights the kernel's ``S``, final ``m_i``
  and ``l_i`` imply, ``exp(S - m_i) / l_i``;
* :class:`Ledger` -- a table of ``m_i``, ``alpha``, ``l_i`` per K/V block;
* :class:`FormulaPanel` -- the update rules in natural units, current one lit;
* :class:`RowBoard` -- the whole screen, placed;
* :class:`RowPlayer` -- one event, one animation; records the played events and
  every number it put on screen (:attr:`RowPlayer.shown`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    Rectangle,
    Transform,
    VGroup,
)

from ..engine.text import cached_text
from .eventplayer import EventPlayer
from .theme import DARK, Theme
from .tiles import CopyTravel, CrossFade, TileGrid, format_value

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "row_values",
    "pick_row",
    "implied_weights",
    "Shown",
    "Ledger",
    "FormulaPanel",
    "RowBoard",
    "RowPlayer",
    "ROW_DURATIONS",
    "FORMULAS",
]

#: Seconds per operation at speed 1.
ROW_DURATIONS: dict[str, float] = {
    "load": 0.8,
    "store": 0.7,
    "qk": 1.1,
    "mask": 0.9,
    "rowmax": 0.9,
    "exp": 1.0,
    "alpha": 0.9,
    "rowsum": 0.9,
    "rescale": 0.9,
    "pv": 1.0,
    "normalize": 1.0,
    "lse": 0.8,
}

#: ``op`` -> the update rule it performs, in the papers' natural units.
FORMULAS: dict[str, str] = {
    "load": "load q, K_j, V_j  (HBM → SRAM)",
    "qk": "S = q · K_jᵀ · scale",
    "mask": "S = −∞ where masked",
    "rowmax": "m_new = max(m_i, max S)",
    "exp": "P = exp(S − m_new)",
    "alpha": "alpha = exp(m_i − m_new)",
    "rowsum": "l_i = alpha · l_i + Σ P",
    "rescale": "acc = alpha · acc",
    "pv": "acc = acc + P · V_j",
    "normalize": "O = acc / l_i",
    "lse": "LSE = m_i + log l_i",
    "store": "store O, LSE  (SRAM → HBM)",
}


def row_values(event, row: int, n_cols: int | None = None) -> np.ndarray:
    """Row ``row`` (within the tile) of ``event``'s snapshot, first ``n_cols`` columns.

    Vectors (``m``, ``l``, ``alpha``, ``LSE``) give a length-1 array.

    Raises
    ------
    ValueError
        If the event has no value snapshot.
    """
    if event.value is None:
        raise ValueError(
            f"event {event.index} ({event.op} {event.tensor}) has no value snapshot: "
            "record the trace with values=True"
        )
    v = np.asarray(event.value, dtype=float)
    v = v.reshape(v.shape[0], -1)[row]
    return v[:n_cols].copy() if n_cols is not None else v.copy()


def pick_row(trace, bh: int = 0) -> int:
    """A query row worth following: the one whose running max ``m_i`` rises in the
    most K/V blocks after the first (ties: the lowest row).

    Returns the row's index in ``0 .. N_q - 1``.
    """
    meta = trace.meta
    best, best_rises = 0, -1
    for e0 in trace.events:
        if e0.bh != bh or e0.op != "load" or e0.tensor != "Q":
            continue
        ms = [e for e in trace.of_program(e0.program) if e.op == "rowmax"]
        for k in range(meta.block_m):
            r = e0.row * meta.block_m + k
            if r >= meta.seq_len_q or not ms or ms[0].value is None:
                continue
            m = [float(row_values(e, k)[0]) for e in ms]
            rises = sum(b > a for a, b in zip(m, m[1:], strict=False))
            if rises > best_rises:
                best, best_rises = r, rises
    return best


def implied_weights(s_row: np.ndarray, m_final: float, l_final: float) -> np.ndarray:
    """The softmax weights ``exp(S - m_i) / l_i`` that the kernel's ``S`` row and its
    final ``m_i`` and ``l_i`` stand for (``-inf`` and unvisited ``NaN`` -> 0)."""
    s = np.asarray(s_row, dtype=float)
    w = np.exp(np.where(np.isfinite(s), s, -np.inf) - m_final) / l_final
    return np.where(np.isnan(s), 0.0, w)


@dataclass(frozen=True)
class Shown:
    """A number (or row of numbers) put on screen, and the event it came from."""

    event: int  # Event.index
    what: str  # e.g. "S", "m_i", "acc"
    values: tuple[float, ...]


def _t(s: str, theme: Theme, size: float, color=None, mono: bool = True):
    return cached_text(s, theme.mono_font if mono else theme.font, size,
                       color if color is not None else theme.foreground)  # fmt: skip


class Ledger(VGroup):
    """A table of the row's running statistics, one line per K/V block.

    Columns ``j``, ``m_i``, ``alpha``, ``l_i`` (the values after block ``j``).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.softmax import Ledger

        class T(Scene):
            def construct(self):
                led = Ledger(4)
                self.add(led)
                self.play(led.make_fill_animation(0, "m", 0.53))
    """

    COLUMNS: tuple[tuple[str, str], ...] = (("m", "m_i"), ("alpha", "alpha"),
                                            ("l", "l_i"))  # fmt: skip

    def __init__(
        self,
        n_blocks: int,
        *,
        col_width: float = 1.05,
        row_height: float = 0.34,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = th = theme
        self.n_blocks = n_blocks
        self.col_width, self.row_height = col_width, row_height
        self.header = VGroup(_t("block j", th, th.small_size, th.muted, mono=False))
        self.header[0].move_to([0.45, 0, 0])
        for c, (tensor, name) in enumerate(self.COLUMNS):
            t = _t(name, th, th.body_size, th.ink(tensor))
            t.move_to(self._xy(-1, c))
            self.header.add(t)
        self.rule = Rectangle(width=1.0 + col_width * 3, height=0.01, stroke_width=0)
        self.rule.set_fill(th.panel_stroke, opacity=1)
        self.rule.move_to([(1.0 + col_width * 3) / 2, -row_height * 0.55, 0])
        self.index = VGroup()
        for j in range(n_blocks):
            t = _t(str(j), th, th.body_size, th.muted)
            t.move_to([0.45, self._xy(j, 0)[1], 0])
            self.index.add(t)
        self.marker = Rectangle(width=1.0 + col_width * 3, height=row_height * 0.92,
                                stroke_width=0)  # fmt: skip
        self.marker.set_fill(th.highlight, opacity=0.0)
        self.marker.move_to([(1.0 + col_width * 3) / 2, self._xy(0, 0)[1], 0])
        self.cells: dict[tuple[int, str], VGroup] = {}
        self.add(self.marker, self.header, self.rule, self.index)

    def _xy(self, j: int, c: int) -> np.ndarray:
        return np.array([1.0 + (c + 0.5) * self.col_width,
                         -(j + 1.1) * self.row_height, 0])  # fmt: skip

    def position(self, j: int, column: str) -> np.ndarray:
        """Centre of the cell of block ``j``, column ``column`` (``"m"``...)."""
        c = [t for t, _ in self.COLUMNS].index(column)
        origin = self.header[0].get_center() - np.array([0.45, 0, 0])
        return origin + self._xy(j, c)

    def make_fill_animation(self, j: int, column: str, value: float) -> Animation:
        """Write ``value`` in block ``j``'s cell of ``column`` (and light the line)."""
        th = self.theme
        t = _t(format_value(value), th, th.body_size, th.foreground)
        t.move_to(self.position(j, column))
        old = self.cells.get((j, column))
        self.cells[(j, column)] = t  # on the scene, not in this group
        target = self.marker.copy()
        target.move_to([self.marker.get_center()[0],
                        self.position(j, column)[1], 0])  # fmt: skip
        target.set_fill(opacity=0.18)
        return AnimationGroup(CrossFade(old, t), Transform(self.marker, target))


class FormulaPanel(VGroup):
    """The online-softmax update rules (natural units), the current one lit.

    Parameters
    ----------
    ops
        The operations to list, in order (keys of :data:`FORMULAS`).
    """

    def __init__(self, ops: Sequence[str], *, theme: Theme = DARK, **kwargs) -> None:
        super().__init__(**kwargs)
        self.theme = th = theme
        self.heading = _t("per K/V block j:", th, th.small_size + 1, th.muted,
                          mono=False)  # fmt: skip
        self.lines: dict[str, VGroup] = {}
        rows = VGroup()
        for op in ops:
            t = _t(FORMULAS[op], th, th.small_size + 1, th.foreground)
            rows.add(t)
            self.lines[op] = t
        rows.arrange(DOWN, aligned_edge=LEFT, buff=0.12)
        VGroup(self.heading, rows).arrange(DOWN, aligned_edge=LEFT, buff=0.15)
        width = max(r.width for r in rows) + 0.2
        self.bar = Rectangle(width=width, height=0.27, stroke_width=0)
        self.bar.set_fill(th.highlight, opacity=0.0)
        self.bar.move_to(rows[0]).align_to(rows, LEFT).shift(0.1 * LEFT)
        self.rows = rows
        self.add(self.bar, self.heading, rows)

    def make_highlight_animation(self, op: str) -> Animation:
        """Move the highlight to the line of ``op`` (none: fade it out)."""
        target = self.bar.copy()
        line = self.lines.get(op)
        if line is None:
            target.set_fill(opacity=0.0)
        else:
            target.move_to([self.bar.get_center()[0], line.get_center()[1], 0])
            target.set_fill(opacity=0.22)
        return Transform(self.bar, target)


class RowBoard:
    """Every mobject of the one-row online-softmax screen, placed.

    Parameters
    ----------
    n_keys
        ``N_k`` (cells of the ``S`` and ``P`` strips).
    head_dim, block_n
        ``d`` and ``BLOCK_N``.
    row
        The query row followed (for labels).
    ranges
        Shading ranges of ``"S"``, ``"P"``, ``"acc"``, ``"K"``, ``"V"``, ``"Q"``.
    ops
        Operations present in the trace (for the formula panel).
    theme
        Colours and fonts.
    """

    def __init__(
        self,
        n_keys: int,
        head_dim: int,
        block_n: int,
        row: int,
        *,
        ranges: dict[str, tuple[float, float]],
        ops: Iterable[str],
        theme: Theme = DARK,
    ) -> None:
        self.theme = th = theme
        self.n_keys, self.head_dim, self.block_n = n_keys, head_dim, block_n
        self.row = row
        self.ranges = ranges
        self.t_c = -(-n_keys // block_n)
        # left column: q, K_j, V_j, formulas -----------------------------------------
        x_left = -6.85
        self.small_cell = (min(0.52, 2.08 / head_dim), 0.26)
        self.q_slot = np.array([x_left, 2.45, 0])
        self.k_slot = np.array([x_left, 1.55, 0])
        self.v_slot = np.array([x_left + 2.2, 1.55, 0])
        self.q_placeholder = self.small_tile("Q", None, f"q = Q[{row}]", (1, head_dim),
                                             self.q_slot, dim=True)  # fmt: skip
        self.k_placeholder = self.small_tile("K", None, "K_j", (block_n, head_dim),
                                             self.k_slot, dim=True)  # fmt: skip
        self.v_placeholder = self.small_tile("V", None, "V_j", (block_n, head_dim),
                                             self.v_slot, dim=True)  # fmt: skip
        ops = set(ops)
        ordered = [o for o in FORMULAS if o in ops and o not in ("load", "store")]
        self.formulas = FormulaPanel(ordered, theme=th)
        self.formulas.move_to([0, 0, 0]).align_to(
            [x_left, self.k_placeholder.get_bottom()[1] - 0.35, 0], UP + LEFT
        )
        # right: S and P strips ----------------------------------------------------
        x0, x1 = -2.35, 6.85
        cw = min(0.55, (x1 - x0 - 0.1) / n_keys)
        kw = dict(cell_width=cw, cell_height=0.42, block_cols=block_n,
                  numbers=True, number_size=th.small_size, theme=th,
                  label_size=th.body_size)  # fmt: skip
        self.s_strip = TileGrid(
            "S", shape=(1, n_keys), label=f"S: scores of query row {row}",
            value_range=ranges.get("S"), shade_strength=0.6, **kw,
        )  # fmt: skip
        self.p_strip = TileGrid(
            "P", shape=(1, n_keys), label="P = exp(S − m): each block with its own m",
            value_range=(0.0, 1.0), shade_strength=0.6, **kw,
        )  # fmt: skip
        for strip, y in ((self.s_strip, 2.45), (self.p_strip, 1.15)):
            strip.label.align_to(strip.frame, LEFT)
            strip.shift(np.array([x0, y, 0]) - strip.frame.get_corner(UP + LEFT))
        self.key_labels = VGroup()
        for j in range(self.t_c):
            c0 = j * block_n
            c1 = min(c0 + block_n, n_keys)
            t = _t(f"keys {c0}–{c1 - 1}", th, th.small_size, th.muted, mono=False)
            left = self.s_strip.cell(0, c0).get_left()[0]
            right = self.s_strip.cell(0, c1 - 1).get_right()[0]
            t.move_to([(left + right) / 2, self.s_strip.frame.get_bottom()[1] - 0.17,
                       0])  # fmt: skip
            self.key_labels.add(t)
        self.m_labels: dict[int, VGroup] = {}
        self.block_marker = Rectangle(width=cw * block_n, height=1.9, stroke_width=2.5)
        self.block_marker.set_stroke(th.highlight, opacity=0.0)
        self._place_marker(self.block_marker, 0)
        # bottom right: ledger, acc, O ------------------------------------------------
        self.ledger = Ledger(self.t_c, theme=th)
        self.ledger.align_to([x0, 0.25, 0], UP + LEFT)
        acc_x = x0 + 4.55
        self.acc_slot = np.array([acc_x, -0.25, 0])
        self.o_slot = np.array([acc_x, -1.25, 0])
        self.acc_placeholder = self.small_tile("acc", None, "acc (row)", (1, head_dim),
                                               self.acc_slot, dim=True)  # fmt: skip
        self.hbm_box = VGroup(
            Rectangle(width=2.2, height=0.5, stroke_width=1.5)
            .set_stroke(th.panel_stroke).set_fill(th.panel_fill, opacity=1),
        )  # fmt: skip
        self.hbm_box[0].move_to([acc_x + 1.1, -2.75, 0])
        self.hbm_box.add(_t("HBM", th, th.small_size, th.muted, mono=False)
                         .next_to(self.hbm_box[0], UP, buff=0.06)
                         .align_to(self.hbm_box[0], LEFT))  # fmt: skip
        self.placeholders: dict[str, TileGrid] = {
            "Q": self.q_placeholder, "K": self.k_placeholder, "V": self.v_placeholder,
            "acc": self.acc_placeholder,
        }  # fmt: skip

    # -- helpers ----------------------------------------------------------------------
    def _place_marker(self, mob, j: int) -> None:
        c0 = j * self.block_n
        c1 = min(c0 + self.block_n, self.n_keys)
        left = self.s_strip.cell(0, c0).get_left()[0]
        right = self.s_strip.cell(0, c1 - 1).get_right()[0]
        top = self.s_strip.frame.get_top()[1] + 0.06
        bottom = self.p_strip.frame.get_bottom()[1] - 0.06
        mob.stretch_to_fit_width(right - left + 0.08)
        mob.stretch_to_fit_height(top - bottom)
        mob.move_to([(left + right) / 2, (top + bottom) / 2, 0])

    def small_tile(self, tensor: str, values, label: str, shape, slot,
                   dim: bool = False) -> TileGrid:  # fmt: skip
        """A small numbered tile (``q``, ``K_j``, ``V_j``, ``acc``, ``O``) at ``slot``
        (its top-left corner)."""
        th = self.theme
        cw, ch = self.small_cell
        g = TileGrid(tensor, values, shape=shape, numbers=not dim, cell_width=cw,
                     cell_height=ch, label=label, label_size=th.small_size + 1,
                     value_range=self.ranges.get(tensor), shade_strength=0.55,
                     number_size=th.small_size, theme=th)  # fmt: skip
        g.label.align_to(g.frame, LEFT)
        if dim:
            g.frame.set_stroke(opacity=0.35)
            g.cells.set_stroke(opacity=0.2)
            g.label.set_opacity(0.5)
        g.shift(slot - g.frame.get_corner(UP + LEFT))
        return g

    def block_region(self, strip: TileGrid, j: int) -> VGroup:
        c0 = j * self.block_n
        return strip.region(0, 1, c0, min(c0 + self.block_n, self.n_keys))

    def static_group(self) -> VGroup:
        return VGroup(
            self.q_placeholder, self.k_placeholder, self.v_placeholder, self.formulas,
            self.s_strip, self.p_strip, self.key_labels, self.ledger,
            self.acc_placeholder, self.hbm_box, self.block_marker,
        )  # fmt: skip


def _box(mob) -> Rectangle:
    """An invisible rectangle over ``mob`` (a landing place for travelling copies)."""
    r = Rectangle(width=max(mob.width, 1e-2), height=max(mob.height, 1e-2),
                  stroke_width=0, fill_opacity=0)  # fmt: skip
    return r.move_to(mob.get_center())


def _flow(sources: Sequence, target) -> Animation:
    """Copies of ``sources`` travel onto ``target`` and fade (nothing is left)."""
    box = _box(target)
    return CopyTravel(VGroup(*sources), box, target_end=box.copy(), travel=0.6)


class RowPlayer(EventPlayer):
    """Plays the events of one program on a :class:`RowBoard`, showing row ``k``.

    Parameters
    ----------
    board
        The placed mobjects.
    row_in_block
        The followed row's index within its Q block (``r - i * BLOCK_M``).
    n_keys, head_dim
        Valid columns of ``S``/``P`` (``N_k``) and of ``q``/``acc``/``O`` (``d``).

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.
    shown
        Every number put on screen, as :class:`Shown` records.
    s_row
        The row of ``S`` as last shown (``NaN`` for keys of unvisited blocks).
    """

    def __init__(self, board: RowBoard, row_in_block: int, n_keys: int,
                 head_dim: int) -> None:  # fmt: skip
        super().__init__()
        self.board = board
        self.k = row_in_block
        self.n_keys, self.d = n_keys, head_dim
        self.shown: list[Shown] = []
        self.s_row = np.full(n_keys, np.nan)
        self.tiles: dict[str, TileGrid] = {}
        self.j = 0
        self.m: float | None = None
        self._m_event: int | None = None

    durations = ROW_DURATIONS

    # -- public -----------------------------------------------------------------------
    def event_animations(self, event) -> list[Animation]:
        """The op on the board, and its formula lit."""
        main = getattr(self, f"_op_{event.op}")(event)
        return [main, self.board.formulas.make_highlight_animation(event.op)]

    # -- helpers ----------------------------------------------------------------------
    def _record(self, e, what: str, values) -> np.ndarray:
        v = np.atleast_1d(np.asarray(values, dtype=float))
        self.shown.append(Shown(e.index, what, tuple(float(x) for x in v)))
        return v

    def _cols(self, j: int) -> tuple[int, int]:
        c0 = j * self.board.block_n
        return c0, min(c0 + self.board.block_n, self.n_keys)

    def _swap_tile(self, name: str, tile: TileGrid) -> Animation:
        old = self.tiles.get(name) or self.board.placeholders.pop(name, None)
        self.tiles[name] = tile
        return CrossFade(old, tile)

    def _small(self, e, name: str, tensor: str, label: str, slot, rows=None,
               what: str | None = None) -> Animation:  # fmt: skip
        if rows is None:
            vals = self._record(e, what or name, row_values(e, self.k, self.d))[None]
        else:
            full = np.asarray(e.value, dtype=float)[:rows, : self.d]
            self._record(e, what or name, full.reshape(-1))
            vals = full
        tile = self.board.small_tile(tensor, vals, label, vals.shape, slot)
        return self._swap_tile(name, tile)

    # -- one factory per op ---------------------------------------------------------
    def _op_load(self, e) -> Animation:
        b = self.board
        if e.tensor == "Q":
            return self._small(e, "Q", "Q", f"q = Q[{b.row}]", b.q_slot, what="q")
        c0, c1 = self._cols(e.row)
        slot = b.k_slot if e.tensor == "K" else b.v_slot
        label = f"{e.tensor}_{e.row} (keys {c0}–{c1 - 1})"
        return self._small(e, e.tensor, e.tensor, label, slot, rows=c1 - c0)

    def _op_qk(self, e) -> Animation:
        b = self.board
        self.j = j = e.col
        c0, c1 = self._cols(j)
        vals = self._record(e, "S", row_values(e, self.k, c1 - c0))
        self.s_row[c0:c1] = vals
        marker = b.block_marker.copy()
        b._place_marker(marker, j)
        marker.set_stroke(opacity=0.9)
        srcs = [t.body() for n, t in self.tiles.items() if n in ("Q", "K")]
        region = b.block_region(b.s_strip, j)
        return AnimationGroup(
            b.s_strip.make_update_animation(vals[None], 0, c0),
            Transform(b.block_marker, marker),
            *([_flow(srcs, region)] if srcs else []),
        )

    def _op_mask(self, e) -> Animation:
        b = self.board
        c0, c1 = self._cols(e.col)
        vals = self._record(e, "S", row_values(e, self.k, c1 - c0))
        self.s_row[c0:c1] = vals
        return b.s_strip.make_update_animation(vals[None], 0, c0)

    def _op_rowmax(self, e) -> Animation:
        v = float(self._record(e, "m_i", row_values(e, self.k))[0])
        self.m, self._m_event = v, e.index
        return AnimationGroup(
            self.board.ledger.make_fill_animation(self.j, "m", v),
            _flow([self.board.block_region(self.board.s_strip, self.j)],
                  _box_at(self.board.ledger.position(self.j, "m"))),
        )  # fmt: skip

    def _op_exp(self, e) -> Animation:
        b = self.board
        c0, c1 = self._cols(e.col)
        vals = self._record(e, "P", row_values(e, self.k, c1 - c0))
        anims = [b.p_strip.make_update_animation(vals[None], 0, c0)]
        if self.m is not None:
            self.shown.append(Shown(self._m_event, "m used by P", (self.m,)))
            th = b.theme
            lab = _t(f"m = {format_value(self.m)}", th, th.small_size, th.ink("m"))
            left = b.p_strip.cell(0, c0).get_left()[0]
            right = b.p_strip.cell(0, c1 - 1).get_right()[0]
            lab.move_to([(left + right) / 2, b.p_strip.frame.get_bottom()[1] - 0.17,
                         0])  # fmt: skip
            old = b.m_labels.get(e.col)
            b.m_labels[e.col] = lab
            anims.append(CrossFade(old, lab))
        return AnimationGroup(*anims)

    def _op_alpha(self, e) -> Animation:
        v = float(self._record(e, "alpha", row_values(e, self.k))[0])
        return self.board.ledger.make_fill_animation(self.j, "alpha", v)

    def _op_rowsum(self, e) -> Animation:
        v = float(self._record(e, "l_i", row_values(e, self.k))[0])
        b = self.board
        return AnimationGroup(
            b.ledger.make_fill_animation(self.j, "l", v),
            _flow([b.block_region(b.p_strip, self.j)],
                  _box_at(b.ledger.position(self.j, "l"))),
        )  # fmt: skip

    def _op_rescale(self, e) -> Animation:
        b = self.board
        return self._small(e, "acc", "acc", "acc = alpha · acc", b.acc_slot)

    def _op_pv(self, e) -> Animation:
        b = self.board
        srcs = [b.block_region(b.p_strip, self.j)]
        if "V" in self.tiles:
            srcs.append(self.tiles["V"].body())
        anim = self._small(e, "acc", "acc", "acc = acc + P · V_j", b.acc_slot)
        return AnimationGroup(anim, _flow(srcs, self.tiles["acc"].body()))

    def _op_normalize(self, e) -> Animation:
        b = self.board
        anim = self._small(e, "O", "O", "O row = acc / l_i", b.o_slot, what="O")
        return AnimationGroup(anim, _flow([self.tiles["acc"].body()],
                                          self.tiles["O"].body()))  # fmt: skip

    def _op_lse(self, e) -> Animation:
        b = self.board
        th = b.theme
        v = float(self._record(e, "LSE", row_values(e, self.k))[0])
        t = _t(f"LSE = m_i + log l_i = {v:.3f}", th, th.small_size + 1,
               th.ink("LSE"))  # fmt: skip
        t.next_to(self.tiles["O"].frame, DOWN, buff=0.15).align_to(
            self.tiles["O"].frame, LEFT
        )
        old = self.tiles.get("LSE_text")
        self.tiles["LSE_text"] = t  # type: ignore[assignment]
        return CrossFade(old, t)

    def _op_store(self, e) -> Animation:
        b = self.board
        th = b.theme
        if e.tensor == "O":
            vals = self._record(e, "O stored", row_values(e, self.k, self.d))
            src = self.tiles["O"].body()
            text = f"O[{b.row}] stored"
        else:
            vals = self._record(e, "LSE stored", row_values(e, self.k))
            src = self.tiles["LSE_text"]
            text = f"O[{b.row}], LSE[{b.row}] stored"
        _ = vals
        t = _t(text, th, th.small_size, th.foreground, mono=False)
        t.move_to(b.hbm_box[0])
        old = self.tiles.get("stored")
        self.tiles["stored"] = t  # type: ignore[assignment]
        return AnimationGroup(_flow([src], b.hbm_box[0]), CrossFade(old, t))


def _box_at(point) -> Rectangle:
    r = Rectangle(width=0.5, height=0.28, stroke_width=0, fill_opacity=0)
    return r.move_to(point)


_ = (LEFT, RIGHT, math)
