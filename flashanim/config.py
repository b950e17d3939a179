"""Scene configuration, read from environment variables and validated before rendering.

``manim render scenes/tiling.py`` takes no scene arguments, so scenes read their
configuration from the environment (the ``flashanim render`` command line sets the
same variables):

Every parameter is one row of :data:`PARAMS` (name, environment variable,
command-line flag, type, default, range, help, the scenes that read it): the
``flashanim render`` flags, :class:`SceneConfig`, the README's parameter table
(a test compares them), the ``--help`` texts and the error messages all come from
it. :meth:`SceneConfig.from_env` checks every ``FLASHANIM_*`` variable of the table
that is set, so a bad value stops a render before anything is drawn; under
``manim render`` the error is two lines (the message and a hint), not a traceback
(:func:`fail`).

Values are written in tiles only when they stay legible at 480p: ``d``, ``BLOCK_M``
and ``BLOCK_N`` all at most :data:`NUMBERS_MAX_BLOCK` (4). Larger runs are drawn as
grids of blocks without numbers, up to ``N =`` :data:`MAX_SEQ_LEN`; above that the
blocks are too thin to see and the configuration is refused.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flashanim.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "SceneConfig",
    "ConfigError",
    "Param",
    "PARAMS",
    "PARAM",
    "ERROR_ENV",
    "ENV_VARS",
    "check_environment",
    "record_trace",
    "fail",
    "params_markdown",
    "MAX_SEQ_LEN",
    "MAX_BLOCK",
    "MAX_HEAD_DIM",
    "NUMBERS_MAX_BLOCK",
    "THEME_NAMES",
]

#: Largest sequence length drawn (as a plain block grid).
MAX_SEQ_LEN = 64
#: Largest block size.
MAX_BLOCK = 16
#: Largest head dimension.
MAX_HEAD_DIM = 16
#: Tiles show numbers only when ``d``, ``BLOCK_M`` and ``BLOCK_N`` are at most this.
NUMBERS_MAX_BLOCK = 4
#: Theme names (kept here, not imported from the visuals, so that validating a
#: configuration never imports Manim).
THEME_NAMES: tuple[str, ...] = ("dark", "light")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


#: Where a render child writes its one-line error as JSON (``flashanim render``
#: sets it; see :func:`fail`).
ERROR_ENV = "FLASHANIM_RENDER_ERROR"


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


# ------------------------------------------------------------------ the table

_SCENES_WITH_SIZES = ("standard_attention", "tiling", "online_softmax",
                      "loop_order", "causal", "backward")  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One parameter: where it is set, what it accepts, which scenes read it.

    ``kind`` is ``int``, ``bool``, ``choice``, ``file``, ``ints`` (comma-separated
    integers) or ``path`` (a file or a folder). ``scenes`` is ``None`` for every
    scene; ``field`` names the :class:`SceneConfig` field it fills, if any.
    ``machine`` parameters (device, cache, encoder) describe the machine, not the
    video: a render child inherits them from the caller's environment.
    """

    name: str
    env: str
    flag: str | None
    kind: str
    default: Any
    range: str
    help: str
    scenes: tuple[str, ...] | None = None
    field: str | None = None
    lo: int | None = None
    hi: int | None = None
    pow2: bool = False
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    machine: bool = False
    metavar: str | None = None
    missing: str = "no such file"

    def allowed(self) -> tuple[str, ...]:
        c = self.choices
        return tuple(c() if callable(c) else c)

    def source(self, cli: bool) -> str:
        return (self.flag or self.env) if cli else self.env

    def error(self, raw: str, reason: str) -> ConfigError:
        """A :class:`ConfigError` naming this parameter in both sets of words."""
        env = f"{self.env}={raw!r}: {reason}"
        cli = f"{self.flag} {raw}: {reason}" if self.flag else env
        return ConfigError(env, cli)

    def parse(self, raw: str) -> Any:
        """The value of the text ``raw``, checked against the range; raises
        :class:`ConfigError` naming the parameter and what is accepted."""
        text = raw.strip()
        if self.kind == "int":
            try:
                v = int(text, 10)
            except ValueError:
                raise self.error(text, f"not an integer ({self.range})") from None
            bad = (self.lo is not None and v < self.lo) or (
                self.hi is not None and v > self.hi
            )
            if self.pow2 and (bad or not _pow2(v)):
                raise self.error(
                    text,
                    f"must be a power of two between {self.lo} and {self.hi} "
                    "(Triton's tl.arange needs a power of two)",
                )
            if bad:
                where = (f"between {self.lo} and {self.hi}" if self.hi is not None
                         else f"at least {self.lo}")  # fmt: skip
                raise self.error(text, f"must be {where}")
            return v
        if self.kind == "bool":
            low = text.lower()
            if low not in _TRUE | _FALSE:
                raise self.error(text, "use 1/0, true/false, yes/no or on/off")
            return low in _TRUE
        if self.kind == "choice":
            low = text.lower()
            if low not in self.allowed():
                raise self.error(
                    text,
                    f"unknown {self.name.replace('_', ' ')}; choose one of: "
                    f"{', '.join(self.allowed())}",
                )
            return low
        if self.kind == "ints":
            try:
                ns = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
            except ValueError:
                raise self.error(
                    text, f"comma-separated integers ({self.range})"
                ) from None
            if len(ns) < 2 or ns[0] < (self.lo or 0) or ns[-1] > (self.hi or ns[-1]):
                raise self.error(text, self.range)
            return ns
        if self.kind in ("file", "path"):
            if not text:
                return None
            p = Path(text).expanduser()
            if self.kind == "file" and not p.is_file():
                raise self.error(text, self.missing)
            if self.kind == "path" and not p.exists():
                raise self.error(text, "no such file or folder")
            return str(p)
        if self.kind == "cache":
            return text
        raise AssertionError(self.kind)


def _themes() -> tuple[str, ...]:
    return THEME_NAMES


def _gpus() -> tuple[str, ...]:
    from flashanim.hardware import PRESETS

    return tuple(PRESETS)


def _x264() -> tuple[str, ...]:
    from flashanim.engine.fastrender import X264_PRESETS

    return X264_PRESETS


#: Every parameter of the scenes and of their rendering, one row each.
PARAMS: tuple[Param, ...] = (
    Param("seq_len", "FLASHANIM_SEQ_LEN", "--seq-len", "int", 16, "1 … 64",
          "sequence length N (numbers in tiles up to 4×4 blocks, plain block "
          "grids above)", _SCENES_WITH_SIZES, "seq_len", lo=1, hi=64, metavar="N"),
    Param("head_dim", "FLASHANIM_HEAD_DIM", "--head-dim", "int", 4,
          "a power of two, 2 … 16", "head dimension d", _SCENES_WITH_SIZES,
          "head_dim", lo=2, hi=16, pow2=True, metavar="d"),
    Param("block_m", "FLASHANIM_BLOCK_M", "--block-m", "int", 4,
          "a power of two, 2 … 16, at most N rounded up to a power of two",
          "BLOCK_M, rows of a Q block", _SCENES_WITH_SIZES, "block_m", lo=2, hi=16,
          pow2=True, metavar="B"),
    Param("block_n", "FLASHANIM_BLOCK_N", "--block-n", "int", 4,
          "a power of two, 2 … 16, at most N rounded up to a power of two",
          "BLOCK_N, rows of a K/V block", _SCENES_WITH_SIZES, "block_n", lo=2,
          hi=16, pow2=True, metavar="B"),
    Param("causal", "FLASHANIM_CAUSAL", "--causal", "bool", False,
          "1/0, true/false, yes/no, on/off", "causal mask (the causal scene is "
          "always causal)", _SCENES_WITH_SIZES, "causal"),
    Param("theme", "FLASHANIM_THEME", "--theme", "choice", "dark", "dark, light",
          "colour theme (tensor colours are the same in both)", None, "theme",
          choices=_themes),
    Param("seed", "FLASHANIM_SEED", "--seed", "int", 0, "0 … 2³²−1",
          "seed of the random Q, K, V", _SCENES_WITH_SIZES, "seed", lo=0,
          hi=2**32 - 1),
    Param("trace", "FLASHANIM_TRACE", "--trace", "file", None,
          "a trace file (.json or .json.gz) of the scene's kernel",
          "play a saved trace instead of recording one (its shapes replace the "
          "sizes above)", ("standard_attention", "tiling", "online_softmax",
                           "causal", "backward"), "trace", metavar="FILE"),
    Param("gpu", "FLASHANIM_GPU", "--gpu", "choice", "a100", "a100, h100, h200",
          "memory figures of this GPU (hierarchy, memory panels); schedule and "
          "benchmark data from another GPU say so", ("memory_hierarchy",
          "standard_attention", "tiling", "loop_order", "backward", "gpu_schedule",
          "io_complexity"), choices=_gpus),
    Param("row", "FLASHANIM_ROW", "--row", "int", None, "0 … N−1",
          "query row to follow (default: the row whose max changes most)",
          ("online_softmax",), lo=0, metavar="I"),
    Param("io_ns", "FLASHANIM_IO_NS", "--io-ns", "ints", "64,128,256,512,1024",
          "at least two lengths, 16 … 4096", "sequence lengths whose traffic is "
          "recorded", ("io_complexity",), lo=16, hi=4096, metavar="N,N,…"),
    Param("bench", "FLASHANIM_BENCH", "--bench", "path", None,
          "a bench_*.json file or a folder of them",
          "GPU benchmark data (default: the newest media/bench/bench_*.json)",
          ("io_complexity",), metavar="PATH"),
    Param("schedule_noncausal", "FLASHANIM_SCHEDULE_NONCAUSAL",
          "--schedule-noncausal", "file", None, "a GPU trace file",
          "non-causal GPU trace (default media/traces/gpu_schedule_noncausal"
          ".json.gz)", ("gpu_schedule",), metavar="FILE", missing="no such trace file"),
    Param("schedule_causal", "FLASHANIM_SCHEDULE_CAUSAL", "--schedule-causal",
          "file", None, "a GPU trace file", "causal GPU trace (default media/"
          "traces/gpu_schedule_causal.json.gz)", ("gpu_schedule",),
          metavar="FILE", missing="no such trace file"),
    Param("decode_nosplit", "FLASHANIM_DECODE_NOSPLIT", "--decode-nosplit", "file",
          None, "a GPU trace file", "GPU decoding trace without splits (default "
          "media/traces/decode_nosplit.json.gz)", ("decoding",), metavar="FILE",
          missing="no such trace file"),
    Param("decode_split", "FLASHANIM_DECODE_SPLIT", "--decode-split", "file",
          None, "a GPU trace file", "GPU decoding trace with splits (default "
          "media/traces/decode_split.json.gz)", ("decoding",), metavar="FILE",
          missing="no such trace file"),
    Param("x264_preset", "FLASHANIM_X264_PRESET", None, "choice", None,
          "an x264 preset (ultrafast … placebo)", "encoder speed (default "
          "ultrafast up to 480 rows, above it veryfast with faster motion search "
          "and no B-frames; a preset named here is used as it is)", None,
          choices=_x264,
          machine=True),
    Param("x264_threads", "FLASHANIM_X264_THREADS", None, "int", None, "1 … 64",
          "x264's threads per render (default x264's own choice; the talk's "
          "runner uses 1 while its renders fill every core)", None, lo=1, hi=64,
          machine=True),
    Param("trace_cache", "FLASHANIM_TRACE_CACHE", None, "cache", None,
          "a folder, or off", "where traces recorded in Triton's interpreter are "
          "kept and reused (default ~/.cache/flashanim/traces)", None,
          machine=True),
    Param("device", "FLASHANIM_DEVICE", None, "choice", "auto", "auto, cpu, cuda",
          "where the kernels run", None, choices=("auto", "cpu", "cuda"),
          machine=True),
)  # fmt: skip

#: The rows of :data:`PARAMS` by name.
PARAM: Mapping[str, Param] = {p.name: p for p in PARAMS}

#: Environment variables read by :meth:`SceneConfig.from_env`, with their fields.
ENV_VARS: Mapping[str, str] = {p.env: p.field for p in PARAMS if p.field}


def check_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse every variable of :data:`PARAMS` that is set (and not empty);
    return ``name -> value``. Raises :class:`ConfigError` for the first bad one."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for p in PARAMS:
        raw = env.get(p.env)
        if raw is None or (not raw.strip() and p.kind != "bool"):
            continue
        out[p.name] = p.parse(raw)
    return out


def data_files(
    defaults: Mapping[str, str], root: Path, environ: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Files a scene reads besides its trace (e.g. the committed GPU traces): for
    each environment variable of ``defaults``, its value, else its default under
    ``root`` (the repository), checked to exist.

    Raises
    ------
    ConfigError
        For a missing file, naming the variable.
    """
    env = os.environ if environ is None else environ
    out = {}
    for var, default in defaults.items():
        raw = (env.get(var) or "").strip()
        path = Path(raw) if raw else root / default
        if not path.is_file():
            raise ConfigError(f"{var}: no such trace file: {path}")
        out[var] = path
    return out


def params_markdown() -> str:
    """The README's parameter table, from :data:`PARAMS`."""
    rows = [
        "| variable | flag | default | accepted | meaning | scenes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in PARAMS:
        flag = f"`{p.flag}`" if p.flag else "–"
        default = "–" if p.default is None else f"`{p.default}`"
        if p.kind == "bool":
            default = "off"
        scenes = "all" if p.scenes is None else ", ".join(p.scenes)
        if p.machine:
            scenes = "(machine)"
        rows.append(
            f"| `{p.env}` | {flag} | {default} | {p.range} | {p.help} | {scenes} |"
        )
    return "\n".join(rows) + "\n"


def _under_manim_cli() -> bool:
    """Whether this process is the ``manim`` command (not a test or a library)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", "") or ""
    file = Path(getattr(main, "__file__", "") or "").name
    return name.startswith("manim") or file == "manim"


def fail(exc: BaseException, scene: str = "") -> NoReturn:
    """Report a scene's set-up error where the user looks, then stop.

    The one-line message is written as JSON to ``$FLASHANIM_RENDER_ERROR`` when
    set (``flashanim render`` reads it there). Under the ``manim`` command the
    message and a hint are printed (two lines, no traceback) and the process
    exits with status 2; anywhere else (tests, a library) ``exc`` is raised.
    """
    msg = " ".join(str(exc).split()) or type(exc).__name__
    path = os.environ.get(ERROR_ENV)
    if path:
        doc = {"scene": scene, "kind": type(exc).__name__, "message": msg}
        Path(path).write_text(json.dumps(doc), encoding="utf-8")
    if not _under_manim_cli():
        raise exc
    where = f"{scene}: " if scene else ""
    print(f"flashanim: error: {where}{msg}", file=sys.stderr)
    print(
        "  (nothing was rendered; `flashanim render --help` lists every parameter "
        "and its range)",
        file=sys.stderr,
    )
    raise SystemExit(2)


@dataclass(frozen=True)
class SceneConfig:
    """What a scene draws: sizes, mask, theme, seed, or a saved trace.

    Use :meth:`from_env` in scenes; construct directly in code and tests.
    :meth:`validate` (called by both) raises :class:`ConfigError` with a clear
    message before anything is rendered.

    Examples
    --------
    >>> SceneConfig().numbers
    True
    >>> SceneConfig.from_env({"FLASHANIM_SEQ_LEN": "32"}).seq_len
    32
    """

    seq_len: int = 16
    head_dim: int = 4
    block_m: int = 4
    block_n: int = 4
    causal: bool = False
    theme: str = "dark"
    trace: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def numbers(self) -> bool:
        """Whether tiles show their values (small blocks only)."""
        return max(self.head_dim, self.block_m, self.block_n) <= NUMBERS_MAX_BLOCK

    @property
    def t_r(self) -> int:
        return -(-self.seq_len // self.block_m)

    @property
    def t_c(self) -> int:
        return -(-self.seq_len // self.block_n)

    def validate(self) -> SceneConfig:
        """Check every field against :data:`PARAMS`; return ``self`` or raise
        :class:`ConfigError` (in environment and command-line words)."""
        PARAM["theme"].parse(str(self.theme))
        if self.trace is not None:
            PARAM["trace"].parse(str(self.trace))
            return self  # sizes come from the trace
        for name in ("seq_len", "head_dim", "block_m", "block_n", "seed"):
            PARAM[name].parse(str(getattr(self, name)))
        most = max(2, 1 << (self.seq_len - 1).bit_length())
        for name in ("block_m", "block_n"):
            b = getattr(self, name)
            if b > most:
                raise PARAM[name].error(
                    str(b),
                    f"larger than the sequence (N={self.seq_len}): use a block of "
                    f"at most {most}",
                )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SceneConfig:
        """Check every ``FLASHANIM_*`` variable of :data:`PARAMS` that is set (of
        ``environ``, default :data:`os.environ`) and return the configuration.

        A saved trace (``FLASHANIM_TRACE``) is loaded and validated here too. Under
        the ``manim`` command a bad value is reported by :func:`fail` (two lines,
        exit status 2); elsewhere it is raised.

        Raises
        ------
        ConfigError
            For a malformed or unsuitable value, naming the variable.
        TraceFormatError
            For a malformed trace file.
        """
        from flashanim.trace._protocol import TraceFormatError

        try:
            values = check_environment(environ)
            kw = {PARAM[n].field: v for n, v in values.items() if PARAM[n].field}
            cfg = cls(**kw)
            if cfg.trace is not None:
                _load_trace(cfg.trace)
            return cfg
        except (ConfigError, TraceFormatError) as exc:
            fail(exc)

    def with_(self, **changes) -> SceneConfig:
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    def load_or_record(self, kernel: str = "fa2-fwd"):
        """The trace: loaded from :attr:`trace`, or recorded with these settings.

        Imports the kernels (Triton) only when recording.
        """
        if self.trace is not None:
            return _load_trace(self.trace)
        return record_trace(
            kernel,
            seq_len=self.seq_len,
            head_dim=self.head_dim,
            block_m=self.block_m,
            block_n=self.block_n,
            causal=self.causal,
            values=self.numbers or self.seq_len <= 32,
            seed=self.seed,
        )


def record_trace(kernel: str, **settings):
    """Record ``kernel``'s trace with ``settings`` (the keywords of
    :func:`flashanim.trace.record`): the one recording path of the scenes, which
    imports the kernels (and chooses their device) before Triton, and only here."""
    import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
    from flashanim.trace import record

    return record(kernel, **settings)


_LOADED: dict[tuple, Any] = {}


def _load_trace(path: str):
    """Load (and validate) a trace file once per process and file version."""
    from flashanim.trace import load_trace

    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_trace(path)
    return _LOADED[key]
