"""Talk cut, clip 5: the payoff at a real size (N = 16k, d = 128).

Render from the repository root: ``manim render -ql scenes/talk_payoff.py``.
HBM traffic of standard attention and of FA2 from the closed form of
:mod:`flashanim.trace.traffic` (checked first against small recorded traces of both
kernels: :func:`flashanim.talkfacts.closed_form_checked`), the memory the
intermediates take (S and P against LSE), and the time from the committed GPU
benchmark (``media/bench/bench_<gpu>.json``; ``FLASHANIM_BENCH`` names another).
Every length is proportional to its number; every number is formatted from data.
"""

from __future__ import annotations

from manim import *

from flashanim.talkfacts import closed_form_checked, format_bytes, format_ms, payoff
from flashanim.talkkit import TalkClip

X0, LONGEST = -3.2, 8.6


class TalkPayoff(TalkClip):
    NAME = "talk_payoff"
    FIRST_SECTION = "traffic"

    def prepare(self) -> None:
        self.checked = closed_form_checked()
        self.data = payoff()

    def pair(self, y: float, name: str, std: float, fl: float, std_s: str,
             fl_s: str) -> VGroup:  # fmt: skip
        """Two bars (standard above, flash below) whose lengths are proportional
        to ``std`` and ``fl``; returns them with their labels."""
        th = self.theme
        unit = LONGEST / max(std, fl)
        out = VGroup()
        title = self.text(name, "caption")
        title.move_to([X0 - 0.3, y + 0.05, 0], aligned_edge=RIGHT)
        self.play(FadeIn(title), run_time=0.4)
        out.add(title)
        self.lengths = getattr(self, "lengths", {})
        self.lengths[name] = []
        standard, flash = th.chart_color("standard"), th.chart_color("flash")
        for dy, v, s, color in ((0.3, std, std_s, standard), (-0.3, fl, fl_s, flash)):
            w = max(v * unit, 0.03)
            bar = Rectangle(width=w, height=0.42, stroke_width=0)
            bar.set_fill(color, 0.9).move_to([X0 + w / 2, y + dy, 0])
            tag = self.text(s, "label", color)
            if w + tag.width + 0.3 < LONGEST:
                tag.next_to(bar, RIGHT, buff=0.15)
            else:
                tag.move_to(bar).align_to(bar, RIGHT).shift(0.15 * LEFT)
                tag.set_color(th.background)
            self.play(GrowFromEdge(bar, LEFT), FadeIn(tag), run_time=0.8)
            out.add(bar, tag)
            self.lengths[name].append((v, w))
        return out

    def body(self) -> None:
        p, th = self.data, self.theme
        self.footer(f"{p.batch * p.heads} heads at {p.n // 1024}k, bf16 forward · "
                    f"traffic checked on traces · times: {p.gpu}")  # fmt: skip
        legend = (
            VGroup(
                self.text("standard attention", "label", th.chart_color("standard")),
                self.text("FlashAttention-2", "label", th.chart_color("flash")),
            )
            .arrange(RIGHT, buff=0.6)
            .move_to([1.2, 2.55, 0])
        )
        size = self.text(f"N = {p.n // 1024}k, d = {p.d}", "label")
        size.move_to([X0 - 0.3, 2.55, 0], aligned_edge=RIGHT)
        self.play(FadeIn(legend), FadeIn(size), run_time=0.5)
        self.pair(
            1.45,
            "HBM traffic",
            p.traffic_standard,
            p.traffic_flash,
            format_bytes(p.traffic_standard),
            format_bytes(p.traffic_flash),
        )
        self.say(f"{p.traffic_ratio:.0f}× less data moved: S and P never go to HBM")
        self.wait(2.0)
        self.next_section("memory")
        self.pair(
            0.0,
            "extra memory",
            p.memory_standard,
            p.memory_flash,
            format_bytes(p.memory_standard),
            format_bytes(p.memory_flash),
        )
        self.say(
            f"S and P take {format_bytes(p.memory_standard)}; FlashAttention "
            f"keeps {format_bytes(p.memory_flash)}"
        )
        self.wait(2.5)
        self.next_section("time")
        self.pair(-1.45, f"time, N = {p.time_n // 1024}k", p.time_standard_ms,
                  p.time_flash_ms, format_ms(p.time_standard_ms),
                  format_ms(p.time_flash_ms))  # fmt: skip
        self.say(
            f"{p.time_ratio:.0f}× faster at {p.time_n // 1024}k; at "
            f"{p.n // 1024}k FlashAttention takes {format_ms(p.time_flash_at_n_ms)}"
        )
        self.wait(3.0)
