"""Decode a kernel's raw trace buffers into a :class:`~flashanim.trace.model.Trace`.

A recorder (:func:`flashanim.kernels.recorder`) returns a
:class:`~flashanim.kernels._trace.RawTrace`: for each launch, an ``events`` buffer
(one fixed-width record per event), a ``header`` buffer (one row per program) and a
``values`` buffer (value snapshots). :func:`decode` reads them (after moving them to
the CPU), numbers the programs on across launches, checks every record, and crops
each value snapshot to the part of the tile that lies inside the tensor (the last
Q block of a sequence of 17 rows has 1 valid row out of ``BLOCK_M``; a head
dimension of 5 padded to 8 columns keeps 5).

Examples
--------
>>> from flashanim.kernels import recorder              # doctest: +SKIP
>>> raw = recorder("fa2-fwd")(q, k, v, causal=False, softmax_scale=0.5,
...                           block_m=4, block_n=4, values=True)  # doctest: +SKIP
>>> trace = decode(raw, meta)                            # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._protocol import TraceFormatError, ops, tensors
from .model import Event, Program, Trace

if TYPE_CHECKING:
    from flashanim.kernels._trace import RawTrace

    from .model import TraceMeta

__all__ = [
    "decode",
    "TILE_AXES",
    "Q_AXIS",
    "K_AXIS",
    "crop_value",
    "valid_extent",
    "tile_index",
]

#: Tensors tiled along the query sequence (one tile per Q block ``i``).
Q_AXIS = frozenset({"Q", "O", "dO", "dQ", "acc", "LSE", "l", "m", "D", "alpha"})
#: Tensors tiled along the key sequence (one tile per K/V block ``j``).
K_AXIS = frozenset({"K", "V", "dK", "dV"})

#: How a tensor's tile snapshot lies in the tensor: for its first and second axis,
#: ``(kind, index)`` where ``kind`` is ``"q"`` (query sequence), ``"k"`` (key
#: sequence), ``"d"`` (head dimension, padded to a power of two in the kernel) or
#: ``"1"`` (a vector stored as one column), and ``index`` says where the tile
#: index along that axis is: ``"i"`` the Q block, ``"j"`` the K/V block (see
#: :func:`tile_index`), ``""`` none.
TILE_AXES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    **{t: (("q", "i"), ("d", "")) for t in ("Q", "O", "dO", "dQ", "acc")},
    **{t: (("k", "j"), ("d", "")) for t in K_AXIS},
    **{t: (("q", "i"), ("k", "j")) for t in ("S", "P", "dP", "dS")},
    **{t: (("q", "i"), ("1", "")) for t in ("LSE", "l", "m", "D", "alpha")},
}


def tile_index(tensor: str, row: int, col: int) -> int | tuple[int, int]:
    """The block index of an event's tile along the tensor's tiled axis.

    Every kernel writes an event's tile as its coordinates in the tensor's own
    matrix: ``Q``-like tensors (:data:`Q_AXIS`) at ``(i, 0)``, ``K``-like tensors
    (:data:`K_AXIS`) at ``(j, 0)``, so the block index is ``row``; the others
    (``S``, ``P``, ``dP``, ``dS``) give ``(i, j) = (row, col)``.
    """
    if tensor in Q_AXIS or tensor in K_AXIS:
        return row
    return (row, col)


# Record fields of kernels/_trace.py: [op, tensor, row, col, nbytes, voff, vrows,
# vcols, time_ns, sm]; header: [n_events, n_values, bh, pid_m, sm, t0, t1, reserved].
_OP, _TENSOR, _ROW, _COL, _NBYTES, _VOFF, _VROWS, _VCOLS, _TIME, _SM = range(10)


def valid_extent(kind: str, extent: int, index: int, meta: TraceMeta) -> int:
    """How many of a tile axis's ``extent`` entries lie inside the tensor.

    Parameters
    ----------
    kind
        ``"q"``, ``"k"``, ``"d"`` or ``"1"`` (see :data:`TILE_AXES`).
    extent
        The snapshot's length along this axis (a block size, or a padded length).
    index
        The tile index along this axis: the tile starts at ``index * extent``.
    meta
        The run's shapes.
    """
    if kind == "q":  # packed rows G * N_q for "fa2-decode"
        return max(0, min(extent, meta.rows_q - index * extent))
    if kind == "k":
        return max(0, min(extent, meta.seq_len_k - index * extent))
    if kind == "d":
        return min(extent, meta.head_dim)
    return extent


def crop_value(
    tensor: str, row: int, col: int, snapshot: np.ndarray, meta: TraceMeta
) -> np.ndarray:
    """Crop a ``vrows x vcols`` snapshot of ``tensor`` to its valid rows and columns.

    A snapshot of a sequence-by-sequence tile (``S``, ``P``, ``dP``, ``dS``) may be
    stored transposed (key block by query block, as the backward's ``dK``/``dV``
    program computes ``P^T``); it is recognised by its shape when
    ``BLOCK_M != BLOCK_N`` and otherwise taken to be query-major. Tensors not in
    :data:`TILE_AXES` are returned unchanged.

    A tile is taken to start at ``index * extent`` along each axis. The standard
    kernel's softmax walks a Q block in chunks of ``ROWS < BLOCK_M`` rows when
    ``BLOCK_M * next_pow2(N_k) > 2**14``; its events do not say which chunk, so
    such snapshots are not cropped exactly (only runs far too large to animate).
    """
    if meta.kernel == "fa2-decode" and tensor in ("O", "LSE", "O_s", "LSE_s"):
        # O, LSE: the reduce's one packed row (a vector); O_s, LSE_s: a split's
        # rows or the reduce's slices of one row, each d (or 1) wide
        if tensor in ("O", "LSE"):
            snapshot = snapshot.reshape(1, -1)
        return snapshot[:, : min(snapshot.shape[1], meta.head_dim)]
    axes = TILE_AXES.get(tensor)
    if axes is None:
        return snapshot
    (k0, i0), (k1, i1) = axes
    n_rows, n_cols = snapshot.shape
    if (
        (k0, k1) == ("q", "k")
        and meta.block_m != meta.block_n
        and (n_rows, n_cols) == (meta.block_n, meta.block_m)
    ):
        (k0, i0), (k1, i1) = (k1, i1), (k0, i0)
    j = tile_index(tensor, row, col) if tensor in K_AXIS else col
    idx = {"i": row, "j": j, "": 0}
    r = valid_extent(k0, n_rows, idx[i0], meta)
    c = valid_extent(k1, n_cols, idx[i1], meta)
    return snapshot[:r, :c]


def _where(raw: RawTrace, launch: int, prog: int) -> str:
    name = raw.names[launch] if launch < len(raw.names) else f"#{launch}"
    return f"{raw.kernel} launch {launch} ({name!r}), program {prog}"


def decode(raw: RawTrace, meta: TraceMeta) -> Trace:
    """Decode a recorder's raw buffers into a :class:`~flashanim.trace.model.Trace`.

    Parameters
    ----------
    raw
        What the recorder returned: one set of buffers per launch.
    meta
        What was run; its shapes crop the value snapshots.

    Returns
    -------
    Trace
        Programs numbered on across launches (launch 0's first), each program's
        events in order; ``time_ns`` and ``sm`` are ``None`` where the kernel wrote
        ``-1`` (off the GPU). ``Trace.tensors`` is left empty (the caller fills it).

    Raises
    ------
    TraceFormatError
        A program that never ran (negative counts), more events or values than its
        buffer holds (overflow), an unwritten or out-of-range record, or an unknown
        operation or tensor code.
    """
    op_names, tensor_names = ops(), tensors()
    if len(raw.names) != len(raw.launches):
        raise TraceFormatError(
            f"{raw.kernel}: {len(raw.launches)} launches but {len(raw.names)} names"
        )
    events: list[Event] = []
    programs: list[Program] = []
    base = 0
    for li, bufs in enumerate(raw.launches):
        header = bufs.header.detach().cpu().numpy()
        rec = bufs.events.detach().cpu().numpy()
        vals = bufs.values.detach().cpu().numpy() if bufs.values is not None else None
        max_ev = rec.shape[1]
        max_val = 0 if vals is None else vals.shape[1]
        for p in range(header.shape[0]):
            n_ev, n_val, bh, pid_m, sm, t0, t1, _ = (int(x) for x in header[p])
            where = _where(raw, li, p)
            if n_ev < 0 or n_val < 0:
                raise TraceFormatError(
                    f"{where} never ran: its header holds no event count "
                    f"(n_events={n_ev}, n_values={n_val})"
                )
            if n_ev > max_ev:
                raise TraceFormatError(
                    f"{where} overflowed its event buffer: it recorded {n_ev} "
                    f"events but there is room for {max_ev} (MAX_EV)"
                )
            if n_val > max_val:
                raise TraceFormatError(
                    f"{where} overflowed its value buffer: it wrote {n_val} "
                    f"values but there is room for {max_val}"
                )
            if bh < 0 or pid_m < -1:
                raise TraceFormatError(
                    f"{where}: header has batch-head {bh} and block {pid_m}"
                )
            prog = base + p
            programs.append(
                Program(
                    program=prog,
                    bh=bh,
                    block=pid_m,
                    n_events=n_ev,
                    sm=None if sm < 0 else sm,
                    start_ns=None if t0 < 0 else t0,
                    end_ns=None if t1 < 0 else t1,
                    launch=raw.names[li],
                )
            )
            for s, r in enumerate(rec[p, :n_ev].tolist()):
                ew = f"{where}, event {s}"
                if not 0 <= r[_OP] < len(op_names):
                    if all(x == -1 for x in r):
                        raise TraceFormatError(f"{ew} was counted but never written")
                    raise TraceFormatError(f"{ew}: unknown operation code {r[_OP]}")
                if not 0 <= r[_TENSOR] < len(tensor_names):
                    raise TraceFormatError(f"{ew}: unknown tensor code {r[_TENSOR]}")
                if r[_NBYTES] < 0:
                    raise TraceFormatError(f"{ew}: negative byte count {r[_NBYTES]}")
                tensor = tensor_names[r[_TENSOR]]
                value = None
                if r[_VOFF] >= 0:
                    nr, nc = r[_VROWS], r[_VCOLS]
                    end = r[_VOFF] + nr * nc
                    if nr < 0 or nc < 0 or end > n_val or vals is None:
                        raise TraceFormatError(
                            f"{ew}: value snapshot [{r[_VOFF]}:{end}] of shape "
                            f"{nr}x{nc} lies outside the {n_val} values written"
                        )
                    snap = vals[p, r[_VOFF] : end].astype(np.float64).reshape(nr, nc)
                    value = crop_value(tensor, r[_ROW], r[_COL], snap, meta)
                events.append(
                    Event(
                        index=len(events),
                        program=prog,
                        step=s,
                        op=op_names[r[_OP]],
                        tensor=tensor,
                        row=r[_ROW],
                        col=r[_COL],
                        nbytes=r[_NBYTES],
                        bh=bh,
                        time_ns=None if r[_TIME] < 0 else r[_TIME],
                        # events inherit their program's SM unless stamped
                        sm=r[_SM] if r[_SM] >= 0 else (None if sm < 0 else sm),
                        value=value,
                    )
                )
        base += header.shape[0]
    return Trace(meta=meta, events=tuple(events), programs=tuple(programs))
