"""A toy tenth scene: the FA2 forward's HBM traffic, tensor by tensor, event by event.

The worked example of ``ARCHITECTURE.md``: a new scene is a :class:`TraceScene`
(settings, trace, theme and captions come with it) with a ``construct`` and a
player (an :class:`EventPlayer`: what one event looks like). Render it with
``manim render -ql examples/tenth_scene.py TrafficScene``; to put it in the talk,
move it to ``scenes/traffic.py`` and add one line to ``flashanim/talk.py``'s
``TALK``::

    TalkScene("traffic", "TrafficScene", "HBM traffic, tensor by tensor"),
"""

from __future__ import annotations

from manim import LEFT, Animation, Rectangle, Text, VGroup

from flashanim.scene import TraceScene
from flashanim.trace import hbm_traffic
from flashanim.visuals import EventPlayer, format_bytes


class TrafficBars(EventPlayer):
    """Each load or store grows its tensor's bar by the event's bytes."""

    durations = {"load": 0.3, "store": 0.3}

    def __init__(self, most: int, theme, width: float = 9.0) -> None:
        super().__init__()
        self.theme, self.unit = theme, width / most
        self.moved: dict[str, int] = {}
        self.bars: dict[str, Rectangle] = {}
        self.group = VGroup()

    def bar(self, tensor: str) -> Rectangle:
        """The tensor's bar (a row of its own, made on its first event)."""
        if tensor not in self.bars:
            th, y = self.theme, 2.2 - 0.8 * len(self.bars)
            label = Text(tensor, font=th.font, font_size=th.label_size,
                         color=th.color(tensor)).move_to([-5.5, y, 0])  # fmt: skip
            bar = Rectangle(width=0.01, height=0.45, stroke_width=0)
            bar.set_fill(th.color(tensor), 1).move_to([-5.0, y, 0], aligned_edge=LEFT)
            self.bars[tensor] = bar
            self.group.add(label, bar)
        return self.bars[tensor]

    def event_animations(self, event) -> list[Animation]:
        self.moved[event.tensor] = self.moved.get(event.tensor, 0) + event.nbytes
        bar = self.bar(event.tensor)
        width = max(self.moved[event.tensor] * self.unit, 0.01)
        return [bar.animate.stretch_to_fit_width(width, about_edge=LEFT)]


class TrafficScene(TraceScene):
    """Every load and store of the FA2 forward, summed per tensor."""

    kernel = "fa2-fwd"

    def construct(self) -> None:
        events = [e for e in self.trace.events if e.is_memory]
        totals = hbm_traffic(self.trace)  # {(tensor, read/write): bytes}
        per_tensor = {t: 0 for t, _ in totals}
        for (t, _), n in totals.items():
            per_tensor[t] += n
        self.player = bars = TrafficBars(max(per_tensor.values()), self.theme)
        for t in per_tensor:
            bars.bar(t)
        self.section("traffic")
        self.add(self.captions.mob, bars.group)
        self.caption("Every load and store of the kernel, as it ran")
        bars.play(self, events, speed=4)
        same = "equal to" if bars.moved == per_tensor else "NOT equal to"
        self.caption(f"{format_bytes(sum(bars.moved.values()))} in {len(events)} "
                     f"loads and stores, {same} the trace's HBM traffic")  # fmt: skip
        self.hold()
