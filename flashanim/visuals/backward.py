"""The screen of the FA2 backward pass, and the player of its trace events.

:class:`BackwardLayout` places the HBM contents of the backward (``Q K V O dO LSE``
given, ``D dQ dK dV`` written; never ``S``, ``P``, ``dP``, ``dS``) and the SRAM
tiles of one program::

    caption ........................................................................
    ┌ HBM ──────────────────┐ ┆ ┌ SRAM ─────────────────────────────────────────┐
    │ Q   K   V   O   dO    │ ┆ │ Q_i (O_i)   dO_i        K_j        V_j        │
    │ LSE D   dQ  dK  dV    │ ┆ │ S_ij        P_ij        dP_ij      dS_ij      │
    └───────────────────────┘ ┆ │ LSE_i D_i   dV_j        dK_j       dQ_i       │
    i = … of T_r   j = … of T_c   step k of n  ━━━━━━━━━━━━━━━
    HBM reads   HBM writes        legend, what HBM holds

:class:`BackwardPlayer` turns each event of an ``fa2-bwd`` trace into one animation
(see :data:`BWD_SOURCES` for what each computation is drawn from) and records the
events it played in :attr:`BackwardPlayer.played_events`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    AnimationGroup,
    Text,
    VGroup,
    Wait,
)

from ..trace.analysis import value_ranges
from .caption import Caption
from .counters import TrafficCounter
from .eventplayer import EventPlayer
from .layout import Legend
from .memory import chip_boundary, hbm_panel, sram_panel
from .progress import ProgressPanel
from .theme import DARK, Theme
from .tiles import CopyTravel, CrossFade, TileGrid, make_compute_animation
from .tiles import make_store_animation as _store

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from manim import Scene

__all__ = [
    "BackwardLayout",
    "BackwardPlayer",
    "BWD_DURATIONS",
    "BWD_SOURCES",
    "BWD_LABELS",
    "PHASE_TENSORS",
    "split_program",
]

#: Seconds per operation at speed 1.
BWD_DURATIONS: Mapping[str, float] = MappingProxyType(
    {
        "load": 1.0,
        "store": 1.0,
        "rowdot": 0.9,
        "qk": 0.9,
        "mask": 0.7,
        "recompute": 0.9,
        "dv": 0.9,
        "dp": 0.9,
        "ds": 0.9,
        "dk": 0.9,
        "dq": 0.9,
    }
)

#: The SRAM tiles each computation is drawn from (copies travel into the result).
BWD_SOURCES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "rowdot": ("O", "dO"),
        "qk": ("Q", "K"),
        "mask": ("S",),
        "recompute": ("S", "LSE"),
        "dv": ("P", "dO"),
        "dp": ("dO", "V"),
        "ds": ("P", "dP", "D"),
        "dk": ("dS", "Q"),
        "dq": ("dS", "K"),
    }
)

#: On-screen labels of the SRAM tiles (the kernel's names and what they hold).
BWD_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "Q": "Q_i",
        "O": "O_i",
        "dO": "dO_i",
        "K": "K_j",
        "V": "V_j",
        "S": "S = Q Kᵀ·scale",
        "P": "P = exp(S − LSE)",
        "dP": "dP = dO Vᵀ",
        "dS": "dS = P∘(dP − D)",
        "LSE": "LSE_i",
        "D": "D_i",
        "dV": "dV_j += Pᵀ dO",
        "dK": "dK_j += scale·dSᵀQ_i",
        "dQ": "dQ_i += scale·dS K_j",
    }
)

#: The SRAM tiles each launch uses (for its placeholders).
PHASE_TENSORS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "preprocess": ("O", "dO", "D"),
        "dkdv": ("Q", "dO", "K", "V", "S", "P", "dP", "dS", "LSE", "D", "dV", "dK"),
        "dq": ("Q", "dO", "K", "V", "S", "P", "dP", "dS", "LSE", "D", "dQ"),
    }
)

#: Gap (scene units) between the accumulator tiles dV_j, dK_j, dQ_i: their labels
#: overhang the tiles, and stay at least :data:`LABEL_CLEARANCE` apart.
LABEL_ROW_GAP = 0.35
#: Least gap between two tile labels of one SRAM row (0.3 units: 18 px at 480p).
LABEL_CLEARANCE = 0.3

_ROW_I = frozenset({"Q", "O", "dO", "dQ", "LSE", "D"})
_ROW_J = frozenset({"K", "V", "dK", "dV"})
_SCORES = frozenset({"S", "P", "dP", "dS"})
_STATS = frozenset({"LSE", "D"})
_HBM_ROWS = (("Q", "K", "V", "O", "dO"), ("LSE", "D", "dQ", "dK", "dV"))


class BackwardLayout:
    """Every mobject of an FA2 backward screen, placed, for one head of a trace.

    Parameters
    ----------
    trace
        An ``fa2-bwd`` :class:`~flashanim.trace.Trace`.
    bh
        The batch-head shown.
    numbers
        Write values in SRAM tiles (default: values recorded and blocks at most 4).
    theme
        Colours and fonts.

    Attributes
    ----------
    caption, title, hbm, sram, boundary, grids, progress, reads, writes, notes
        The parts; ``grids`` maps each HBM tensor to its :class:`TileGrid`.
    slots
        SRAM tensor -> centre of its tile.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        import flashanim.kernels  # first: chooses the device
        from flashanim.trace import record
        from flashanim.visuals.backward import BackwardLayout

        class Screen(Scene):
            def construct(self):
                trace = record("fa2-bwd", seq_len=8)
                lay = BackwardLayout(trace)
                self.add(lay.static_group(), lay.placeholders("dkdv"))
    """

    def __init__(
        self,
        trace,
        *,
        bh: int = 0,
        numbers: bool | None = None,
        title: str = "FlashAttention-2 backward",
        theme: Theme = DARK,
        gpu=None,
    ) -> None:
        meta = trace.meta
        if meta.kernel != "fa2-bwd":
            raise ValueError(
                f"BackwardLayout needs an fa2-bwd trace, not {meta.kernel!r}"
            )
        self.theme = th = theme
        self.meta = meta
        self.n_q, self.n_k, self.d = meta.seq_len_q, meta.seq_len_k, meta.head_dim
        self.block_m, self.block_n = meta.block_m, meta.block_n
        if numbers is None:
            numbers = meta.values and max(meta.block_m, meta.block_n, self.d) <= 4
        self.numbers = bool(numbers)
        events = [e for e in trace.events if e.bh == bh]
        self.value_ranges = value_ranges(events)

        self.captions = Caption(th)
        self.title = self.captions.make_title(title)

        # panels --------------------------------------------------------------------
        top, bottom = 3.38, -0.98
        self.hbm = hbm_panel(gpu, width=4.45, height=top - bottom, theme=th)
        self.hbm.move_to([-7.0 + 4.45 / 2, (top + bottom) / 2, 0])
        self.sram = sram_panel(gpu, width=9.4, height=top - bottom, theme=th)
        self.sram.move_to([7.0 - 9.4 / 2, (top + bottom) / 2, 0])
        gap_x = (self.hbm.get_right()[0] + self.sram.get_left()[0]) / 2
        self.boundary = chip_boundary(top + 0.05, bottom - 0.05, gap_x, theme=th)

        # HBM grids: given (Q K V O dO LSE) and written (D dQ dK dV) --------------------
        b, h = divmod(bh, meta.heads)
        avail = self.hbm.content_top() - (bottom + 0.12) - 0.3 - 0.3 - 0.3
        cell_h = min(0.1, avail / 2 / max(self.n_q, self.n_k))
        cell_w = min(0.16, 0.64 / self.d)
        self.grids: dict[str, TileGrid] = {}
        rows = [VGroup(*(self._hbm_grid(trace, name, b, h, cell_w, cell_h)
                         for name in names)) for names in _HBM_ROWS]  # fmt: skip
        y = self.hbm.content_top() - 0.02
        for row in rows:
            row.arrange(RIGHT, buff=0.3, aligned_edge=UP)
            if row.width > self.hbm.box.width - 0.35:
                row.scale_to_fit_width(self.hbm.box.width - 0.35)
            row.set_x(self.hbm.box.get_center()[0] + 0.08)
            row.align_to([0, y, 0], UP)
            y = row.get_bottom()[1] - 0.3

        # SRAM slots ------------------------------------------------------------------
        self.tile_w, self.tile_h, self.stat_w = 2.1, 0.78, 0.5
        left = self.sram.box.get_left()[0] + 0.22
        y_a = self.sram.content_top() - 0.32 - self.tile_h / 2
        y_b = y_a - self.tile_h - 0.42
        y_c = y_b - self.tile_h - 0.42
        step = self.tile_w + 0.17
        xs = [left + self.tile_w / 2 + k * step for k in range(4)]
        x_lse = left + self.stat_w / 2 + 0.05
        x_d = x_lse + self.stat_w + 0.3
        x_c0 = x_d + self.stat_w / 2 + 0.35 + self.tile_w / 2
        # the gradients' labels ("dK_j += scale·dSᵀQ_i") are wider than their
        # tiles: this row spreads into the room on its right to keep them apart
        xc = [x_c0 + k * (self.tile_w + LABEL_ROW_GAP) for k in range(3)]
        self.slots: dict[str, np.ndarray] = {
            "Q": np.array([xs[0], y_a, 0]), "O": np.array([xs[0], y_a, 0]),
            "dO": np.array([xs[1], y_a, 0]), "K": np.array([xs[2], y_a, 0]),
            "V": np.array([xs[3], y_a, 0]),
            "S": np.array([xs[0], y_b, 0]), "P": np.array([xs[1], y_b, 0]),
            "dP": np.array([xs[2], y_b, 0]), "dS": np.array([xs[3], y_b, 0]),
            "LSE": np.array([x_lse, y_c, 0]), "D": np.array([x_d, y_c, 0]),
            "dV": np.array([xc[0], y_c, 0]), "dK": np.array([xc[1], y_c, 0]),
            "dQ": np.array([xc[2], y_c, 0]),
        }  # fmt: skip
        bm, bn, d = self.block_m, self.block_n, self.d
        self.slot_shapes = {
            "Q": (bm, d), "O": (bm, d), "dO": (bm, d), "dQ": (bm, d),
            "K": (bn, d), "V": (bn, d), "dK": (bn, d), "dV": (bn, d),
            "S": (bm, bn), "P": (bm, bn), "dP": (bm, bn), "dS": (bm, bn),
            "LSE": (bm, 1), "D": (bm, 1),
        }  # fmt: skip

        # bottom strip ----------------------------------------------------------------
        t_r, t_c = meta.t_r, meta.t_c
        self.progress = ProgressPanel(t_r, t_c, len(events), width=13.9, theme=th)
        self.progress.move_to([0, bottom - 0.33, 0]).align_to([-7.0, 0, 0], LEFT)
        strip_top = self.progress.get_bottom()[1] - 0.12
        self.reads = TrafficCounter(("Q", "K", "V", "O", "dO", "LSE", "D"), (),
                                    title="HBM reads (bytes)", theme=th)  # fmt: skip
        self.writes = TrafficCounter((), ("D", "dQ", "dK", "dV"),
                                     title="HBM writes (bytes)", theme=th)  # fmt: skip
        for k, c in enumerate((self.reads, self.writes)):
            c.scale(0.84)
            c.align_to([-7.0 + 3.45 * k, strip_top, 0], UP + LEFT)
        legend = Legend(
            ["Q", "K", "V", "O", "dO", "LSE", "D", "S", "P", "dP", "dS", "dQ", "dK",
             "dV"], columns=5, theme=th,
        )  # fmt: skip
        lines = VGroup(
            *(
                Text(s, font=th.font, font_size=th.body_size, color=th.muted)
                for s in (
                    "HBM holds only N×d and N-vectors: Q K V O dO LSE D dQ dK dV",
                    "S, P, dP, dS (N×N) live in SRAM, one tile at a time",
                    "shade = value (faint: low, full colour: high); hatched: a gradient",
                )
            )
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.1)
        self.notes = VGroup(legend, lines).arrange(DOWN, aligned_edge=LEFT, buff=0.22)
        room = 7.0 - 0.0
        if self.notes.width > room:
            self.notes.scale_to_fit_width(room)
        self.notes.align_to([0.0, strip_top - 0.05, 0], UP + LEFT)

    # -- helpers ----------------------------------------------------------------------
    def _hbm_grid(self, trace, name: str, b: int, h: int, cell_w: float,
                  cell_h: float) -> TileGrid:  # fmt: skip
        """The HBM grid of ``name``: given inputs shaded, outputs empty."""
        n_rows = self.n_k if name in _ROW_J else self.n_q
        cols = 1 if name in _STATS else self.d
        vals = None
        if name in trace.tensors and name not in ("D", "dQ", "dK", "dV"):
            vals = np.asarray(trace.tensors[name], dtype=float)[b, h]
            vals = vals.reshape(n_rows, cols)
        rng = self.value_ranges.get(name)
        if vals is not None:
            rng = _union(rng, _rng(vals))
        self.value_ranges[name] = rng or (0.0, 1.0)
        th = self.theme
        grid = TileGrid(
            name, vals, shape=(n_rows, cols), block_rows=self.block_size(name),
            label=name, row_indices=name in ("Q", "LSE"), cell_width=cell_w,
            cell_height=cell_h, label_size=th.label_size,
            value_range=self.value_ranges[name], theme=th,
        )  # fmt: skip
        self.grids[name] = grid
        return grid

    @property
    def caption(self) -> VGroup:
        """The caption now shown (top left)."""
        return self.captions.mob

    def make_caption_animation(self, text: str, run_time: float = 0.6) -> Animation:
        """Replace the caption with ``text`` (fade out, fade in)."""
        return self.captions.make_animation(text, run_time)

    def block_size(self, tensor: str) -> int:
        """Rows of one block of ``tensor`` (``BLOCK_N`` for K, V, dK, dV)."""
        return self.block_n if tensor in _ROW_J else self.block_m

    def hbm_block(self, tensor: str, block: int) -> VGroup:
        """The cells of HBM block ``block`` of ``tensor``."""
        size = self.block_size(tensor)
        return self.grids[tensor].region(block * size, (block + 1) * size)

    def crop(self, e) -> np.ndarray | None:
        """The valid part of event ``e``'s value (tails and padding cut off)."""
        if e.value is None:
            return None
        v = np.asarray(e.value, dtype=float)
        if v.ndim == 1:
            v = v[:, None]
        if e.tensor in _SCORES:
            rows = min(self.block_m, self.n_q - e.row * self.block_m)
            cols = min(self.block_n, self.n_k - e.col * self.block_n)
        else:
            n = self.n_k if e.tensor in _ROW_J else self.n_q
            size = self.block_size(e.tensor)
            rows = min(size, n - e.row * size)
            cols = 1 if e.tensor in _STATS else self.d
        return v[:rows, :cols]

    def make_tile(self, tensor: str, values: np.ndarray | None, *,
                  placeholder: bool = False) -> TileGrid:  # fmt: skip
        """A tile for ``tensor``'s SRAM slot holding ``values``, placed.

        ``placeholder`` draws an empty, dim outline of the full block.
        """
        th = self.theme
        rows, cols = self.slot_shapes[tensor]
        if values is not None:
            values = np.asarray(values, dtype=float)
            values = values[:, None] if values.ndim == 1 else values
            rows, cols = values.shape
        stat = tensor in _STATS
        width = self.stat_w if stat else self.tile_w
        full_r, full_c = self.slot_shapes[tensor]
        cw, ch = width / full_c, self.tile_h / full_r
        tile = TileGrid(
            tensor, values, shape=(rows, cols),
            numbers=self.numbers and not placeholder, cell_width=cw, cell_height=ch,
            label=BWD_LABELS[tensor],
            label_size=th.small_size + 1 if stat else th.body_size,
            value_range=self.value_ranges.get(tensor),
            shade_strength=0.55 if self.numbers else 1.0, number_size=th.small_size,
            theme=th,
        )  # fmt: skip
        if placeholder:
            tile.frame.set_stroke(opacity=0.35)
            tile.hatch.set_stroke(opacity=0.2)
            tile.cells.set_stroke(opacity=0.2)
            tile.label.set_opacity(0.45)
        # the block's top-left corner at the slot's (a tail block is smaller)
        corner = self.slots[tensor] + np.array([-width / 2, self.tile_h / 2, 0])
        tile.shift(corner - tile.frame.get_corner(UP + LEFT))
        return tile

    def placeholders(self, phase: str) -> VGroup:
        """Empty outlines of the SRAM tiles launch ``phase`` uses."""
        return VGroup(*(self.make_tile(t, None, placeholder=True)
                        for t in PHASE_TENSORS[phase]))  # fmt: skip

    def static_group(self) -> VGroup:
        """Panels, HBM grids, boundary, progress, counters, notes and title."""
        return VGroup(
            self.hbm, self.sram, self.boundary, *self.grids.values(), self.progress,
            self.reads, self.writes, self.notes, self.title,
        )  # fmt: skip


class BackwardPlayer(EventPlayer):
    """Turns ``fa2-bwd`` trace events into animations on a :class:`BackwardLayout`.

    Each event is one animation: loads copy an HBM block into its SRAM slot (the
    block stays), computations send copies of their inputs (:data:`BWD_SOURCES`)
    into the result, stores send a copy back that replaces the HBM block. Every
    animation also ticks the HBM read or write counter by the event's ``nbytes``
    and advances the progress line. A program's first event clears SRAM.

    Parameters
    ----------
    layout
        The placed mobjects.

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.
    tiles
        SRAM tensor -> the tile now in its slot.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        import flashanim.kernels  # first: chooses the device
        from flashanim.trace import record
        from flashanim.visuals.backward import BackwardLayout, BackwardPlayer

        class Play(Scene):
            def construct(self):
                trace = record("fa2-bwd", seq_len=8)
                lay = BackwardLayout(trace)
                self.add(lay.static_group())
                BackwardPlayer(lay).play(self, trace.events)
    """

    durations = BWD_DURATIONS

    def __init__(self, layout: BackwardLayout) -> None:
        super().__init__()
        self.layout = layout
        self.tiles: dict[str, TileGrid] = {}
        self._program: int | None = None
        self._i: int | None = None
        self._j: int | None = None

    def event_animations(self, event) -> list[Animation]:
        """A new program clears SRAM; then the op, the counters and progress."""
        pre = self._enter(event.program)
        if event.op == "load" or event.op == "store":
            main = getattr(self, f"_{event.op}")(event)
        else:
            main = self._compute(event)
        return [*pre, main, *self._side(event)]

    def clear_sram(self) -> list[Animation]:
        """Fade out every tile in SRAM."""
        anims: list[Animation] = [_fade_away(t) for t in self.tiles.values()]
        self.tiles.clear()
        return anims

    def group_animations(self, events) -> list[Animation]:
        """Consecutive ``events`` of one program at once (a fast summary).

        Every tile the group leaves in SRAM arrives at once (loads travel from HBM,
        results fade in), stores travel back, the counters tick by the group's
        bytes and the progress line jumps to its last event. Use it on the groups
        of :func:`split_program` (they partition a program's events exactly).
        """
        if len({e.program for e in events}) != 1:
            raise ValueError("a group is events of one program")
        pre = self._enter(events[0].program)
        final = {e.tensor: e for e in events if e.op != "store"}
        anims: list[Animation] = []
        for tensor, e in final.items():
            old = self.tiles.get(tensor)
            tile = self.layout.make_tile(tensor, self._values(e))
            self.tiles[tensor] = tile
            if e.op == "load":
                src = self.layout.hbm_block(tensor, e.row)
                anims.append(CopyTravel(src, tile, path_arc=0.6))
                if old is not None:
                    anims.append(_fade_away(old))
            else:
                anims.append(CrossFade(old, tile))
        anims += [self._store(e) for e in events if e.op == "store"]
        moved: dict[tuple[str, str], int] = {}
        for e in events:
            self._track(e)
            if e.is_memory:
                moved[e.op, e.tensor] = moved.get((e.op, e.tensor), 0) + e.nbytes
        lay = self.layout
        for (op, tensor), nbytes in moved.items():
            counter = lay.reads if op == "load" else lay.writes
            anims.append(counter.make_tick_animation(op, tensor, nbytes))
        step = len(self.played_events) + len(events)
        anims.append(lay.progress.make_update_animation(step, self._i, self._j))
        return [*pre, *anims]

    def play_groups(self, scene: Scene, events: Iterable,
                    run_time: float = 0.8) -> None:  # fmt: skip
        """Play one program's ``events`` as the groups of :func:`split_program`."""
        super().play_groups(scene, split_program(list(events)), run_time)

    def _enter(self, program: int) -> list[Animation]:
        """A new program starts with an empty SRAM."""
        if program == self._program:
            return []
        self._program, self._i, self._j = program, None, None
        return self.clear_sram()

    # -- side animations ------------------------------------------------------------
    def _track(self, e) -> None:
        if e.tensor in _ROW_I:
            self._i = e.row
        elif e.tensor in _ROW_J:
            self._j = e.row
        elif e.tensor in _SCORES:
            self._i, self._j = e.row, e.col

    def _side(self, e) -> list[Animation]:
        lay = self.layout
        self._track(e)
        out: list[Animation] = []
        if e.op == "load":
            out.append(lay.reads.make_tick_animation("load", e.tensor, e.nbytes))
        elif e.op == "store":
            out.append(lay.writes.make_tick_animation("store", e.tensor, e.nbytes))
        step = len(self.played_events) + 1
        out.append(lay.progress.make_update_animation(step, self._i, self._j))
        return out

    # -- one factory per kind of op --------------------------------------------------
    def _values(self, e) -> np.ndarray | None:
        v = self.layout.crop(e)
        if v is None and not self.layout.numbers:
            return np.full(self.layout.slot_shapes[e.tensor], np.nan)
        return v

    def _new_tile(self, e) -> tuple[TileGrid, list[Animation]]:
        old = self.tiles.get(e.tensor)
        tile = self.layout.make_tile(e.tensor, self._values(e))
        self.tiles[e.tensor] = tile
        return tile, ([_fade_away(old)] if old is not None else [])

    def _load(self, e) -> Animation:
        src = self.layout.hbm_block(e.tensor, e.row)
        tile, fade = self._new_tile(e)
        return AnimationGroup(*fade, CopyTravel(src, tile, path_arc=0.6))

    def _compute(self, e) -> Animation:
        srcs = [self.tiles[s].body() for s in BWD_SOURCES[e.op] if s in self.tiles]
        if e.op == "mask" and e.tensor in self.tiles:
            old = self.tiles[e.tensor]
            new = self.layout.make_tile(e.tensor, self._values(e))
            self.tiles[e.tensor] = new
            return CrossFade(old, new)
        tile, fade = self._new_tile(e)
        if not srcs:
            return AnimationGroup(*fade, CrossFade(None, tile))
        return AnimationGroup(*fade, make_compute_animation(srcs, tile, travel=0.55))

    def _store(self, e) -> Animation:
        lay = self.layout
        tile = self.tiles.get(e.tensor)
        grid = lay.grids[e.tensor]
        size = lay.block_size(e.tensor)
        values = lay.crop(e)
        if values is None:  # no snapshot: the HBM block keeps its (empty) look
            values = grid.values[e.row * size : (e.row + 1) * size]
        if tile is None:
            return Wait(1 / 15)
        return _store(tile.body(), grid, values, r0=e.row * size, path_arc=-0.6)


def split_program(events) -> list[list]:
    """One program's events as groups: what comes before its loop, one group per
    loop iteration (from each ``load Q`` of a dK/dV program, each ``load K`` of a
    dQ program), and the final stores. The groups partition the events exactly,
    in order (an empty head or tail is an empty list).

    Examples
    --------
    >>> from flashanim.trace import Event
    >>> ev = [Event(k, 0, k, op, t, 0, 0, 0, 0) for k, (op, t) in enumerate(
    ...     [("load", "K"), ("load", "V"), ("load", "Q"), ("qk", "S"),
    ...      ("load", "Q"), ("qk", "S"), ("store", "dK"), ("store", "dV")])]
    >>> [len(g) for g in split_program(ev)]
    [2, 2, 2, 2]
    """
    events = list(events)
    tail = len(events)
    while tail > 0 and events[tail - 1].op == "store":
        tail -= 1
    opener = None
    if events and events[0].op == "load" and events[0].tensor == "K":
        opener = "Q"  # dK/dV program: loops over Q blocks
    elif any(e.op == "dq" for e in events):
        opener = "K"  # dQ program: loops over K/V blocks
    head: list = []
    groups: list[list] = []
    for k, e in enumerate(events[:tail]):
        starts = e.op == "load" and e.tensor == opener and (opener != "K" or k > 0)
        if starts:
            groups.append([])
        (groups[-1] if groups else head).append(e)
    return [head, *groups, events[tail:]]


def _fade_away(mob) -> Animation:
    from .player import _FadeAway

    return _FadeAway(mob)


def _rng(a: np.ndarray) -> tuple[float, float] | None:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return (float(a.min()), float(a.max())) if a.size else None


def _union(a, b):
    if a is None or b is None:
        return a or b
    return (min(a[0], b[0]), max(a[1], b[1]))
