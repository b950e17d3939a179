"""IO complexity, measured: HBM traffic from kernel traces, then GPU speed and memory.

Render from the repository root: ``manim render -ql scenes/io_complexity.py``.

1. **HBM traffic against N** -- recorded in this run: the standard (three-kernel)
   attention and the FlashAttention-2 forward kernel are run with their traces on
   (events only) at every N of ``FLASHANIM_IO_NS`` (default 64..1024, d = 64,
   fp16, 64-row blocks) and the bytes of their load and store events summed
   (:func:`flashanim.trace.hbm_traffic`). Beside them, the paper's Θ(Nd + N²) and
   Θ(N²d²/M) (:func:`flashanim.trace.io_complexity`), each multiplied by one
   constant so that it meets the measured point at the largest N (Θ drops
   constants); M = 4·d·BLOCK_N elements, the paper's block rule B_c = M / 4d.
2. **Runtime and peak memory on a GPU** -- read from the benchmark JSON that
   ``bench/bench_attention.py`` writes (``FLASHANIM_BENCH``: a file or a folder;
   default the newest ``media/bench/bench_*.json``). Without one the scene stops
   with a message saying how to make it: it never shows numbers nobody measured.

``FLASHANIM_THEME`` picks the look.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from manim import *

from flashanim.config import ConfigError, record_trace
from flashanim.scene import TraceScene
from flashanim.trace import hbm_traffic, io_complexity
from flashanim.visuals import Caption, source_lines
from flashanim.visuals.charts import (
    ChartLegend,
    LineChart,
    decades,
    format_count,
    format_si,
    series_colors,
)
from flashanim.visuals.memory import other_gpu

CAPTION_Y, SOURCE_Y, TITLE_Y = -3.0, -3.72, 3.55
MAX_W = 13.4

#: Traffic runs: head dimension, block size, dtype (bytes per element).
HEAD_DIM, BLOCK, DTYPE, ELEM_BYTES = 64, 64, "float16", 2
DEFAULT_NS = (64, 128, 256, 512, 1024)
BENCH_DIR = Path("media/bench")
#: Which slice of the benchmark grid the runtime chart shows, in order of preference.
PREFERRED_SLICE = {"dtype": "fp16", "d": 64, "causal": False, "mode": "fwd"}
IMPL_NAMES = {
    "ours": "flashanim FA2 (Triton)",
    "math": "naive (PyTorch MATH)",
    "flash": "PyTorch FlashAttention-2",
}


# ---------------------------------------------------------------------- data


def sequence_lengths(environ=None) -> tuple[int, ...]:
    """The N of the traffic runs: ``FLASHANIM_IO_NS`` (comma-separated) or the
    default."""
    env = os.environ if environ is None else environ
    raw = env.get("FLASHANIM_IO_NS", "").strip()
    if not raw:
        return DEFAULT_NS
    try:
        ns = tuple(sorted({int(x) for x in raw.split(",") if x.strip()}))
    except ValueError:
        raise ConfigError(
            f"FLASHANIM_IO_NS={raw!r}: comma-separated integers"
        ) from None
    if len(ns) < 2 or ns[0] < 16 or ns[-1] > 4096:
        raise ConfigError(
            f"FLASHANIM_IO_NS={raw!r}: at least two lengths between 16 and 4096"
        )
    return ns


def record_traffic(ns) -> tuple[dict, dict]:
    """Record standard and FA2-forward traces at each N; return their traffic.

    Returns
    -------
    measured
        ``{"standard" | "flash": [(N, bytes), ...]}``: the sum of
        :func:`hbm_traffic` of each trace.
    traces
        ``{(kind, N): Trace}``, the traces themselves.
    """
    measured: dict[str, list[tuple[int, int]]] = {"standard": [], "flash": []}
    traces = {}
    for n in ns:
        for kind, kernel in (("standard", "standard"), ("flash", "fa2-fwd")):
            t0 = time.perf_counter()
            tr = record_trace(
                kernel,
                seq_len=n,
                head_dim=HEAD_DIM,
                block_m=BLOCK,
                block_n=BLOCK,
                dtype=DTYPE,
                values=False,
                seed=0,
            )
            logger.info(
                f"recorded {kernel} N={n}: {len(tr.events)} events in "
                f"{time.perf_counter() - t0:.1f} s"
            )
            traces[(kind, n)] = tr
            measured[kind].append((n, sum(hbm_traffic(tr).values())))
    return measured, traces


#: On-chip memory M of the traffic runs, in bytes: M = 4·d·BLOCK_N elements (the
#: paper's block rule B_c = M / 4d).
SRAM_BYTES = 4 * HEAD_DIM * BLOCK * ELEM_BYTES


def in_theorem_range(n: int) -> bool:
    """Theorem 2's range d ≤ M ≤ N·d (M in elements) holds at ``n``."""
    m = SRAM_BYTES // ELEM_BYTES
    return HEAD_DIM <= m <= n * HEAD_DIM


def traffic_floor(n: int) -> int:
    """Bytes no attention kernel can avoid: read Q, K, V once, write O once."""
    return 4 * n * HEAD_DIM * ELEM_BYTES


def theory_curves(measured: dict, ns) -> tuple[dict, dict]:
    """The paper's bounds, scaled to meet the measured point at the largest N.

    The standard count Θ(Nd + N²) is drawn at every N. FlashAttention's
    Θ(N²d²/M) is drawn only where Theorem 2 holds (M ≤ N·d), as
    ``floor + c·N²d²/M`` (the floor, :func:`traffic_floor`, is Θ(Nd) ≤ Θ(N²d²/M)
    there, so the order is the paper's) with ``c`` fitted at the largest such N:
    it never falls below the unavoidable Q, K, V, O traffic. Returns
    ``({kind: [(N, bytes)]}, {kind: constant})``; no N in range: an empty flash
    curve.
    """
    curves, consts = {}, {}
    std = [io_complexity(n, HEAD_DIM, SRAM_BYTES, ELEM_BYTES).standard for n in ns]
    c = measured["standard"][-1][1] / std[-1]
    consts["standard"] = c
    curves["standard"] = [(n, c * v) for n, v in zip(ns, std, strict=True)]
    meas = dict(measured["flash"])
    ok = [n for n in ns if in_theorem_range(n)]
    curves["flash"], consts["flash"] = [], None
    if ok:
        fl = {n: io_complexity(n, HEAD_DIM, SRAM_BYTES, ELEM_BYTES).flash for n in ok}
        top = ok[-1]
        c = (meas[top] - traffic_floor(top)) / fl[top]
        consts["flash"] = c
        curves["flash"] = [(n, traffic_floor(n) + c * fl[n]) for n in ok]
    return curves, consts


def batch_note(data: dict, sl: dict) -> str:
    """How the batch B of the benchmark slice changes with N, from its rows."""
    rows = [r for r in data["grid"] if all(r.get(k) == sl[k] for k in
                                           ("dtype", "d", "causal", "mode"))]  # fmt: skip
    bn = {r["n"] * r.get("b", 1) for r in rows}
    bs = {r.get("b", 1) for r in rows}
    if len(bs) == 1:
        return f"B = {bs.pop()}"
    if len(bn) == 1:
        return f"B = {format_count(bn.pop())}/N"
    return "B changes with N"


def find_bench(environ=None) -> Path:
    """The benchmark JSON: ``FLASHANIM_BENCH`` (file or folder) or the newest
    ``media/bench/bench_*.json``.

    Raises
    ------
    FileNotFoundError
        With what to run to make one.
    """
    env = os.environ if environ is None else environ
    where = env.get("FLASHANIM_BENCH", "").strip()
    base = Path(where) if where else BENCH_DIR
    if base.is_file():
        return base
    found = sorted(base.glob("bench_*.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no GPU benchmark results (bench_*.json) in {base}/: run "
            "`make bench` (python bench/bench_attention.py --out media/bench) on a "
            "CUDA GPU and commit the JSON, or point FLASHANIM_BENCH at one. The "
            "scene shows measured numbers only."
        )
    return found[-1]


def load_bench(path: Path) -> dict:
    """Read and check a ``bench_attention.py`` JSON (device, grid, memory)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable benchmark JSON ({exc})") from None
    dev = data.get("device")
    if not isinstance(dev, dict) or not dev.get("gpu") or not dev.get("date"):
        raise ValueError(f"{path}: 'device' must give at least 'gpu' and 'date'")
    grid, memory = data.get("grid"), data.get("memory")
    if not isinstance(grid, list) or not isinstance(memory, list):
        raise ValueError(f"{path}: needs a 'grid' list and a 'memory' list")
    need = {"dtype", "d", "causal", "n", "impl", "mode", "ms"}
    for r in grid:
        if not need <= set(r):
            raise ValueError(f"{path}: grid row {r} lacks {sorted(need - set(r))}")
    for r in memory:
        if "n" not in r or "ours_mib" not in r or "math_mib" not in r:
            raise ValueError(f"{path}: memory row {r} needs n, ours_mib, math_mib")
    return data


def runtime_series(data: dict) -> tuple[dict, dict]:
    """``({impl: [(N, ms)]}, slice)`` of one slice of the grid (preferred first)."""
    grid = [r for r in data["grid"] if r.get("ms")]
    keys = sorted({(r["dtype"], r["d"], r["causal"], r["mode"]) for r in grid}, key=str)
    pref = tuple(PREFERRED_SLICE[k] for k in ("dtype", "d", "causal", "mode"))
    if not keys:
        raise ValueError("benchmark JSON: no grid row has a time")
    key = pref if pref in keys else keys[0]
    sl = dict(zip(("dtype", "d", "causal", "mode"), key, strict=True))
    out: dict[str, list[tuple[int, float]]] = {}
    for impl in ("math", "flash", "ours"):
        pts = sorted(
            (r["n"], float(r["ms"]))
            for r in grid
            if r["impl"] == impl and (r["dtype"], r["d"], r["causal"], r["mode"]) == key
        )
        if pts:
            out[impl] = pts
    for r in grid:
        if (r["dtype"], r["d"], r["causal"], r["mode"]) == key:
            sl.setdefault("b_times_n", r["n"] * r.get("b", 1))
            sl.setdefault("h", r.get("h"))
    return out, sl


def _bytes(v: float) -> str:
    return format_si(v, "B")


def _source_place(t) -> None:
    """The source line sits on the frame's bottom edge."""
    t.move_to([0, SOURCE_Y, 0]).align_to([0, -3.95, 0], DOWN)


# ---------------------------------------------------------------------- scene


class IOComplexityScene(TraceScene):
    """HBM traffic from the kernels' traces, then measured GPU runtime and memory."""

    kernel = None  # a sweep of traces at fixed sizes (record_traffic)
    caption_style = {"y": CAPTION_Y, "width": MAX_W, "fade_through": False,
                     "blank": False}  # fmt: skip
    hold_seconds = 1.5  # each section's closing frame
    text_width = MAX_W

    def setup(self) -> None:
        super().setup()
        self.ns = sequence_lengths()
        # The benchmark first: a missing JSON stops the scene before the recording.
        self.bench_path = find_bench()
        self.bench = load_bench(self.bench_path)
        t0 = time.perf_counter()
        self.measured, self.traces = record_traffic(self.ns)
        self.record_seconds = time.perf_counter() - t0
        logger.info(
            f"recorded {len(self.traces)} traces in {self.record_seconds:.1f} s"
        )
        th = self.theme
        line = dict(width=MAX_W, fade_through=False, blank=False, run_time=1.0,
                    speaks=False)  # fmt: skip
        # sources: wrapped at the footer size, never scaled down (readable at 480p)
        self.sources = Caption(
            th,
            place=_source_place,
            **line,
            make_text=lambda s: source_lines(th, s, MAX_W),
        )
        #: every source footer shown (tests hold them to the footer size)
        self.footers: list = []
        self.titles = Caption(th, y=TITLE_Y, size=th.title_size, **line)
        self.charts: dict[str, LineChart] = {}

    # ------------------------------------------------------------------ helpers
    def source(self, s: str) -> Animation:
        anim = self.sources.make_animation(s)
        self.footers.append(self.sources.mob)
        return anim

    def title(self, s: str) -> Animation:
        return self.titles.make_animation(s)

    def log_chart(self, xs, ys, x_label, y_label, y_format, x_pad=1.25) -> LineChart:
        lo, hi = min(ys), max(ys)
        y_ticks = decades(lo, hi)
        return LineChart(
            (min(xs) / x_pad, max(xs) * x_pad),
            (y_ticks[0], y_ticks[-1]),
            x_ticks=sorted(set(xs)),
            y_ticks=y_ticks,
            x_log=True,
            y_log=True,
            x_label=x_label,
            y_label=y_label,
            x_format=format_count,
            y_format=y_format,
            width=7.2,
            height=4.4,
            theme=self.theme,
        ).move_to([-2.0, 0.25, 0])

    # ------------------------------------------------------------------ construct
    def construct(self) -> None:
        self.traffic_section()
        self.runtime_section()
        self.memory_section()

    def traffic_section(self) -> None:
        th, ns, meas = self.theme, self.ns, self.measured
        self.section("traffic")
        curves, consts = theory_curves(meas, ns)
        self.theory, self.theory_constants = curves, consts
        floor = [(n, traffic_floor(n)) for n in ns]
        ys = [b for pts in (*meas.values(), *curves.values(), floor) for _, b in pts]
        ch = self.log_chart(
            list(ns),
            ys,
            "sequence length N (d = 64, fp16)",
            "HBM traffic (bytes read + written)",
            _bytes,
        )
        self.charts["traffic"] = ch
        self.play(
            self.title("HBM traffic, measured from the kernels' traces"),
            self.source(
                f"Measured: hbm_traffic() of this run's traces (Triton CPU "
                f"interpreter), kernels/standard.py and kernels/fa2.py, BLOCK = "
                f"{BLOCK}\nDashed: the paper's Θ bounds × one constant fitted at "
                f"the largest N (flash: 4Nd + c·N²d²/M, where M ≤ Nd; "
                f"M = 4·d·BLOCK_N)"
            ),
            FadeIn(ch),
        )
        sc = series_colors(th)
        legend = (
            ChartLegend(
                [
                    ("standard (measured)", sc["standard"], False),
                    ("paper: Θ(Nd + N²)", sc["standard"], True),
                    ("FlashAttention-2\n(measured)", sc["flash"], False),
                    ("paper: Θ(N²d²/M),\nwhere M ≤ Nd", sc["flash"], True),
                    ("Q, K, V read + O\nwritten once: 4Nd", sc["floor"], True),
                ],
                theme=th,
            )
            .next_to(ch.axes, RIGHT, buff=0.45)
            .align_to(ch.axes, UP)
        )
        self.play(FadeIn(legend))
        ch.add_series("floor", *zip(*floor, strict=True), color=sc["floor"],
                      dashed=True, dots=False, stroke_width=2)  # fmt: skip
        self.play(ch.make_series_animation("floor", run_time=1.0))
        for kind in ("standard", "flash"):
            xs, ys_ = zip(*meas[kind], strict=True)
            ch.add_series(kind, xs, ys_)
            self.play(ch.make_series_animation(kind))
            if not curves[kind]:
                continue
            txs, tys = zip(*curves[kind], strict=True)
            ch.add_series(
                f"{kind}-theory",
                txs,
                tys,
                color=sc[kind],
                dashed=True,
                dots=len(txs) == 1,
                stroke_width=3,
            )
            self.play(ch.make_series_animation(f"{kind}-theory", run_time=1.0))
            n, b = meas[kind][-1]
            lab = self.text(format_si(b, "B"), th.small_size + 1, sc[kind])
            # standard above-left of its last point, flash straight below its own
            # (down-left, it sat on the dashed Θ curve that runs into the point)
            lab.next_to(
                ch.c2p(n, b),
                UP + LEFT if kind == "standard" else DOWN,
                buff=0.12 if kind == "standard" else 0.3,
            )
            self.play(FadeIn(lab))
        out = [n for n in ns if not in_theorem_range(n)]
        if out:
            m = SRAM_BYTES // ELEM_BYTES
            note = VGroup(
                self.text(f"N = {', '.join(format_count(n) for n in out)}: outside "
                          "Theorem 2", th.body_size, th.muted),
                self.text(f"(M = {format_count(m)} > N·d), no Θ curve there",
                          th.body_size, th.muted),
            ).arrange(DOWN, aligned_edge=LEFT, buff=0.08)  # fmt: skip
            # under the legend, clear of the axis label and the caption
            note.next_to(legend, DOWN, buff=0.35).align_to(legend, LEFT)
            self.play(FadeIn(note))
        ratio = meas["standard"][-1][1] / meas["flash"][-1][1]
        self.caption(
            f"At N = {format_count(ns[-1])}, standard attention moves "
            f"{ratio:.1f}× the bytes: S and P go to HBM and back"
        )
        self.hold()

    def wipe(self) -> None:
        """Fade out the last section's chart (after its closing frame, so that
        the frame stands alone as a slide)."""
        self.play(*(FadeOut(m) for m in self.mobjects))
        self.captions.mob = self.sources.mob = self.titles.mob = None

    def bench_source(self) -> str:
        dev = self.bench["device"]
        extra = ", ".join(
            f"{k} {dev[k]}" for k in ("driver", "torch", "triton") if dev.get(k)
        )
        return (
            f"Measured on {dev['gpu']}, {str(dev['date'])[:10]} "
            f"({extra}) · {self.bench_path.as_posix()} · "
            f"bench/bench_attention.py"
        )

    def runtime_section(self) -> None:
        th = self.theme
        self.section("runtime")
        self.wipe()
        series, sl = runtime_series(self.bench)
        xs = [n for pts in series.values() for n, _ in pts]
        ys = [ms for pts in series.values() for _, ms in pts]
        mode = "forward" if sl["mode"] == "fwd" else "backward"
        ch = self.log_chart(
            xs,
            ys,
            f"sequence length N ({sl['dtype']}, d = "
            f"{sl['d']}, {'causal' if sl['causal'] else 'non-causal'}"
            f", {mode}; {batch_note(self.bench, sl)})",
            "runtime (ms, median of do_bench)",
            lambda v: f"{v:g} ms",
        )
        self.charts["runtime"] = ch
        dev = self.bench["device"]
        self.play(
            self.title(f"Runtime on {dev['gpu']}" + other_gpu(self.gpu, dev["gpu"])),
            self.source(self.bench_source()),
            FadeIn(ch),
        )
        colors = {
            "ours": series_colors(th)["ours"],
            "math": series_colors(th)["math"],
            "flash": series_colors(th)["pytorch-flash"],  # FA2 too: dashed
        }
        legend = ChartLegend(
            [(IMPL_NAMES[k], colors[k], k == "flash") for k in series], theme=th
        )
        legend.next_to(ch.axes, RIGHT, buff=0.45).align_to(ch.axes, UP)
        self.play(FadeIn(legend))
        for impl, pts in series.items():
            ch.add_series(impl, *zip(*pts, strict=True), color=colors[impl],
                          dashed=impl == "flash")  # fmt: skip
            self.play(ch.make_series_animation(impl))
        both = sorted(
            set(dict(series.get("ours", []))) & set(dict(series.get("math", [])))
        )
        if both:
            n = both[-1]
            x = dict(series["math"])[n] / dict(series["ours"])[n]
            self.caption(
                f"At N = {format_count(n)}, FlashAttention runs {x:.1f}× "
                f"faster than naive attention ({sl['dtype']}, d = {sl['d']})"
            )
        else:
            self.caption("Runtime as N grows (naive attention not measured here)")
        self.hold()

    def memory_section(self) -> None:
        th = self.theme
        self.section("memory")
        self.wipe()
        rows = sorted(self.bench["memory"], key=lambda r: r["n"])
        ours = [(r["n"], r["ours_mib"] * 2**20) for r in rows if r["ours_mib"]]
        naive = [(r["n"], r["math_mib"] * 2**20) for r in rows if r["math_mib"]]
        oom = [r["n"] for r in rows if r.get("math_oom")]
        if not ours:
            raise ValueError(f"{self.bench_path}: no memory measurements of ours")
        xs = [r["n"] for r in rows]
        ys = [b for _, b in ours + naive]
        r0 = rows[0]
        ch = self.log_chart(
            xs,
            ys,
            f"sequence length N (one forward, {r0.get('h', '?')}"
            f" heads, d = {r0.get('d', '?')}, {r0.get('dtype', '?')})",
            "peak GPU memory (bytes)",
            _bytes,
            x_pad=1.4,
        )
        self.charts["memory"] = ch
        dev = self.bench["device"]
        self.play(
            self.title(
                f"Peak memory on {dev['gpu']}" + other_gpu(self.gpu, dev["gpu"])
            ),
            self.source(self.bench_source()),
            FadeIn(ch),
        )
        legend = ChartLegend(
            [
                (IMPL_NAMES["ours"], series_colors(th)["ours"], False),
                (IMPL_NAMES["math"], series_colors(th)["math"], False),
            ],
            theme=th,
        )
        legend.next_to(ch.axes, RIGHT, buff=0.45).align_to(ch.axes, UP)
        self.play(FadeIn(legend))
        for impl, pts in (("math", naive), ("ours", ours)):
            if pts:
                ch.add_series(impl, *zip(*pts, strict=True))
                self.play(ch.make_series_animation(impl))
        if oom:
            n = oom[0]
            y = ch.axes.get_top()[1]
            x = ch.c2p(n, ys[0])[0]
            cross = Cross(
                Square(0.3), stroke_color=series_colors(th)["math"], stroke_width=5
            ).move_to([x, y - 0.25, 0])
            lab = self.text(
                "naive: out of memory", th.small_size + 1, series_colors(th)["math"]
            ).next_to(cross, DOWN, buff=0.1)
            self.play(Create(cross), FadeIn(lab))
            self.caption(
                f"Naive attention stores N×N scores and runs out of memory at "
                f"N = {format_count(n)}; FlashAttention grows as N"
            )
        elif naive:
            n = naive[-1][0]
            x = dict(naive)[n] / dict(ours)[n]
            self.caption(
                f"At N = {format_count(n)}, naive attention needs {x:.0f}× "
                f"the memory: it stores the N×N scores"
            )
        self.hold(2)
