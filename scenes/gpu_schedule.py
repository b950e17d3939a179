"""The GPU's parallel schedule of FA2's forward, from real GPU traces.

Render from the repository root: ``manim render -ql scenes/gpu_schedule.py``.

Each bar is one program (thread block) of a real run on the GPU named in the
trace: ``y`` is the SM it ran on (``%smid``), ``x`` its start and end
(``%globaltimer``) relative to the first start. The non-causal run shows even
waves; the causal run shows the load imbalance (program ``i`` visits ``i + 1``
K/V blocks' worth of keys, so larger ``i`` run longer).

Configuration (environment):

============================= ==============================================
FLASHANIM_SCHEDULE_NONCAUSAL  non-causal trace (default
                              ``media/traces/gpu_schedule_noncausal.json.gz``)
FLASHANIM_SCHEDULE_CAUSAL     causal trace (default
                              ``media/traces/gpu_schedule_causal.json.gz``)
FLASHANIM_THEME               ``dark`` or ``light``
============================= ==============================================

Both traces come from ``bench/record_gpu_schedule.py`` (``make gpu-trace``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from manim import *

from flashanim.config import ConfigError, data_files
from flashanim.scene import TraceScene
from flashanim.trace import load_trace
from flashanim.trace.analysis import visit_rule
from flashanim.visuals.caption import source_lines
from flashanim.visuals.memory import other_gpu
from flashanim.visuals.schedule import (
    BlockColorBar,
    DurationPlot,
    ScheduleChart,
    schedule_stats,
)

ROOT = Path(__file__).resolve().parents[1]
#: Environment variables of the two traces, with their defaults.
TRACE_VARS = {
    "FLASHANIM_SCHEDULE_NONCAUSAL": "media/traces/gpu_schedule_noncausal.json.gz",
    "FLASHANIM_SCHEDULE_CAUSAL": "media/traces/gpu_schedule_causal.json.gz",
}


def schedule_paths(environ=None) -> dict[bool, Path]:
    """The trace files (``causal -> path``), checked to exist (a missing file is a
    :class:`ConfigError` naming the variable)."""
    found = data_files(TRACE_VARS, ROOT, environ)
    return {var.endswith("_CAUSAL"): path for var, path in found.items()}


def load_schedule(path: Path, causal: bool):
    """Load a GPU schedule trace and check that it is one (clock, SM, mask).

    Raises
    ------
    flashanim.trace.TraceFormatError
        For a malformed file (from :func:`~flashanim.trace.load_trace`).
    ConfigError
        For a trace without SM ids and clocks, or with the other mask.
    """
    trace = load_trace(path)
    if any(p.sm is None or p.start_ns is None or p.end_ns is None
           for p in trace.programs):  # fmt: skip
        raise ConfigError(
            f"{path}: programs without SM id or clock; record a schedule on a GPU "
            f"with bench/record_gpu_schedule.py"
        )
    if trace.meta.causal != causal:
        want = "causal" if causal else "non-causal"
        raise ConfigError(f"{path}: expected a {want} trace (meta.causal is "
                          f"{trace.meta.causal})")  # fmt: skip
    return trace


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


#: How many of the causal run's last programs to finish the imbalance names.
LATE = 10


def imbalance_caption(nc, ca) -> str:
    """Causal against non-causal, from the two traces: the share of S tiles, the
    share of the makespan, and the Q blocks of the :data:`LATE` programs that
    finished last (tests/test_claims.py)."""
    w_nc = sum(1 for e in nc.events if e.op == "qk")
    w_ca = sum(1 for e in ca.events if e.op == "qk")
    span = schedule_stats(ca.programs)["makespan_us"] / schedule_stats(
        nc.programs)["makespan_us"]  # fmt: skip
    late = sorted(ca.programs, key=lambda p: p.end_ns)[-LATE:]
    return (f"Causal: {w_ca / w_nc:.0%} of the tiles, {span:.0%} of the time; the "
            f"last {len(late)} to end have i ≥ {min(p.block for p in late)}")  # fmt: skip


class GpuScheduleScene(TraceScene):
    """Programs over SMs over time, non-causal then causal, then the imbalance."""

    kernel = None  # the two GPU traces come from files (see schedule_paths)
    caption_style = {"margin": 0.6}
    hold_seconds = 4.0  # each section's closing frame

    def setup(self) -> None:
        super().setup()  # theme (validated before rendering)
        self.paths = schedule_paths()
        self.traces = {c: load_schedule(p, c) for c, p in self.paths.items()}
        #: run name -> list of (Program, bar) drawn, for tests
        self.drawn: dict[str, list] = {}

    def stats_panel(self, name: str, trace, st: dict) -> VGroup:
        th = self.theme
        work = sum(1 for e in trace.events if e.op == "qk")
        lines = [
            (name, th.label_size, th.foreground),
            (f"{st['n']} programs on {st['sms']} SMs", None, th.foreground),
            (f"up to {st['lanes']} resident per SM", None, th.foreground),
            (f"waves (per lane): {st['waves']}", None, th.foreground),
            ("program time (µs):", None, th.muted),
            (f"  min {st['min_us']:.1f}  median {st['median_us']:.1f}", None,
             th.foreground),
            (f"  max {st['max_us']:.1f}", None, th.foreground),
            (f"makespan {st['makespan_us']:.1f} µs", None, th.highlight),
            (f"S tiles computed: {work:,}", None, th.foreground),
        ]  # fmt: skip
        g = VGroup(*(self.text(s, size, col) for s, size, col in lines))
        g.arrange(DOWN, aligned_edge=LEFT, buff=0.14)
        return g

    def source_info(self) -> VGroup:
        """What ran where (GPU, versions, shapes, the trace files): source lines
        at the footer size, wrapped, never scaled down (readable at 480p)."""
        th, nc = self.theme, self.traces[False]
        meta = nc.meta
        return source_lines(th, "\n".join((
            f"{meta.gpu_name or meta.device} · Triton {meta.triton_version} · "
            f"torch {meta.torch_version} · recorded {meta.created[:10]}"
            + other_gpu(self.gpu, meta.gpu_name or meta.device),
            f"{meta.kernel}: B = {meta.batch}, H = {meta.heads}, "
            f"N = {meta.seq_len_q}, d = {meta.head_dim}, {meta.dtype}, "
            f"BLOCK_M = {meta.block_m}, BLOCK_N = {meta.block_n} → "
            f"{len(nc.programs)} programs (T_r = {meta.t_r} Q blocks × "
            f"{meta.batch * meta.heads} heads)",
            "traces: " + ", ".join(_shown_path(p) for p in
                                   (self.paths[False], self.paths[True])),
        )), 13.8, align="left")  # fmt: skip

    def construct(self) -> None:
        th = self.theme
        nc, ca = self.traces[False], self.traces[True]
        meta = nc.meta
        t_max = max(schedule_stats(t.programs)["makespan_us"] for t in (nc, ca))
        n_sms = 1 + max(p.sm for t in (nc, ca) for p in t.programs)
        kw = dict(n_blocks=meta.t_r, n_sms=n_sms, t_max_us=t_max, width=8.3,
                  height=4.55, theme=th)  # fmt: skip
        charts = {"non-causal": ScheduleChart(nc.programs, **kw),
                  "causal": ScheduleChart(ca.programs, **kw)}  # fmt: skip
        self.charts = charts
        for c in charts.values():  # bars move with their axes
            c.shift(np.array([-2.2, -0.62, 0]) - c.axes.axes.get_center())
        # Setup: what ran where ------------------------------------------------------
        self.section("setup")
        self.add(self.captions.mob)
        info = self.info = self.source_info()  # tests read it
        info.to_corner(UP + LEFT, buff=0.2).shift(0.55 * DOWN)
        axes = charts["non-causal"].axes
        bar_key = BlockColorBar(meta.t_r, width=2.8, theme=th)
        bar_key.to_corner(DOWN + RIGHT, buff=0.35)
        self.play(FadeIn(info), FadeIn(axes), FadeIn(bar_key))
        self.caption(
            f"The real schedule on an {meta.gpu_name or meta.device}: one bar per "
            f"program (thread block), on the SM that ran it"
        )
        self.hold()

        # Non-causal: even waves ----------------------------------------------------
        stats_pos = np.array([2.75, 1.6, 0])
        shown = {}
        for name, trace in (("non-causal", nc), ("causal", ca)):
            self.section(name)
            chart = charts[name]
            st = schedule_stats(trace.programs)
            panel = self.stats_panel(name, trace, st)
            panel.move_to(stats_pos, aligned_edge=UP + LEFT)
            if shown:
                prev_chart, prev_panel = shown.pop("chart"), shown.pop("panel")
                self.play(FadeOut(prev_chart.bars), FadeOut(prev_panel))
            self.caption(
                f"{name}: {st['n']} programs, {st['lanes']} at a time per SM → "
                f"they run in waves (bars appear in start order)"
            )
            if chart.axes is not axes:  # the same axes, drawn once
                self.add(chart.axes)
                self.remove(axes)
                axes = chart.axes
            for k in range(len(chart.waves)):
                self.play(chart.make_wave_animation(k, run_time=3.0 if k < 2 else 2.0))
            self.drawn[name] = list(zip(chart.programs, chart.bars, strict=True))
            self.play(FadeIn(panel))
            shown.update(chart=chart, panel=panel)
            if name == "non-causal":
                self.caption(
                    f"Non-causal: every program visits {visit_rule(trace)}, "
                    f"~{st['median_us']:.0f} µs each: {st['waves']} even waves"
                )
            else:
                self.caption(
                    f"Causal: program i visits K/V blocks {visit_rule(trace)}; times "
                    f"{st['min_us']:.0f}–{st['max_us']:.0f} µs, the scheduler "
                    f"backfills short ones"
                )
            self.hold()

        # The imbalance ------------------------------------------------------------------
        self.section("imbalance")
        plot = DurationPlot(
            [("non-causal", nc.programs, th.muted), ("causal", ca.programs, None)],
            n_blocks=meta.t_r, width=8.3, height=4.55, theme=th,
        )  # fmt: skip
        plot.move_to(axes.get_center())
        self.play(FadeOut(shown["chart"].bars), FadeOut(shown["panel"]),
                  FadeOut(axes))  # fmt: skip
        self.play(FadeIn(plot.axes))
        self.play(LaggedStart(*(FadeIn(g) for g in plot.dots), lag_ratio=0.6,
                              run_time=2.0))  # fmt: skip
        s_nc, s_ca = schedule_stats(nc.programs), schedule_stats(ca.programs)
        w_nc = sum(1 for e in nc.events if e.op == "qk")
        w_ca = sum(1 for e in ca.events if e.op == "qk")
        key = VGroup(
            VGroup(Dot(radius=0.06, color=th.muted),
                   self.text("non-causal", size=th.small_size + 1)).arrange(RIGHT),
            VGroup(Dot(radius=0.06, color=th.color("Q")),
                   self.text("causal (by i)", size=th.small_size + 1)).arrange(RIGHT),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.12)  # fmt: skip
        summary = VGroup(
            key,
            self.text("causal vs non-causal:", color=th.muted),
            self.text(f"S tiles {w_ca:,} / {w_nc:,} = {w_ca / w_nc:.0%}"),
            self.text(
                f"makespan {s_ca['makespan_us']:.0f} / "
                f"{s_nc['makespan_us']:.0f} µs = "
                f"{s_ca['makespan_us'] / s_nc['makespan_us']:.0%}",
                color=th.highlight,
            ),  # fmt: skip
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.2)
        summary.move_to(stats_pos, aligned_edge=UP + LEFT)
        self.play(FadeIn(summary))
        self.caption(imbalance_caption(nc, ca))
        self.hold(1.5)
