"""Standard attention, three kernels: S and P go to HBM and come back.

Render from the repository root: ``manim render -ql scenes/standard_attention.py``.
Sizes, theme and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`; ``FLASHANIM_TRACE`` may name a saved ``standard`` trace).
Every motion is an event of the ``standard`` kernel's trace (launches ``qk``,
``softmax``, ``pv``), played by :class:`RoundTripPlayer`; the counters add up the
events' ``nbytes``. The closing table sets the totals beside those of an ``fa2-fwd``
trace recorded in the same run for the same shape.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.scene import TraceScene
from flashanim.trace import hbm_traffic, value_ranges
from flashanim.visuals import TileGrid, TrafficCounter
from flashanim.visuals.layout import Legend
from flashanim.visuals.memory import hbm_panel, sram_panel
from flashanim.visuals.roundtrip import (
    ProgressBar,
    RoundTripPlayer,
    SramSlots,
    TrafficTable,
)

#: Speeds: the first program of a launch, the rest of its first row of Q blocks.
DETAIL_SPEED, MEDIUM_SPEED = 1.3, 3.0
#: Seconds of one grouped step after the first row (a program's events at once,
#: or, in ``pv``, one K/V block of its loop).
GROUP_STEP = 0.5
LAUNCHES = ("qk", "softmax", "pv")
LAUNCH_TEXT = {
    "qk": "kernel 1 of 3 · qk: program per tile (i, j): S_ij = Q_i K_jᵀ · scale",
    "softmax": "kernel 2 of 3 · softmax: program per Q block i, whole rows",
    "pv": "kernel 3 of 3 · pv: program per Q block i: O_i = Σ_j P_ij V_j",
}
SOURCES = {"qk": ("Q", "K"), "mask": ("S",), "softmax": ("S",), "pv": ("P", "V")}


class StandardAttentionScene(TraceScene):
    """The three-kernel standard attention: the N² round trips of S and P."""

    kernel = "standard"
    hold_seconds = 1.5  # each section's closing frame

    def setup(self) -> None:
        super().setup()
        # FA2 for the same shape, recorded in this run (events only).
        self.fa2 = self.record_like(self.trace, "fa2-fwd", values=False)

    def launch_label(self, launch: str) -> Text:
        t = self.text(LAUNCH_TEXT[launch], self.theme.body_size, self.theme.highlight)
        room = (
            self.sram.box.get_right()[0] - 0.2 - (self.sram.title.get_right()[0] + 0.4)
        )
        if t.width > room:
            t.scale_to_fit_width(room)
        t.align_to(self.sram.box, RIGHT).shift(0.2 * LEFT)
        t.align_to(self.sram.title, DOWN)
        return t

    def slots_for(self, launch: str) -> dict:
        """SRAM slots of one launch: (tensor, label, centre, size, shape)."""
        meta = self.trace.meta
        bm, bn, d, t_c = meta.block_m, meta.block_n, meta.head_dim, meta.t_c
        y = self.sram_y
        w, h = 2.2, 1.0
        xs = [-6.75 + w / 2 + k * (w + 0.25) for k in range(3)]
        if launch == "qk":
            return {
                "Q": ("Q", "Q_i", (xs[0], y, 0), (w, h), (bm, d)),
                "K": ("K", "K_j", (xs[1], y, 0), (w, h), (bn, d)),
                "S": ("S", "S_ij", (xs[2], y, 0), (w, h), (bm, bn)),
            }
        if launch == "pv":
            return {
                "P": ("P", "P_ij", (xs[0], y, 0), (w, h), (bm, bn)),
                "V": ("V", "V_j", (xs[1], y, 0), (w, h), (bn, d)),
                "acc": ("acc", "acc → O_i", (xs[2], y, 0), (w, h), (bm, d)),
            }
        # softmax: the whole row block, S tiles on the left, P tiles on the right
        half, gap = 6.55, 0.12
        tw = min(1.5, (half - (t_c - 1) * gap) / t_c)
        out = {}
        for j in range(t_c):
            for name, x0 in (("S", -6.75), ("P", 0.2)):
                lab = f"{name}_i{j}" if tw >= 0.6 else (f"{name}_i·" if j == 0 else "")
                out[f"{name}{j}"] = (
                    name,
                    lab or " ",
                    (x0 + tw / 2 + j * (tw + gap), y, 0),
                    (tw, h),
                    (bm, bn),
                )
        return out

    # -- the scene ------------------------------------------------------------------
    def construct(self) -> None:
        trace, th, meta = self.trace, self.theme, self.trace.meta
        head = [e for e in trace.events if e.bh == 0]
        b, h = 0, 0
        n, d = meta.seq_len_q, meta.head_dim
        ranges = value_ranges(head)

        # static screen ---------------------------------------------------------------
        self.title = self.captions.make_title("Standard attention (3 kernels)")
        top, bottom = 3.35, -0.05
        self.hbm = hbm_panel(self.gpu, width=10.3, height=top - bottom, theme=th)
        self.hbm.move_to([-6.95 + 5.15, (top + bottom) / 2, 0])
        s_top, s_bot = -0.35, -2.95
        self.sram = sram_panel(self.gpu, width=13.9, height=s_top - s_bot, theme=th)
        self.sram.move_to([0, (s_top + s_bot) / 2, 0])
        self.sram_y = self.sram.content_top() - 0.32 - 0.5
        edge = DashedLine(
            [-6.95, -0.2, 0],
            [6.95, -0.2, 0],
            dash_length=0.12,
            color=th.muted,
            stroke_width=2,
        )
        t = trace.tensors

        def arr(name: str) -> np.ndarray | None:
            return np.asarray(t[name], dtype=float)[b, h] if name in t else None

        avail = self.hbm.content_top() - 0.32 - (bottom + 0.1)
        cell_h = min(0.16, avail / max(n, meta.seq_len_k))
        cell_w = min(0.2, 0.8 / d)
        kw = dict(cell_height=cell_h, label_size=th.label_size, theme=th)
        grids = {}
        for name, rows, cols, bc, vals in (
            ("Q", n, d, None, arr("Q")),
            ("K", meta.seq_len_k, d, None, arr("K")),
            ("V", meta.seq_len_k, d, None, arr("V")),
            ("S", n, meta.seq_len_k, meta.block_n, None),
            ("P", n, meta.seq_len_k, meta.block_n, None),
            ("O", n, d, None, None),
        ):
            br = meta.block_n if name in ("K", "V") else meta.block_m
            grids[name] = TileGrid(
                name,
                vals,
                shape=(rows, cols),
                block_rows=br,
                block_cols=bc,
                label=f"{name}  {rows}×{cols}",
                row_indices=name in ("Q", "S"),
                cell_width=cell_h if name in ("S", "P") else cell_w,
                value_range=ranges.get(name) if vals is None else None,
                **kw,
            )
        if "O" in t:
            o = arr("O")
            grids["O"].value_range = (float(o.min()), float(o.max()))
        row = VGroup(*grids.values()).arrange(RIGHT, buff=0.42, aligned_edge=UP)
        if row.width > self.hbm.box.width - 0.4:
            row.scale_to_fit_width(self.hbm.box.width - 0.4)
        row.move_to(self.hbm.box).align_to([0, self.hbm.content_top() - 0.02, 0], UP)
        self.counter = TrafficCounter(
            ("Q", "K", "S", "P", "V"), ("S", "P", "O"), theme=th
        )
        self.counter.align_to([3.6, top, 0], UP + LEFT)
        self.progress = ProgressBar(len(head), width=13.9, theme=th)
        self.progress.move_to([-6.95, -3.45, 0], aligned_edge=LEFT)
        legend = Legend(["Q", "K", "V", "S", "P", "O"], columns=6, theme=th)
        legend.move_to([0, self.sram_y, 0])

        # Setup -----------------------------------------------------------------
        self.section("setup")
        self.add(self.captions.mob)
        self.play(FadeIn(self.hbm), FadeIn(self.sram), Create(edge), FadeIn(self.title))
        self.play(
            *(FadeIn(g) for g in grids.values()),
            FadeIn(self.counter),
            FadeIn(self.progress),
            FadeIn(legend),
        )
        self.caption(
            f"Q, K, V ({n}×{d}) in HBM. Standard attention runs three kernels; "
            f"S and P ({n}×{meta.seq_len_k}) get HBM space too"
        )
        self.hold()

        by_launch = {ln: [] for ln in LAUNCHES}
        launch_of = {p.program: p.launch for p in trace.programs}
        for e in head:
            by_launch[launch_of[e.program]].append(e)

        def slot_of(e) -> str:
            if launch_of[e.program] == "softmax":
                return f"{e.tensor}{e.col}"
            return "acc" if e.tensor == "O" else e.tensor

        def sources_of(e):
            if launch_of[e.program] == "softmax":
                return (f"S{e.col}",)
            return SOURCES.get(e.op, ())

        slots = SramSlots(
            self.slots_for("qk"),
            numbers=self.cfg.numbers and meta.values,
            value_ranges=ranges,
            theme=th,
        )
        player = self.player = RoundTripPlayer(
            grids,
            slots,
            slot_of,
            sources_of,
            block_m=meta.block_m,
            block_n=meta.block_n,
            counter=self.counter,
            progress=self.progress,
        )

        label = None
        ph = None
        done_bytes = {"S": 0, "P": 0}
        for k, launch in enumerate(LAUNCHES):
            events = by_launch[launch]
            self.section(["S to HBM", "softmax", "PV"][k])
            slots.slots = self.slots_for(launch)
            new_ph = slots.placeholders()
            new_label = self.launch_label(launch)
            anims = [FadeIn(new_ph), FadeIn(new_label), *player.clear_sram()]
            anims += [FadeOut(x) for x in (ph, label) if x is not None]
            if k == 0:
                anims.append(FadeOut(legend))
            self.play(*anims)
            ph, label = new_ph, new_label
            progs = _programs(events)
            if launch == "qk":
                self.caption(
                    "Kernel 1: each program loads Q_i and K_j, computes "
                    "S_ij and writes it to HBM"
                )
            elif launch == "softmax":
                self.caption(
                    "Kernel 2: read S back, P = softmax(S) row by row, write P to HBM"
                )
            else:
                self.caption(
                    "Kernel 3: read P back (again N²) with V_j; "
                    "O_i = Σ_j P_ij V_j goes to HBM"
                )
            # the first row of Q blocks at teaching speed, the rest grouped
            row0 = [p for p in progs if _q_block(p) == _q_block(progs[0])]
            player.play(self, progs[0], speed=DETAIL_SPEED)
            for p in row0[1:]:
                player.play(self, p, speed=MEDIUM_SPEED)
            rest = progs[len(row0) :]
            if rest:
                self.caption(grouped_caption(launch, rest))
                for p in rest:
                    player.play_groups(self, _steps(p), run_time=GROUP_STEP)
            for e in events:
                if e.tensor in done_bytes and e.is_memory:
                    done_bytes[e.tensor] += e.nbytes
            nn = f"{n}×{meta.seq_len_k}"
            if launch == "qk":
                self.caption(
                    f"All of S ({nn}) is in HBM: "
                    f"{done_bytes['S']:,} B written, to be read back"
                )
            elif launch == "softmax":
                self.caption(
                    f"S read back, P ({nn}) written: "
                    f"S and P have moved {sum(done_bytes.values()):,} B"
                )
            else:
                self.caption(
                    f"O done. See this pattern? S and P went back and forth: "
                    f"{sum(done_bytes.values()):,} B of N² traffic"
                )
            self.hold()

        # Totals vs FlashAttention-2 ----------------------------------------------
        self.section("vs FA2")
        std, fa2 = hbm_traffic(trace), hbm_traffic(self.fa2)
        table = TrafficTable(
            {"standard": std, "FA2": fa2},
            tensors=["Q", "K", "V", "S", "P", "O", "LSE"],
            marked=("S", "P"),
            theme=th,
        )
        if table.width > 13.2:
            table.scale_to_fit_width(13.2)
        heading = self.text(
            "HBM bytes, same shape and inputs: standard vs FlashAttention-2 "
            "(both traces of this run)",
            th.label_size,
        )
        heading.move_to(self.sram.title, aligned_edge=LEFT)
        table.next_to(heading, DOWN, buff=0.2).set_x(0)
        if table.get_bottom()[1] < s_bot + 0.1:
            table.scale_to_fit_height(table.get_top()[1] - s_bot - 0.1)
            table.next_to(heading, DOWN, buff=0.2).set_x(0)
        n2 = sum(v for (tn, _), v in std.items() if tn in ("S", "P"))
        tot_s, tot_f = sum(std.values()), sum(fa2.values())
        self.play(
            *player.clear_sram(),
            FadeOut(ph),
            FadeOut(label),
            FadeOut(self.sram.subtitle),
            FadeOut(self.sram.title),
        )
        self.play(FadeIn(heading), FadeIn(table, shift=0.2 * UP))
        self.caption(
            f"Standard: {tot_s:,} B ({n2:,} B of S and P). "
            f"FA2: {tot_f:,} B, {tot_s / tot_f:.1f}× less, no N×N matrix in HBM"
        )
        self.hold(2)


def grouped_caption(launch: str, rest: list[list]) -> str:
    """What the grouped part of a launch shows (``rest``: its programs after the
    first row of Q blocks; tests/test_claims.py holds it to the trace)."""
    rows = sorted({_q_block(p) for p in rest})
    span = f"i = {rows[0]}" if len(rows) == 1 else f"i = {rows[0]} … {rows[-1]}"
    if launch == "pv":
        return f"Q blocks {span}: the same, one K/V block per step"
    return f"Q blocks {span}: the same, {len(rest)} programs, one per step"


def _q_block(program: list) -> int:
    """The Q block (row of blocks) a program of any launch works on."""
    return program[0].row


def _steps(program: list) -> list[list]:
    """A program's events as grouped steps: the whole program, except in ``pv``,
    one step per K/V block (its P and V loads and the ``pv``) and the store."""
    if not any(e.op == "pv" for e in program):
        return [program]
    steps: list[list] = [[]]
    for e in program:
        if e.op == "store" and steps[-1]:
            steps.append([])
        steps[-1].append(e)
        if e.op == "pv":
            steps.append([])
    return [st for st in steps if st]


def _programs(events) -> list[list]:
    """``events`` split by program, in order."""
    out: list[list] = []
    for e in events:
        if not out or out[-1][0].program != e.program:
            out.append([])
        out[-1].append(e)
    return out
