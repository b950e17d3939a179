"""Scene configuration, read from environment variables and validated before rendering.

``manim render scenes/tiling.py`` takes no scene arguments, so scenes read their
configuration from the environment (the ``flashanim render`` command line sets the
same variables):

==================== ======== =======================================================
variable             default  meaning
==================== ======== =======================================================
FLASHANIM_SEQ_LEN    16       sequence length ``N`` (queries and keys), 1 .. 64
FLASHANIM_HEAD_DIM   4        head dimension ``d``: a power of two, 2 .. 16
FLASHANIM_BLOCK_M    4        ``BLOCK_M`` (rows of a Q block): a power of two,
                              2 .. 16, at most the next power of two above ``N``
FLASHANIM_BLOCK_N    4        ``BLOCK_N`` (rows of a K/V block), same rules
FLASHANIM_CAUSAL     0        causal mask: 1/0, true/false, yes/no, on/off
FLASHANIM_THEME      dark     ``dark`` or ``light``
FLASHANIM_TRACE      (unset)  play a saved trace file (``.json``/``.json.gz``)
                              instead of recording one; its shapes override the
                              sizes above
FLASHANIM_SEED       0        seed of the random inputs
==================== ======== =======================================================

Values are written in tiles only when they stay legible at 480p: ``d``, ``BLOCK_M``
and ``BLOCK_N`` all at most :data:`NUMBERS_MAX_BLOCK` (4). Larger runs are drawn as
grids of blocks without numbers, up to ``N =`` :data:`MAX_SEQ_LEN`; above that the
blocks are too thin to see and the configuration is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SceneConfig",
    "ConfigError",
    "ENV_VARS",
    "MAX_SEQ_LEN",
    "MAX_BLOCK",
    "MAX_HEAD_DIM",
    "NUMBERS_MAX_BLOCK",
    "THEME_NAMES",
]

#: Environment variables read by :meth:`SceneConfig.from_env`, with their fields.
ENV_VARS: Mapping[str, str] = {
    "FLASHANIM_SEQ_LEN": "seq_len",
    "FLASHANIM_HEAD_DIM": "head_dim",
    "FLASHANIM_BLOCK_M": "block_m",
    "FLASHANIM_BLOCK_N": "block_n",
    "FLASHANIM_CAUSAL": "causal",
    "FLASHANIM_THEME": "theme",
    "FLASHANIM_TRACE": "trace",
    "FLASHANIM_SEED": "seed",
}

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


class ConfigError(ValueError):
    """A configuration that cannot be rendered; the message says what to change."""


def _pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


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
        """Check every field; return ``self`` or raise :class:`ConfigError`."""
        if self.theme not in THEME_NAMES:
            raise ConfigError(
                f"unknown theme {self.theme!r} (FLASHANIM_THEME); "
                f"choose one of: {', '.join(THEME_NAMES)}"
            )
        if self.trace is not None:
            if not Path(self.trace).is_file():
                raise ConfigError(f"FLASHANIM_TRACE: no such file: {self.trace}")
            return self  # sizes come from the trace
        if not 1 <= self.seq_len <= MAX_SEQ_LEN:
            raise ConfigError(
                f"FLASHANIM_SEQ_LEN={self.seq_len}: must be between 1 and "
                f"{MAX_SEQ_LEN} (tiles with numbers up to N=16 at 4x4 blocks, plain "
                f"block grids above; longer sequences are too thin to draw)"
            )
        if not _pow2(self.head_dim) or not 2 <= self.head_dim <= MAX_HEAD_DIM:
            raise ConfigError(
                f"FLASHANIM_HEAD_DIM={self.head_dim}: must be a power of two "
                f"between 2 and {MAX_HEAD_DIM}"
            )
        for var, b in (("FLASHANIM_BLOCK_M", self.block_m),
                       ("FLASHANIM_BLOCK_N", self.block_n)):  # fmt: skip
            if not _pow2(b) or not 2 <= b <= MAX_BLOCK:
                raise ConfigError(
                    f"{var}={b}: a block size must be a power of two between 2 and "
                    f"{MAX_BLOCK} (Triton's tl.arange needs a power of two)"
                )
            most = max(2, 1 << (self.seq_len - 1).bit_length())
            if b > most:
                raise ConfigError(
                    f"{var}={b} is larger than the sequence (N={self.seq_len}): "
                    f"use a block of at most {most}"
                )
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"FLASHANIM_SEED={self.seed}: must be in 0 .. 2**32-1")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SceneConfig:
        """Read the ``FLASHANIM_*`` variables (of ``environ``, default
        :data:`os.environ`), validate, and return the configuration.

        Raises
        ------
        ConfigError
            For a malformed or unsuitable value, naming the variable.
        """
        env = os.environ if environ is None else environ
        kw: dict[str, object] = {}
        for var, field in ENV_VARS.items():
            raw = env.get(var)
            if raw is None:
                continue
            raw = raw.strip()
            if field in ("seq_len", "head_dim", "block_m", "block_n", "seed"):
                try:
                    kw[field] = int(raw, 10)
                except ValueError:
                    raise ConfigError(f"{var}={raw!r} is not an integer") from None
            elif field == "causal":
                low = raw.lower()
                if low not in _TRUE | _FALSE:
                    raise ConfigError(
                        f"{var}={raw!r}: use 1/0, true/false, yes/no or on/off"
                    )
                kw[field] = low in _TRUE
            elif field == "theme":
                kw[field] = raw.lower()
            elif field == "trace":
                kw[field] = raw or None
        return cls(**kw)

    def with_(self, **changes) -> SceneConfig:
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    def load_or_record(self, kernel: str = "fa2-fwd"):
        """The trace: loaded from :attr:`trace`, or recorded with these settings.

        Imports the kernels (Triton) only when recording.
        """
        if self.trace is not None:
            from flashanim.trace import load_trace

            return load_trace(self.trace)
        import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
        from flashanim.trace import record

        return record(
            kernel,
            seq_len=self.seq_len,
            head_dim=self.head_dim,
            block_m=self.block_m,
            block_n=self.block_n,
            causal=self.causal,
            values=self.numbers or self.seq_len <= 32,
            seed=self.seed,
        )
