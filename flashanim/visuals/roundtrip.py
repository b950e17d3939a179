"""Round trips to HBM: a generic trace player, a tile-visit grid and a traffic table.

The forward-pass screen (:class:`~flashanim.visuals.layout.ForwardLayout` and
:class:`~flashanim.visuals.player.TracePlayer`) is built for one FA2 program at a
time. The standard-attention and loop-order scenes play other kernels (three
launches; one program walking everything) whose point is *where the data goes*, so
they use the lighter pieces here:

* :class:`SramSlots` -- named places in an SRAM panel where tiles land;
* :class:`RoundTripPlayer` -- one trace event, one animation: a load is a copy
  travelling from an HBM grid into a slot, a store travels back and replaces the HBM
  block, a computation merges its source tiles into a new tile; each also ticks a
  :class:`~flashanim.visuals.counters.TrafficCounter`, and optionally a
  :class:`VisitGrid` and a progress bar. It records every event it animated in
  :attr:`RoundTripPlayer.played_events`;
* :class:`VisitGrid` -- the ``T_r x T_c`` grid of tiles ``(i, j)``: the current tile
  lit, the current outer-loop row or column banded, each tile numbered in the order
  the kernel computed it;
* :class:`TrafficTable` -- bytes per tensor and direction for several traces side by
  side, with totals (from :func:`flashanim.trace.hbm_traffic` dicts).

Which slot an event's tile goes to, and which slots a computation reads, is the
scene's business (``slot_of`` and ``sources_of``); nothing here knows a kernel.
"""

from __future__ import annotations

import math
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
    Text,
    Transform,
    VGroup,
    Wait,
)

from ..engine.text import cached_text
from .eventplayer import EventPlayer
from .player import _FadeAway
from .theme import DARK, Theme
from .tiles import (
    CopyTravel,
    CrossFade,
    TileGrid,
    make_compute_animation,
    make_store_animation,
    slot_tile,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from .counters import TrafficCounter

__all__ = [
    "SramSlots",
    "RoundTripPlayer",
    "VisitGrid",
    "TrafficTable",
    "ProgressBar",
    "ROUNDTRIP_DURATIONS",
    "hbm_rows",
]

#: Seconds per operation at speed 1 (ops not listed take ``0.8``).
ROUNDTRIP_DURATIONS: Mapping[str, float] = {
    "load": 1.1,
    "store": 1.1,
    "qk": 1.0,
    "softmax": 0.9,
    "pv": 1.0,
    "update": 1.0,
}

#: Tensors indexed by the Q block ``i`` (tile ``(i, 0)``).
_ROW_TENSORS = frozenset({"Q", "O", "dO", "dQ", "acc", "m", "l", "alpha", "LSE", "D"})
#: Tensors indexed by the K/V block ``j`` (tile ``(j, 0)``).
_COL_TENSORS = frozenset({"K", "V", "dK", "dV"})


def hbm_rows(tensor: str, row: int, col: int, block_m: int, block_n: int):
    """The cell range ``(r0, r1, c0, c1)`` of tile ``(row, col)`` of ``tensor``.

    ``c1`` is ``None`` (all columns) except for the ``N x N`` tensors (``S``, ``P``,
    ``dP``, ``dS``), whose tiles are ``BLOCK_M x BLOCK_N``.

    Examples
    --------
    >>> hbm_rows("K", 2, 0, 4, 8), hbm_rows("S", 1, 3, 4, 4)
    ((16, 24, 0, None), (4, 8, 12, 16))
    """
    if tensor in _COL_TENSORS:
        return row * block_n, (row + 1) * block_n, 0, None
    if tensor in _ROW_TENSORS:
        return row * block_m, (row + 1) * block_m, 0, None
    return row * block_m, (row + 1) * block_m, col * block_n, (col + 1) * block_n


class SramSlots:
    """Named places in an SRAM panel, each with a tile size and an on-screen label.

    Parameters
    ----------
    slots
        ``{name: (tensor, label, center, (width, height), (rows, cols))}``: the
        colour tensor, the label above the tile, the centre of the tile body, its
        size in scene units, and its shape in cells.
    numbers
        Write values in the tiles (turned off per slot when cells are too small to
        read at 480p: narrower than 0.5 or lower than 0.2 units).
    value_ranges
        Shading range per tensor.
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene
        from flashanim.visuals.roundtrip import SramSlots

        class Slots(Scene):
            def construct(self):
                s = SramSlots({"Q": ("Q", "Q_i", (0, 0, 0), (1.5, 1.0), (4, 4))})
                self.add(s.placeholders())
                self.add(s.make_tile("Q", np.ones((4, 4))))
    """

    def __init__(
        self,
        slots: Mapping[str, tuple],
        *,
        numbers: bool = True,
        value_ranges: Mapping[str, tuple[float, float]] | None = None,
        theme: Theme = DARK,
    ) -> None:
        self.slots = dict(slots)
        self.numbers = numbers
        self.value_ranges = dict(value_ranges or {})
        self.theme = theme

    def __contains__(self, name: str) -> bool:
        return name in self.slots

    def make_tile(
        self,
        name: str,
        values: np.ndarray | None,
        *,
        tensor: str | None = None,
        label: str | None = None,
        placeholder: bool = False,
    ) -> TileGrid:
        """A tile for slot ``name`` holding ``values`` (cropped to the slot's
        shape), its body centred on the slot."""
        th = self.theme
        slot_tensor, slot_label, center, (w, h), (rows, cols) = self.slots[name]
        tensor = tensor or slot_tensor
        if values is not None:
            values = np.asarray(values, dtype=float)
            if values.ndim == 1:
                values = values[:, None]
            values = values[:rows, :cols]
        cw, ch = w / cols, h / rows
        stat = cols == 1
        tile = slot_tile(
            tensor,
            values,
            shape=(rows, cols),
            cell_width=cw,
            cell_height=ch,
            label=label or slot_label,
            stat=stat,
            numbers=self.numbers and cw >= 0.5 and ch >= 0.2,
            placeholder=placeholder,
            value_range=self.value_ranges.get(tensor),
            shade_strength=0.55 if self.numbers else 1.0,
            theme=th,
        )
        tile.shift(np.asarray(center, dtype=float) - tile.frame.get_center())
        return tile

    def placeholders(self, names: Iterable[str] | None = None) -> VGroup:
        """Dim empty outlines where the tiles of ``names`` (default all) land."""
        names = self.slots if names is None else names
        return VGroup(*(self.make_tile(n, None, placeholder=True) for n in names))


class ProgressBar(VGroup):
    """A thin bar with "event k of n" (for screens too narrow for a
    :class:`~flashanim.visuals.progress.ProgressPanel`).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.roundtrip import ProgressBar

        class Bar(Scene):
            def construct(self):
                b = ProgressBar(212, width=6)
                self.add(b)
                self.play(b.make_update_animation(100))
    """

    def __init__(
        self, n_steps: int, *, width: float = 6.0, theme: Theme = DARK, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.n_steps, self.bar_width, self.theme = n_steps, width, theme
        self.text = self._text(0)
        self.track = Rectangle(width=width, height=0.07, stroke_width=0)
        self.track.set_fill(theme.panel_stroke, opacity=0.5)
        self.track.next_to(self.text, DOWN, buff=0.08).align_to(self.text, LEFT)
        self.bar = Rectangle(width=width, height=0.07, stroke_width=0)
        self.bar.set_fill(theme.highlight, opacity=1)
        self._set_bar(self.bar, 0)
        self.add(self.text, self.track, self.bar)

    def _text(self, k: int) -> Text:
        th = self.theme
        return cached_text(
            f"event {k} of {self.n_steps}", th.mono_font, th.small_size + 1, th.muted
        )

    def _set_bar(self, bar: Rectangle, k: int) -> None:
        frac = max(min(k / max(self.n_steps, 1), 1.0), 1e-3)
        bar.stretch_to_fit_width(self.bar_width * frac)
        bar.move_to(self.track.get_left(), aligned_edge=LEFT)

    def make_update_animation(self, step: int) -> Animation:
        """Show event ``step`` (1-based) of ``n_steps``."""
        new = self._text(step).move_to(self.text, aligned_edge=LEFT)
        bar = self.bar.copy()
        self._set_bar(bar, step)
        return AnimationGroup(Transform(self.text, new), Transform(self.bar, bar))


class VisitGrid(VGroup):
    """The ``T_r x T_c`` tiles ``(i, j)``: which one the kernel is on, and in what
    order it computed them.

    Rows are Q blocks ``i``, columns K/V blocks ``j``. The current tile is outlined
    in the highlight colour; a band marks the current index of the *outer* loop (a
    column for ``outer="j"``, a row for ``outer="i"``); each tile gets its visit
    number the first time it is computed (when cells are large enough to hold it).

    Parameters
    ----------
    t_r, t_c
        Number of Q blocks and K/V blocks.
    outer
        ``"i"`` or ``"j"``: which index the outer loop runs over.
    size
        Side of the grid's larger dimension, in scene units.
    title
        Heading.
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.roundtrip import VisitGrid

        class Visits(Scene):
            def construct(self):
                g = VisitGrid(4, 4, outer="j")
                self.add(g)
                self.play(g.make_cursor_animation(0, 0, visit=True))
    """

    def __init__(
        self,
        t_r: int,
        t_c: int,
        *,
        outer: str = "i",
        size: float = 2.0,
        title: str = "tiles (i, j)",
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if outer not in ("i", "j"):
            raise ValueError(f"outer must be 'i' or 'j', got {outer!r}")
        self.t_r, self.t_c, self.outer, self.theme = t_r, t_c, outer, theme
        self.cell = cell = size / max(t_r, t_c)
        self.visits = 0
        self.visited: dict[tuple[int, int], int] = {}
        self.cells = VGroup()
        for i in range(t_r):
            for j in range(t_c):
                r = Rectangle(width=cell, height=cell, stroke_width=1.2)
                r.set_stroke(theme.panel_stroke, opacity=0.9)
                r.set_fill(theme.color("S"), opacity=0.0)
                r.move_to([(j + 0.5) * cell, -(i + 0.5) * cell, 0])
                self.cells.add(r)
        self.numbers = VGroup()
        fs = theme.small_size
        self.show_numbers = cell >= 0.3
        self.heading = Text(
            title, font=theme.font, font_size=theme.body_size, color=theme.foreground
        )
        self.heading.next_to(self.cells, UP, buff=0.32)
        self.heading.align_to(self.cells, LEFT)
        self.axis = VGroup(
            cached_text("j (K/V block) →", theme.font, fs, theme.ink("K")),
            cached_text("i (Q block) ↓", theme.font, fs, theme.ink("Q")),
        )
        self.axis[0].next_to(self.cells, UP, buff=0.06).align_to(self.cells, LEFT)
        self.axis[1].rotate(-math.pi / 2).next_to(self.cells, LEFT, buff=0.08)
        self.axis[1].align_to(self.cells, UP)
        self.band = Rectangle(width=cell, height=cell, stroke_width=0)
        self.band.set_fill(theme.highlight, opacity=0.0)
        self.band.move_to(self.cells[0])
        self.cursor = Rectangle(width=cell, height=cell, stroke_width=4)
        self.cursor.set_stroke(theme.highlight, opacity=0.0)
        self.cursor.set_fill(opacity=0)
        self.cursor.move_to(self.cells[0])
        self.add(
            self.band, self.cells, self.numbers, self.cursor, self.heading, self.axis
        )
        self._i = self._j = None

    def cell_at(self, i: int, j: int) -> Rectangle:
        """The square of tile ``(i, j)``."""
        return self.cells[i * self.t_c + j]

    def make_cursor_animation(
        self, i: int | None, j: int | None, *, visit: bool = False
    ) -> Animation:
        """Move the cursor to ``(i, j)`` (``None``: keep that index); with ``visit``
        mark the tile computed and number it."""
        return self.make_moves_animation([(i, j, visit)])

    def make_moves_animation(self, moves) -> Animation:
        """Several cursor moves ``(i, j, visit)`` (as :meth:`make_cursor_animation`)
        shown at once: the band and cursor go to where the last one leaves them,
        every tile visited on the way is marked and numbered in order."""
        marks: list[Animation] = []
        for i, j, visit in moves:
            self._i = self._i if i is None else i
            self._j = self._j if j is None else j
            key = (self._i, self._j)
            if visit and None not in key and key not in self.visited:
                marks += self._mark(key)
        anims: list[Animation] = []
        band = self.band.copy()
        outer = self._j if self.outer == "j" else self._i
        if outer is not None:
            first = (
                self.cell_at(0, outer) if self.outer == "j" else self.cell_at(outer, 0)
            )
            last = (
                self.cell_at(self.t_r - 1, outer)
                if self.outer == "j"
                else self.cell_at(outer, self.t_c - 1)
            )
            band.stretch_to_fit_width(last.get_right()[0] - first.get_left()[0])
            band.stretch_to_fit_height(first.get_top()[1] - last.get_bottom()[1])
            band.move_to(
                (first.get_corner(UP + LEFT) + last.get_corner(DOWN + RIGHT)) / 2
            )
            band.set_fill(self.theme.highlight, opacity=0.16)
        anims.append(Transform(self.band, band))
        if self._i is not None and self._j is not None:
            cur = self.cursor.copy().move_to(self.cell_at(self._i, self._j))
            cur.set_stroke(self.theme.highlight, opacity=1.0)
            anims.append(Transform(self.cursor, cur))
        return AnimationGroup(*anims, *marks)

    def _mark(self, key: tuple[int, int]) -> list[Animation]:
        """Mark tile ``key`` computed (the next number)."""
        self.visits += 1
        self.visited[key] = self.visits
        sq = self.cell_at(*key)
        target = sq.copy().set_fill(self.theme.color("S"), opacity=0.45)
        anims: list[Animation] = [Transform(sq, target)]
        if self.show_numbers:
            th = self.theme
            num = cached_text(
                str(self.visits), th.mono_font, th.small_size, th.foreground
            )
            num.move_to(sq.get_center())
            self.numbers.add(num)
            anims.append(CrossFade(None, num))
        return anims


class RoundTripPlayer(EventPlayer):
    """Plays trace events as loads, stores and computations between HBM and SRAM.

    Parameters
    ----------
    grids
        The HBM :class:`TileGrid` of each tensor the trace moves, by tensor name.
    slots
        Where SRAM tiles land (replace :attr:`slots` between launches).
    slot_of
        ``event -> slot name``: where the event's tile lives in SRAM.
    sources_of
        ``event -> slot names``: the tiles a computation reads (those present are
        drawn merging into its result).
    block_m, block_n
        Tile sizes (to find a tile's cells in its HBM grid).
    counter
        HBM traffic counter, ticked by each load and store (with its ``nbytes``).
    visits
        Optional :class:`VisitGrid`, moved to each event's ``(i, j)``; ``qk`` events
        mark a tile computed.
    progress
        Optional :class:`ProgressBar` (or anything with
        ``make_update_animation(step)``).
    n_events
        Events already played before this player (offset of the progress count).
    clear_on_program
        Fade out every SRAM tile when a new program starts (fresh SRAM).

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.
    tiles
        Slot name -> the tile now in it.

    Examples
    --------
    See ``scenes/standard_attention.py`` and ``scenes/loop_order.py``.
    """

    def __init__(
        self,
        grids: Mapping[str, TileGrid],
        slots: SramSlots,
        slot_of: Callable[[object], str],
        sources_of: Callable[[object], Sequence[str]],
        *,
        block_m: int,
        block_n: int,
        counter: TrafficCounter | None = None,
        visits: VisitGrid | None = None,
        progress=None,
        clear_on_program: bool = True,
        durations: Mapping[str, float] = ROUNDTRIP_DURATIONS,
    ) -> None:
        self.grids, self.slots = dict(grids), slots
        self.slot_of, self.sources_of = slot_of, sources_of
        self.block_m, self.block_n = block_m, block_n
        self.counter, self.visits, self.progress = counter, visits, progress
        self.clear_on_program = clear_on_program
        super().__init__(durations)
        self.tiles: dict[str, TileGrid] = {}
        self._program: int | None = None
        self._step = 0

    #: An operation without a duration of its own takes this long (drawn as a
    #: computation).
    default_duration = 0.8

    def event_animations(self, event) -> list[Animation]:
        """A new program clears SRAM; then the op, counter, visit grid, progress."""
        pre: list[Animation] = []
        if self.clear_on_program and event.program != self._program:
            if self._program is not None:
                pre = self.clear_sram()
            self._program = event.program
        if event.op == "load":
            main = self._load(event)
        elif event.op == "store":
            main = self._store(event)
        else:
            main = self._compute(event)
        self._step += 1
        side: list[Animation] = []
        if self.counter is not None and event.is_memory:
            side.append(
                self.counter.make_tick_animation(event.op, event.tensor, event.nbytes)
            )
        if self.visits is not None:
            i, j = _tile_ij(event)
            side.append(self.visits.make_cursor_animation(i, j, visit=event.op == "qk"))
        if self.progress is not None:
            side.append(self.progress.make_update_animation(self._step))
        return [*pre, main, *side]

    def group_animations(self, events) -> list[Animation]:
        """Consecutive ``events`` of one program at once (a compressed step).

        Every tile the group leaves in SRAM arrives at once (loads travel from
        HBM, results cross-fade in), stores travel back, the counter ticks by the
        group's bytes and the progress jumps to its last event. A slot written
        twice in one group shows only its last tile: group events so that each
        slot is written once (e.g. one K/V block of a loop per group).
        """
        if len({e.program for e in events}) != 1:
            raise ValueError("a group is consecutive events of one program")
        pre: list[Animation] = []
        if self.clear_on_program and events[0].program != self._program:
            if self._program is not None:
                pre = self.clear_sram()
            self._program = events[0].program
        final = {self.slot_of(e): e for e in events if e.op != "store"}
        anims: list[Animation] = []
        for slot, e in final.items():
            if e.op == "load":
                anims.append(self._load(e))
            else:
                old = self.tiles.get(slot)
                tensor = e.tensor if e.tensor != self.slots.slots[slot][0] else None
                new = self.slots.make_tile(slot, e.value, tensor=tensor)
                self.tiles[slot] = new
                anims.append(CrossFade(old, new))
        anims += [self._store(e) for e in events if e.op == "store"]
        self._step += len(events)
        if self.counter is not None:
            moved: dict[tuple[str, str], int] = {}
            for e in events:
                if e.is_memory:
                    moved[e.op, e.tensor] = moved.get((e.op, e.tensor), 0) + e.nbytes
            anims += [self.counter.make_tick_animation(op, t, n)
                      for (op, t), n in moved.items()]  # fmt: skip
        if self.visits is not None:  # the cursor ends where the group does
            anims.append(self.visits.make_moves_animation(
                [(*_tile_ij(e), e.op == "qk") for e in events]))  # fmt: skip
        if self.progress is not None:
            anims.append(self.progress.make_update_animation(self._step))
        return [*pre, *anims]

    def clear_sram(self) -> list[Animation]:
        """Fade out every tile in SRAM."""
        anims: list[Animation] = [_FadeAway(t) for t in self.tiles.values()]
        self.tiles.clear()
        return anims

    # -- helpers ------------------------------------------------------------------
    def region(self, event):
        """The cells of the event's tile in its HBM grid."""
        r0, r1, c0, c1 = hbm_rows(
            event.tensor, event.row, event.col, self.block_m, self.block_n
        )
        return self.grids[event.tensor].region(r0, r1, c0, c1)

    def _place(self, slot: str, event, **kw) -> tuple[TileGrid, list[Animation]]:
        old = self.tiles.get(slot)
        tile = self.slots.make_tile(slot, event.value, **kw)
        self.tiles[slot] = tile
        return tile, ([_FadeAway(old)] if old is not None else [])

    def _load(self, e) -> Animation:
        tile, fade = self._place(self.slot_of(e), e)
        return AnimationGroup(*fade, CopyTravel(self.region(e), tile, path_arc=0.5))

    def _store(self, e) -> Animation:
        slot = self.slot_of(e)
        grid = self.grids[e.tensor]
        r0, r1, c0, c1 = hbm_rows(e.tensor, e.row, e.col, self.block_m, self.block_n)
        r1, c1 = (
            min(r1, grid.n_rows),
            min(grid.n_cols if c1 is None else c1, grid.n_cols),
        )
        shape = (r1 - r0, c1 - c0)
        if e.value is not None:
            values = np.asarray(e.value, dtype=float)
            values = (values[:, None] if values.ndim == 1 else values)[
                : shape[0], : shape[1]
            ]
        else:  # an events-only run: mark the block written, mid shade
            lo, hi = grid.value_range
            values = np.full(shape, (lo + hi) / 2)
        tile = self.tiles.get(slot)
        if tile is None:
            # stored straight from registers (e.g. FA1's O = 0, l = 0, m = −∞)
            tile = self.slots.make_tile(slot, e.value)
        if values.shape != shape:
            return Wait(0.01)
        return make_store_animation(
            tile.body(), grid, values, r0=r0, c0=c0, path_arc=-0.5
        )

    def _compute(self, e) -> Animation:
        slot = self.slot_of(e)
        srcs = [self.tiles[s].body() for s in self.sources_of(e) if s in self.tiles]
        tensor = e.tensor if e.tensor != self.slots.slots[slot][0] else None
        tile, fade = self._place(slot, e, tensor=tensor)
        if not srcs:
            return AnimationGroup(*fade, CrossFade(None, tile))
        return AnimationGroup(*fade, make_compute_animation(srcs, tile, travel=0.55))


def _tile_ij(e) -> tuple[int | None, int | None]:
    """The ``(i, j)`` an event is about (``None`` where it says nothing)."""
    if e.tensor in _COL_TENSORS:
        return None, e.row
    if e.tensor in _ROW_TENSORS:
        return e.row, None
    return e.row, e.col


class TrafficTable(VGroup):
    """HBM bytes per tensor (columns) and direction, for several runs (rows).

    Parameters
    ----------
    traffics
        ``{run name: {(tensor, "read" | "write"): bytes}}`` (as
        :func:`flashanim.trace.hbm_traffic` returns), in display order.
    tensors
        Column order; default: every tensor seen, in first-seen order.
    marked
        Tensors whose columns are shaded in their colour (e.g. ``("S", "P")``, the
        ``N²`` terms).
    theme
        Colours and fonts.

    Attributes
    ----------
    totals
        ``{run name: total bytes}``.
    rows
        ``{(run name, direction): VGroup of the row's texts}``.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.roundtrip import TrafficTable

        class Table(Scene):
            def construct(self):
                self.add(TrafficTable({
                    "standard": {("S", "write"): 1024, ("S", "read"): 1024},
                    "FA2": {("Q", "read"): 256, ("O", "write"): 256},
                }))
    """

    def __init__(
        self,
        traffics: Mapping[str, Mapping[tuple[str, str], int]],
        *,
        tensors: Sequence[str] | None = None,
        marked: Sequence[str] = (),
        col_width: float = 1.05,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = th = theme
        if tensors is None:
            seen: list[str] = []
            for tr in traffics.values():
                for t, _ in tr:
                    if t not in seen:
                        seen.append(t)
            tensors = seen
        self.tensors = list(tensors)
        self.totals = {name: sum(tr.values()) for name, tr in traffics.items()}
        fs = th.body_size
        line = 0.3
        label_w = (
            max(
                cached_text(f"{n} {d}", th.font, fs, th.foreground).width
                for n in traffics
                for d in ("read", "wrote")
            )
            + 0.25
        )
        x_cols = [label_w + (k + 0.5) * col_width for k in range(len(self.tensors) + 1)]
        self.header = VGroup()
        for x, t in zip(x_cols, [*self.tensors, "total"], strict=True):
            color = th.ink(t) if t != "total" else th.foreground
            h = cached_text(t, th.font, th.label_size, color).move_to([x, 0, 0])
            self.header.add(h)
        self.add(self.header)
        self.rows: dict[tuple[str, str], VGroup] = {}
        y = -line
        for name, tr in traffics.items():
            for direction, verb in (("read", "read"), ("write", "wrote")):
                row = VGroup()
                lab = cached_text(f"{name} {verb}", th.font, fs, th.foreground)
                lab.move_to([0, y, 0], aligned_edge=LEFT)
                row.add(lab)
                for x, t in zip(x_cols, self.tensors, strict=False):
                    n = tr.get((t, direction), 0)
                    s = f"{n:,}" if n else "·"
                    c = th.foreground if n else th.muted
                    row.add(cached_text(s, th.mono_font, fs, c).move_to([x, y, 0]))
                tot = sum(v for (_, d), v in tr.items() if d == direction)
                row.add(
                    cached_text(f"{tot:,}", th.mono_font, fs, th.foreground).move_to(
                        [x_cols[-1], y, 0]
                    )
                )
                self.rows[(name, direction)] = row
                self.add(row)
                y -= line
            # the run's grand total, under its two rows
            total = cached_text(
                f"= {self.totals[name]:,} B", th.mono_font, fs, th.highlight
            )
            total.move_to([x_cols[-1], y + 0.02, 0]).align_to(
                self.rows[(name, "write")][-1], RIGHT
            )
            self.rows[(name, "total")] = VGroup(total)
            self.add(total)
            y -= line * 1.05
        self.marks = VGroup()
        top = self.header.get_top()[1] + 0.06
        bottom = y + line * 0.6
        for t in marked:
            if t in self.tensors:
                k = self.tensors.index(t)
                r = Rectangle(
                    width=col_width * 0.94, height=top - bottom, stroke_width=0
                )
                r.set_fill(th.color(t), opacity=0.16)
                r.move_to([x_cols[k], (top + bottom) / 2, 0])
                self.marks.add(r)
        self.add_to_back(self.marks)
        self.rule = Rectangle(
            width=x_cols[-1] + col_width / 2, height=0.015, stroke_width=0
        ).set_fill(th.panel_stroke, opacity=1)
        self.rule.move_to([(x_cols[-1] + col_width / 2) / 2, -line / 2, 0])
        self.add(self.rule)


_ = (RIGHT, LEFT)
