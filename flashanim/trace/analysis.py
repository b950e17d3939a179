"""What a trace did, counted from its events: visited blocks, value ranges, work.

Pure counting over plain trace data (no Manim, no Triton): the scenes and the
visuals read these numbers; the HBM traffic counts are in
:mod:`flashanim.trace.traffic`.

* :func:`visited_blocks` -- the ``(i, j)`` blocks whose ``S`` tile was computed;
* :func:`program_visits`, :func:`program_masks` -- per Q block, the K/V blocks it
  visited / masked; :func:`visit_rule`, :func:`mask_rule` -- the same as the
  sentence a scene shows (``"j = 0 … 2i+1"``), so captions are formatted from the
  trace, never assumed (``j ≤ i`` holds only when ``BLOCK_M = BLOCK_N``);
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

__all__ = [
    "visited_blocks",
    "program_visits",
    "program_masks",
    "visit_rule",
    "mask_rule",
    "work_summary",
    "value_ranges",
    "finite_range",
]


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


# -- sentences formatted from a trace ------------------------------------------------------
def program_visits(trace: Trace, bh: int = 0) -> dict[int, list[int]]:
    """Q block ``i`` -> the sorted K/V blocks ``j`` whose ``S`` tile it computed."""
    out: dict[int, set[int]] = {}
    for i, j in visited_blocks(trace, bh):
        out.setdefault(i, set()).add(j)
    return {i: sorted(js) for i, js in sorted(out.items())}


def program_masks(trace: Trace, bh: int = 0) -> dict[int, list[int]]:
    """Q block ``i`` -> the sorted K/V blocks ``j`` it masked element-wise."""
    out: dict[int, set[int]] = {i: set() for i in program_visits(trace, bh)}
    for e in trace.events:
        if e.bh == bh and e.op == "mask":
            out.setdefault(e.row, set()).add(e.col)
    return {i: sorted(js) for i, js in sorted(out.items())}


def _linear(i_s: list[int], ys: list[int]) -> tuple[int, int] | None:
    """Integers ``(a, b)`` with ``y = a·i + b`` for every pair, or ``None``."""
    if len(i_s) < 2:
        return None
    a, rem = divmod(ys[1] - ys[0], i_s[1] - i_s[0])
    b = ys[0] - a * i_s[0]
    if rem or any(y != a * i + b for i, y in zip(i_s, ys, strict=True)):
        return None
    return a, b


def _affine(a: int, b: int) -> str:
    """``a·i + b`` as text: ``i``, ``2i+1``, ``i−1``, ``3``."""
    if a == 0:
        return f"{b}"
    s = ("" if a == 1 else f"{a}") + "i"
    return s + (f"+{b}" if b > 0 else f"−{-b}" if b < 0 else "")


def visit_rule(trace: Trace, bh: int = 0) -> str:
    """Which K/V blocks program ``i`` visits, as the trace shows it, e.g.
    ``"j = 0 … 2i+1"`` or ``"all T_c = 4 K/V blocks"``.

    The rule is stated only when every Q block of head ``bh`` follows it
    (the last Q block of a causal run may be clipped by ``T_c``: then the rule
    covers the others and the last is named apart); otherwise the visits of the
    first programs are listed.
    """
    visits = program_visits(trace, bh)
    t_c = trace.meta.t_c
    if all(js == list(range(t_c)) for js in visits.values()):
        return f"all T_c = {t_c} K/V blocks"
    i_s = list(visits)
    contiguous = all(js == list(range(js[0], js[-1] + 1)) for js in visits.values())
    firsts = [visits[i][0] for i in i_s]
    lasts = [visits[i][-1] for i in i_s]
    if contiguous:
        for n in (len(i_s), len(i_s) - 1):  # all, or all but a clipped last one
            lo, hi = _linear(i_s[:n], firsts[:n]), _linear(i_s[:n], lasts[:n])
            if lo is None or hi is None:
                continue
            rule = f"j = {_affine(*lo)} … {_affine(*hi)}"
            if n < len(i_s):
                i = i_s[-1]
                rule += f" (the last, i = {i}: j = {firsts[-1]} … {lasts[-1]})"
            return rule
    shown = [f"{i}: j = {_ranges(visits[i])}" for i in i_s[:3]]
    return "program " + "; ".join(shown) + ("; …" if len(i_s) > 3 else "")


def _ranges(js: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0…2, 5"``."""
    parts, start = [], None
    for k, j in enumerate(js):
        if start is None:
            start = j
        if k + 1 == len(js) or js[k + 1] != j + 1:
            parts.append(f"{start}" if start == j else f"{start}…{j}")
            start = None
    return ", ".join(parts)


def mask_rule(trace: Trace, bh: int = 0) -> str:
    """How many blocks each program masks element-wise, from the trace, e.g.
    ``"its last 2 blocks (on the diagonal) masked"`` or ``"no block masked"``."""
    visits, masks = program_visits(trace, bh), program_masks(trace, bh)
    counts = {len(masks.get(i, [])) for i in visits}
    if counts == {0}:
        return "no block masked"
    last = all(
        masks.get(i, []) == js[len(js) - len(masks.get(i, [])) :]
        for i, js in visits.items()
    )
    where = "its last"
    if len(counts) == 1:
        (n,) = counts
        what = "block" if n == 1 else f"{n} blocks"
        if last:
            on = " (on the diagonal)" if trace.meta.causal else ""
            return f"{where} {what}{on} masked element-wise"
        return f"{n} of its blocks masked element-wise"
    lo, hi = min(counts), max(counts)
    return f"{lo}–{hi} of its blocks masked element-wise"
