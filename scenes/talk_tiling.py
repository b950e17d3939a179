"""Talk cut, clip 4: tiling, one program in detail, then all of them on the GPU.

Render from the repository root: ``manim render -ql scenes/talk_tiling.py``.

Part one plays every event of one program (Q block 1) of a recorded FA2 forward
trace (the :class:`~flashanim.config.SceneConfig` defaults: N = 16, d = 4, 4 x 4
blocks) through a :class:`ProgramPlayer` (an
:class:`~flashanim.visuals.EventPlayer`): its Q block copied into SRAM once, each K/V block streaming through, the
score tile and the accumulator on chip (shade, no digits), O and LSE written once.

Part two draws every program of the committed GPU schedule trace
(``media/traces/gpu_schedule_noncausal.json.gz``, recorded on an H200;
``FLASHANIM_SCHEDULE_NONCAUSAL`` names another): one bar per program, on its SM
(``%smid``), from its start to its end (``%globaltimer``), growing as the clock
of the run passes. Programs per SM and waves are counted from the trace.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.talkfacts import schedule
from flashanim.talkkit import TalkClip
from flashanim.visuals.eventplayer import EventPlayer
from flashanim.visuals.schedule import assign_lanes

TILE_W, TILE_H = 0.85, 0.62
#: Seconds the schedule takes to play (its whole makespan).
SCHEDULE_SECONDS = 12.0


def _rate(a: float, b: float):
    """Rate function of a bar that runs from ``a`` to ``b`` (fractions of the run)."""
    span = max(b - a, 1e-9)
    return lambda t: min(max((t - a) / span, 0.0), 1.0)


class ProgramPlayer(EventPlayer):
    """One program's events as copies travelling between HBM and SRAM tiles and
    tiles changing shade (no digits): one event, one animation."""

    durations = {
        "load": 0.7, "store": 0.8, "qk": 0.5, "mask": 0.3, "rowmax": 0.3,
        "exp": 0.3, "alpha": 0.3, "rowsum": 0.3, "rescale": 0.3, "pv": 0.3,
        "normalize": 0.3, "lse": 0.3,
    }  # fmt: skip

    def __init__(self, theme, hbm: dict, slots: dict, stats: VGroup,
                 stat_label: Mobject, n_blocks: int) -> None:  # fmt: skip
        super().__init__()
        self.th, self.hbm, self.slots = theme, hbm, slots
        self.stats, self.stat_label, self.n_blocks = stats, stat_label, n_blocks
        self.sram: dict[str, Mobject] = {}
        self.blocks_done = 0

    def _copy_of(self, src: Mobject, color, fill: float = 0.8) -> Rectangle:
        tile = Rectangle(width=TILE_W, height=TILE_H).set_stroke(color, 2)
        return tile.set_fill(color, fill).move_to(src.get_center())

    def event_animations(self, e) -> list[Animation]:
        th, sram, anims = self.th, self.sram, []
        if e.op == "load" and e.tensor in ("Q", "K", "V"):
            src = self.hbm[(e.tensor, e.row)]
            tile = self._copy_of(src, th.color(e.tensor))
            anims.append(tile.animate.move_to(self.slots[e.tensor]))
            if e.tensor in sram:
                anims.append(FadeOut(sram[e.tensor]))
            sram[e.tensor] = tile
            anims.append(src.animate.set_stroke(th.highlight, 4))
        elif e.op in ("qk", "mask"):
            s = Rectangle(width=1.7, height=0.9).set_stroke(th.color("S"), 2)
            s.set_fill(th.color("S"), 0.75).move_to(self.slots["S"])
            if "S" in sram:
                anims.append(Transform(sram["S"], s))
            else:
                sram["S"] = s
                anims += [FadeIn(s), FadeIn(self.stats), FadeIn(self.stat_label)]
        elif e.op == "exp":
            anims.append(sram["S"].animate.set_fill(th.color("P"), 0.75)
                         .set_stroke(th.color("P")))  # fmt: skip
        elif e.op in ("rowmax", "alpha", "rowsum", "lse"):
            sq = self.stats[1] if e.op in ("rowsum", "lse") else self.stats[0]
            anims.append(sq.animate.set_fill(opacity=0.8))
        elif e.op in ("rescale", "pv", "normalize"):
            if "acc" not in sram:
                acc = Rectangle(width=TILE_W, height=TILE_H)
                acc.set_stroke(th.color("O"), 2).set_fill(th.color("acc"), 0.0)
                sram["acc"] = acc.move_to(self.slots["acc"])
                anims.append(FadeIn(acc))
            if e.op == "pv":
                self.blocks_done += 1
                fill = 0.15 + 0.7 * self.blocks_done / self.n_blocks
                anims.append(sram["acc"].animate.set_fill(th.color("acc"), fill))
            elif e.op == "normalize":
                anims.append(sram["acc"].animate.set_fill(th.color("O"), 0.85))
            else:
                anims.append(Indicate(sram["acc"], scale_factor=1.08,
                                      color=th.color("acc")))  # fmt: skip
        elif e.op == "store" and e.tensor == "O":
            dst = self.hbm[("O", e.row)]
            tile = self._copy_of(sram["acc"], th.color("O"), 0.85)
            anims += [
                tile.animate.move_to(dst),
                dst.animate.set_fill(th.color("O"), 0.85),
            ]
        elif e.op == "store":  # LSE: the statistics leave with O
            anims.append(self.stats.animate.set_fill(opacity=0.15))
        else:
            raise ValueError(f"no drawing for event {e.op} {e.tensor}")
        return anims


class TalkTiling(TalkClip):
    NAME = "talk_tiling"
    kernel = "fa2-fwd"
    FIRST_SECTION = "one program"
    PROGRAM_BLOCK = 1  # the Q block whose program is shown in detail

    def prepare(self) -> None:
        meta = self.trace.meta
        blk = min(self.PROGRAM_BLOCK, meta.t_r - 1)
        self.program = next(
            e.program for e in self.trace.events
            if e.bh == 0 and e.op == "load" and e.tensor == "Q" and e.row == blk
        )  # fmt: skip
        self.sched = schedule(causal=False)
        self.played: list = []
        #: (program, sm, lane, start_ns, end_ns) of every bar drawn, for tests
        self.bars: list[tuple[int, int, int, int, int]] = []

    def body(self) -> None:
        self.one_program()
        self.all_programs()

    # -- part one ----------------------------------------------------------------------
    def one_program(self) -> None:
        th, meta = self.theme, self.trace.meta
        self.footer(
            f"One program of a recorded kernel run · N {meta.seq_len_k}, "
            f"d {meta.head_dim}, blocks of {meta.block_m} × {meta.block_n}"
        )
        hbm_box = RoundedRectangle(width=6.0, height=4.6, corner_radius=0.15)
        hbm_box.set_stroke(th.panel_stroke, 2).set_fill(th.panel_fill, 1)
        hbm_box.move_to([-3.6, -0.1, 0])
        sram_box = hbm_box.copy().stretch_to_fit_width(5.6).move_to([3.7, -0.1, 0])
        hbm_t = self.text("HBM (off chip)", "label", th.muted)
        hbm_t.next_to(hbm_box, UP, buff=0.12)
        sram_t = self.text("SRAM (on chip)", "label", th.muted)
        sram_t.next_to(sram_box, UP, buff=0.12)
        cols = {"Q": meta.t_r, "K": meta.t_c, "V": meta.t_c, "O": meta.t_r}
        hbm: dict[tuple[str, int], Rectangle] = {}
        heads = VGroup()
        for c, (name, n) in enumerate(cols.items()):
            x = -5.7 + c * 1.4
            for r in range(n):
                rect = Rectangle(width=TILE_W, height=TILE_H)
                rect.set_stroke(th.color(name), 2)
                rect.set_fill(th.color(name), 0.35 if name != "O" else 0.0)
                rect.move_to([x, 1.2 - r * (TILE_H + 0.22), 0])
                hbm[(name, r)] = rect
            heads.add(self.text(name, "label", th.color(name)).move_to([x, 1.8, 0]))
        self.play(FadeIn(hbm_box), FadeIn(hbm_t), FadeIn(heads),
                  *(FadeIn(r) for r in hbm.values()), run_time=0.8)  # fmt: skip
        slots = {
            "Q": [2.0, 1.2, 0], "K": [3.5, 1.2, 0], "V": [5.0, 1.2, 0],
            "S": [2.45, -0.55, 0], "acc": [5.0, -0.55, 0], "stats": [2.0, -1.95, 0],
        }  # fmt: skip
        slot_names = {
            "Q": "<i>Q</i><sub><i>i</i></sub>",
            "K": "<i>K</i><sub><i>j</i></sub>",
            "V": "<i>V</i><sub><i>j</i></sub>",
            "S": "<i>S</i>, <i>P</i>",
            "acc": "<i>O</i><sub><i>i</i></sub>",
        }
        slot_tags = VGroup()
        for key, markup in slot_names.items():
            t = self.formula(markup, "label", th.muted)
            dy = TILE_H / 2 + 0.25 if key != "S" else 0.45 + 0.25
            t.move_to(np.array(slots[key]) + [0, dy, 0])
            slot_tags.add(t)
        self.play(FadeIn(sram_box), FadeIn(sram_t), FadeIn(slot_tags), run_time=0.5)
        stats = VGroup(
            *(
                Square(0.34).set_stroke(th.color(n), 2).set_fill(th.color(n), 0.0)
                for n in ("m", "l")
            )
        ).arrange(RIGHT, buff=0.12)
        stats.move_to(slots["stats"])
        stat_t = self.formula("<i>m</i>, <i>l</i>", "label", th.muted)
        stat_t.next_to(stats, RIGHT, buff=0.2)
        self.say("One program: its Q block is copied on chip once")

        player = ProgramPlayer(th, hbm, slots, stats, stat_t, meta.t_c)
        for e in self.trace.of_program(self.program):
            self.play(player.animation(e))
            if e.op == "pv" and player.blocks_done == 1:
                self.say("K and V blocks stream through; scores stay on chip")
                self.next_section("stream")
            if e.op == "store" and e.tensor == "O":
                self.say("O is written to HBM once, at the end")
        self.played = player.played_events
        self.wait(1.2)
        self.next_section("all programs")

    # -- part two ----------------------------------------------------------------------
    def all_programs(self) -> None:
        th = self.theme
        sc = self.sched
        tr, st = sc.trace, sc.stats
        m = tr.meta
        self.clear()
        self.footer(f"Schedule recorded on an {sc.gpu} · B {m.batch}, H {m.heads}, "
                    f"N {m.seq_len_q}, d {m.head_dim}")  # fmt: skip
        place = assign_lanes(tr.programs)
        t0 = min(p.start_ns for p in tr.programs)
        t1 = max(p.end_ns for p in tr.programs)
        x0, x1, y0, y1 = -5.2, 6.0, -2.1, 2.4
        sms = sorted({p.sm for p in tr.programs})
        row_of = {sm: k for k, sm in enumerate(sms)}
        lanes = int(st["lanes"])
        rows = len(sms) * lanes
        rh = (y1 - y0) / rows
        frame = (
            Rectangle(width=x1 - x0, height=y1 - y0)
            .move_to([(x0 + x1) / 2, (y0 + y1) / 2, 0])
            .set_stroke(th.panel_stroke, 1.5)
        )
        y_t = self.text(f"{len(sms)} SMs", "label", th.muted).rotate(PI / 2)
        y_t.next_to(frame, LEFT, buff=0.15)
        t_end = self.text(f"{(t1 - t0) / 1e3:.0f} µs", "label", th.muted)
        t_end.next_to(frame, DOWN, buff=0.1).align_to(frame, RIGHT)
        t_0 = self.text("0", "label", th.muted)
        t_0.next_to(frame, DOWN, buff=0.1).align_to(frame, LEFT)
        self.play(Create(frame), FadeIn(y_t), FadeIn(t_0), FadeIn(t_end),
                  run_time=0.7)  # fmt: skip
        self.say(f"All {st['n']} programs, as they really ran on the {sc.gpu_short}")
        bars, anims = [], []
        span = t1 - t0
        for p in tr.programs:
            pl = place[p.program]
            row = row_of[p.sm] * lanes + pl.lane
            a = (p.start_ns - t0) / span
            b = (p.end_ns - t0) / span
            w = max((b - a) * (x1 - x0), 0.01)
            r = Rectangle(width=w, height=rh * 0.8, stroke_width=0)
            r.set_fill(th.color("Q"), 0.55 + 0.35 * (pl.wave % 2))
            r.move_to([x0 + a * (x1 - x0) + w / 2, y1 - (row + 0.5) * rh, 0])
            bars.append(r)
            anims.append(GrowFromEdge(r, LEFT, rate_func=_rate(a, b)))
            self.bars.append((p.program, p.sm, pl.lane, p.start_ns, p.end_ns))
        cursor = Line([x0, y0, 0], [x0, y1, 0], color=th.highlight, stroke_width=2)
        self.add(cursor)
        self.play(AnimationGroup(*anims, lag_ratio=0),
                  cursor.animate.shift((x1 - x0) * RIGHT),
                  run_time=SCHEDULE_SECONDS, rate_func=linear)  # fmt: skip
        self.remove(cursor)
        self.next_section("waves")
        # name each wave above the chart, at the middle of its programs' median
        # start and end (the shade alternates wave by wave)
        tags = VGroup()
        #: (wave number shown, its middle in ns since the first start), for tests
        self.wave_tags: list[tuple[int, float]] = []
        for w in sorted({pl.wave for pl in place.values()}):
            ps = [p for p in tr.programs if place[p.program].wave == w]
            mid = (np.median([p.start_ns for p in ps])
                   + np.median([p.end_ns for p in ps])) / 2  # fmt: skip
            tag = self.text(f"wave {w + 1}", "label", th.muted)
            tag.next_to([x0 + (mid - t0) / span * (x1 - x0), y1, 0], UP, buff=0.12)
            tags.add(tag)
            self.wave_tags.append((w + 1, float(mid - t0)))
        self.play(FadeIn(tags), run_time=0.5)
        self.say(f"{st['sms']} SMs, up to {lanes} programs on each at once: "
                 f"{int(st['waves'])} waves")  # fmt: skip
        self.wait(3.5)
