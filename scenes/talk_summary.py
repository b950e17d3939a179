"""Talk cut, clip 6: the closing summary, every line formatted from the data.

Render from the repository root: ``manim render -ql scenes/talk_summary.py``.
The four lines restate the four clips before it with the same numbers: the GPU
breakdown, the online-softmax check on the recorded trace, the GPU schedule trace,
and the payoff's closed-form traffic and memory.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.talkfacts import (
    breakdown,
    format_bytes,
    payoff,
    row_softmax,
    schedule,
)
from flashanim.talkkit import TalkClip


def summary_footer() -> str:
    """Where the summary's numbers come from."""
    b, sc = breakdown(), schedule()
    gpus = sorted({b.gpu_short, sc.gpu_short})
    return f"Measured on {' and '.join(gpus)} · kernel traces · closed-form traffic"


def summary_lines(trace) -> list[str]:
    """The summary's lines, each a true statement computed from the data."""
    b = breakdown()
    rs = row_softmax(trace)
    err = float(np.abs(rs.online() - rs.softmax).max())
    sc = schedule()
    p = payoff()
    exact = "exact" if err < 1e-6 else f"within {err:.0e}"
    return [
        f"{b.memory_bound_share:.0%} of standard attention's time: moving memory",
        f"Online softmax: {exact}, block by block",
        f"{sc.stats['n']} programs, {sc.stats['sms']} SMs, {int(sc.stats['waves'])} "
        "waves",
        f"{p.n // 1024}k tokens: {p.traffic_ratio:.0f}× less traffic, memory "
        f"{format_bytes(p.memory_standard)} → {format_bytes(p.memory_flash)}",
    ]


class TalkSummary(TalkClip):
    NAME = "talk_summary"
    kernel = "fa2-fwd"
    FIRST_SECTION = "summary"

    def prepare(self) -> None:
        self.lines = summary_lines(self.trace)

    def body(self) -> None:
        th = self.theme
        self.footer(summary_footer())
        rows = VGroup(*(self.text(s, "caption") for s in self.lines))
        rows.arrange(DOWN, aligned_edge=LEFT, buff=0.45).move_to([0, 0.1, 0])
        dots = VGroup(*(Dot(radius=0.07, color=th.highlight).next_to(r, LEFT, buff=0.3)
                        for r in rows))  # fmt: skip
        for r, d in zip(rows, dots, strict=True):
            self.play(FadeIn(d), FadeIn(r, shift=0.1 * RIGHT), run_time=0.7)
            self.wait(2.4)
        self.wait(3.0)
