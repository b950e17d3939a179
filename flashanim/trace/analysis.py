"""What a trace did, counted from its events: visited blocks, value ranges, work.

Pure counting over plain trace data (no Manim, no Triton): the scenes and the
visuals read these numbers; the HBM traffic counts are in
:mod:`flashanim.trace.traffic`.

* :func:`visited_blocks` -- the ``(i, j)`` blocks whose ``S`` tile was computed;
* :func:`work_summary` -- one head's ``S`` tiles, masks, K/V loads and bytes;
* :func:`value_ranges` -- the finite ``(min, max)`` of each tensor's snapshots;
* :func:`finite_range` -- the finite ``(min, max)`` of an array.

(``flashanim.kernels.fa2.visited_blocks`` is the kernel's own closed form of the
blocks a Q block visits, which the kernel tests hold to the traces.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .model import Trace

__all__ = ["visited_blocks", "work_summary", "value_ranges", "finite_range"]


def visited_blocks(trace: Trace, bh: int = 0) -> set[tuple[int, int]]:
    """Blocks ``(i, j)`` whose ``S`` tile the kernel computed (its ``qk`` events)
    for head ``bh``."""
    return {(e.row, e.col) for e in trace.events if e.bh == bh and e.op == "qk"}


def work_summary(trace: Trace, bh: int = 0) -> dict[str, int]:
    """What one head's forward did, counted from its events.

    Keys: ``qk`` (S tiles computed), ``mask`` (tiles masked), ``kv_bytes`` (bytes of
    K and V loaded), ``kv_loads`` (K and V tile loads), ``blocks`` (``T_r * T_c``).
    """
    ev = [e for e in trace.events if e.bh == bh]
    kv = [e for e in ev if e.op == "load" and e.tensor in ("K", "V")]
    return {
        "qk": sum(e.op == "qk" for e in ev),
        "mask": sum(e.op == "mask" for e in ev),
        "kv_bytes": sum(e.nbytes for e in kv),
        "kv_loads": len(kv),
        "blocks": trace.meta.t_r * trace.meta.t_c,
    }


def finite_range(values) -> tuple[float, float]:
    """Finite ``(min, max)`` of ``values`` (``(0, 1)`` when none is finite)."""
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)


def value_ranges(events: Iterable) -> dict[str, tuple[float, float]]:
    """Finite ``(min, max)`` of the values of each tensor over ``events``.

    Tensors without a finite snapshot are left out. ``acc`` and ``O`` share one
    range (``acc`` becomes ``O``).
    """
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for e in events:
        if e.value is None:
            continue
        v = np.asarray(e.value, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        lo[e.tensor] = min(lo.get(e.tensor, np.inf), float(v.min()))
        hi[e.tensor] = max(hi.get(e.tensor, -np.inf), float(v.max()))
    for a, b in (("acc", "O"), ("O", "acc")):
        if a in lo and b in lo:
            lo[a] = lo[b] = min(lo[a], lo[b])
            hi[a] = hi[b] = max(hi[a], hi[b])
    return {k: (lo[k], hi[k]) for k in lo}
