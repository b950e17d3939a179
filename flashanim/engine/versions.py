"""The Manim and Triton versions the speed engine was written for.

The engine replaces Manim internals (and one of Triton's interpreter) with faster
equivalents that return the same results; they depend on how those internals are
written. On any other version the engine stays off and Manim's (Triton's) own path
runs, with one warning line per process. Nothing here imports Manim or Triton.
"""

from __future__ import annotations

import logging
from importlib import metadata

__all__ = ["MANIM_SERIES", "TRITON_SERIES", "supported", "warn_once"]

#: Manim versions (major.minor) the engine was written for and tested on.
MANIM_SERIES: tuple[str, ...] = ("0.21",)
#: Triton versions (major.minor) whose interpreter the recording patch knows.
TRITON_SERIES: tuple[str, ...] = ("3.9",)

_SERIES = {"manim": MANIM_SERIES, "triton": TRITON_SERIES}
_warned: set[str] = set()
log = logging.getLogger("flashanim")


def _series(package: str) -> str | None:
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
    return ".".join(version.split(".")[:2])


def supported(package: str) -> bool:
    """Whether the installed ``package`` (``"manim"`` or ``"triton"``) is a
    version the engine was written for; warns once (one line) when not."""
    series = _series(package)
    if series in _SERIES[package]:
        return True
    warn_once(
        package,
        f"flashanim: {package} {series or '(not installed)'} is not a version the "
        f"speed engine was written for ({', '.join(_SERIES[package])}): "
        f"using {package}'s own code path (slower, same result)",
    )
    return False


def warn_once(key: str, line: str) -> None:
    """Log ``line`` as a warning, once per ``key`` in this process."""
    if key not in _warned:
        _warned.add(key)
        log.warning(line)
