"""Causal masking: which blocks FlashAttention-2 never loads, and which it masks.

Render from the repository root: ``manim render -ql scenes/causal.py``. Sizes, theme
and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`); the scene always records a causal trace (a saved
``FLASHANIM_TRACE`` must be causal) and, for comparison, the same run without the
mask. Every event of head 0 is played on the ``T_r x T_c`` block grid: ``qk`` shades
a block, ``mask`` greys the entries its ``S`` snapshot holds as ``-inf``; blocks no
event touched are marked as skipped, and the work saved is counted from both traces.

Sections: setup; program 0; the other programs; skipped blocks; work saved.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.config import SceneConfig
from flashanim.scene import TraceScene
from flashanim.trace import value_ranges, visited_blocks, work_summary
from flashanim.trace.analysis import _ranges, mask_rule, program_visits, visit_rule
from flashanim.trace.check import require_kernel
from flashanim.visuals import TrafficCounter, format_bytes
from flashanim.visuals.causal import BlockMap, CausalPlayer, CountLine

DETAIL_SPEED, LATER_SPEED = 0.8, 1.4


def program0_caption(trace) -> str:
    """What program 0 visits, from the trace (e.g. "K/V blocks j = 0…1")."""
    js = program_visits(trace)[0]
    what = f"K/V block j = {js[0]}" if len(js) == 1 else f"K/V blocks j = {_ranges(js)}"
    return f"Program 0: its queries see only {what}"


def programs_caption(trace) -> str:
    """Which blocks program i visits and masks, from the trace (any block sizes)."""
    return f"Program i visits {visit_rule(trace)}: {mask_rule(trace)}"


class CausalScene(TraceScene):
    """Causal FA2 forward on the block grid: visited, masked and skipped blocks."""

    kernel = "fa2-fwd"
    caption_style = {"fade_through": False, "blank": False}
    hold_seconds = 1.5  # each section's closing frame

    def settings(self) -> SceneConfig:
        cfg = super().settings()  # validated before anything renders
        return cfg if cfg.trace is not None else cfg.with_(causal=True)

    def setup(self) -> None:
        super().setup()
        require_kernel(self.trace, "CausalScene", "fa2-fwd", causal=True)
        # the same run (shapes, seed) without the mask, for the comparison
        self.full = self.record_like(self.trace, "fa2-fwd", causal=False,
                                     values=False)  # fmt: skip

    # -- the scene ---------------------------------------------------------------------
    def construct(self) -> None:
        trace, th = self.trace, self.theme
        meta = trace.meta
        self.events = events = [e for e in trace.events if e.bh == 0]
        numbers = meta.values and max(meta.block_m, meta.block_n) <= 4

        # Setup ------------------------------------------------------------------------
        self.section("setup")
        self.title = self.captions.make_title(
            "Causal masking, FlashAttention-2 forward"
        )
        heads = "head 0 of " + str(meta.batch * meta.heads) if (
            meta.batch * meta.heads > 1) else "the one head"  # fmt: skip
        subset = self.text(
            f"Shown: {heads}, all {meta.t_r} programs, every event "
            f"({len(events)}) · N = {meta.seq_len_q}, d = {meta.head_dim}, "
            f"BLOCK_M = {meta.block_m}, BLOCK_N = {meta.block_n}, causal "
            "(query r sees keys 0..r)", th.small_size + 1, th.muted,
        )  # fmt: skip
        if subset.width > config.frame_width - 0.4:
            subset.scale_to_fit_width(config.frame_width - 0.4)
        subset.move_to([0, 3.2, 0]).to_edge(LEFT, buff=0.2)
        blocks = self.blocks = BlockMap(meta.seq_len_q, meta.seq_len_k, meta.block_m,
                                        meta.block_n, size=4.9, theme=th)  # fmt: skip
        blocks.shift(np.array([-5.0, 2.3, 0]) - blocks.entries.get_corner(UP + LEFT))
        x_r = 0.3
        counter = TrafficCounter(("K", "V"), (), title="K/V loaded from HBM (bytes)",
                                 theme=th)  # fmt: skip
        counter.move_to([0, 0, 0]).align_to([x_r, -0.55, 0], UP + LEFT)
        computed = CountLine("S tiles computed (qk events):", 0,
                             f" of {meta.t_r * meta.t_c}", theme=th)  # fmt: skip
        computed.next_to(counter, DOWN, buff=0.3, aligned_edge=LEFT)
        op_line = CountLine("event:", 0, theme=th)
        op_line.remove(op_line.number)
        op_line.next_to(computed, DOWN, buff=0.25, aligned_edge=LEFT)
        self.op_line = op_line
        s_events = (e for e in events if e.op in ("qk", "mask"))
        s_range = value_ranges(s_events).get("S", (0.0, 1.0))
        self.player = player = CausalPlayer(
            blocks, counter, computed, op_line, s_slot=np.array([x_r, 2.0, 0]),
            numbers=numbers, s_range=s_range,
        )  # fmt: skip
        legend = VGroup(*(
            VGroup(Square(0.22, stroke_width=0).set_fill(c, opacity=o),
                   self.text(t, th.small_size + 1, th.foreground))
            .arrange(RIGHT, buff=0.12)
            for c, o, t in ((th.color("S"), 0.75, "computed (qk)"),
                            (th.masked, 1.0, "masked: −∞"),
                            (th.panel_fill, 1.0, "never loaded"))
        )).arrange(RIGHT, buff=0.35)  # fmt: skip
        legend[2][0].set_stroke(th.panel_stroke, 1)
        legend.next_to(blocks.entries, DOWN, buff=0.25).align_to(blocks.entries, LEFT)
        self.play(FadeIn(self.title), FadeIn(subset), FadeIn(blocks), FadeIn(legend),
                  FadeIn(counter), FadeIn(computed), FadeIn(op_line))  # fmt: skip
        self.caption(
            f"S as {meta.t_r}×{meta.t_c} blocks; program i handles Q block i "
            "and loops over K/V blocks j"
        )
        self.hold()

        programs = []
        for e in events:
            if not programs or programs[-1][0].program != e.program:
                programs.append([])
            programs[-1].append(e)

        # Program 0 --------------------------------------------------------------------
        self.section("program 0")
        self.caption(program0_caption(trace))
        player.play(self, programs[0], speed=DETAIL_SPEED)
        p0 = programs[0]
        n_vis0 = sum(e.op == "qk" for e in p0)
        n_mask0 = sum(e.op == "mask" for e in p0)
        self.caption(
            f"Program 0 visited {n_vis0} block{'s' * (n_vis0 != 1)}, masked "
            f"{n_mask0} element-wise, "
            f"and never loaded the other {meta.t_c - n_vis0}"
        )
        self.hold()

        # The other programs -----------------------------------------------------------
        if len(programs) > 1:
            self.section("other programs")
            self.caption(programs_caption(trace))
            for p in programs[1:]:
                player.play(self, p, speed=LATER_SPEED)
            self.caption(
                "Only diagonal blocks need the element-wise mask: below it every "
                "entry is kept"
            )
            self.hold()

        # Skipped blocks ---------------------------------------------------------------
        self.section("skipped")
        visited = visited_blocks(trace)
        self.skipped = skipped = sorted(
            (i, j) for i in range(meta.t_r) for j in range(meta.t_c)
            if (i, j) not in visited
        )  # fmt: skip
        touched = {(e.row, e.col) for e in events if e.tensor in ("S", "P")}
        assert not touched & set(skipped)
        marks = blocks.skip_marks(skipped)
        self.play(player.blocks.marker.animate.set_stroke(opacity=0.0),
                  FadeOut(player.op_text) if player.op_text else Wait(0.01),
                  Create(marks), run_time=1.2)  # fmt: skip
        self.caption(
            f"{len(skipped)} of {meta.t_r * meta.t_c} blocks are above the diagonal: "
            "no event at all, K/V never loaded"
        )
        self.hold()

        # Work saved -------------------------------------------------------------------
        self.section("work saved")
        self.work_saved()
        self.hold(2)

    def work_saved(self) -> None:
        th, meta = self.theme, self.trace.meta
        c, f = work_summary(self.trace), work_summary(self.full)
        self.summary = {"causal": c, "full": f}
        rows = [
            ("", "causal", "no mask"),
            ("S tiles computed (qk)", f"{c['qk']}", f"{f['qk']}"),
            ("K/V tiles loaded", f"{c['kv_loads']}", f"{f['kv_loads']}"),
            ("K/V bytes loaded", format_bytes(c["kv_bytes"]),
             format_bytes(f["kv_bytes"])),
            ("tiles masked element-wise", f"{c['mask']}", f"{f['mask']}"),
        ]  # fmt: skip
        table = VGroup()
        for n, (a, b, d) in enumerate(rows):
            color = th.muted if n == 0 else th.foreground
            cells = VGroup(self.text(a, th.body_size, th.foreground),
                           self.text(b, th.body_size, color, mono=True),
                           self.text(d, th.body_size, color, mono=True))  # fmt: skip
            table.add(cells)
        x0 = 0.3
        for n, cells in enumerate(table):
            y = 2.2 - 0.42 * n
            cells[0].move_to([x0, y, 0], aligned_edge=LEFT)
            cells[1].move_to([x0 + 4.6, y, 0], aligned_edge=RIGHT)
            cells[2].move_to([x0 + 6.3, y, 0], aligned_edge=RIGHT)
        saved = 1 - c["kv_bytes"] / f["kv_bytes"]
        if meta.block_m == meta.block_n and meta.seq_len_q == meta.seq_len_k:
            visited = (f"visited: T_r(T_r+1)/2 = {c['qk']} of T_r² = {c['blocks']} "
                       "blocks,", "about half of them for long sequences")  # fmt: skip
        else:
            visited = (f"visited blocks: {c['qk']} of T_r·T_c = {c['blocks']}",)
        note = VGroup(
            self.text(f"K/V traffic saved: {saved:.1%}", th.label_size, th.highlight),
            self.text("both columns counted from the kernel's own traces,",
                      th.body_size, th.muted),
            self.text("recorded in this run", th.body_size, th.muted),
            *(self.text(s, th.body_size, th.muted) for s in visited),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.12)  # fmt: skip
        note.next_to(table, DOWN, buff=0.35, aligned_edge=LEFT)
        if note.width > 6.5:
            note.scale_to_fit_width(6.5).align_to(table, LEFT)
        right = [
            m
            for m in (
                self.player.s_tile,
                self.player.counter,
                self.player.computed,
                self.op_line,
            )
            if m is not None
        ]
        self.play(*(FadeOut(m) for m in right), run_time=0.6)
        self.play(FadeIn(table), run_time=0.8)
        self.play(FadeIn(note), run_time=0.6)
        self.caption(
            f"Causal FA2 computes {c['qk']} of {c['blocks']} S tiles and reads "
            f"{saved:.1%} less K/V from HBM"
        )
