"""Talk cut, clip 3: online softmax, rescale as you go.

Render from the repository root: ``manim render -ql scenes/talk_online_softmax.py``.
The followed query row of a recorded FA2 forward trace (as in clip 2). Shown: that
row's slice of its program's softmax events, in order (``qk``, ``rowmax``, ``exp``,
``alpha``, ``rowsum`` of each K/V block; :data:`~flashanim.talkfacts.SOFTMAX_OPS`).
``exp(S − m)`` of each key is a bar; when the running max rises, ``alpha`` shrinks
every earlier bar and the running sum ``l`` (a bar too) by the same factor. At the
end the bars divided by ``l`` are set against the softmax of the whole row (numpy,
float64); the difference shown is computed. The events go through
:class:`OnlineRowPlayer` (an :class:`~flashanim.visuals.EventPlayer`), which draws
each from its own snapshot.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.talkfacts import row_softmax
from flashanim.talkkit import RowBars, TalkClip
from flashanim.visuals.eventplayer import EventPlayer

X0, X1 = -4.2, 6.4


def _n(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


class OnlineRowPlayer(EventPlayer):
    """The followed row's softmax events: score bars, the running max as a line,
    ``exp(S − m)`` as bars, ``alpha`` shrinking every earlier bar and the running
    sum ``l`` (a bar too), ``l`` growing by the new block's sum. One event, one
    tagged animation; the values are the row's slice of each event's snapshot."""

    durations = {"qk": 0.6, "mask": 0.6, "rowmax": 0.7, "exp": 0.7, "alpha": 0.3,
                 "rowsum": 0.7}  # fmt: skip
    #: seconds of an alpha that shrinks bars: tag in, pause, shrink, tag out
    ALPHA_STEPS = (0.5, 0.4, 1.8, 0.3)

    def __init__(self, clip, rs, top: RowBars, p_rows: RowBars, l_unit: float,
                 l_y: float) -> None:  # fmt: skip
        super().__init__()
        self.clip, self.rs, self.top, self.p_rows = clip, rs, top, p_rows
        self.l_unit, self.l_y = l_unit, l_y
        self.p_bars: list[Rectangle] = []
        self.p_vals: list[float] = []  # the heights' values now
        self.m_line = self.m_tag = self.l_bar = self.l_tag = None
        self.l_val = 0.0
        self.block = -1
        self.shrank = False
        self.shrinks = 0
        self.drawn: list[tuple[int, str, float]] = []
        self._rt: float | None = None

    def run_time(self, op: str, speed: float = 1.0) -> float:
        rt, self._rt = self._rt, None
        return rt / speed if rt is not None else super().run_time(op, speed)

    def event_animations(self, e) -> list[Animation]:
        from flashanim.visuals.softmax import row_values

        clip, rs, th = self.clip, self.rs, self.clip.theme
        n = len(rs.scores)
        anims: list[Animation] = []
        self.shrank = False
        if e.op in ("qk", "mask"):
            self.block = e.col
            a = self.block * rs.block_n
            vals = row_values(e, rs.k, rs.block_n)[: n - a]
            bars = [self.top.bar(a + c, v, th.color("S")) for c, v in enumerate(vals)]
            anims += [GrowFromEdge(r, DOWN if v >= 0 else UP)
                      for r, v in zip(bars, vals, strict=True)]  # fmt: skip
            self.drawn.append((e.index, e.op, float(np.max(vals))))
        elif e.op == "rowmax":
            m = float(row_values(e, rs.k)[0])
            y = self.top.base_y + m * self.top.unit
            line = DashedLine([X0, y, 0], [X1, y, 0], color=th.color("m"),
                              stroke_width=3)  # fmt: skip
            tag = clip.formula(f"<i>m</i> = {_n(m)}", "label", th.color("m"))
            # at the right end: every bar is at most m, the row's first block is
            # drawn at the left
            tag.next_to(line, UP, buff=0.06).align_to(line, RIGHT)
            if self.m_line is None:
                anims += [Create(line), FadeIn(tag)]
                self.m_line, self.m_tag = line, tag
            else:
                anims += [Transform(self.m_line, line), Transform(self.m_tag, tag)]
            self.drawn.append((e.index, e.op, m))
        elif e.op == "exp":
            a = self.block * rs.block_n
            vals = row_values(e, rs.k, rs.block_n)[: n - a]
            new = [self.p_rows.bar(a + c, v, th.color("P")) for c, v in enumerate(vals)]
            anims += [GrowFromEdge(r, DOWN) for r in new]
            self.p_bars += new
            self.p_vals += [float(v) for v in vals]
            self.drawn.append((e.index, e.op, float(np.sum(vals))))
        elif e.op == "alpha":
            alpha = float(row_values(e, rs.k)[0])
            self.drawn.append((e.index, e.op, alpha))
            old = len(self.p_bars) - rs.block_n
            if old > 0 and alpha < 1.0:
                self.shrank, self.shrinks = True, self.shrinks + 1
                tag = clip.formula(f"× α = {_n(alpha)}", "label", th.color("alpha"))
                # in the margin left of the bars, between the S and e^(S-m) labels
                tag.move_to([X0 - 0.25 - tag.width / 2, 0.45, 0])
                shrink = []
                for k in range(old):
                    self.p_vals[k] *= alpha
                    shrink.append(Transform(self.p_bars[k], self.p_rows.bar(
                        k, self.p_vals[k], th.color("P"))))  # fmt: skip
                if self.l_bar is not None:
                    self.l_val *= alpha
                    shrink.append(Transform(self.l_bar, clip._l_bar(
                        self.l_val, self.l_unit, self.l_y)))  # fmt: skip
                    shrink.append(Transform(self.l_tag, clip._l_tag(
                        self.l_val, self.l_unit, self.l_y)))  # fmt: skip
                t_in, pause, t_shrink, t_out = self.ALPHA_STEPS
                anims.append(Succession(
                    FadeIn(tag, run_time=t_in), Wait(run_time=pause),
                    AnimationGroup(*shrink, run_time=t_shrink),
                    FadeOut(tag, run_time=t_out),
                ))  # fmt: skip
                self._rt = sum(self.ALPHA_STEPS)
            else:  # nothing earlier to rescale (the first block, or alpha = 1)
                anims.append(Wait(run_time=0.1))
        elif e.op == "rowsum":
            self.l_val = float(row_values(e, rs.k)[0])
            bar = clip._l_bar(self.l_val, self.l_unit, self.l_y)
            tag = clip._l_tag(self.l_val, self.l_unit, self.l_y)
            if self.l_bar is None:
                anims += [GrowFromEdge(bar, LEFT), FadeIn(tag)]
                self.l_bar, self.l_tag = bar, tag
            else:
                anims += [Transform(self.l_bar, bar), Transform(self.l_tag, tag)]
            self.drawn.append((e.index, e.op, self.l_val))
        else:
            raise ValueError(f"no drawing for op {e.op!r}")
        return anims


class TalkOnlineSoftmax(TalkClip):
    NAME = "talk_online_softmax"
    kernel = "fa2-fwd"
    FIRST_SECTION = "block 0"

    def prepare(self) -> None:
        self.rs = row_softmax(self.trace)

    def body(self) -> None:
        rs, th, meta = self.rs, self.theme, self.trace.meta
        self.footer(f"Query row {rs.row} of a recorded kernel run · N {meta.seq_len_k}, "
                    f"d {meta.head_dim}, blocks of {meta.block_n} keys")  # fmt: skip
        s = rs.scores
        top = RowBars(len(s), rs.block_n, X0, X1, 1.75,
                      0.75 / max(np.abs(s).max(), 1e-9), th)  # fmt: skip
        p_rows = RowBars(len(s), rs.block_n, X0, X1, -1.5, 2.3, th)
        l_unit = 8.2 / max(rs.l)
        l_y = -2.05
        s_label = self.formula("<i>S</i>", "label", th.color("S")).move_to(
            [X0 - 0.9, top.base_y, 0]
        )
        p_label = self.formula(
            "e<sup><i>S</i> − <i>m</i></sup>", "label", th.color("P")
        ).move_to([X0 - 0.9, -0.9, 0])
        l_label = self.text("sum", "label", th.color("l")).move_to(
            [X0 - 0.9, l_y, 0])  # fmt: skip
        self.play(Create(top.baseline()), Create(p_rows.baseline()),
                  FadeIn(s_label), FadeIn(p_label), FadeIn(l_label),
                  run_time=0.6)  # fmt: skip
        self.say("Read the row block by block, remembering only m and l")

        player = OnlineRowPlayer(self, rs, top, p_rows, l_unit, l_y)
        for e in rs.shown:
            self.play(player.animation(e))
            if e.op == "alpha" and player.shrank and player.shrinks == 1:
                self.say("The max rose: every earlier bar shrinks by α")
            if e.op == "rowsum":
                self.wait(0.6)
                if player.block == 0:
                    self.say("The running sum l adds up the bars")
                    self.wait(1.0)
                    self.next_section("all blocks")
        self.played = player.played_events
        #: (event index, op, the row's value) as drawn, for tests
        self.drawn = player.drawn
        p_bars = player.p_bars
        self.wait(1.0)
        self.next_section("normalize")

        # The end: divide by l; the same as the whole row at once ----------------------
        online, whole = rs.online(), rs.softmax
        err = float(np.abs(online - whole).max())
        self.verdict = {"online": online, "whole": whole, "max_error": err}
        w_unit = 2.3 / max(online.max(), whole.max())
        self.say("Divide by l at the end: the softmax weights")
        w_label = self.text("weights", "label", th.color("P"))
        w_label.move_to(p_label).align_to(p_label, RIGHT)
        self.play(*(Transform(p_bars[k], p_rows.bar(k, online[k], th.color("P"),
                                                    unit=w_unit))
                    for k in range(len(p_bars))),
                  Transform(p_label, w_label), run_time=1.2)  # fmt: skip
        ref = VGroup(*(p_rows.bar(k, whole[k], th.foreground, outline=True,
                                  unit=w_unit) for k in range(len(whole))))  # fmt: skip
        self.play(Create(ref), run_time=1.2)
        self.say(
            f"Outlines: softmax of the whole row. Difference: {err:.0e}".replace(
                "-", "−"
            )
        )
        self.wait(3.0)

    def _l_bar(self, l_val: float, unit: float, y: float) -> Rectangle:
        r = Rectangle(width=max(l_val * unit, 0.02), height=0.3, stroke_width=0)
        r.set_fill(self.theme.color("l"), opacity=0.9)
        r.move_to([X0 + l_val * unit / 2, y, 0])
        return r

    def _l_tag(self, l_val: float, unit: float, y: float):
        t = self.formula(f"<i>l</i> = {_n(l_val)}", "label", self.theme.color("l"))
        return t.move_to([X0 + l_val * unit + 0.2 + t.width / 2, y, 0])
