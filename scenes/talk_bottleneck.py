"""Talk cut, clip 1: attention is memory-bound (measured on the GPU).

Render from the repository root: ``manim render -ql scenes/talk_bottleneck.py``.
The runtime of standard attention, split into its steps as PyTorch runs them
(Q Kᵀ, scale, mask, softmax, P V), stacked into one bar, beside the one fused
FlashAttention-2 kernel on the same inputs: every height is a median from
``media/bench/breakdown_<gpu>.json`` (``bench/breakdown_standard.py``, CUDA events;
``FLASHANIM_BREAKDOWN`` names another file), as in Fig. 1 (right) of the
FlashAttention paper. Dropout is measured but not drawn: the fused kernel has none.
"""

from __future__ import annotations

from manim import *

from flashanim.talkfacts import breakdown, format_ms
from flashanim.talkkit import TalkClip

#: Screen units per millisecond of the tallest bar's scale (set from the data).
BAR_HEIGHT = 4.6


def memory_bound_caption(steps) -> str:
    """Names the memory-bound steps (those under the brace), from the data."""
    names = [label for _, label, mb, _ in steps if mb]
    said = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{said[0].upper()}{said[1:]} only read and write the N×N scores"


class TalkBottleneck(TalkClip):
    NAME = "talk_bottleneck"
    FIRST_SECTION = "standard steps"

    def prepare(self) -> None:
        self.data = breakdown()

    def body(self) -> None:
        b, th = self.data, self.theme
        # the theme's chart palette: no tensor's colour means something else here
        compute, memory = th.chart_color("matmul"), th.chart_color("memory")
        s = b.setting
        self.footer(
            f"Measured on an {b.gpu} · B {s['B']}, H {s['H']}, N {s['N']}, "
            f"d {s['d']} · fp16, causal"
        )
        scale = BAR_HEIGHT / b.standard_ms
        base_y = -2.2
        x_std, x_fused, w = -3.2, 2.2, 1.5
        axis = Line([-5.2, base_y, 0], [4.4, base_y, 0], color=th.muted,
                    stroke_width=2)  # fmt: skip
        self.play(Create(axis), run_time=0.6)
        self.say("Standard attention, one step at a time")
        #: (key, label, memory-bound, ms, drawn height), for tests
        self.bars: list[tuple[str, str, bool, float, float]] = []
        y = base_y
        labels = VGroup()
        for key, label, mb, ms in b.steps:
            h = ms * scale
            rect = Rectangle(width=w, height=h, stroke_width=1.5,
                             stroke_color=th.background)  # fmt: skip
            rect.set_fill(memory if mb else compute, opacity=0.9)
            rect.move_to([x_std, y + h / 2, 0])
            tag = self.text(label, "label", memory if mb else th.foreground)
            tag.next_to(rect, LEFT, buff=0.25)
            labels.add(tag)
            self.play(GrowFromEdge(rect, DOWN), FadeIn(tag), run_time=1.2)
            self.bars.append((key, label, mb, ms, h))
            y += h
        total = self.text(format_ms(b.standard_ms), "label")
        total.next_to([x_std, y, 0], UP, buff=0.15)
        self.play(FadeIn(total), run_time=0.5)
        self.next_section("memory-bound")

        mem = [r for r in self.bars if r[2]]
        lo = base_y + sum(r[4] for r in self.bars[: self.bars.index(mem[0])])
        hi = lo + sum(r[4] for r in mem)
        brace = Brace(Line([x_std + w / 2, lo, 0], [x_std + w / 2, hi, 0]), RIGHT,
                      color=memory)  # fmt: skip
        share = self.text(f"{b.memory_bound_share:.0%} memory-bound", "label",
                          memory)  # fmt: skip
        share.next_to(brace, RIGHT, buff=0.15)
        self.play(GrowFromCenter(brace), FadeIn(share), run_time=0.8)
        self.say(memory_bound_caption(b.steps))
        self.wait(2.5)
        self.next_section("fused kernel")

        self.play(FadeOut(brace), FadeOut(share), run_time=0.4)
        h = b.fused_ms * scale
        fused = Rectangle(width=w, height=h, stroke_width=0)
        fused.set_fill(th.chart_color("fused"), opacity=0.9)  # no tensor colour
        fused.move_to([x_fused, base_y + h / 2, 0])
        self.fused_height = h
        ftag = self.text("one fused kernel", "label")
        ftag.next_to(fused, UP, buff=0.2)
        ftime = self.text(format_ms(b.fused_ms), "label")
        ftime.next_to(ftag, UP, buff=0.12)
        self.play(GrowFromEdge(fused, DOWN), FadeIn(ftag), run_time=0.9)
        self.play(FadeIn(ftime), run_time=0.4)
        self.say(f"FlashAttention: the same result, {b.speedup:.0f}× faster")
        self.wait(3.0)
        self.next_section("on chip")
        self.say("Its scores stay on chip: never written to off-chip memory")
        self.wait(2.5)
