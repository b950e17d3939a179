"""FlashAttention-1 loop order beside FlashAttention-2's, from the two kernels' traces.

Render from the repository root: ``manim render -ql scenes/loop_order.py``. Sizes,
mask, theme and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`). Both traces are recorded in this run with the same inputs:
``fa1-fwd`` (one program per batch·head; outer loop over K/V blocks ``j``, inner over
Q blocks ``i``; ``O_i``, ``l_i``, ``m_i`` read from and written to HBM at every inner
step) and ``fa2-fwd`` (one program per Q block ``i``, K/V blocks streamed). Every
motion is one of their events (:class:`RoundTripPlayer`); the ``T_r x T_c`` grids
light the tile each event is about and number the tiles in the order each kernel
computed them. The closing table compares their HBM traffic, per tensor and in
total, from the events' ``nbytes``.
"""

from __future__ import annotations

from manim import *

from flashanim.config import ConfigError
from flashanim.scene import TraceScene
from flashanim.trace import hbm_traffic, value_ranges
from flashanim.visuals import TileGrid, TrafficCounter
from flashanim.visuals.memory import MemoryPanel, hbm_panel, sram_label
from flashanim.visuals.player import kv_steps
from flashanim.visuals.roundtrip import (
    ProgressBar,
    RoundTripPlayer,
    SramSlots,
    TrafficTable,
    VisitGrid,
)

#: Speeds: the first inner step in detail, the rest of the first outer step, the rest.
DETAIL_SPEED, MEDIUM_SPEED, FAST_SPEED = 1.3, 3.5, 9.0
#: Seconds of one grouped step of FA2's later programs (one K/V block).
GROUP_STEP = 0.5
COL_W = 6.85
#: Which tiles a computation reads, by op (slot names).
SOURCES = {
    "qk": ("Q", "K"),
    "mask": ("S",),
    "rowmax": ("S",),
    "exp": ("S", "m"),
    "rowsum": ("P",),
    "update": ("P", "V", "O"),
    "alpha": ("m",),
    "rescale": ("alpha", "acc"),
    "pv": ("P", "V"),
    "normalize": ("acc", "l"),
    "lse": ("m", "l"),
}


def fa1_reload_caption(trace) -> str:
    """How often FA1 moves each Q_i (with O_i, l_i, m_i), counted from its loads
    (causal: once per K/V block j <= i, not T_c times)."""
    from collections import Counter

    n = Counter(e.row for e in trace.events
                if e.bh == 0 and e.op == "load" and e.tensor == "Q")  # fmt: skip
    lo, hi, t_c = min(n.values()), max(n.values()), trace.meta.t_c
    times = (f"T_c = {t_c} times" if lo == hi == t_c else
             f"{lo}–{hi} times (once per K/V block it sees)")  # fmt: skip
    return f"Next K/V block j: every Q_i, O_i, l_i, m_i crosses HBM again, {times}"


class LoopOrderScene(TraceScene):
    """FA1 order (outer K/V, inner Q) beside FA2 order (outer Q, inner K/V)."""

    kernel = None  # two traces, recorded with the settings
    hold_seconds = 1.5  # each section's closing frame

    def setup(self) -> None:
        super().setup()
        if self.cfg.trace is not None:
            raise ConfigError(
                "LoopOrderScene records its two traces (fa1-fwd and fa2-fwd) itself; "
                "unset FLASHANIM_TRACE"
            )
        self.fa1 = self.load_trace("fa1-fwd")
        self.fa2 = self.load_trace("fa2-fwd")

    # -- one column: HBM, tile grid, SRAM, counter ---------------------------------
    def column(self, trace, left: float, kind: str) -> dict:
        th, meta = self.theme, trace.meta
        head = [e for e in trace.events if e.bh == 0]
        n, d, bm, bn = meta.seq_len_q, meta.head_dim, meta.block_m, meta.block_n
        ranges = value_ranges(head)
        t = trace.tensors
        hbm_names = (
            ("Q", "K", "V", "O", "l", "m")
            if kind == "fa1"
            else ("Q", "K", "V", "O", "LSE")
        )
        stores = [
            x for x in hbm_names if any(e.op == "store" and e.tensor == x for e in head)
        ]
        loads = [
            x for x in hbm_names if any(e.op == "load" and e.tensor == x for e in head)
        ]
        out: dict = {"head": head, "meta": meta}
        if kind == "fa1":
            out["header"] = self.text(
                "FlashAttention-1 order · kernels/fa1.py · 1 program per head",
                th.label_size,
            )
        else:
            out["header"] = self.text(
                f"FlashAttention-2 order · kernels/fa2.py · {meta.t_r} programs",
                th.label_size,
            )
        hdr = out["header"]
        if hdr.width > COL_W:
            hdr.scale_to_fit_width(COL_W)
        hdr.move_to([left, 3.22, 0], aligned_edge=LEFT)
        hbm = hbm_panel(self.gpu, width=3.4, height=3.0, theme=th)
        hbm.move_to([left + 1.7, 2.92 - 1.5, 0])
        avail = hbm.content_top() - 0.3 - (hbm.box.get_bottom()[1] + 0.1)
        cell_h = min(0.14, avail / n)
        cell_w = min(0.15, 0.6 / d)
        grids: dict[str, TileGrid] = {}
        for name in hbm_names:
            rows = meta.seq_len_k if name in ("K", "V") else n
            cols = 1 if name in ("l", "m", "LSE") else d
            vals = None
            if name in ("Q", "K", "V") and name in t:
                vals = t[name][0, 0]
            rng = None
            if vals is None:
                rng = ranges.get("O" if name == "O" else name)
                if name == "O" and "O" in t:
                    rng = (float(t["O"].min()), float(t["O"].max()))
            grids[name] = TileGrid(
                name,
                vals,
                shape=(rows, cols),
                block_rows=bn if name in ("K", "V") else bm,
                label=name,
                cell_width=cell_w,
                cell_height=cell_h,
                label_size=th.body_size,
                value_range=rng,
                theme=th,
            )
        row = VGroup(*grids.values()).arrange(RIGHT, buff=0.22, aligned_edge=UP)
        if row.width > hbm.box.width - 0.3:
            row.scale_to_fit_width(hbm.box.width - 0.3)
        row.move_to(hbm.box).align_to([0, hbm.content_top() - 0.02, 0], UP)
        out["hbm"], out["grids"] = hbm, grids

        # the tile grid and the loop structure
        outer = "j" if kind == "fa1" else "i"
        visits = VisitGrid(
            meta.t_r,
            meta.t_c,
            outer=outer,
            size=1.55,
            title="order of tiles (i, j)",
            theme=th,
        )
        visits.move_to([0, 0, 0])
        visits.shift(
            [
                left + 3.95 - visits.cells.get_left()[0],
                2.35 - visits.cells.get_top()[1],
                0,
            ]
        )
        if kind == "fa1":
            lines = (
                "outer: for j < T_c  (K_j, V_j once)",
                "inner: for i < T_r  (Q_i, O_i,",
                "  l_i, m_i loaded + stored each step)",
            )
        else:
            lines = (
                "outer: i, one program per Q block",
                "inner: for j < T_c  (K_j, V_j stream;",
                "  O_i, l_i, m_i stay on chip)",
            )
        loop = VGroup(*(self.text(s, th.small_size + 1, th.muted) for s in lines))
        loop.arrange(DOWN, aligned_edge=LEFT, buff=0.07)
        loop[0].set_color(th.highlight)
        loop.next_to(visits.cells, DOWN, buff=0.15).align_to(visits.axis[1], LEFT)
        room = left + COL_W - 0.2 - loop.get_left()[0]
        if loop.width > room:
            loop.scale_to_fit_width(room).align_to(visits.axis[1], LEFT)
        if visits.heading.get_right()[0] > left + COL_W - 0.2:
            visits.heading.scale_to_fit_width(
                left + COL_W - 0.2 - visits.heading.get_left()[0]
            ).align_to(visits.axis[1], LEFT)
        out["visits"], out["loop"] = visits, loop

        # SRAM
        sram = MemoryPanel(
            sram_label(self.gpu),
            "on-chip · one program's tiles",
            width=3.4,
            height=3.05,
            kind="sram",
            theme=th,
        )
        sram.move_to([left + 1.7, -0.3 - 1.525, 0])
        y1 = sram.content_top() - 0.3 - 0.3
        y2 = y1 - 0.6 - 0.42
        x0 = left + 0.15
        tw, sw, th_ = 0.66, 0.2, 0.6  # (m_i, l_i and their labels inside the panel)
        xs = [x0 + tw / 2 + k * (tw + 0.1) for k in range(3)]
        xstat = [xs[2] + tw / 2 + 0.22 + sw / 2 + k * (sw + 0.28) for k in range(2)]
        big = "O" if kind == "fa1" else "acc"
        slots = {
            "Q": ("Q", "Q_i", (xs[0], y1, 0), (tw, th_), (bm, d)),
            "K": ("K", "K_j", (xs[1], y1, 0), (tw, th_), (bn, d)),
            "V": ("V", "V_j", (xs[2], y1, 0), (tw, th_), (bn, d)),
            "m": ("m", "m_i", (xstat[0], y1, 0), (sw, th_), (bm, 1)),
            "l": ("l", "l_i", (xstat[1], y1, 0), (sw, th_), (bm, 1)),
            "S": ("S", "S_ij", (xs[0], y2, 0), (tw, th_), (bm, bn)),
            "P": ("P", "P_ij", (xs[1], y2, 0), (tw, th_), (bm, bn)),
            big: (
                big,
                "O_i" if kind == "fa1" else "acc",
                (xs[2], y2, 0),
                (tw, th_),
                (bm, d),
            ),
        }
        if kind == "fa2":
            slots["alpha"] = ("alpha", "α", (xstat[0], y2, 0), (sw, th_), (bm, 1))
            slots["LSE"] = ("LSE", "LSE", (xstat[1], y2, 0), (sw, th_), (bm, 1))
        out["sram"] = sram
        out["slots"] = SramSlots(slots, numbers=False, value_ranges=ranges, theme=th)
        out["placeholders"] = out["slots"].placeholders()
        edge = DashedLine(
            [left, -0.15, 0],
            [left + 3.5, -0.15, 0],
            dash_length=0.12,
            color=th.muted,
            stroke_width=2,
        )
        out["edge"] = edge

        counter = TrafficCounter(loads, stores, theme=th)
        counter.align_to([left + 3.55, -0.3, 0], UP + LEFT)
        out["counter"] = counter
        progress = ProgressBar(len(head), width=3.5, theme=th)
        progress.move_to([left, -3.66, 0], aligned_edge=LEFT)
        out["progress"] = progress

        def slot_of(e) -> str:
            if kind == "fa2" and e.tensor == "O":
                return "acc"
            return e.tensor

        def sources_of(e):
            return SOURCES.get(e.op, ())

        out["player"] = RoundTripPlayer(
            grids,
            out["slots"],
            slot_of,
            sources_of,
            block_m=bm,
            block_n=bn,
            counter=counter,
            visits=visits,
            progress=progress,
        )
        out["static"] = VGroup(
            hdr,
            hbm,
            *grids.values(),
            visits,
            loop,
            sram,
            out["placeholders"],
            edge,
            counter,
            progress,
        )
        return out

    def gpu_source(self) -> VGroup:
        """Where the panels' figures come from (the render's one ``--gpu``
        preset), bottom right, under the FA2 column's traffic counter."""
        import textwrap

        th, gpu = self.theme, self.gpu
        lines = textwrap.wrap(f"memory figures ({gpu.name}): {gpu.source}", 34)
        out = VGroup(*(self.text(s, th.small_size + 1, th.muted) for s in lines))
        out.arrange(DOWN, aligned_edge=LEFT, buff=0.06)
        if out.width > 3.3:
            out.scale_to_fit_width(3.3)
        return out.to_corner(DOWN + RIGHT, buff=0.15)

    # -- the scene ------------------------------------------------------------------
    def construct(self) -> None:
        th = self.theme
        self.title = self.captions.make_title("Loop order: FA1 vs FA2")
        a = self.col1 = self.column(self.fa1, -6.95, "fa1")
        b = self.col2 = self.column(self.fa2, 0.1, "fa2")
        divider = DashedLine(
            [0.0, 3.4, 0],
            [0.0, -3.9, 0],
            dash_length=0.1,
            color=th.panel_stroke,
            stroke_width=1.5,
        )
        meta = self.fa1.meta
        self.source = self.gpu_source()

        # Setup --------------------------------------------------------------------
        self.section("setup")
        self.add(self.captions.mob)
        self.play(
            FadeIn(self.title),
            FadeIn(a["static"]),
            FadeIn(b["static"]),
            Create(divider),
            FadeIn(self.source),
        )
        self.caption(
            f"Same Q, K, V ({meta.seq_len_q}×{meta.head_dim}), same "
            f"{meta.t_r}×{meta.t_c} tiles (i, j): which loop is outside?"
        )
        self.hold()

        # FA1 order -----------------------------------------------------------------
        self.section("FA1 order")
        ev, p1 = a["head"], a["player"]
        n_init = next(k for k, e in enumerate(ev) if e.op == "load")
        self.caption("FA1 (Algorithm 1): first O = 0, l = 0, m = −∞ are written to HBM")
        p1.play(self, ev[:n_init], speed=MEDIUM_SPEED)
        outer_starts = [
            k for k, e in enumerate(ev) if e.op == "load" and e.tensor == "K"
        ]
        first_outer = ev[n_init : outer_starts[1] if len(outer_starts) > 1 else None]
        inner_starts = [
            k for k, e in enumerate(first_outer) if e.op == "load" and e.tensor == "Q"
        ]
        cut = inner_starts[1] if len(inner_starts) > 1 else len(first_outer)
        self.caption(
            "Outer loop j: load K_j, V_j once. Inner loop i: load Q_i and "
            "O_i, l_i, m_i, update, store them back"
        )
        p1.play(self, first_outer[:cut], speed=DETAIL_SPEED)
        p1.play(self, first_outer[cut:], speed=MEDIUM_SPEED)
        rest = ev[n_init + len(first_outer) :]
        if rest:
            self.caption(fa1_reload_caption(self.fa1))
            p1.play(self, rest, speed=FAST_SPEED)
        tot1 = sum(hbm_traffic(self.fa1).values())
        self.caption(
            f"FA1 order done: tiles computed column by column, "
            f"{tot1:,} B of HBM traffic"
        )
        self.hold()

        # FA2 order -----------------------------------------------------------------
        self.section("FA2 order")
        ev, p2 = b["head"], b["player"]
        progs: list[list] = []
        for e in ev:
            if not progs or progs[-1][0].program != e.program:
                progs.append([])
            progs[-1].append(e)
        prog0 = progs[0]
        second_k = [
            k for k, e in enumerate(prog0) if e.op == "load" and e.tensor == "K"
        ]
        cut = second_k[1] if len(second_k) > 1 else len(prog0)
        self.caption(
            "FA2: one program per Q block i loads Q_i once, then streams "
            "K_j, V_j; m_i, l_i, acc never leave SRAM"
        )
        p2.play(self, prog0[:cut], speed=DETAIL_SPEED)
        p2.play(self, prog0[cut:], speed=MEDIUM_SPEED)
        if len(progs) > 1:
            self.caption(
                f"Programs i = 1 … {len(progs) - 1}: the same, row by row "
                f"(on a GPU they run in parallel, spread over the SMs)"
            )
            for p in progs[1:]:  # one play per K/V block (as tiling's)
                p2.play_groups(self, kv_steps(p), run_time=GROUP_STEP)
        tot2 = sum(hbm_traffic(self.fa2).values())
        self.caption(
            f"FA2 order done: tiles computed row by row, {tot2:,} B of HBM traffic"
        )
        self.hold()

        # Compare ------------------------------------------------------------------
        self.section("compare")
        t1, t2 = hbm_traffic(self.fa1), hbm_traffic(self.fa2)
        table = TrafficTable(
            {"FA1": t1, "FA2": t2},
            tensors=["Q", "K", "V", "O", "l", "m", "LSE"],
            marked=("O", "l", "m"),
            theme=th,
        )
        if table.width > config.frame_width - 0.6:
            table.scale_to_fit_width(config.frame_width - 0.6)
        table.move_to([0, -1.95, 0])
        gone = []
        for c in (a, b):
            gone += [
                c["sram"],
                c["placeholders"],
                c["counter"],
                c["progress"],
                c["edge"],
                *c["player"].tiles.values(),
            ]
            c["player"].tiles.clear()
        self.play(
            *(FadeOut(x) for x in gone),
            divider.animate.put_start_and_end_on([0, 3.4, 0], [0, -0.1, 0]),
        )
        self.play(FadeIn(table, shift=0.2 * UP))
        self.caption(
            f"FA1 order: {tot1:,} B, FA2: {tot2:,} B ({tot1 / tot2:.1f}× less): "
            f"no O, l, m round trips"
        )
        self.hold(2)
