"""Small charts on Manim :class:`~manim.Axes`: log-scale bars, line charts, a legend.

Every label is a :class:`~manim.Text` (no LaTeX): tick labels are formatted here
(:func:`format_si`, :func:`format_count`) instead of Manim's ``DecimalNumber``.
A log axis is drawn as a linear axis over ``log10`` of the values, so that
:meth:`ChartAxes.c2p` takes the real values and the ticks sit at decades.

* :class:`ChartAxes` -- axes (linear or log on each side) with ticks, tick labels,
  faint grid lines and axis titles that carry units;
* :class:`LogBarChart` -- horizontal bars on a log value axis (bandwidth,
  capacity), a value label at the end of each bar;
* :class:`LineChart` -- :class:`ChartAxes` plus series (lines and dots);
  :meth:`LineChart.make_series_animation` returns the animation that draws one;
* :class:`ChartLegend` -- swatches (solid or dashed) with names.

Colours come from :mod:`~flashanim.visuals.theme`: axes and text from the
theme, series colours from the theme's chart palette (:func:`series_colors`: no
tensor's colour, so green still means V and orange K).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Axes,
    Create,
    DashedLine,
    Dot,
    FadeIn,
    GrowFromEdge,
    Line,
    Rectangle,
    Succession,
    Text,
    VGroup,
    VMobject,
)

from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from manim import Animation

__all__ = [
    "SERIES",
    "SERIES_COLORS",
    "series_colors",
    "ChartAxes",
    "LogBarChart",
    "LineChart",
    "ChartLegend",
    "format_si",
    "format_count",
    "decades",
]

#: The chart series that have a colour of their own (see :func:`series_colors`).
SERIES = ("standard", "math", "flash", "ours", "pytorch-flash", "floor", "memory")


def series_colors(theme: Theme = DARK) -> Mapping[str, str]:
    """Colour of each chart series (:data:`SERIES`) in ``theme``: the theme's chart
    palette (:meth:`~flashanim.visuals.theme.Theme.chart_color`), apart from every
    tensor's colour (``tests/test_palette.py`` measures how far)."""
    return MappingProxyType({k: theme.chart_color(k) for k in SERIES})


#: The dark theme's series colours (:func:`series_colors` for another theme).
SERIES_COLORS: Mapping[str, str] = series_colors(DARK)

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def format_si(value: float, unit: str = "", digits: int = 3) -> str:
    """``value`` with a decimal SI prefix: ``"19 TB/s"``, ``"12.8 GB/s"``.

    Parameters
    ----------
    value
        The number (e.g. bytes per second).
    unit
        Unit after the prefix (``"B/s"``, ``"B"``).
    digits
        Significant digits at most; trailing zeros are dropped.

    Examples
    --------
    >>> format_si(19e12, "B/s"), format_si(12.8e9, "B/s"), format_si(0.5, "ms")
    ('19 TB/s', '12.8 GB/s', '0.5 ms')
    >>> format_si(1e6, "B")
    '1 MB'
    """
    if value == 0:
        return f"0 {unit}".strip()
    size, prefix = 1.0, ""
    for size, prefix in _PREFIXES:  # noqa: B007 (both used after the loop)
        if abs(value) >= size:
            break
    x = value / size
    text = f"{x:.{digits}g}"
    if "e" in text:  # pragma: no cover - only for values beyond the prefixes
        text = f"{x:.0f}"
    return f"{text} {prefix}{unit}".strip()


def format_count(n: float) -> str:
    """A count as people write sequence lengths: ``"512"``, ``"1k"``, ``"16k"``.

    Powers of two from 1024 are written in units of 1024 (``2048 -> "2k"``).

    Examples
    --------
    >>> format_count(64), format_count(1024), format_count(16384)
    ('64', '1k', '16k')
    """
    n = float(n)
    if n >= 1024 and n % 1024 == 0:
        return f"{int(n // 1024)}k"
    return f"{n:g}"


def decades(lo: float, hi: float) -> list[float]:
    """The powers of ten from ``lo``'s decade up to ``hi``'s.

    Examples
    --------
    >>> decades(3, 2000)
    [1.0, 10.0, 100.0, 1000.0, 10000.0]
    """
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0**k for k in range(a, b + 1)]


class ChartAxes(VGroup):
    """Axes whose sides may each be linear or logarithmic, labelled with Text.

    Parameters
    ----------
    x_range, y_range
        ``(low, high)`` in real values (positive for a log side).
    x_ticks, y_ticks
        Values where ticks and labels go.
    x_label, y_label
        Axis titles, with units (``"sequence length N"``, ``"HBM traffic (bytes)"``).
    x_log, y_log
        Logarithmic sides.
    x_format, y_format
        Tick label formatters (value -> text).
    width, height
        Size of the plotting area in scene units.
    grid
        Draw faint lines at the ticks.
    theme
        Colours and fonts.

    Attributes
    ----------
    axes
        The underlying Manim :class:`~manim.Axes` (over ``log10`` on log sides).
    tick_labels, titles, grid_lines
        The parts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.charts import ChartAxes

        class Log(Scene):
            def construct(self):
                ax = ChartAxes((64, 1024), (1e3, 1e8), x_ticks=[64, 256, 1024],
                               y_ticks=[1e3, 1e5, 1e7], x_log=True, y_log=True,
                               x_label="N", y_label="bytes")
                self.add(ax)
    """

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        x_ticks: Sequence[float] = (),
        y_ticks: Sequence[float] = (),
        x_label: str = "",
        y_label: str = "",
        x_log: bool = False,
        y_log: bool = False,
        x_format: Callable[[float], str] = format_count,
        y_format: Callable[[float], str] = format_si,
        width: float = 6.0,
        height: float = 4.0,
        grid: bool = True,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.theme = theme
        self.x_log, self.y_log = x_log, y_log
        for log, (lo, hi), side in ((x_log, x_range, "x"), (y_log, y_range, "y")):
            if not hi > lo or (log and lo <= 0):
                raise ValueError(f"bad {side} range {(lo, hi)} (log={log})")
        tx0, tx1 = (self._tx(v) for v in x_range)
        ty0, ty1 = (self._ty(v) for v in y_range)
        self.axes = Axes(
            x_range=[tx0, tx1, tx1 - tx0],
            y_range=[ty0, ty1, ty1 - ty0],
            x_length=width,
            y_length=height,
            tips=False,
            axis_config={
                "include_ticks": False,
                "color": theme.muted,
                "stroke_width": 2,
            },
        )
        # Manim draws each axis through the other's zero (log10 1 = 0): hide them and
        # draw the frame's left and bottom edges instead.
        self.axes.x_axis.set_stroke(opacity=0)
        self.axes.y_axis.set_stroke(opacity=0)
        corner = self.c2p(x_range[0], y_range[0])
        self.frame_lines = VGroup(
            Line(
                corner,
                self.c2p(x_range[1], y_range[0]),
                color=theme.muted,
                stroke_width=2,
            ),
            Line(
                corner,
                self.c2p(x_range[0], y_range[1]),
                color=theme.muted,
                stroke_width=2,
            ),
        )
        small = theme.small_size
        self.grid_lines = VGroup()
        self.tick_labels = VGroup()
        ticks = VGroup()
        for v in x_ticks:
            p = self.c2p(v, y_range[0])
            top = self.c2p(v, y_range[1])
            ticks.add(Line(p, p + 0.08 * DOWN, color=theme.muted, stroke_width=2))
            if grid:
                self.grid_lines.add(
                    Line(p, top, color=theme.muted, stroke_width=1, stroke_opacity=0.25)
                )
            lab = Text(x_format(v), font=theme.font, font_size=small, color=theme.muted)
            self.tick_labels.add(lab.next_to(p, DOWN, buff=0.14))
        for v in y_ticks:
            p = self.c2p(x_range[0], v)
            right = self.c2p(x_range[1], v)
            ticks.add(Line(p, p + 0.08 * LEFT, color=theme.muted, stroke_width=2))
            if grid:
                self.grid_lines.add(
                    Line(
                        p, right, color=theme.muted, stroke_width=1, stroke_opacity=0.25
                    )
                )
            lab = Text(y_format(v), font=theme.font, font_size=small, color=theme.muted)
            self.tick_labels.add(lab.next_to(p, LEFT, buff=0.14))
        self.titles = VGroup()
        if x_label:
            xt = Text(
                x_label,
                font=theme.font,
                font_size=theme.body_size,
                color=theme.foreground,
            )
            labels_x = [
                t
                for t in self.tick_labels
                if t.get_center()[1] < self.axes.get_bottom()[1]
            ] or [self.axes.x_axis]
            xt.next_to(VGroup(*labels_x), DOWN, buff=0.14)
            xt.set_x(self.axes.x_axis.get_center()[0])
            self.titles.add(xt)
        if y_label:
            yt = Text(
                y_label,
                font=theme.font,
                font_size=theme.body_size,
                color=theme.foreground,
            )
            # Above the y axis, left-aligned with the tick labels: horizontal text
            # stays readable at 480p (a rotated title does not).
            left = min(
                [t.get_left()[0] for t in self.tick_labels] + [self.axes.get_left()[0]]
            )
            yt.next_to(self.axes, UP, buff=0.18)
            yt.set_x(left + yt.width / 2)
            self.titles.add(yt)
        self.add(
            self.grid_lines,
            self.axes,
            self.frame_lines,
            ticks,
            self.tick_labels,
            self.titles,
        )

    def _tx(self, v: float) -> float:
        return math.log10(v) if self.x_log else float(v)

    def _ty(self, v: float) -> float:
        return math.log10(v) if self.y_log else float(v)

    def c2p(self, x: float, y: float) -> np.ndarray:
        """The scene point of data coordinates ``(x, y)`` (real values)."""
        return self.axes.c2p(self._tx(x), self._ty(y))


class LogBarChart(VGroup):
    """Horizontal bars on a logarithmic value axis, one per category.

    Parameters
    ----------
    names
        Category labels, drawn left of the bars, top to bottom.
    values
        One positive value per category.
    labels
        Text at the end of each bar (default: :func:`format_si` of the value).
    colors
        One colour per bar.
    value_range
        ``(low, high)`` of the axis; bars start at ``low``.
    ticks
        Tick values (default: the decades of ``value_range``).
    unit
        Unit of the tick labels (``"B/s"``).
    title
        Axis title under the ticks, with units.
    open_ended
        Per bar: the value is a lower bound ("> 1 TB"); the bar ends in an arrow.
    width, bar_height
        Length of the value axis and thickness of a bar, in scene units.
    theme
        Colours and fonts.

    Attributes
    ----------
    bars, names, value_labels, chart
        The parts (``chart`` is the :class:`ChartAxes`).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.charts import LogBarChart

        class Bandwidth(Scene):
            def construct(self):
                chart = LogBarChart(["SRAM", "HBM"], [19e12, 1.5e12],
                                    value_range=(1e9, 1e14), unit="B/s",
                                    title="bandwidth (bytes/s, log scale)")
                self.add(chart)
                self.play(chart.make_bars_animation())
    """

    def __init__(
        self,
        names: Sequence[str],
        values: Sequence[float],
        *,
        labels: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
        value_range: tuple[float, float],
        ticks: Sequence[float] | None = None,
        unit: str = "",
        title: str = "",
        open_ended: Sequence[bool] | None = None,
        width: float = 7.0,
        bar_height: float = 0.5,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        n = len(names)
        if len(values) != n or n == 0:
            raise ValueError("need one value per name (and at least one)")
        if any(v <= 0 for v in values):
            raise ValueError("log bars need positive values")
        labels = (
            list(labels) if labels is not None else [format_si(v, unit) for v in values]
        )
        colors = list(colors) if colors is not None else [theme.foreground] * n
        open_ended = list(open_ended) if open_ended is not None else [False] * n
        lo, hi = value_range
        pitch = bar_height * 1.7
        height = pitch * n
        self.chart = ChartAxes(
            (lo, hi),
            (0, n),
            x_ticks=ticks if ticks is not None else decades(lo, hi),
            x_label=title,
            x_log=True,
            x_format=lambda v: format_si(v, unit),
            width=width,
            height=height,
            theme=theme,
        )
        self.chart.frame_lines[1].set_opacity(0)
        self.bars = VGroup()
        self.names = VGroup()
        self.value_labels = VGroup()
        for k, (name, v, lab, col, more) in enumerate(
            zip(names, values, labels, colors, open_ended, strict=True)
        ):
            y = n - k - 0.5
            left = self.chart.c2p(lo, y)
            right = self.chart.c2p(min(v, hi), y)
            bar = Rectangle(
                width=max(right[0] - left[0], 0.02),
                height=bar_height,
                fill_color=col,
                fill_opacity=0.85,
                stroke_width=0,
            )
            bar.move_to(left, aligned_edge=LEFT)
            if more:
                tip = VMobject(fill_color=col, fill_opacity=0.85, stroke_width=0)
                r = bar.get_right()
                tip.set_points_as_corners(
                    [
                        r + 0.5 * bar_height * UP,
                        r + 0.3 * RIGHT,
                        r + 0.5 * bar_height * DOWN,
                        r + 0.5 * bar_height * UP,
                    ]
                )
                bar = VGroup(bar, tip)
            self.bars.add(bar)
            nm = Text(
                name,
                font=theme.font,
                font_size=theme.label_size,
                color=theme.foreground,
            )
            self.names.add(nm.next_to(left, LEFT, buff=0.2))
            vl = Text(
                lab,
                font=theme.font,
                font_size=theme.label_size,
                color=theme.ink(col),  # text: reads on both themes
                weight="BOLD",
            )
            self.value_labels.add(vl.next_to(bar, RIGHT, buff=0.15))
        self.add(self.chart, self.names, self.bars, self.value_labels)

    def make_bars_animation(self, lag: float = 0.25) -> Animation:
        """Grow the bars from the axis, then show their value labels."""
        from manim import AnimationGroup, LaggedStart

        return AnimationGroup(
            LaggedStart(*(GrowFromEdge(b, LEFT) for b in self.bars), lag_ratio=lag),
            LaggedStart(*(FadeIn(v) for v in self.value_labels), lag_ratio=lag),
            lag_ratio=0.6,
        )


class LineChart(ChartAxes):
    """:class:`ChartAxes` with series of points joined by lines.

    Takes the parameters of :class:`ChartAxes`.

    Attributes
    ----------
    series
        ``{name: VGroup(line, dots)}`` of the series added so far.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.charts import LineChart

        class Traffic(Scene):
            def construct(self):
                ch = LineChart((64, 1024), (1e4, 1e8), x_ticks=[64, 256, 1024],
                               y_ticks=[1e4, 1e6, 1e8], x_log=True, y_log=True,
                               x_label="sequence length N", y_label="bytes")
                s = ch.add_series("flash", [64, 256, 1024], [3e4, 3e5, 4e6])
                self.add(ch)
                self.play(ch.make_series_animation("flash"))
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.series: dict[str, VGroup] = {}

    def add_series(
        self,
        name: str,
        xs: Sequence[float],
        ys: Sequence[float],
        *,
        color: str | None = None,
        dashed: bool = False,
        dots: bool = True,
        stroke_width: float = 4,
    ) -> VGroup:
        """Build series ``name`` (not added to the scene: animate or add it).

        Parameters
        ----------
        xs, ys
            Data coordinates (real values).
        color
            Default: :func:`series_colors` ``[name]`` of the chart's theme, else
            the foreground.
        dashed
            A dashed line (used for theory curves).
        dots
            Mark each point with a dot.

        Returns
        -------
        VGroup
            ``VGroup(line, dots)``; also kept in :attr:`series`.
        """
        if len(xs) != len(ys) or len(xs) < 1:
            raise ValueError(f"series {name!r}: need as many x as y values (>= 1)")
        col = color or series_colors(self.theme).get(name, self.theme.foreground)
        pts = [self.c2p(x, y) for x, y in zip(xs, ys, strict=True)]
        if len(pts) > 1:
            line = VMobject(stroke_color=col, stroke_width=stroke_width)
            line.set_points_as_corners(pts)
            if dashed:
                line = VGroup(
                    *(
                        DashedLine(
                            a, b, color=col, stroke_width=stroke_width, dash_length=0.1
                        )
                        for a, b in zip(pts[:-1], pts[1:], strict=True)
                    )
                )
        else:
            line = VGroup()
        marks = (
            VGroup(*(Dot(p, radius=0.07, color=col) for p in pts))
            if dots
            else (VGroup())
        )
        group = VGroup(line, marks)
        group.data_points_xy = list(zip(xs, ys, strict=True))
        self.series[name] = group
        return group

    def make_series_animation(self, name: str, run_time: float = 1.5) -> Animation:
        """Draw series ``name``: the line, then its dots."""
        line, marks = self.series[name]
        parts = []
        if len(line.submobjects) or line.has_points():
            parts.append(Create(line, run_time=run_time))
        if len(marks):
            parts.append(FadeIn(marks, run_time=0.4))
        return Succession(*parts)


class ChartLegend(VGroup):
    """Legend entries: a short line (solid or dashed) or a dot, and a name.

    Parameters
    ----------
    entries
        ``(name, colour, dashed)`` triples, in order.
    direction
        ``DOWN`` (a column) or ``RIGHT`` (a row).
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals.charts import ChartLegend

        class Key(Scene):
            def construct(self):
                self.add(ChartLegend([("measured", "#555555", False),
                                      ("paper's Θ(N²)", "#555555", True)]))
    """

    def __init__(
        self,
        entries: Sequence[tuple[str, str, bool]],
        *,
        direction: np.ndarray = DOWN,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, col, dashed in entries:
            a, b = np.array([0.0, 0, 0]), np.array([0.5, 0, 0])
            mark = (
                DashedLine(a, b, color=col, stroke_width=4, dash_length=0.1)
                if dashed
                else VGroup(
                    Line(a, b, color=col, stroke_width=4),
                    Dot((a + b) / 2, radius=0.07, color=col),
                )
            )
            txt = Text(
                name,
                font=theme.font,
                font_size=theme.small_size + 1,
                color=theme.foreground,
            )
            self.add(VGroup(mark, txt.next_to(mark, RIGHT, buff=0.15)))
        self.arrange(
            direction, aligned_edge=LEFT, buff=0.15 if direction is DOWN else 0.4
        )
