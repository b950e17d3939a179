"""Talk cut, clip 3: online softmax, rescale as you go.

Render from the repository root: ``manim render -ql scenes/talk_online_softmax.py``.
The followed query row of a recorded FA2 forward trace (as in clip 2). Shown: that
row's slice of its program's softmax events, in order (``qk``, ``rowmax``, ``exp``,
``alpha``, ``rowsum`` of each K/V block; :data:`~flashanim.talkfacts.SOFTMAX_OPS`).
``exp(S − m)`` of each key is a bar; when the running max rises, ``alpha`` shrinks
every earlier bar and the running sum ``l`` (a bar too) by the same factor. At the
end the bars divided by ``l`` are set against the softmax of the whole row (numpy,
float64); the difference shown is computed.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.talkfacts import row_softmax
from flashanim.talkkit import RowBars, TalkClip

X0, X1 = -4.2, 6.4


def _n(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


class TalkOnlineSoftmax(TalkClip):
    NAME = "talk_online_softmax"
    kernel = "fa2-fwd"
    FIRST_SECTION = "block 0"

    def prepare(self) -> None:
        self.rs = row_softmax(self.trace)
        self.played: list = []

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

        p_bars: list[Rectangle] = []
        p_vals: list[float] = []  # current height values of p_bars
        m_line = m_tag = l_bar = l_tag = None
        l_val = 0.0
        block = -1
        #: (event index, op, the row's value) as drawn, for tests
        self.drawn: list[tuple[int, str, float]] = []
        for e in rs.shown:
            anims = []
            if e.op in ("qk", "mask"):
                block = e.col
                a, b = block * rs.block_n, min(len(s), (block + 1) * rs.block_n)
                if e.op == "qk":
                    bars = [top.bar(k, s[k], th.color("S")) for k in range(a, b)]
                    anims += [GrowFromEdge(r, DOWN if v >= 0 else UP)
                              for r, v in zip(bars, s[a:b], strict=True)]  # fmt: skip
                    self.drawn.append((e.index, e.op, float(s[a:b].max())))
                rt = 0.6
            elif e.op == "rowmax":
                m = rs.m[block]
                y = top.base_y + m * top.unit
                new_line = DashedLine([X0, y, 0], [X1, y, 0], color=th.color("m"),
                                      stroke_width=3)  # fmt: skip
                new_tag = self.formula(f"<i>m</i> = {_n(m)}", "label", th.color("m"))
                new_tag.next_to(new_line, UP, buff=0.06).align_to(new_line, LEFT)
                if m_line is None:
                    anims += [Create(new_line), FadeIn(new_tag)]
                else:
                    anims += [Transform(m_line, new_line), Transform(m_tag, new_tag)]
                if m_line is None:
                    m_line, m_tag = new_line, new_tag
                self.drawn.append((e.index, e.op, m))
                rt = 0.7
            elif e.op == "exp":
                a = block * rs.block_n
                vals = rs.p[block]
                new = [p_rows.bar(a + c, v, th.color("P")) for c, v in enumerate(vals)]
                anims += [GrowFromEdge(r, DOWN) for r in new]
                p_bars += new
                p_vals += [float(v) for v in vals]
                self.drawn.append((e.index, e.op, float(np.sum(vals))))
                rt = 0.7
            elif e.op == "alpha":
                alpha = rs.alpha[block]
                self.drawn.append((e.index, e.op, alpha))
                old = len(p_bars) - rs.block_n
                if old <= 0 or alpha >= 1.0:
                    continue_play = False
                else:
                    continue_play = True
                if continue_play:
                    tag = self.formula(f"× α = {_n(alpha)}", "label", th.color("alpha"))
                    span = (p_rows.block_span(0)[0], p_rows.block_span(block - 1)[1])
                    tag.move_to([(span[0] + span[1]) / 2, 0.25, 0])
                    self.play(FadeIn(tag), run_time=0.5)
                    self.wait(0.4)
                    for k in range(old):
                        p_vals[k] *= alpha
                        anims.append(
                            Transform(
                                p_bars[k], p_rows.bar(k, p_vals[k], th.color("P"))
                            )
                        )
                    if l_bar is not None:
                        l_val *= alpha
                        anims.append(Transform(l_bar, self._l_bar(l_val, l_unit, l_y)))
                        anims.append(Transform(l_tag, self._l_tag(l_val, l_unit, l_y)))
                    self.play(*anims, run_time=1.8)
                    self.play(FadeOut(tag), run_time=0.3)
                    self.played.append(e)
                    if block == 1:
                        self.say("The max rose: every earlier bar shrinks by α")
                    continue
                self.played.append(e)
                continue
            elif e.op == "rowsum":
                l_val = rs.l[block]
                new_bar = self._l_bar(l_val, l_unit, l_y)
                new_tag = self._l_tag(l_val, l_unit, l_y)
                if l_bar is None:
                    anims += [GrowFromEdge(new_bar, LEFT), FadeIn(new_tag)]
                    l_bar, l_tag = new_bar, new_tag
                else:
                    anims += [Transform(l_bar, new_bar), Transform(l_tag, new_tag)]
                self.drawn.append((e.index, e.op, l_val))
                rt = 0.7
            else:  # pragma: no cover  (row_softmax keeps only the ops above)
                raise AssertionError(e.op)
            if anims:
                self.play(*anims, run_time=rt)
            self.played.append(e)
            if e.op == "rowsum":
                self.wait(0.6)
            if e.op == "rowsum" and block == 0:
                self.say("l adds up the bars: the running sum")
                self.wait(1.0)
                self.next_section("all blocks")
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
