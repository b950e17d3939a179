"""The numbers of the talk cut, computed from the data they stand on.

Every figure the talk cut's clips put on screen, and every line of its closing
summary, comes from a function here: the GPU breakdown benchmark
(``media/bench/breakdown_<gpu>.json``), the kernel benchmark
(``media/bench/bench_<gpu>.json``), the committed GPU schedule traces
(``media/traces/gpu_schedule_*.json.gz``), a recorded FA2 forward trace with values,
and the closed-form HBM traffic of :mod:`flashanim.trace.traffic` (which small
recorded traces are checked against). Nothing here imports Manim.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import ConfigError

__all__ = [
    "ROOT",
    "Breakdown",
    "breakdown",
    "Payoff",
    "payoff",
    "Schedule",
    "schedule",
    "RowSoftmax",
    "row_softmax",
    "format_bytes",
    "format_ms",
]

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "media" / "bench"
TRACES = ROOT / "media" / "traces"


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units (``"17.2 GB"``, ``"1.0 MB"``)."""
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.1f} {unit}"
    return f"{n:.0f} B"


def format_ms(ms: float) -> str:
    """A time in ms with two significant decimals below 1 ms (``"0.074 ms"``)."""
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _gpu_short(name: str) -> str:
    """``"NVIDIA H200"`` -> ``"H200"``; ``"NVIDIA H100 80GB HBM3"`` -> ``"H100"``."""
    words = name.replace("NVIDIA", "").split()
    return words[0] if words else name


# -- 1. where standard attention's time goes ------------------------------------------

#: The steps drawn, in order: (key in the JSON, label, memory-bound?). Dropout is
#: measured but not drawn: the fused kernel beside it has no dropout.
BREAKDOWN_STEPS = (
    ("matmul_qk", "Q Kᵀ", False),
    ("scale", "scale", True),
    ("mask", "mask", True),
    ("softmax", "softmax", True),
    ("matmul_pv", "P V", False),
)


@dataclass(frozen=True)
class Breakdown:
    """Standard attention's steps and the fused kernel, measured on one GPU."""

    gpu: str
    setting: dict
    steps: tuple[tuple[str, str, bool, float], ...]  # key, label, memory-bound, ms
    fused_ms: float
    source: str  # file name

    @property
    def standard_ms(self) -> float:
        return sum(ms for *_, ms in self.steps)

    @property
    def memory_bound_ms(self) -> float:
        return sum(ms for _, _, mb, ms in self.steps if mb)

    @property
    def memory_bound_share(self) -> float:
        return self.memory_bound_ms / self.standard_ms

    @property
    def speedup(self) -> float:
        return self.standard_ms / self.fused_ms

    @property
    def gpu_short(self) -> str:
        return _gpu_short(self.gpu)


def _newest(pattern: str, env: str, environ=None) -> Path:
    env_map = os.environ if environ is None else environ
    raw = (env_map.get(env) or "").strip()
    if raw:
        path = Path(raw)
        if not path.is_file():
            raise ConfigError(f"{env}: no such file: {path}")
        return path
    found = sorted(BENCH.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(
            f"no {pattern} under {BENCH}; run the GPU benchmark or set {env}"
        )
    return found[-1]


def breakdown(path: Path | None = None) -> Breakdown:
    """The first setting of a breakdown JSON (``bench/breakdown_standard.py``)."""
    path = path or _newest("breakdown_*.json", "FLASHANIM_BREAKDOWN")
    data = json.loads(Path(path).read_text())
    try:
        row = data["settings"][0]
        steps = tuple(
            (k, label, mb, float(row["ms"][k])) for k, label, mb in BREAKDOWN_STEPS
        )
        return Breakdown(data["gpu"], row, steps, float(row["fused_ms"]), path.name)
    except (KeyError, IndexError, TypeError) as exc:
        raise ConfigError(f"{path}: not a breakdown benchmark ({exc!r})") from None


# -- 5. the payoff at a real size -----------------------------------------------------


@dataclass(frozen=True)
class Payoff:
    """Traffic, memory and time of standard attention and FA2 at one size."""

    n: int
    d: int
    batch: int
    heads: int
    dtype: str
    traffic_standard: int  # bytes, closed form
    traffic_flash: int
    memory_standard: int  # bytes of intermediates kept in HBM (S and P)
    memory_flash: int  # bytes of LSE
    time_n: int  # sequence length of the time comparison
    time_batch: int
    time_standard_ms: float
    time_flash_ms: float
    time_flash_at_n_ms: float  # our kernel at n (the clip's size)
    gpu: str
    source: str

    @property
    def traffic_ratio(self) -> float:
        return self.traffic_standard / self.traffic_flash

    @property
    def memory_ratio(self) -> float:
        return self.memory_standard / self.memory_flash

    @property
    def time_ratio(self) -> float:
        return self.time_standard_ms / self.time_flash_ms


def _meta(kernel: str, n: int, d: int, batch: int, heads: int, dtype: str,
          block_m: int, block_n: int):  # fmt: skip
    from .trace.model import TraceMeta

    return TraceMeta(kernel=kernel, batch=batch, heads=heads, seq_len_q=n,
                     seq_len_k=n, head_dim=d, block_m=block_m, block_n=block_n,
                     causal=False, dtype=dtype, softmax_scale=d**-0.5,
                     device="cuda", values=False)  # fmt: skip


def payoff(n: int = 16384, d: int = 128, bench: Path | None = None) -> Payoff:
    """N = 16k, d = 128, bf16, non-causal, the benchmark's B·N = 16k tokens and
    H = 2048 / d: traffic from the closed form (the GPU traces' blocks, 128 x 64),
    memory of the intermediates, times from the committed kernel benchmark.

    The standard attention's time is the benchmark's largest ``N`` at which
    PyTorch's naive attention ran (it is not run at 16k: S alone would not fit
    the rule of the grid), beside our kernel at the same ``N``.
    """
    from .trace.traffic import closed_form_traffic

    bench = bench or _newest("bench_*.json", "FLASHANIM_BENCH")
    data = json.loads(Path(bench).read_text())
    grid = [
        r for r in data["grid"]
        if r["dtype"] == "bf16" and r["d"] == d and not r["causal"]
        and r["mode"] == "fwd"
    ]  # fmt: skip

    def ms(impl: str, at: int) -> dict | None:
        return next((r for r in grid if r["impl"] == impl and r["n"] == at), None)

    ours = ms("ours", n)
    if ours is None:
        raise ConfigError(f"{bench}: no bf16 forward run of ours at N={n}, d={d}")
    naive_ns = [r["n"] for r in grid if r["impl"] == "math"]
    if not naive_ns:
        raise ConfigError(f"{bench}: no naive (math) forward runs at d={d}")
    tn = max(naive_ns)
    naive, ours_tn = ms("math", tn), ms("ours", tn)
    b, h = ours["b"], ours["h"]
    kw = dict(n=n, d=d, batch=b, heads=h, dtype="bfloat16", block_m=128, block_n=64)
    std = sum(closed_form_traffic(_meta("standard", **kw)).values())
    fa2 = sum(closed_form_traffic(_meta("fa2-fwd", **kw)).values())
    return Payoff(
        n=n, d=d, batch=b, heads=h, dtype="bf16",
        traffic_standard=std, traffic_flash=fa2,
        memory_standard=2 * b * h * n * n * 2, memory_flash=b * h * n * 4,
        time_n=tn, time_batch=naive["b"],
        time_standard_ms=float(naive["ms"]), time_flash_ms=float(ours_tn["ms"]),
        time_flash_at_n_ms=float(ours["ms"]),
        gpu=data["device"]["gpu"], source=Path(bench).name,
    )  # fmt: skip


@lru_cache(maxsize=2)
def closed_form_checked(n: int = 32, d: int = 8, block: int = 8) -> tuple[int, ...]:
    """Record small standard and FA2 traces and check that each moved exactly the
    closed form's bytes; returns the sizes checked (``n, d, block``).

    Raises
    ------
    AssertionError
        If a trace's traffic differs from the closed form (the formula the payoff
        clip scales up would then be wrong).
    """
    import flashanim.kernels  # noqa: F401  (chooses the device before Triton)

    from .trace import record
    from .trace.traffic import traffic_summary

    for kernel in ("standard", "fa2-fwd"):
        t = record(kernel, seq_len=n, head_dim=d, block_m=block, block_n=block,
                   values=False, keep_tensors=False)  # fmt: skip
        s = traffic_summary(t)
        if not s.matches_closed_form:
            raise AssertionError(
                f"{kernel} trace at N={n}: traffic {s.by_tensor} != closed form "
                f"{s.closed_form}"
            )
    return (n, d, block)


# -- 4. the schedule on the GPU -------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A GPU schedule trace's programs and its numbers."""

    trace: object
    stats: dict
    gpu: str

    @property
    def gpu_short(self) -> str:
        return _gpu_short(self.gpu)


def schedule(causal: bool = False, path: Path | None = None) -> Schedule:
    """The committed GPU schedule trace (non-causal by default) and its stats."""
    from .trace import load_trace
    from .visuals.schedule import schedule_stats

    name = "causal" if causal else "noncausal"
    var = f"FLASHANIM_SCHEDULE_{name.upper()}"
    raw = (os.environ.get(var) or "").strip()
    path = Path(path or raw or TRACES / f"gpu_schedule_{name}.json.gz")
    if not path.is_file():
        raise ConfigError(f"{var}: no such trace file: {path}")
    # loaded once per process and file version (a GPU trace: seconds to load)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SCHEDULES:
        t = load_trace(path)
        if any(p.sm is None or p.start_ns is None for p in t.programs):
            raise ConfigError(
                f"{path}: programs without SM id or clock (not a GPU run)"
            )
        _SCHEDULES[key] = Schedule(t, schedule_stats(t.programs),
                                   t.meta.gpu_name or "a GPU")  # fmt: skip
    return _SCHEDULES[key]


_SCHEDULES: dict[tuple, Schedule] = {}


# -- 2, 3. one row's softmax ------------------------------------------------------------


@dataclass(frozen=True)
class RowSoftmax:
    """One query row of an FA2 forward trace with values.

    ``blocks[j]`` holds the events of K/V block ``j`` that the softmax clips play
    (``qk``, ``mask``, ``rowmax``, ``exp``, ``alpha``, ``rowsum``) for the followed
    row's program; the arrays are that row's slice of each snapshot.
    """

    row: int
    program: int
    k: int  # row within its Q block
    block_n: int
    scores: np.ndarray  # the whole row of S, from the qk (or mask) snapshots
    m: tuple[float, ...]  # m_i after each block
    alpha: tuple[float, ...]
    l: tuple[float, ...]  # noqa: E741
    p: tuple[np.ndarray, ...]  # exp(S_j - m_i) of each block as the kernel made it
    shown: tuple  # the events played, in order

    @property
    def softmax(self) -> np.ndarray:
        """softmax of the whole row, float64, in one go."""
        s = self.scores
        w = np.exp(s - s.max())
        return w / w.sum()

    def block_local(self) -> np.ndarray:
        """Each block's own softmax, side by side (what naive tiling would give)."""
        out = []
        for j in range(len(self.p)):
            s = self.scores[j * self.block_n : (j + 1) * self.block_n]
            w = np.exp(s - s.max())
            out.append(w / w.sum())
        return np.concatenate(out)

    def online(self) -> np.ndarray:
        """The kernel's weights: each block's P rescaled by every later alpha,
        divided by the final l_i."""
        out = []
        for j, pj in enumerate(self.p):
            f = float(np.prod(self.alpha[j + 1 :]))
            out.append(np.asarray(pj) * f)
        return np.concatenate(out) / self.l[-1]


#: The ops the softmax clips play from the followed row's program.
SOFTMAX_OPS = frozenset({"qk", "mask", "rowmax", "exp", "alpha", "rowsum"})


def row_softmax(trace, row: int | None = None) -> RowSoftmax:
    """The followed row (default :func:`~flashanim.visuals.softmax.pick_row`)."""
    from .visuals.softmax import pick_row, row_values

    meta = trace.meta
    if meta.kernel != "fa2-fwd" or not meta.values:
        raise ConfigError("the softmax clips need an fa2-fwd trace with values")
    r = pick_row(trace) if row is None else row
    i, k = divmod(r, meta.block_m)
    program = next(
        e.program for e in trace.events
        if e.bh == 0 and e.op == "load" and e.tensor == "Q" and e.row == i
    )  # fmt: skip
    shown = tuple(e for e in trace.of_program(program) if e.op in SOFTMAX_OPS)
    s: dict[int, np.ndarray] = {}
    m, a, l, p = [], [], [], []  # noqa: E741
    for e in shown:
        if e.op in ("qk", "mask"):
            s[e.col] = row_values(e, k, meta.block_n)  # mask overwrites qk
        elif e.op == "rowmax":
            m.append(float(row_values(e, k)[0]))
        elif e.op == "alpha":
            a.append(float(row_values(e, k)[0]))
        elif e.op == "rowsum":
            l.append(float(row_values(e, k)[0]))
        elif e.op == "exp":
            p.append(row_values(e, k, meta.block_n))
    scores = np.concatenate([s[j] for j in sorted(s)])[: meta.seq_len_k]
    if meta.causal:
        raise ConfigError("the softmax clips follow a non-causal row")
    return RowSoftmax(r, program, k, meta.block_n, scores, tuple(m), tuple(a),
                      tuple(l), tuple(p), shown)  # fmt: skip
