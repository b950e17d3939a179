"""Decoding: one new query against a long K/V cache, split into slices.

Render from the repository root: ``manim render -ql scenes/decoding.py``.

Two parts, each from a real run of ``kernels/decode.py``:

* the schedule, from the committed GPU traces (``bench/record_decode_trace.py``):
  without splits, one program per (batch, K/V head) walks the whole cache while
  the other SMs idle; with the split, one program per slice over all SMs, then the
  small reduce launch. Every bar is a program on the SM that ran it, every number
  formatted from the traces' clocks;
* the arithmetic, from a small run recorded in Triton's interpreter with values
  (one query row, ``N_k`` = :data:`CPU_RUN` keys): each slice's program writes its
  normalised partial ``O_s`` and its ``LSE_s``; the reduce weighs them by
  ``exp(LSE_s - LSE)``; the result is checked against naive attention
  (:func:`flashanim.trace.check.closing_check`).

Configuration (environment):

========================= ==================================================
FLASHANIM_DECODE_NOSPLIT  GPU trace without splits (default
                          ``media/traces/decode_nosplit.json.gz``)
FLASHANIM_DECODE_SPLIT    GPU trace with splits (default
                          ``media/traces/decode_split.json.gz``)
FLASHANIM_THEME           ``dark`` or ``light``
========================= ==================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from manim import *

from flashanim.config import ConfigError, data_files
from flashanim.scene import TraceScene
from flashanim.trace import load_trace
from flashanim.trace.check import closing_check, require_kernel
from flashanim.visuals.decode import (
    DecodeLayout,
    DecodePlayer,
    close_launch_gaps,
    launch_stats,
    split_groups,
)
from flashanim.visuals.schedule import ScheduleChart

ROOT = Path(__file__).resolve().parents[1]
#: Environment variables of the two GPU traces, with their defaults.
TRACE_VARS = {
    "FLASHANIM_DECODE_NOSPLIT": "media/traces/decode_nosplit.json.gz",
    "FLASHANIM_DECODE_SPLIT": "media/traces/decode_split.json.gz",
}
#: The small run recorded in Triton's interpreter (kwargs of ``record``).
CPU_RUN = dict(seq_len=1, seq_len_k=32, head_dim=4, block_n=4, heads=1,
               heads_kv=1, num_splits=4, values=True, seed=0)  # fmt: skip


def decode_paths(environ=None) -> dict[str, Path]:
    """``{"nosplit": path, "split": path}``, checked to exist (a missing file is a
    :class:`ConfigError` naming the variable)."""
    found = data_files(TRACE_VARS, ROOT, environ)
    return {var.rsplit("_", 1)[1].lower(): path for var, path in found.items()}


def load_decode(path: Path, split: bool):
    """A GPU ``fa2-decode`` trace, with clocks, split (``num_splits > 1``) or not.

    Raises
    ------
    ConfigError
        For a trace of another kernel, without SM ids and clocks, or with the
        wrong number of splits (:class:`flashanim.trace.TraceFormatError` for a
        malformed file).
    """
    trace = require_kernel(load_trace(path), "DecodingScene", "fa2-decode")
    if any(p.sm is None or p.start_ns is None or p.end_ns is None
           for p in trace.programs):  # fmt: skip
        raise ConfigError(
            f"{path}: programs without SM id or clock; record the decoding traces "
            f"on a GPU with bench/record_decode_trace.py"
        )
    if (trace.meta.num_splits > 1) != split:
        want = "more than one split" if split else "one split (num_splits=1)"
        raise ConfigError(f"{path}: expected a trace with {want}; it has "
                          f"num_splits = {trace.meta.num_splits}")  # fmt: skip
    return trace


def naive_attention(trace) -> tuple[np.ndarray, np.ndarray]:
    """``O`` and ``LSE`` of the run in float64, the textbook way (K/V heads
    repeated for the query heads they serve)."""
    m = trace.meta
    q, k, v = (trace.tensors[n].astype(np.float64) for n in ("Q", "K", "V"))
    k, v = (np.repeat(x, m.group, axis=1) for x in (k, v))
    s = np.einsum("bhqd,bhkd->bhqk", q, k) * m.softmax_scale
    mx = s.max(axis=-1, keepdims=True)
    p = np.exp(s - mx)
    lse = (mx + np.log(p.sum(axis=-1, keepdims=True)))[..., 0]
    return np.einsum("bhqk,bhkd->bhqd", p / p.sum(-1, keepdims=True), v), lse


class DecodingScene(TraceScene):
    """Why decoding splits the cache, and how the slices are merged."""

    kernel = None  # GPU traces from files (decode_paths), a small CPU run
    caption_style = {"margin": 0.6}
    hold_seconds = 3.0

    def setup(self) -> None:
        super().setup()
        self.paths = decode_paths()
        self.gpu_traces = {name: load_decode(p, name == "split")
                           for name, p in self.paths.items()}  # fmt: skip
        import flashanim.kernels  # noqa: F401  (chooses the device before Triton)

        from flashanim.trace import record

        self.trace = record("fa2-decode", **CPU_RUN)
        #: chart name -> list of (Program, bar) drawn, for tests
        self.drawn: dict[str, list] = {}

    @staticmethod
    def _gap_line(gap_ns: int) -> str:
        """What the chart did with the reduce's wait for the host."""
        if gap_ns <= 0:
            return "  right after the split launch"
        return f"  after a {gap_ns / 1e3:,.0f} µs host gap (cut)"

    def panel(self, lines) -> VGroup:
        g = VGroup(*(self.text(s, size, col) for s, size, col in lines))
        return g.arrange(DOWN, aligned_edge=LEFT, buff=0.14)

    def construct(self) -> None:
        th = self.theme
        ns, sp = self.gpu_traces["nosplit"], self.gpu_traces["split"]
        m = sp.meta
        st_ns, st_sp = launch_stats(ns.programs), launch_stats(sp.programs)
        n_sms = 1 + max(p.sm for t in (ns, sp) for p in t.programs)
        gpu = m.gpu_name or m.device

        # One query row against a long cache ------------------------------------------
        self.section("one query")
        self.add(self.captions.mob)
        info = VGroup(
            self.text(f"{gpu} · Triton {m.triton_version} · torch "
                      f"{m.torch_version} · recorded {m.created[:10]}",
                      size=th.small_size + 1, color=th.muted),
            self.text(f"{m.kernel}: B = {m.batch}, {m.heads} query heads sharing "
                      f"{m.heads_kv} K/V heads, N_q = {m.seq_len_q}, N_k = "
                      f"{m.seq_len_k:,}, d = {m.head_dim}, {m.dtype}",
                      size=th.small_size + 1, color=th.muted),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.08)  # fmt: skip
        info.to_corner(UP + LEFT, buff=0.2).shift(0.5 * DOWN)
        kv_mb = 2 * m.batch * m.heads_kv * m.seq_len_k * m.head_dim * m.elem_bytes
        facts = self.panel([
            ("Decoding: one new token", th.title_size, th.foreground),
            (f"{m.heads} query rows of one token (G = {m.group} per K/V head, "
             f"packed into one block of {m.rows_q} rows)", th.body_size,
             th.color("Q")),
            (f"against a cache of {m.seq_len_k:,} keys: K and V are "
             f"{kv_mb / 1e6:.0f} MB to read", th.body_size, th.color("K")),
            ("one pass over the cache, almost no arithmetic per byte",
             th.body_size, th.muted),
        ])  # fmt: skip
        facts.move_to([0, 0.4, 0])
        self.play(FadeIn(info), FadeIn(facts))
        self.caption(
            f"One new query row per head against {m.seq_len_k:,} cached keys: "
            f"the work is reading {kv_mb / 1e6:.0f} MB of K and V"
        )
        self.hold()

        # Without splits: the real schedule ------------------------------------------------
        self.section("no split")
        # the host's time between launches (trace buffers) is not GPU work: cut it
        shifted = {"nosplit": close_launch_gaps(ns.programs),
                   "split": close_launch_gaps(sp.programs)}  # fmt: skip
        self.gaps = {k: v[1] for k, v in shifted.items()}
        t_max = max(max(p.end_ns for p in ps) - min(p.start_ns for p in ps)
                    for ps, _ in shifted.values()) / 1e3  # fmt: skip
        cut = any(any(g.values()) for g in self.gaps.values())
        x_label = ("time on the GPU (µs), idle gaps between launches cut" if cut
                   else "time since the first program started (µs)")  # fmt: skip
        kw = dict(n_blocks=max(m.num_splits, 2), n_sms=n_sms, t_max_us=t_max,
                  width=8.3, height=4.4, theme=th, x_label=x_label)  # fmt: skip
        charts = {k: ScheduleChart(v[0], **kw) for k, v in shifted.items()}
        for c in charts.values():
            c.shift(np.array([-2.2, -0.75, 0]) - c.axes.axes.get_center())
            for p, bar in zip(c.programs, c.bars, strict=True):
                if p.launch == "reduce":
                    bar.set_fill(th.color("O"), 1)
        self.charts = charts
        a = st_ns["split"]
        self.play(FadeOut(facts), FadeIn(charts["nosplit"].axes))
        self.play(LaggedStart(*(GrowFromEdge(b, LEFT) for b in charts["nosplit"].bars),
                              lag_ratio=0.02, run_time=2.5))  # fmt: skip
        self.drawn["nosplit"] = list(zip(charts["nosplit"].programs,
                                         charts["nosplit"].bars, strict=True))  # fmt: skip
        r = st_ns["reduce"]
        stats_pos = np.array([2.55, 2.0, 0])
        p_ns = self.panel([
            ("without splits", th.label_size, th.foreground),
            (f"{a['n']:.0f} programs on {a['sms']:.0f} of {n_sms} SMs", None,
             th.foreground),
            (f"each walks all {m.seq_len_k:,} keys", None, th.foreground),
            (f"main launch: {a['span_us']:.0f} µs", None, th.highlight),
            (f"reduce: {r['n']:.0f} programs, {r['span_us']:.1f} µs", None,
             th.color("O")),
            (f"{n_sms - a['sms']:.0f} SMs idle", None, th.muted),
        ])  # fmt: skip
        p_ns.move_to(stats_pos, aligned_edge=UP + LEFT)
        self.play(FadeIn(p_ns))
        self.caption(
            f"One program per (batch, K/V head): {a['n']:.0f} programs on "
            f"{a['sms']:.0f} of {n_sms} SMs for {a['span_us']:.0f} µs"
        )
        self.hold()

        # The split ------------------------------------------------------------------------
        self.section("split")
        b, r2 = st_sp["split"], st_sp["reduce"]
        self.play(charts["nosplit"].bars.animate.set_opacity(0.25), FadeOut(p_ns))
        self.play(LaggedStart(*(GrowFromEdge(x, LEFT) for x in charts["split"].bars),
                              lag_ratio=0.004, run_time=2.5))  # fmt: skip
        self.drawn["split"] = list(zip(charts["split"].programs,
                                       charts["split"].bars, strict=True))  # fmt: skip
        p_sp = self.panel([
            (f"{m.num_splits} slices per K/V head", th.label_size, th.foreground),
            (f"split: {b['n']:.0f} programs on {b['sms']:.0f} SMs", None,
             th.foreground),
            (f"  {m.seq_len_k // m.num_splits:,} keys each, {b['span_us']:.1f} µs",
             None, th.highlight),
            (f"reduce: {r2['n']:.0f} programs, {r2['span_us']:.1f} µs", None,
             th.color("O")),
            (self._gap_line(self.gaps["split"]["reduce"]), None, th.muted),
            (f"vs {a['span_us']:.0f} µs without splits (faded)", None, th.muted),
        ])  # fmt: skip
        key = self.panel([
            (f"colour: slice s, pale 0 … deep {m.num_splits - 1}", None,
             th.color("Q")),
            ("pink bars: the reduce's programs", None, th.color("O")),
        ])  # fmt: skip
        p_sp.add(key)
        p_sp.arrange(DOWN, aligned_edge=LEFT, buff=0.14)
        p_sp.move_to(stats_pos, aligned_edge=UP + LEFT)
        self.play(FadeIn(p_sp))
        self.caption(
            f"Split the cache: {b['n']:.0f} programs on {b['sms']:.0f} SMs read it "
            f"in {b['span_us']:.1f} µs, then a {r2['span_us']:.1f} µs reduce"
        )
        self.hold()

        # The partial results (CPU run with values) ----------------------------------------
        self.section("partials")
        tr = self.trace
        cm = tr.meta
        self.play(FadeOut(charts["nosplit"]), FadeOut(charts["split"]),
                  FadeOut(p_sp), FadeOut(info))  # fmt: skip
        lay = DecodeLayout(tr, theme=th)
        self.layout = lay
        run = self.text(
            f"the same kernel in Triton's interpreter, with values: N_q = "
            f"{cm.seq_len_q}, N_k = {cm.seq_len_k}, d = {cm.head_dim}, "
            f"{cm.dtype}, {cm.num_splits} slices",
            size=th.small_size + 1,
            color=th.muted,
        )
        run.to_corner(UP + LEFT, buff=0.2).shift(0.5 * DOWN)
        self.play(FadeIn(run), FadeIn(lay))
        self.player = DecodePlayer(lay)
        self.caption(
            f"Each of the {cm.num_splits} programs runs the online softmax over "
            f"its {len(lay.slices[0])} K/V blocks only"
        )
        self.player.play_groups(self, split_groups(tr), run_time=0.35)
        self.caption(
            "Each slice writes its normalised O_s and LSE_s = log Σ exp(scores) "
            "of its keys"
        )
        self.hold(0.7)

        # The reduce -----------------------------------------------------------------------
        self.section("reduce")
        reduce_events = [e for e in tr.events
                         if tr.programs[e.program].launch == "reduce"]  # fmt: skip
        self.player.play(self, reduce_events)
        w = self.player.weights
        top = int(np.argmax(w))
        self.caption(
            f"The reduce weighs slice s by exp(LSE_s − LSE): here slice {top} "
            f"weighs {w[top] / w.sum():.0%} (Σ w_s = {w.sum():.3f})"
        )
        self.hold()

        # Check --------------------------------------------------------------------------
        self.section("check")
        ref_o, ref_lse = naive_attention(tr)
        verdict = closing_check(
            "O", [(tr.tensors["O"], ref_o), (tr.tensors["LSE"], ref_lse)],
            cm.dtype, scene="DecodingScene",
        )  # fmt: skip
        self.verdict = verdict
        ref_cells = lay.o_row.copy().set_stroke(th.muted)
        ref_label = self.text("naive softmax(q·Kᵀ·scale)·V in float64:",
                              th.small_size, th.muted)  # fmt: skip
        ref_label.next_to(lay.lse_out, DOWN, buff=0.35).align_to(lay.o_row, LEFT)
        ref_cells.next_to(ref_label, DOWN, buff=0.12).align_to(lay.o_row, LEFT)
        ref_lse_t = self.text(f"LSE = {ref_lse[0, 0, 0]:.3f}", th.small_size,
                              th.muted)  # fmt: skip
        ref_lse_t.next_to(ref_cells, DOWN, buff=0.12).align_to(lay.o_row, LEFT)
        ref_row = VGroup(ref_cells, ref_lse_t, *(
            lay.cell_text(v, c) for v, c in zip(ref_o[0, 0, 0], ref_cells,
                                                strict=True)))  # fmt: skip
        self.play(FadeIn(ref_label), FadeIn(ref_row))
        self.caption(verdict.headline())
        self.hold(1.5)
