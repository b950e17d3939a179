"""The GPU's parallel schedule: programs (thread blocks) as bars over SMs and time.

A GPU trace records, for each program, the SM it ran on and its start and end
(``%smid``, ``%globaltimer``; see :class:`~flashanim.trace.Program`).
:func:`assign_lanes` spreads the programs of one SM over *lanes* (programs resident
on the SM at the same time do not overlap on screen) and numbers each program's
*wave* (its position in its lane). :class:`ScheduleChart` draws one bar per
program, ``y`` = SM id (and lane), ``x`` = time from the first start, coloured by
the program's Q block index (:func:`block_color`); :class:`DurationPlot` draws each
program's duration against its Q block index (the causal load imbalance).

The bar colour ramp is not a tensor colour: it runs from a pale to a deep shade of
``Q``'s colour (the index is that of a Q block), legend in :class:`BlockColorBar`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    Dot,
    GrowFromEdge,
    LaggedStart,
    ManimColor,
    Rectangle,
    Text,
    VGroup,
    interpolate_color,
)

from .charts import ChartAxes
from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flashanim.trace import Program

__all__ = [
    "Placement",
    "assign_lanes",
    "block_color",
    "BlockColorBar",
    "ScheduleChart",
    "DurationPlot",
    "schedule_stats",
]


@dataclass(frozen=True)
class Placement:
    """Where a program sits on the chart: its lane on its SM and its wave."""

    lane: int
    wave: int


def _require_clock(programs: Sequence[Program]) -> None:
    bad = [p.program for p in programs
           if p.sm is None or p.start_ns is None or p.end_ns is None]  # fmt: skip
    if bad:
        raise ValueError(
            f"{len(bad)} programs (first: {bad[0]}) have no SM id or clock: a "
            f"schedule needs a GPU trace (bench/record_gpu_schedule.py)"
        )


def assign_lanes(programs: Sequence[Program]) -> dict[int, Placement]:
    """Lane and wave of each program (by program id).

    The programs of each SM are taken in start order; each goes to the first lane
    whose last program ended by its start (a new lane if none), so programs resident
    at the same time get different lanes. A program's wave is the number of
    programs before it in its lane.

    Examples
    --------
    >>> from flashanim.trace import Program
    >>> ps = [Program(0, 0, 0, 1, sm=0, start_ns=0, end_ns=10),
    ...       Program(1, 0, 1, 1, sm=0, start_ns=2, end_ns=9),
    ...       Program(2, 0, 2, 1, sm=0, start_ns=10, end_ns=20)]
    >>> assign_lanes(ps)[2]
    Placement(lane=0, wave=1)
    """
    _require_clock(programs)
    by_sm: dict[int, list] = defaultdict(list)
    for p in programs:
        by_sm[p.sm].append(p)
    out: dict[int, Placement] = {}
    for ps in by_sm.values():
        ends: list[int] = []
        counts: list[int] = []
        for p in sorted(ps, key=lambda p: (p.start_ns, p.program)):
            lane = next((k for k, e in enumerate(ends) if e <= p.start_ns), len(ends))
            if lane == len(ends):
                ends.append(p.end_ns)
                counts.append(0)
            ends[lane] = p.end_ns
            out[p.program] = Placement(lane, counts[lane])
            counts[lane] += 1
    return out


def schedule_stats(programs: Sequence[Program]) -> dict[str, float]:
    """Numbers of a schedule: ``n`` programs, ``sms`` used, ``lanes`` (most
    programs resident on one SM at once), ``waves``, ``makespan_us`` and program
    durations ``min_us``, ``median_us``, ``max_us``."""
    place = assign_lanes(programs)
    t0 = min(p.start_ns for p in programs)
    dur = np.array([(p.end_ns - p.start_ns) / 1e3 for p in programs])
    return {
        "n": len(programs),
        "sms": len({p.sm for p in programs}),
        "lanes": 1 + max(q.lane for q in place.values()),
        "waves": 1 + max(q.wave for q in place.values()),
        "makespan_us": (max(p.end_ns for p in programs) - t0) / 1e3,
        "min_us": float(dur.min()),
        "median_us": float(np.median(dur)),
        "max_us": float(dur.max()),
    }


def block_color(i: int, n_blocks: int, theme: Theme = DARK) -> ManimColor:
    """The colour of Q block ``i`` of ``n_blocks``: pale (``i = 0``) to deep."""
    t = i / max(n_blocks - 1, 1)
    q = theme.color("Q")
    pale = interpolate_color(q, ManimColor(theme.foreground), 0.72)
    deep = interpolate_color(q, ManimColor(theme.background), 0.45)
    if t <= 0.5:
        return interpolate_color(pale, q, 2 * t)
    return interpolate_color(q, deep, 2 * t - 1)


class BlockColorBar(VGroup):
    """The legend of :func:`block_color`: a strip of swatches with end labels.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.schedule import BlockColorBar

        class Bar(Scene):
            def construct(self):
                self.add(BlockColorBar(32))
    """

    def __init__(self, n_blocks: int, *, width: float = 2.6, theme: Theme = DARK,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        w = width / n_blocks
        strip = VGroup(*(
            Rectangle(width=w, height=0.16, stroke_width=0)
            .set_fill(block_color(i, n_blocks, theme), opacity=1)
            for i in range(n_blocks)
        )).arrange(RIGHT, buff=0)  # fmt: skip
        kw = dict(font=theme.font, font_size=theme.small_size, color=theme.muted)
        title = Text(
            "colour: Q block index i",
            font=theme.font,
            font_size=theme.small_size + 1,
            color=theme.foreground,
        )
        lo = Text("0", **kw).next_to(strip, DOWN, buff=0.08).align_to(strip, LEFT)
        hi = Text(str(n_blocks - 1), **kw).next_to(strip, DOWN, buff=0.08)
        hi.align_to(strip, RIGHT)
        title.next_to(strip, UP, buff=0.1).align_to(strip, LEFT)
        self.add(title, strip, lo, hi)


class ScheduleChart(VGroup):
    """Axes (time × SM) and one bar per program of a GPU trace.

    Parameters
    ----------
    programs
        The programs, each with ``sm``, ``start_ns`` and ``end_ns``.
    n_blocks
        Number of Q blocks (``T_r``), for the colours.
    n_sms
        SMs on the y axis (default: the largest SM id + 1).
    t_max_us
        Right end of the time axis (default: the makespan).
    width, height
        Plotting area.
    theme
        Colours and fonts.

    Attributes
    ----------
    axes
        The :class:`~flashanim.visuals.charts.ChartAxes`.
    bars
        One :class:`~manim.Rectangle` per program, in the order of ``programs``.
    programs
        The programs, aligned with :attr:`bars`.
    waves
        ``waves[k]`` is the :class:`~manim.VGroup` of the bars of wave ``k``, in
        start order.
    t0_ns
        The first start (time zero).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.trace import load_trace
        from flashanim.visuals.schedule import ScheduleChart

        class Schedule(Scene):
            def construct(self):
                t = load_trace("media/traces/gpu_schedule_causal.json.gz")
                chart = ScheduleChart(t.programs, n_blocks=t.meta.t_r)
                self.add(chart.axes, chart.bars)
    """

    def __init__(
        self,
        programs: Sequence[Program],
        *,
        n_blocks: int,
        n_sms: int | None = None,
        t_max_us: float | None = None,
        width: float = 8.4,
        height: float = 5.0,
        theme: Theme = DARK,
        x_label: str = "time since the first program started (µs)",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.programs = list(programs)
        place = assign_lanes(self.programs)
        self.t0_ns = min(p.start_ns for p in self.programs)
        span = (max(p.end_ns for p in self.programs) - self.t0_ns) / 1e3
        t_max = t_max_us or span
        n_sms = n_sms or 1 + max(p.sm for p in self.programs)
        self.n_sms = n_sms
        self.lanes = 1 + max(q.lane for q in place.values())
        self.axes = ChartAxes(
            (0, t_max), (0, n_sms),
            x_ticks=_nice_ticks(t_max), y_ticks=list(range(0, n_sms, 32)),
            x_label=x_label,
            y_label="SM id", x_format=lambda v: f"{v:g}",
            y_format=lambda v: f"{v:g}", width=width, height=height, grid=False,
            theme=theme,
        )  # fmt: skip
        self.bars = VGroup()
        waves: dict[int, list] = defaultdict(list)
        lane_h = 1.0 / self.lanes
        for p in self.programs:
            q = place[p.program]
            x0, x1 = self.x_of(p.start_ns), self.x_of(p.end_ns)
            y0 = self.axes.c2p(0, p.sm + q.lane * lane_h)[1]
            y1 = self.axes.c2p(0, p.sm + (q.lane + 1) * lane_h)[1]
            h = (y1 - y0) * 0.8
            bar = Rectangle(width=max(x1 - x0, 1e-3), height=h, stroke_width=0)
            bar.set_fill(block_color(max(p.block, 0), n_blocks, theme), opacity=1)
            bar.move_to([(x0 + x1) / 2, (y0 + y1) / 2, 0])
            self.bars.add(bar)
            waves[q.wave].append((p.start_ns, bar))
        self.waves = [
            VGroup(*(b for _, b in sorted(waves[k], key=lambda t: t[0])))
            for k in sorted(waves)
        ]
        self.add(self.axes, self.bars)

    def x_of(self, t_ns: int) -> float:
        """Scene x of GPU time ``t_ns`` (absolute ``%globaltimer`` nanoseconds)."""
        return float(self.axes.c2p((t_ns - self.t0_ns) / 1e3, 0)[0])

    def ns_of(self, x: float) -> float:
        """GPU time (absolute ns) at scene x (the inverse of :meth:`x_of`)."""
        return self.t0_ns + 1e3 * float(self.axes.axes.p2c([x, 0, 0])[0])

    def sm_of(self, y: float) -> int:
        """The SM whose row holds scene y."""
        return int(np.floor(self.axes.axes.p2c([0, y, 0])[1]))

    def make_wave_animation(self, wave: int, run_time: float = 1.5) -> Animation:
        """The bars of ``wave`` growing from their start times, in start order."""
        bars = self.waves[wave]
        return LaggedStart(
            *(GrowFromEdge(b, LEFT) for b in bars),
            lag_ratio=min(0.05, 3.0 / max(len(bars), 1)), run_time=run_time,
        )  # fmt: skip


class DurationPlot(VGroup):
    """Program durations (µs) against Q block index, one dot per program per run.

    Parameters
    ----------
    runs
        ``(name, programs, colour or None)``: ``None`` colours dots by Q block
        (:func:`block_color`). Runs are offset a little along ``x``.
    n_blocks
        Number of Q blocks (``T_r``).
    y_max_us
        Top of the duration axis (default: the longest program).
    theme
        Colours and fonts.

    Attributes
    ----------
    axes, dots
        The parts; ``dots[k]`` holds run ``k``'s dots.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.trace import load_trace
        from flashanim.visuals.schedule import DurationPlot

        class Spread(Scene):
            def construct(self):
                t = load_trace("media/traces/gpu_schedule_causal.json.gz")
                self.add(DurationPlot([("causal", t.programs, None)], n_blocks=32))
    """

    def __init__(
        self,
        runs: Sequence[tuple[str, Sequence[Program], str | None]],
        *,
        n_blocks: int,
        y_max_us: float | None = None,
        width: float = 8.4,
        height: float = 5.0,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        _ = [_require_clock(ps) for _, ps, _ in runs]
        durs = [[(p.end_ns - p.start_ns) / 1e3 for p in ps] for _, ps, _ in runs]
        y_max = y_max_us or max(max(d) for d in durs) * 1.05
        step = 8 if n_blocks > 16 else 1
        self.axes = ChartAxes(
            (-0.5, n_blocks - 0.5), (0, y_max),
            x_ticks=list(range(0, n_blocks, step)), y_ticks=_nice_ticks(y_max),
            x_label="Q block index i (program's rows: i·BLOCK_M …)",
            y_label="program duration (µs)", x_format=lambda v: f"{v:g}",
            y_format=lambda v: f"{v:g}", width=width, height=height, theme=theme,
        )  # fmt: skip
        self.dots = VGroup()
        offsets = np.linspace(-0.18, 0.18, len(runs)) if len(runs) > 1 else [0.0]
        for (_, ps, col), ds, off in zip(runs, durs, offsets, strict=True):
            group = VGroup()
            for p, d in zip(ps, ds, strict=True):
                c = col or block_color(max(p.block, 0), n_blocks, theme)
                group.add(Dot(self.axes.c2p(p.block + off, d), radius=0.035, color=c))
            self.dots.add(group)
        self.add(self.axes, self.dots)


def _nice_ticks(top: float) -> list[float]:
    """About five round ticks from 0 to ``top``."""
    raw = top / 5
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [float(v) for v in np.arange(0, top + 1e-9, step)]


_ = UP
