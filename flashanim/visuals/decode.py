"""Split-K/V decoding (``"fa2-decode"``) drawn from a recorded trace with values.

:class:`DecodeLayout` lays out one query row against a K/V cache cut into slices:
the query ``q`` (``Q``'s colour), the cache's K and V blocks (``K``, ``V``), one
program box per slice (the ``split`` launch), one row per slice of the partial
results ``O_s`` and ``LSE_s`` (``O``'s and ``LSE``'s colours), the reduce's weight
bars ``w_s = exp(LSE_s - LSE)`` and the merged row ``O``. :class:`DecodePlayer`
plays the trace's events on it: every number it writes is an event's value
snapshot (``normalize O_s``, ``lse LSE_s``, ``merge O``, ``lse LSE``), every weight
bar is computed from the reduce's loaded ``LSE_s`` and its ``LSE``.

:func:`launch_stats` gives the per-launch numbers of a GPU trace (programs, SMs,
span), for the schedule part of the decoding scene; :func:`close_launch_gaps` takes
the idle time between launches (host time of a traced run) out of a schedule's
time axis.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    FadeIn,
    GrowFromEdge,
    Indicate,
    Rectangle,
    RoundedRectangle,
    VGroup,
    Wait,
)

from flashanim.engine.text import themed_text

from .eventplayer import EventPlayer
from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flashanim.trace import Program, Trace

__all__ = [
    "DecodeLayout",
    "DecodePlayer",
    "close_launch_gaps",
    "launch_stats",
    "split_groups",
]


def launch_stats(programs: Sequence[Program]) -> dict[str, dict[str, float]]:
    """Per launch (``"split"``, ``"reduce"``): ``n`` programs, ``sms`` used,
    ``span_us`` from its first start to its last end, ``start_us`` relative to the
    trace's first start. Programs need GPU clocks and SM ids."""
    bad = [p.program for p in programs if p.sm is None or p.start_ns is None]
    if bad:
        raise ValueError(
            f"{len(bad)} programs (first: {bad[0]}) have no SM id or clock: the "
            f"schedule needs a GPU trace (bench/record_decode_trace.py)"
        )
    t0 = min(p.start_ns for p in programs)
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(p.launch for p in programs):
        ps = [p for p in programs if p.launch == name]
        lo, hi = min(p.start_ns for p in ps), max(p.end_ns for p in ps)
        out[name] = {
            "n": len(ps),
            "sms": len({p.sm for p in ps}),
            "span_us": (hi - lo) / 1e3,
            "start_us": (lo - t0) / 1e3,
        }
    return out


def close_launch_gaps(
    programs: Sequence[Program],
) -> tuple[list[Program], dict[str, int]]:
    """The programs with the idle time between launches taken out of their clocks.

    A launch that starts after every program of the earlier launches has ended was
    waiting for the host (in a traced run: the trace buffers of the next launch);
    it and every later launch move back by that gap, so the time axis shows time
    on the GPU. Returns the shifted programs (in the same order) and, per launch,
    the nanoseconds it moved (``0`` where it overlapped or followed at once).
    """
    order = list(dict.fromkeys(p.launch for p in programs))
    shift: dict[str, int] = {}
    moved, end = 0, None
    for name in order:
        ps = [p for p in programs if p.launch == name]
        start = min(p.start_ns for p in ps)
        if end is not None and start - moved > end:
            moved += start - moved - end
        shift[name] = moved
        last = max(p.end_ns for p in ps) - moved
        end = last if end is None else max(end, last)
    out = [
        replace(p, start_ns=p.start_ns - shift[p.launch],
                end_ns=p.end_ns - shift[p.launch])
        for p in programs
    ]  # fmt: skip
    return out, shift


def split_groups(trace: Trace) -> list[list]:
    """The split launch's events, step by step across its programs (the programs
    run at the same time on the GPU): group ``k`` holds step ``k`` of every split
    program that has one, in program order."""
    progs = [p for p in trace.programs if p.launch == "split"]
    evs = {p.program: trace.of_program(p.program) for p in progs}
    steps = max((len(v) for v in evs.values()), default=0)
    return [[evs[p.program][k] for p in progs if k < len(evs[p.program])]
            for k in range(steps)]  # fmt: skip


def _fmt(x: float) -> str:
    return f"{x:+.2f}" if np.isfinite(x) else ("-∞" if x < 0 else "+∞")


class DecodeLayout(VGroup):
    """The static picture of one query row, its cache and the slices.

    Parameters
    ----------
    trace
        A ``"fa2-decode"`` trace of one query row per K/V head (``G * N_q = 1``,
        ``B * H_kv = 1``), with values.
    theme
        Colours and fonts.

    Attributes
    ----------
    q, k_blocks, v_blocks, boxes, os_rows, lse_texts, bars, o_row, lse_out
        The parts the player changes (``boxes[s]``: split ``s``'s program).
    slices
        ``slices[s]``: the K/V block indices of slice ``s`` (from the trace's loads).
    """

    def __init__(self, trace: Trace, *, theme: Theme = DARK, **kwargs) -> None:
        super().__init__(**kwargs)
        m = trace.meta
        if m.kernel != "fa2-decode" or m.rows_q != 1 or m.batch_heads != 1:
            raise ValueError(
                "DecodeLayout draws one query row against one K/V head "
                f"(fa2-decode, G*N_q = 1, B*H_kv = 1); got {m.kernel} with "
                f"{m.rows_q} packed rows and {m.batch_heads} batch-K/V-heads"
            )
        self.theme = th = theme
        self.trace = trace
        self.n_splits = s_n = m.num_splits or 1
        self.d = d = m.head_dim
        split_progs = [p for p in trace.programs if p.launch == "split"]
        self.prog_split = {p.program: p.block for p in split_progs}
        self.slices = [
            sorted({e.row for e in trace.of_program(p.program)
                    if e.op == "load" and e.tensor == "K"})
            for p in sorted(split_progs, key=lambda p: p.block)
        ]  # fmt: skip

        def txt(s, size=None, color=None):
            return themed_text(th, s, size or th.small_size, color)

        # the query row
        cell = 0.42
        self.q = VGroup(*(Rectangle(width=cell, height=cell, stroke_width=1.5)
                          .set_stroke(th.color("Q")).set_fill(th.color("Q"), 0.55)
                          for _ in range(d))).arrange(RIGHT, buff=0)  # fmt: skip
        q_label = txt(f"q: 1 row × d = {d}", th.body_size, th.ink("Q"))
        q_label.next_to(self.q, UP, buff=0.1).align_to(self.q, LEFT)
        self.q_group = VGroup(q_label, self.q)
        # the cache: T_c blocks of K and of V, grouped by slice
        t_c = m.t_c
        bw = min(0.62, 9.0 / t_c)
        gap = 0.14
        self.k_blocks, self.v_blocks = VGroup(), VGroup()
        for j in range(t_c):
            s = next(k for k, blocks in enumerate(self.slices) if j in blocks)
            x = j * bw + s * gap
            for group, name, y in ((self.k_blocks, "K", 0.0), (self.v_blocks, "V",
                                                               -0.5)):  # fmt: skip
                r = Rectangle(width=bw * 0.92, height=0.4, stroke_width=1.5)
                r.set_stroke(th.color(name)).set_fill(th.color(name), 0.12)
                r.move_to([x, y, 0])
                group.add(r)
        k_lab = txt("K", th.body_size, th.ink("K")).next_to(self.k_blocks, LEFT,
                                                               buff=0.15)  # fmt: skip
        v_lab = txt("V", th.body_size, th.ink("V")).next_to(self.v_blocks, LEFT,
                                                               buff=0.15)  # fmt: skip
        cache_title = txt(
            f"K/V cache: N_k = {m.seq_len_k} keys in T_c = {t_c} blocks of "
            f"{m.block_n}, cut into {s_n} slices",
            th.body_size,
        )
        cache_title.next_to(self.k_blocks, UP, buff=0.22).align_to(k_lab, LEFT)
        # one program box per slice, under its blocks
        self.boxes = VGroup()
        for s, blocks in enumerate(self.slices):
            span = VGroup(*(self.v_blocks[j] for j in blocks))
            box = RoundedRectangle(corner_radius=0.08, width=span.width + 0.04,
                                   height=0.42, stroke_width=1.5)  # fmt: skip
            box.set_stroke(th.panel_stroke).set_fill(th.panel_fill, 0)
            box.next_to(span, DOWN, buff=0.16)
            lab = txt(f"program {s}", th.small_size, th.muted).move_to(box)
            if lab.width > box.width - 0.06:
                lab = txt(f"p{s}", th.small_size, th.muted).move_to(box)
            lab.set_z_index(2)  # above its box, which the player re-adds
            self.boxes.add(VGroup(box, lab))
        self.cache_group = VGroup(cache_title, k_lab, v_lab, self.k_blocks,
                                  self.v_blocks, self.boxes)  # fmt: skip
        # partial results, one row per slice
        self.os_rows, self.lse_texts = VGroup(), VGroup()
        rows = VGroup()
        head = VGroup(txt("slice", th.small_size, th.muted),
                      txt("O_s (normalised, d values)", th.small_size,
                          th.ink("O")),
                      txt("LSE_s", th.small_size, th.ink("LSE")))  # fmt: skip
        for s in range(s_n):
            cells = VGroup(*(Rectangle(width=0.78, height=0.36, stroke_width=1.2)
                             .set_stroke(th.color("O")).set_fill(th.panel_fill, 0)
                             for _ in range(d))).arrange(RIGHT, buff=0)  # fmt: skip
            lse = Rectangle(width=0.92, height=0.36, stroke_width=1.2)
            lse.set_stroke(th.color("LSE")).set_fill(th.panel_fill, 0)
            row = VGroup(txt(f"s = {s}", th.small_size), cells, lse)
            row.arrange(RIGHT, buff=0.18)
            rows.add(row)
            self.os_rows.add(cells)
            self.lse_texts.add(lse)
        rows.arrange(DOWN, buff=0.1, aligned_edge=LEFT)
        head[0].next_to(rows[0][0], UP, buff=0.12).align_to(rows[0][0], LEFT)
        head[1].next_to(rows[0][1], UP, buff=0.12).align_to(rows[0][1], LEFT)
        head[2].next_to(rows[0][2], UP, buff=0.12).align_to(rows[0][2], LEFT)
        self.partials = VGroup(head, rows)
        self.rows = rows
        # the reduce: weight bars, merged row
        self.bar_area = VGroup()
        self.bars = VGroup()
        self.o_row = VGroup(*(Rectangle(width=0.78, height=0.38, stroke_width=1.5)
                              .set_stroke(th.color("O")).set_fill(th.panel_fill, 0)
                              for _ in range(d))).arrange(RIGHT, buff=0)  # fmt: skip
        self.o_label = txt("O = Σ_s w_s·O_s / Σ_s w_s", th.small_size, th.ink("O"))
        self.lse_out = Rectangle(width=1.5, height=0.38, stroke_width=1.5)
        self.lse_out.set_stroke(th.color("LSE")).set_fill(th.panel_fill, 0)
        self.add(self.q_group, self.cache_group, self.partials)
        self.arrange_parts()

    def arrange_parts(self) -> None:
        """Query top left, cache top right, partials below, reduce at the right."""
        self.q_group.to_corner(UP + LEFT, buff=0.5).shift(0.9 * DOWN)
        self.cache_group.next_to(self.q_group, RIGHT, buff=0.7).align_to(
            self.q_group, UP
        )
        self.partials.next_to(self.cache_group, DOWN, buff=0.45).align_to(
            self.q_group, LEFT
        )
        base = self.rows.get_corner(DOWN + RIGHT)
        self.bar_x0 = base[0] + 0.7
        self.o_label.next_to(self.rows, RIGHT, buff=3.4).align_to(self.partials, UP)
        self.o_row.next_to(self.o_label, DOWN, buff=0.12).align_to(self.o_label, LEFT)
        self.lse_out.next_to(self.o_row, DOWN, buff=0.3).align_to(self.o_row, LEFT)

    def cell_text(self, value: float, box, color=None):
        """``value`` (formatted) centred in ``box``."""
        t = themed_text(self.theme, _fmt(value), self.theme.small_size,
                        self.theme.ink(color or self.theme.foreground))  # fmt: skip
        if t.width > box.width - 0.06:
            t.scale_to_fit_width(box.width - 0.06)
        return t.move_to(box).set_z_index(2)


class DecodePlayer(EventPlayer):
    """Plays a ``"fa2-decode"`` trace with values on a :class:`DecodeLayout`.

    The split programs' steps are played together (:func:`split_groups`), as
    they run on the GPU; the reduce's events one by one.

    Attributes
    ----------
    os_values, lse_s_values
        What the ``normalize O_s`` and ``lse LSE_s`` events wrote, by slice.
    weights, lse, o
        The reduce's weights ``exp(LSE_s - LSE)`` (from its loaded ``LSE_s`` and
        its ``lse LSE`` event), its ``LSE`` and merged ``O``.
    """

    durations: ClassVar = {
        "load": 0.45, "store": 0.35, "qk": 0.12, "mask": 0.12, "rowmax": 0.1,
        "exp": 0.1, "alpha": 0.1, "rowsum": 0.1, "rescale": 0.1, "pv": 0.12,
        "normalize": 0.5, "lse": 0.6, "merge": 0.8,
    }  # fmt: skip

    def __init__(self, layout: DecodeLayout) -> None:
        super().__init__()
        self.lay = layout
        self.os_values: dict[int, np.ndarray] = {}
        self.lse_s_values: dict[int, float] = {}
        self.loaded_lse_s: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.lse: float | None = None
        self.o: np.ndarray | None = None

    def _split(self, e) -> int | None:
        return self.lay.prog_split.get(e.program)

    def event_animations(self, e):
        lay, th = self.lay, self.lay.theme
        s = self._split(e)
        if s is not None:  # a split program
            box = lay.boxes[s][0]
            if e.op == "load" and e.tensor == "Q":  # (q flashes once per group)
                return [box.animate.set_stroke(th.color("Q"))]
            if e.op == "load" and e.tensor in ("K", "V"):
                blocks = lay.k_blocks if e.tensor == "K" else lay.v_blocks
                return [blocks[e.row].animate.set_fill(th.color(e.tensor), 0.85)]
            if e.op == "normalize":
                vals = np.asarray(e.value, dtype=float)[0, : lay.d]
                self.os_values[s] = vals
                cells = lay.os_rows[s]
                return [FadeIn(lay.cell_text(v, c)) for v, c in
                        zip(vals, cells, strict=True)] + [
                    cells.animate.set_fill(th.color("O"), 0.25)]  # fmt: skip
            if e.op == "lse":
                v = float(np.asarray(e.value, dtype=float)[0, 0])
                self.lse_s_values[s] = v
                return [FadeIn(lay.cell_text(v, lay.lse_texts[s]))]
            if e.op == "store":
                target = lay.os_rows[s] if e.tensor == "O_s" else lay.lse_texts[s]
                return [Indicate(target, color=th.color("O" if e.tensor == "O_s"
                                                        else "LSE"),
                                 scale_factor=1.04),
                        box.animate.set_stroke(th.panel_stroke)]  # fmt: skip
            # the online softmax inside the slice: the program box works
            work = e.op in ("qk", "mask")
            return [box.animate.set_fill(th.color("S"), 0.35 if work else 0.1)]
        # the reduce (one program: the query row)
        if e.op == "load" and e.tensor == "LSE_s":
            self.loaded_lse_s = np.asarray(e.value, dtype=float)[: lay.n_splits, 0]
            return [Indicate(lay.lse_texts, color=th.color("LSE"), scale_factor=1.03)]
        if e.op == "load" and e.tensor == "O_s":
            return [Indicate(lay.os_rows, color=th.color("O"), scale_factor=1.03)]
        if e.op == "merge":
            self.o = np.asarray(e.value, dtype=float)[0, : lay.d]
            return [FadeIn(lay.o_label)] + [
                FadeIn(lay.cell_text(v, c)) for v, c in zip(self.o, lay.o_row,
                                                            strict=True)
            ] + [FadeIn(lay.o_row)]  # fmt: skip
        if e.op == "lse":
            self.lse = float(np.asarray(e.value, dtype=float).ravel()[0])
            return self._weight_bars()
        if e.op == "store":
            target = lay.o_row if e.tensor == "O" else lay.lse_out
            return [Indicate(target, color=th.highlight, scale_factor=1.05)]
        return [Wait()]

    def _weight_bars(self):
        """Bars of ``w_s = exp(LSE_s - LSE)`` beside the slices' rows."""
        lay, th = self.lay, self.lay.theme
        ls = self.loaded_lse_s
        if ls is None:
            raise ValueError("the reduce's lse event came before its load of LSE_s")
        w = np.exp(ls - self.lse)
        self.weights = w
        anims = []
        max_w = 2.0
        for s, (row, ws) in enumerate(zip(lay.rows, w, strict=True)):
            width = max(float(ws) * max_w, 0.02)
            bar = Rectangle(width=width, height=0.26, stroke_width=0)
            bar.set_fill(th.color("LSE"), 0.9)
            bar.move_to([lay.bar_x0 + width / 2, row.get_center()[1], 0])
            lab = themed_text(th, f"w_{s} = {ws:.3f}", th.small_size, th.foreground)
            lab.set_z_index(2)
            lab.next_to(bar, RIGHT, buff=0.08)
            lay.bars.add(VGroup(bar, lab))
            anims += [GrowFromEdge(bar, LEFT), FadeIn(lab)]
        head = themed_text(th, "w_s = exp(LSE_s − LSE)", th.small_size,
                           th.ink("LSE"))  # fmt: skip
        head.next_to(lay.rows[0], UP, buff=0.12).set_x(lay.bar_x0 + head.width / 2)
        lse_t = themed_text(th, f"LSE = {self.lse:.3f}", th.small_size,
                            th.ink("LSE")).move_to(lay.lse_out)  # fmt: skip
        lse_t.set_z_index(2)
        lay.bars.add(head)
        return [*anims, FadeIn(head), FadeIn(lay.lse_out), FadeIn(lse_t)]

    def group_animations(self, events):
        anims = [a for e in events for a in self.event_animations(e)]
        if any(e.op == "load" and e.tensor == "Q" for e in events):
            th = self.lay.theme
            anims.append(Indicate(self.lay.q, color=th.color("Q"), scale_factor=1.05))
        return anims


_ = (UP, DOWN)
