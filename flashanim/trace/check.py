"""Verdicts of the scenes' closing checks, computed, never assumed.

A scene that ends by comparing the kernel's output with a reference (the tiling
scene's ``O`` against naive attention, the backward scene's ``dQ, dK, dV`` against
autograd) asks :func:`closing_check` for a :class:`Verdict`: the largest error, the
tolerance of the trace's dtype, and whether the error is within it. Its
:meth:`Verdict.headline` is the sentence the scene shows: "matches" only when the
error is finite and within the tolerance, "DOES NOT MATCH" otherwise. The verdict
is also written to ``$FLASHANIM_RENDER_VERDICT`` (a JSON list, when the variable is
set: ``flashanim render`` sets it), so the command exits non-zero on a mismatch.

:func:`require_kernel` refuses, in one line, a trace of the wrong kernel for a
scene.

Nothing here imports Manim, Triton or PyTorch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from flashanim.errors import ConfigError

from ._protocol import TraceFormatError

if TYPE_CHECKING:
    from .model import Trace

__all__ = [
    "TOLERANCE",
    "VERDICT_ENV",
    "Verdict",
    "TraceKernelError",
    "tolerance",
    "closing_check",
    "require_kernel",
    "read_verdicts",
]

#: Where :func:`closing_check` appends its verdicts (set by ``flashanim render``).
VERDICT_ENV = "FLASHANIM_RENDER_VERDICT"

#: Absolute tolerance per dtype, for values of magnitude up to 1 (scaled by the
#: reference's largest magnitude above 1): about 100 units in the last place of
#: the dtype at 1, far above the rounding of a correct kernel on the sizes the
#: scenes draw (float32: ~1e-7 measured) and far below any real mistake.
TOLERANCE: dict[str, float] = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 8e-2}


class TraceKernelError(TraceFormatError, ConfigError):
    """A valid trace of a kernel (or a mask) that the scene does not play (a
    :class:`~flashanim.config.ConfigError` too: the setting names the file)."""


def tolerance(dtype: str, reference: np.ndarray | None = None) -> float:
    """The tolerance of ``dtype`` for a reference whose entries are up to
    ``max(1, max|reference|)`` in magnitude."""
    base = TOLERANCE[dtype]
    if reference is None or np.size(reference) == 0:
        return base
    big = float(np.nanmax(np.abs(np.asarray(reference, dtype=np.float64))))
    return base * max(1.0, big) if math.isfinite(big) else base


@dataclass(frozen=True)
class Verdict:
    """The outcome of a closing check.

    Attributes
    ----------
    what
        What was checked, as the scene names it (``"O"``, ``"dQ, dK, dV"``).
    against
        The reference (``"naive attention"``).
    max_error
        Largest absolute difference (``nan`` when any entry is not a number).
    tolerance
        The dtype's tolerance (:func:`tolerance`).
    dtype
        The kernel's dtype.
    """

    what: str
    against: str
    max_error: float
    tolerance: float
    dtype: str
    scene: str = ""

    @property
    def ok(self) -> bool:
        """Finite and within the tolerance."""
        return math.isfinite(self.max_error) and self.max_error <= self.tolerance

    def headline(self, plural: bool = False) -> str:
        """The sentence a scene shows: ``The kernel's O matches naive attention:
        max error 1.5e-07 (float32)``, or ``... DOES NOT MATCH ...: max error
        5.0e+00 > tolerance 1.0e-05 (float32)``."""
        if self.ok:
            verb = "match" if plural else "matches"
            return (
                f"{self._subject(plural)} {verb} {self.against}: max error "
                f"{self.max_error:.1e} ({self.dtype})"
            )
        return (
            f"{self._subject(plural)} DO{'' if plural else 'ES'} NOT MATCH "
            f"{self.against}: max error {self.max_error:.1e} > tolerance "
            f"{self.tolerance:.1e} ({self.dtype})"
        )

    def _subject(self, plural: bool) -> str:
        return self.what if plural else f"The kernel's {self.what}"


def _max_error(out: np.ndarray, ref: np.ndarray) -> float:
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"shapes differ: {out.shape} vs {ref.shape}")
    diff = np.abs(out - ref)
    if diff.size == 0:
        return 0.0
    if not np.isfinite(diff).all():
        return math.nan
    return float(diff.max())


def closing_check(
    what: str,
    pairs: list[tuple[np.ndarray, np.ndarray]] | tuple[np.ndarray, np.ndarray],
    dtype: str,
    against: str = "naive attention",
    scene: str = "",
    environ=None,
) -> Verdict:
    """Compare kernel outputs with references and return the :class:`Verdict`.

    ``pairs`` is one ``(out, ref)`` pair or a list of them (several outputs
    checked together: the largest error against the tightest of their
    tolerances). The verdict is appended to ``$FLASHANIM_RENDER_VERDICT`` when set.
    """
    if isinstance(pairs, tuple):
        pairs = [pairs]
    errs = [_max_error(o, r) for o, r in pairs]
    err = math.nan if any(math.isnan(e) for e in errs) else max(errs, default=0.0)
    tol = min(tolerance(dtype, r) for _, r in pairs) if pairs else TOLERANCE[dtype]
    v = Verdict(what, against, err, tol, dtype, scene)
    _append(v, environ)
    return v


def _append(v: Verdict, environ=None) -> None:
    env = os.environ if environ is None else environ
    path = env.get(VERDICT_ENV)
    if not path:
        return
    p = Path(path)
    done = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else []
    d = asdict(v)
    d["ok"] = v.ok
    d["headline"] = v.headline()
    d["max_error"] = None if math.isnan(v.max_error) else v.max_error
    done.append(d)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(done), encoding="utf-8")
    os.replace(tmp, p)


def read_verdicts(path: str | os.PathLike[str]) -> list[dict]:
    """The verdicts a render appended to ``path`` (empty when none)."""
    p = Path(path)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else []


def require_kernel(
    trace: Trace,
    scene: str,
    kernel: str,
    causal: bool | None = None,
    values: bool | None = None,
) -> Trace:
    """Return ``trace`` if ``scene`` can play it, else raise
    :class:`TraceKernelError` with one line saying what the scene plays (under the
    ``manim`` command: reported by :func:`flashanim.config.fail`, no traceback).

    Examples
    --------
    ``require_kernel(trace, "TilingScene", "fa2-fwd")`` refuses an ``fa2-bwd``
    trace: "TilingScene plays an fa2-fwd trace; this one is fa2-bwd (record one
    with: flashanim trace --kernel fa2-fwd ...)".
    """
    m = trace.meta
    bad = m.kernel != kernel
    bad = bad or (causal is not None and m.causal != causal)
    bad = bad or (bool(values) and not m.values)
    if bad:
        mask = "" if causal is None else ("causal " if causal else "non-causal ")
        want = f"{mask}{kernel} trace" + (" with values" if values else "")
        got = f"{'causal' if m.causal else 'non-causal'} {m.kernel}"
        got += (" with values" if m.values else " without values") if values else ""
        flags = f"--kernel {kernel}" + (" --causal" if causal else "")
        flags += " --values" if values else ""
        article = "an" if want[0] in "aefhilmnorsx" else "a"
        from flashanim.config import fail

        fail(
            TraceKernelError(
                f"{scene} plays {article} {want}; this one is {got} "
                f"(record one with: flashanim trace {flags} -o FILE)"
            ),
            scene,
        )
    return trace
