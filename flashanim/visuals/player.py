"""The bridge from a recorded trace to the screen: one event, one animation.

:class:`TracePlayer` keeps the state of the SRAM slots of a
:class:`~flashanim.visuals.layout.ForwardLayout` and turns each
:class:`~flashanim.trace.Event` into an animation with a factory per operation:

=========== =====================================================================
``load``    a copy of the HBM block travels into its SRAM slot (the HBM block stays)
``qk``      copies of ``Q_i`` and ``K_j`` merge into ``S_ij``
``mask``    masked entries of ``S_ij`` turn grey (``−∞``)
``rowmax``  ``m_i`` updates; ``exp``: ``P_ij`` comes out of ``S_ij``
``alpha``   ``alpha`` updates; ``rowsum``: ``l_i`` updates
``rescale`` ``acc`` is multiplied by ``alpha``; ``pv``: ``P_ij`` and ``V_j`` merge into
            ``acc``
``normalize`` ``acc`` becomes ``O_i``; ``lse``: ``LSE_i`` appears
``store``   a copy travels back and replaces the HBM block's contents
=========== =====================================================================

Each animation also ticks the traffic counter (loads and stores, by the event's
``nbytes``), moves the code highlight and advances the progress line. The player
records every event it turned into an animation in :attr:`TracePlayer.played_events`,
so tests can hold the played sequence equal to the trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from manim import (
    Animation,
    AnimationGroup,
    Group,
    Wait,
)

from .eventplayer import EventPlayer
from .tiles import (
    CopyTravel,
    CrossFade,
    make_compute_animation,
    make_store_animation,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .layout import ForwardLayout
    from .tiles import TileGrid

__all__ = ["TracePlayer", "DURATIONS", "kv_steps"]

#: Seconds per operation at speed 1.
DURATIONS: Mapping[str, float] = {
    "load": 1.1,
    "store": 1.1,
    "qk": 1.0,
    "mask": 0.8,
    "rowmax": 0.8,
    "exp": 0.9,
    "alpha": 0.7,
    "rowsum": 0.7,
    "rescale": 0.7,
    "pv": 1.0,
    "normalize": 0.9,
    "lse": 0.7,
}


class TracePlayer(EventPlayer):
    """Turns FA2 forward trace events into animations on a :class:`ForwardLayout`.

    Parameters
    ----------
    layout
        The placed mobjects.
    n_events
        Total number of events (for "step k of n").

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.
    tiles
        SRAM slot name -> the tile now in it.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        import flashanim.kernels  # first: chooses the device
        from flashanim.trace import record
        from flashanim.visuals import ForwardLayout, TracePlayer

        class Play(Scene):
            def construct(self):
                trace = record("fa2-fwd", seq_len=8, head_dim=4, block_m=4,
                               block_n=4, values=True)
                layout = ForwardLayout.from_trace(trace)
                self.add(layout.static_group())
                player = TracePlayer(layout, len(trace))
                player.play(self, trace.events)
    """

    durations = DURATIONS

    def __init__(self, layout: ForwardLayout, n_events: int) -> None:
        super().__init__()
        self.layout = layout
        self.n_events = n_events
        self.tiles: dict[str, TileGrid] = {}
        self._j: int | None = None
        self._program: int | None = None

    def event_animations(self, event) -> list[Animation]:
        """The op's own factory, then the counter, code line and progress."""
        main = getattr(self, f"_op_{event.op}")(event)
        return [main, *self._side_animations(event)]

    def group_animations(self, events) -> list[Animation]:
        """Consecutive ``events`` of one program at once (a compressed step, e.g.
        one K/V block of the inner loop; see :func:`kv_steps`).

        Every tile the group leaves in SRAM arrives at once (loads travel from
        HBM, results cross-fade in), stores travel back, the counter ticks by the
        group's bytes, and the code line and the progress jump to its last event.
        """
        if len({e.program for e in events}) != 1:
            raise ValueError("a group is consecutive events of one program")
        lay = self.layout
        pre: list[Animation] = []
        if events[0].program != self._program:  # a new program: SRAM starts empty
            self._program, self._j = events[0].program, None
            pre = self.clear_sram()
        final = {_SLOT.get(e.op, e.tensor): e for e in events if e.op != "store"}
        anims: list[Animation] = []
        for slot, e in final.items():
            old = self.tiles.get(slot)
            kw = (
                {"tensor": "O", "label": "O_i = acc / l_i"}
                if e.op == "normalize"
                else {}
            )
            new = lay.make_tile(slot, self._value(e, slot), **kw)
            self.tiles[slot] = new
            if e.op == "load":
                src = lay.hbm_block(e.tensor, e.row)
                anims.append(CopyTravel(src, new, path_arc=0.6))
                if old is not None:
                    anims.append(_FadeAway(old))
            else:
                anims.append(CrossFade(old, new))
        if any(e.op == "normalize" for e in events):
            anims += self._hide_acc_placeholder_label()
        anims += [self._op_store(e) for e in events if e.op == "store"]
        moved: dict[tuple[str, str], int] = {}
        for e in events:
            if e.is_memory:
                moved[e.op, e.tensor] = moved.get((e.op, e.tensor), 0) + e.nbytes
            if e.tensor in ("K", "V") and e.op == "load":
                self._j = e.row
            if e.op == "qk":
                self._j = e.col
            i = self._block_of_program(e)
        anims += [lay.counter.make_tick_animation(op, t, n)
                  for (op, t), n in moved.items()]  # fmt: skip
        last = events[-1]
        if lay.code is not None:
            anims.append(lay.code.make_highlight_animation(last.op, last.tensor))
        anims.append(lay.progress.make_update_animation(last.index + 1, i, self._j))
        return [*pre, *anims]

    def clear_sram(self) -> list[Animation]:
        """Fade out every tile in SRAM (a new program starts with fresh SRAM)."""
        anims: list[Animation] = [_FadeAway(t) for t in self.tiles.values()]
        self.tiles.clear()
        return anims

    # -- side animations ------------------------------------------------------------
    def _side_animations(self, e) -> list[Animation]:
        lay = self.layout
        if e.tensor in ("K", "V") and e.op == "load":
            self._j = e.row
        if e.op == "qk":
            self._j = e.col
        out: list[Animation] = []
        if e.is_memory:
            out.append(lay.counter.make_tick_animation(e.op, e.tensor, e.nbytes))
        if lay.code is not None:
            out.append(lay.code.make_highlight_animation(e.op, e.tensor))
        i = self._block_of_program(e)
        out.append(lay.progress.make_update_animation(e.index + 1, i, self._j))
        return out

    def _block_of_program(self, e) -> int:
        if e.tensor in ("Q", "O", "m", "l", "alpha", "LSE", "acc", "S", "P"):
            self._i = e.row
        return getattr(self, "_i", e.row)

    # -- helpers ----------------------------------------------------------------------
    def _value(self, e, slot: str) -> np.ndarray | None:
        if e.value is not None:
            return np.asarray(e.value, dtype=float)
        shape = self.layout.slot_shapes.get(e.tensor, self.layout.slot_shapes[slot])
        return np.full(shape, np.nan) if not self.layout.numbers else None

    def _place(self, slot: str, e, **kwargs) -> tuple[TileGrid, list[Animation]]:
        """A new tile for ``slot``; fade out what was there."""
        old = self.tiles.get(slot)
        tile = self.layout.make_tile(slot, self._value(e, slot), **kwargs)
        self.tiles[slot] = tile
        return tile, ([_FadeAway(old)] if old is not None else [])

    def _update(self, slot: str, e, **kwargs) -> Animation:
        """Replace the tile in ``slot`` by one with the event's values (cross-fade)."""
        old = self.tiles.get(slot)
        new = self.layout.make_tile(slot, self._value(e, slot), **kwargs)
        self.tiles[slot] = new
        return CrossFade(old, new)

    # -- one factory per op ------------------------------------------------------------
    def _op_load(self, e) -> Animation:
        slot = e.tensor
        pre: list[Animation] = []
        if slot == "Q" and e.program != self._program:
            # a new program: its SRAM starts empty
            self._program = e.program
            self._j = None
            pre = self.clear_sram()
        tile, fade = self._place(slot, e)
        src = self.layout.hbm_block(e.tensor, e.row)
        return AnimationGroup(*pre, *fade, CopyTravel(src, tile, path_arc=0.6))

    def _op_qk(self, e) -> Animation:
        srcs = [self.tiles[s].body() for s in ("Q", "K") if s in self.tiles]
        tile, fade = self._place("S", e)
        return AnimationGroup(*fade, make_compute_animation(srcs, tile, travel=0.55))

    def _op_mask(self, e) -> Animation:
        return self._update("S", e)

    def _op_rowmax(self, e) -> Animation:
        return self._stat(e, "m", ("S",))

    def _op_alpha(self, e) -> Animation:
        return self._stat(e, "alpha", ("m",))

    def _op_rowsum(self, e) -> Animation:
        return self._stat(e, "l", ("P",))

    def _op_lse(self, e) -> Animation:
        return self._stat(e, "LSE", ("m", "l"))

    def _stat(self, e, slot: str, sources: tuple[str, ...]) -> Animation:
        if slot in self.tiles:
            return self._update(slot, e)
        srcs = [self.tiles[s].body() for s in sources if s in self.tiles]
        new, fade = self._place(slot, e)
        if srcs:
            return AnimationGroup(*fade, make_compute_animation(srcs, new))
        return CrossFade(None, new)

    def _op_exp(self, e) -> Animation:
        srcs = [self.tiles[s].body() for s in ("S", "m") if s in self.tiles]
        tile, fade = self._place("P", e)
        return AnimationGroup(*fade, make_compute_animation(srcs, tile, travel=0.5))

    def _op_rescale(self, e) -> Animation:
        tile = self.tiles.get("acc")
        if tile is None or e.value is None:
            srcs = [self.tiles["alpha"].body()] if "alpha" in self.tiles else []
            new, fade = self._place("acc", e)
            return AnimationGroup(
                *fade,
                make_compute_animation(srcs, new)
                if srcs
                else CopyTravel(new.copy(), new, travel=0),
            )
        return tile.make_update_animation(e.value)

    def _op_pv(self, e) -> Animation:
        srcs = [self.tiles[s].body() for s in ("P", "V") if s in self.tiles]
        tile, fade = self._place("acc", e)
        return AnimationGroup(*fade, make_compute_animation(srcs, tile, travel=0.55))

    def _op_normalize(self, e) -> Animation:
        new = self._update("acc", e, tensor="O", label="O_i = acc / l_i")
        return AnimationGroup(new, *self._hide_acc_placeholder_label())

    def _hide_acc_placeholder_label(self) -> list[Animation]:
        """The empty slot's "acc" under the wider "O_i = acc / l_i" (once)."""
        from .layout import SRAM_SLOTS

        label = self.layout.placeholders[list(SRAM_SLOTS).index("acc")].label
        if label is None or label.get_fill_opacity() == 0:
            return []
        return [label.animate.set_opacity(0)]

    def _op_store(self, e) -> Animation:
        slot = "acc" if e.tensor == "O" else e.tensor
        tile = self.tiles.get(slot)
        grid = self.layout.grids[e.tensor]
        size = self.layout.block_m
        values = e.value
        if values is None:
            values = grid.values[e.row * size : (e.row + 1) * size]
        values = np.asarray(values, dtype=float)
        src = (
            tile.body()
            if tile is not None
            else grid.region(e.row * size, (e.row + 1) * size)
        )
        if tile is None:
            return Wait(0.01)
        return make_store_animation(src, grid, values, r0=e.row * size, path_arc=-0.6)


#: The SRAM slot an operation leaves its result in (others: the event's tensor).
_SLOT = {"rescale": "acc", "pv": "acc", "normalize": "acc", "mask": "S"}


def kv_steps(events) -> list[list]:
    """One program's events split into compressed steps: up to its first K/V
    load (the Q block), one step per K/V block (from its K load to its ``pv``),
    and the end (``normalize`` to the stores). The steps partition ``events``
    in order."""
    steps: list[list] = []
    for e in events:
        opens = (e.op == "load" and e.tensor == "K") or e.op == "normalize"
        if not steps or (opens and steps[-1]):
            steps.append([])
        steps[-1].append(e)
    return steps


class _FadeAway(CrossFade):
    """Fade ``old`` out and remove it (no copies)."""

    def __init__(self, old, **kwargs) -> None:
        super().__init__(old, Group(), **kwargs)

    def clean_up_from_scene(self, scene) -> None:
        Animation.clean_up_from_scene(self, scene)
        self.mobject.remove(*self.mobject.submobjects)
        # (one walk of the scene for both: the emptied carrier holds nothing)
        scene.remove(self.mobject, self.old)
        self._old.apply(1.0)
