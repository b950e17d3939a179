"""HBM traffic counters: bytes read and written per tensor, ticking with each load
and store event (from the event's ``nbytes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    Animation,
    AnimationGroup,
    Square,
    Text,
    Transform,
    VGroup,
)

from ..engine.text import cached_text
from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["TrafficCounter", "format_bytes"]


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``"960 B"``, ``"4,096 B"``, ``"1.2 MiB"``.

    Examples
    --------
    >>> format_bytes(960), format_bytes(4096), format_bytes(3 * 2**20)
    ('960 B', '4,096 B', '3.0 MiB')
    """
    if n < 100_000:
        return f"{n:,} B"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


class TrafficCounter(VGroup):
    """A table of HBM bytes moved per tensor and direction, plus a total.

    Parameters
    ----------
    reads
        Tensors read from HBM, in display order (e.g. ``("Q", "K", "V")``).
    writes
        Tensors written to HBM (e.g. ``("O", "LSE")``).
    title
        Heading.
    theme
        Colours and fonts.

    Attributes
    ----------
    totals
        ``{("read" | "write", tensor): bytes}`` so far.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import TrafficCounter

        class Traffic(Scene):
            def construct(self):
                c = TrafficCounter(("Q", "K", "V"), ("O",))
                self.add(c)
                self.play(c.make_tick_animation("load", "K", 64))
    """

    def __init__(
        self,
        reads: Sequence[str] = ("Q", "K", "V"),
        writes: Sequence[str] = ("O", "LSE"),
        *,
        title: str = "HBM traffic (bytes)",
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.totals: dict[tuple[str, str], int] = {}
        self.heading = Text(
            title, font=theme.font, font_size=theme.label_size, color=theme.foreground
        )
        self.add(self.heading)
        self._numbers: dict[tuple[str, str], Text] = {}
        rows = VGroup()
        for direction, names in (("read", reads), ("write", writes)):
            for name in names:
                key = (direction, name)
                self.totals[key] = 0
                sw = Square(side_length=0.2, stroke_width=0)
                sw.set_fill(theme.color(name), opacity=1)
                verb = "read " if direction == "read" else "wrote"
                lab = cached_text(
                    f"{verb} {name}", theme.mono_font, theme.body_size, theme.foreground
                )
                num = self._number_text(0)
                row = VGroup(sw, lab, num)
                rows.add(row)
                self._numbers[key] = num
        self._rows = rows
        self.total_label = cached_text(
            "total", theme.mono_font, theme.body_size, theme.muted
        )
        self.total_number = self._number_text(0)
        self.add(rows, self.total_label, self.total_number)
        self._arrange()

    def _number_text(self, n: int) -> Text:
        return cached_text(
            format_bytes(n),
            self.theme.mono_font,
            self.theme.body_size,
            self.theme.foreground,
        )

    def _arrange(self) -> None:
        y = self.heading.get_bottom()[1] - 0.08
        x0 = self.heading.get_left()[0]
        line = 0.3
        for i, row in enumerate(self._rows):
            sw, lab, num = row
            cy = y - line * (i + 0.5)
            sw.move_to([x0 + 0.1, cy, 0])
            lab.next_to(sw, RIGHT, buff=0.1)
            lab.move_to([lab.get_center()[0], cy, 0])
            num.move_to([x0 + 3.2, cy, 0], aligned_edge=RIGHT)
            num.align_to([x0 + 3.2, 0, 0], RIGHT)
        cy = y - line * (len(self._rows) + 0.5)
        self.total_label.move_to([x0, cy, 0], aligned_edge=LEFT)
        self.total_number.move_to([x0 + 3.2, cy, 0], aligned_edge=RIGHT)
        self.total_number.align_to([x0 + 3.2, 0, 0], RIGHT)

    def _retext(self, old: Text, n: int) -> Text:
        new = self._number_text(n)
        new.move_to(old.get_center()).align_to(old, RIGHT)
        return new

    def make_tick_animation(self, op: str, tensor: str, nbytes: int) -> Animation:
        """Add ``nbytes`` to ``tensor``'s read (``op="load"``) or write (``"store"``)
        count, and to the total; animate the numbers changing."""
        key = ("read" if op == "load" else "write", tensor)
        if key not in self.totals:
            raise KeyError(f"counter has no row for {key[0]} {tensor}")
        self.totals[key] += int(nbytes)
        num = self._numbers[key]
        new = self._retext(num, self.totals[key])
        new.set_color(self.theme.ink(tensor))
        total = self._retext(self.total_number, sum(self.totals.values()))
        return AnimationGroup(Transform(num, new), Transform(self.total_number, total))

    def total(self, direction: str | None = None) -> int:
        """Bytes so far, in one direction (``"read"``/``"write"``) or both."""
        return sum(v for (d, _), v in self.totals.items() if direction in (None, d))


_ = DOWN
