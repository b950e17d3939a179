"""HBM traffic: measured from a trace, and in closed form from each kernel's formulas.

Traffic is a plain ``dict`` keyed by ``(tensor, direction)`` with ``direction`` in
``("read", "write")``, whose values are bytes; only nonzero entries are present::

    {("Q", "read"): 256, ("K", "read"): 1024, ("V", "read"): 1024,
     ("O", "write"): 256, ("LSE", "write"): 64}

* :func:`hbm_traffic` sums the ``nbytes`` of a trace's ``load`` (read) and
  ``store`` (write) events: what the kernel says it moved.
* :func:`closed_form_traffic` computes the same dict from the run's shapes alone,
  with the formulas below (derived from each kernel's documented event sequence,
  never by replaying a trace). The tests hold the two equal.
* :func:`tile_loads` / :func:`closed_form_tile_loads` do the same per tile: how
  many times each tile of each tensor was loaded (or stored).
* :func:`traffic_summary` and :func:`running_traffic` give the totals and the
  running counters the scenes display; :func:`io_complexity` the FlashAttention
  paper's asymptotic HBM-access counts.

Notation: ``B·H`` batch-heads, ``E`` bytes per input element (4 for float32, 2 for
float16/bfloat16), ``T_r = ceil(N_q / BLOCK_M)``, ``T_c = ceil(N_k / BLOCK_N)``,
``n_i = min(BLOCK_M, N_q - i·BLOCK_M)`` valid rows of Q block ``i``, ``n_j`` those
of K/V block ``j``. Causal masks are top-left aligned (query ``r`` sees keys
``0..r``); block pair ``(i, j)`` is *visible* when some valid query of block ``i``
sees some key of block ``j``: ``j·BLOCK_N <= min((i+1)·BLOCK_M, N_q) - 1``
(always, without causal). ``c_i`` is the number of visible ``j < T_c`` of row ``i``
and ``r_j`` the number of visible ``i < T_r`` of column ``j``. Statistics (``LSE``,
``D``, ``l``, ``m``) are float32 (4 bytes). Every formula is per batch-head and
multiplied by ``B·H``.

FlashAttention-2 forward (program per Q block; ``K_j, V_j`` loaded once per
visible pair)::

    Q read  = N_q·d·E     K read = V read = Σ_j r_j·n_j·d·E  (no causal: T_r·N_k·d·E)
    O write = N_q·d·E     LSE write = N_q·4

FlashAttention-2 backward (``preprocess``: ``D = rowsum(dO∘O)``; ``dkdv``: program
per K/V block looping over the visible Q blocks; ``dq``: program per Q block
looping over the visible K/V blocks)::

    O read   = N_q·d·E                        D write  = N_q·4
    Q read   = (Σ_i c_i·n_i + N_q)·d·E        dO read  = (Σ_i c_i·n_i + 2·N_q)·d·E
    LSE read = D read = (Σ_i c_i·n_i + N_q)·4
    K read   = V read = (N_k + Σ_j r_j·n_j)·d·E
    dK write = dV write = N_k·d·E             dQ write = N_q·d·E

FlashAttention-1 order (one program per batch-head; ``O, l, m`` float32 buffers
written once at the start, then read and written at every visible pair)::

    Q read = Σ_i c_i·n_i·d·E     K read = V read = Σ_{j: r_j > 0} n_j·d·E
    O read = Σ_i c_i·n_i·d·4     O write = Σ_i (c_i + 1)·n_i·d·4
    l read = m read = Σ_i c_i·n_i·4,  l write = m write = Σ_i (c_i + 1)·n_i·4

Standard attention (``qk``: program per ``(i, j)`` tile; ``softmax`` of whole
rows; ``pv``: program per Q block; ``S`` and ``P`` in the input dtype; causal
skips nothing, it only masks)::

    Q read = T_c·N_q·d·E     K read = V read = T_r·N_k·d·E
    S write = S read = P write = P read = N_q·N_k·E       O write = N_q·d·E

Split-K/V decoding (``"fa2-decode"``; per batch-*K/V*-head, multiplied by
``B·H_kv``; ``R = G·N_q`` packed query rows, ``T_r = ceil(R / BLOCK_M)``,
``S`` = ``num_splits`` slices; the ``split`` launch: one program per (slice,
packed Q block), each loading its Q block and its slice's K/V blocks once, so each
packed Q block reads the cache once; ``O_s``, ``LSE_s`` float32 scratch over the
valid rows; the ``reduce``: one program per packed row, loading the row's ``S``
partial results)::

    Q read = S·R·d·E          K read = V read = T_r·N_k·d·E
    O_s write = O_s read = S·R·d·4     LSE_s write = LSE_s read = S·R·4
    O write = R·d·E           LSE write = R·4
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .decode import tile_index

if TYPE_CHECKING:
    from .model import Trace, TraceMeta

__all__ = [
    "Traffic",
    "hbm_traffic",
    "closed_form_traffic",
    "tile_loads",
    "closed_form_tile_loads",
    "TrafficSummary",
    "traffic_summary",
    "running_traffic",
    "IOComplexity",
    "io_complexity",
    "visible",
    "row_visible",
    "col_visible",
]

#: ``{(tensor, "read" | "write"): bytes}``.
Traffic = dict[tuple[str, str], int]

_DIRECTION = {"load": "read", "store": "write"}


# ------------------------------------------------------------------ measured


def hbm_traffic(trace: Trace) -> Traffic:
    """Bytes read and written per tensor, summed over the trace's loads and stores.

    Returns
    -------
    dict
        ``{(tensor, "read" | "write"): bytes}``, nonzero entries only.
    """
    out: Counter[tuple[str, str]] = Counter()
    for e in trace.events:
        d = _DIRECTION.get(e.op)
        if d is not None:
            out[(e.tensor, d)] += e.nbytes
    return {k: v for k, v in out.items() if v}


def tile_loads(trace: Trace, op: str = "load") -> Counter:
    """How many times each tile was loaded (or, with ``op="store"``, stored).

    Returns
    -------
    Counter
        ``{(tensor, bh, tile): count}`` where ``tile`` is the Q block index for
        ``Q, O, dO, dQ, LSE, D, l, m``, the K/V block index for ``K, V, dK, dV``
        and ``(row, col)`` otherwise (``S``, ``P`` of standard attention).
    """
    return Counter(
        (e.tensor, e.bh, tile_index(e.tensor, e.row, e.col))
        for e in trace.events
        if e.op == op
    )


# ------------------------------------------------------------------ closed forms


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def visible(meta: TraceMeta, i: int, j: int) -> bool:
    """Whether block pair ``(i, j)`` holds a (query, key) pair the mask keeps."""
    if not (0 <= i < meta.t_r and 0 <= j < meta.t_c):
        return False
    if not meta.causal:
        return True
    return j * meta.block_n <= min((i + 1) * meta.block_m, meta.seq_len_q) - 1


def row_visible(meta: TraceMeta, i: int) -> int:
    """``c_i``: the number of K/V blocks visible from Q block ``i`` (closed form)."""
    if not meta.causal:
        return meta.t_c
    last = min((i + 1) * meta.block_m, meta.seq_len_q) - 1
    return min(meta.t_c, last // meta.block_n + 1)


def col_visible(meta: TraceMeta, j: int) -> int:
    """``r_j``: the number of Q blocks that see K/V block ``j`` (closed form)."""
    if not meta.causal:
        return meta.t_r
    if j * meta.block_n > meta.seq_len_q - 1:
        return 0
    return meta.t_r - (j * meta.block_n) // meta.block_m


def _n_i(meta: TraceMeta, i: int) -> int:
    return min(meta.block_m, meta.seq_len_q - i * meta.block_m)


def _n_j(meta: TraceMeta, j: int) -> int:
    return min(meta.block_n, meta.seq_len_k - j * meta.block_n)


def _sums(meta: TraceMeta) -> dict[str, int]:
    """The row counts the formulas share (per batch-head)."""
    rows = range(meta.t_r)
    cols = range(meta.t_c)
    return {
        # Σ_i c_i n_i: Q rows loaded once per visible K/V block.
        "row_visits": sum(row_visible(meta, i) * _n_i(meta, i) for i in rows),
        # Σ_j r_j n_j: K/V rows loaded once per Q block that sees them.
        "col_visits": sum(col_visible(meta, j) * _n_j(meta, j) for j in cols),
        # Σ_{j: r_j > 0} n_j: K/V rows that some query sees.
        "cols_seen": sum(_n_j(meta, j) for j in cols if col_visible(meta, j)),
    }


def _fa2_fwd(meta: TraceMeta, e: int) -> Traffic:
    nq, d, s = meta.seq_len_q, meta.head_dim, _sums(meta)
    return {
        ("Q", "read"): nq * d * e,
        ("K", "read"): s["col_visits"] * d * e,
        ("V", "read"): s["col_visits"] * d * e,
        ("O", "write"): nq * d * e,
        ("LSE", "write"): nq * 4,
    }


def _fa2_bwd(meta: TraceMeta, e: int) -> Traffic:
    nq, d, s = meta.seq_len_q, meta.head_dim, _sums(meta)
    nk = meta.seq_len_k
    return {
        # preprocess: D = rowsum(dO * O)
        ("O", "read"): nq * d * e,
        ("D", "write"): nq * 4,
        # dkdv (Q, dO, LSE, D per visible Q block) + dq (once per Q block)
        ("Q", "read"): (s["row_visits"] + nq) * d * e,
        ("dO", "read"): (nq + s["row_visits"] + nq) * d * e,
        ("LSE", "read"): (s["row_visits"] + nq) * 4,
        ("D", "read"): (s["row_visits"] + nq) * 4,
        # dkdv: K_j, V_j once per program; dq: once per visible block
        ("K", "read"): (nk + s["col_visits"]) * d * e,
        ("V", "read"): (nk + s["col_visits"]) * d * e,
        ("dK", "write"): nk * d * e,
        ("dV", "write"): nk * d * e,
        ("dQ", "write"): nq * d * e,
    }


def _fa1_fwd(meta: TraceMeta, e: int) -> Traffic:
    nq, d, s = meta.seq_len_q, meta.head_dim, _sums(meta)
    rv = s["row_visits"]
    return {
        ("Q", "read"): rv * d * e,
        ("K", "read"): s["cols_seen"] * d * e,
        ("V", "read"): s["cols_seen"] * d * e,
        ("O", "read"): rv * d * 4,
        ("l", "read"): rv * 4,
        ("m", "read"): rv * 4,
        ("O", "write"): (rv + nq) * d * 4,
        ("l", "write"): (rv + nq) * 4,
        ("m", "write"): (rv + nq) * 4,
    }


def _standard(meta: TraceMeta, e: int) -> Traffic:
    nq, nk, d = meta.seq_len_q, meta.seq_len_k, meta.head_dim
    return {
        # S = Q K^T: each (i, j) tile loads Q_i and K_j and stores S_ij.
        ("Q", "read"): meta.t_c * nq * d * e,
        ("K", "read"): meta.t_r * nk * d * e,
        ("S", "write"): nq * nk * e,
        # P = softmax(S), whole rows.
        ("S", "read"): nq * nk * e,
        ("P", "write"): nq * nk * e,
        # O = P V: each Q block row reads P_i and every V_j.
        ("P", "read"): nq * nk * e,
        ("V", "read"): meta.t_r * nk * d * e,
        ("O", "write"): nq * d * e,
    }


def _fa2_decode(meta: TraceMeta, e: int) -> Traffic:
    r, nk, d = meta.rows_q, meta.seq_len_k, meta.head_dim
    s = meta.num_splits or 1
    return {
        ("Q", "read"): s * r * d * e,
        ("K", "read"): meta.t_r * nk * d * e,
        ("V", "read"): meta.t_r * nk * d * e,
        ("O_s", "write"): s * r * d * 4,
        ("LSE_s", "write"): s * r * 4,
        ("O_s", "read"): s * r * d * 4,
        ("LSE_s", "read"): s * r * 4,
        ("O", "write"): r * d * e,
        ("LSE", "write"): r * 4,
    }


_FORMULAS = {
    "fa2-fwd": _fa2_fwd,
    "fa2-bwd": _fa2_bwd,
    "fa1-fwd": _fa1_fwd,
    "standard": _standard,
    "fa2-decode": _fa2_decode,
}


def closed_form_traffic(meta: TraceMeta) -> Traffic:
    """The HBM bytes the run of ``meta`` moves, from the kernel's formulas.

    Parameters
    ----------
    meta
        Kernel, shapes, blocks, causal flag and dtype of a run.

    Returns
    -------
    dict
        ``{(tensor, "read" | "write"): bytes}`` (nonzero entries), the shape
        :func:`hbm_traffic` returns; see the module docstring for the formulas.
    """
    try:
        formula = _FORMULAS[meta.kernel]
    except KeyError:
        raise ValueError(
            f"no closed form for kernel {meta.kernel!r}; known: {', '.join(_FORMULAS)}"
        ) from None
    bh = meta.batch_heads
    per_bh = formula(meta, meta.elem_bytes)
    return {k: v * bh for k, v in per_bh.items() if v}


def closed_form_tile_loads(meta: TraceMeta, op: str = "load") -> Counter:
    """How many times each tile is loaded (or stored), from the kernel's formulas.

    Same keys as :func:`tile_loads`: ``{(tensor, bh, tile): count}``; the counts
    are ``c_i`` and ``r_j`` of the module docstring (1 for once-per-run tiles).
    """
    rows, cols = range(meta.t_r), range(meta.t_c)
    c = [row_visible(meta, i) for i in rows]
    r = [col_visible(meta, j) for j in cols]
    per: dict[tuple[str, int | tuple[int, int]], int] = {}

    def add(tensor: str, counts) -> None:
        for tile, n in counts:
            if n:
                key = (tensor, tile)
                per[key] = per.get(key, 0) + n

    once_q = [(i, 1) for i in rows]
    once_k = [(j, 1) for j in cols]
    seen_k = [(j, 1) for j in cols if r[j]]
    k = meta.kernel
    if (k, op) == ("fa2-fwd", "load"):
        add("Q", once_q)
        add("K", list(enumerate(r)))
        add("V", list(enumerate(r)))
    elif (k, op) == ("fa2-fwd", "store"):
        add("O", once_q)
        add("LSE", once_q)
    elif (k, op) == ("fa2-bwd", "load"):
        for t in ("Q", "dO", "LSE", "D"):
            add(t, list(enumerate(c)))  # dkdv
            add(t, once_q)  # dq
        add("O", once_q)  # preprocess
        add("dO", once_q)  # preprocess
        for t in ("K", "V"):
            add(t, once_k)  # dkdv
            add(t, list(enumerate(r)))  # dq
    elif (k, op) == ("fa2-bwd", "store"):
        add("D", once_q)
        add("dK", once_k)
        add("dV", once_k)
        add("dQ", once_q)
    elif (k, op) == ("fa1-fwd", "load"):
        for t in ("Q", "O", "l", "m"):
            add(t, list(enumerate(c)))
        add("K", seen_k)
        add("V", seen_k)
    elif (k, op) == ("fa1-fwd", "store"):
        for t in ("O", "l", "m"):
            add(t, [(i, ci + 1) for i, ci in enumerate(c)])
    elif k == "fa2-decode" and op in ("load", "store"):
        splits = range(meta.num_splits or 1)
        packed = range(meta.rows_q)
        if op == "load":
            add("Q", [(i, len(splits)) for i in rows])  # split: once per slice
            add("K", [(j, meta.t_r) for j in cols])
            add("V", [(j, meta.t_r) for j in cols])
            add("LSE_s", [((r, 0), 1) for r in packed])  # reduce: row r
            add("O_s", [((r, 0), 1) for r in packed])
        else:
            add("O_s", [((i, s), 1) for i in rows for s in splits])
            add("LSE_s", [((i, s), 1) for i in rows for s in splits])
            add("O", [(r, 1) for r in packed])
            add("LSE", [(r, 1) for r in packed])
    elif k == "standard" and op in ("load", "store"):
        from flashanim.kernels.standard import softmax_rows

        # The softmax kernel walks Q block i in chunks of ROWS rows, one load of S
        # and one store of P per chunk and key tile.
        rows_per = softmax_rows(meta.block_m, meta.block_n, meta.seq_len_k)
        chunks = [_cdiv(_n_i(meta, i), rows_per) for i in rows]
        tiles = [(i, j) for i in rows for j in cols]
        if op == "load":
            add("Q", [(i, meta.t_c) for i in rows])
            add("K", [(j, meta.t_r) for j in cols])
            add("S", [((i, j), chunks[i]) for i, j in tiles])
            add("P", [((i, j), 1) for i, j in tiles])
            add("V", [(j, meta.t_r) for j in cols])
        else:
            add("S", [((i, j), 1) for i, j in tiles])
            add("P", [((i, j), chunks[i]) for i, j in tiles])
            add("O", once_q)
    else:
        raise ValueError(f"no tile counts for kernel {k!r} and op {op!r}")
    return Counter(
        {
            (t, bh, tile): n
            for bh in range(meta.batch_heads)
            for (t, tile), n in per.items()
        }
    )


# ------------------------------------------------------------------ summaries


@dataclass(frozen=True)
class TrafficSummary:
    """Totals of a trace's HBM traffic, for the scenes' counters.

    Attributes
    ----------
    read_bytes, write_bytes
        Bytes loaded from and stored to HBM.
    loads, stores
        Number of load and store events.
    by_tensor
        ``{(tensor, "read" | "write"): bytes}`` (as :func:`hbm_traffic`).
    closed_form
        The same from :func:`closed_form_traffic`.
    """

    read_bytes: int
    write_bytes: int
    loads: int
    stores: int
    by_tensor: Traffic = field(default_factory=dict)
    closed_form: Traffic = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Bytes moved either way."""
        return self.read_bytes + self.write_bytes

    @property
    def matches_closed_form(self) -> bool:
        """Whether the trace moved exactly what the formulas say."""
        return self.by_tensor == self.closed_form


def traffic_summary(trace: Trace) -> TrafficSummary:
    """Totals of ``trace``'s loads and stores, next to the closed form."""
    by = hbm_traffic(trace)
    return TrafficSummary(
        read_bytes=sum(v for (_, d), v in by.items() if d == "read"),
        write_bytes=sum(v for (_, d), v in by.items() if d == "write"),
        loads=sum(e.op == "load" for e in trace.events),
        stores=sum(e.op == "store" for e in trace.events),
        by_tensor=by,
        closed_form=closed_form_traffic(trace.meta),
    )


def running_traffic(trace: Trace) -> list[tuple[int, int]]:
    """``(bytes read, bytes written)`` so far after each event, in trace order."""
    out: list[tuple[int, int]] = []
    r = w = 0
    for e in trace.events:
        if e.op == "load":
            r += e.nbytes
        elif e.op == "store":
            w += e.nbytes
        out.append((r, w))
    return out


@dataclass(frozen=True)
class IOComplexity:
    """HBM accesses (in elements) of the FlashAttention paper's Theorem 2.

    Attributes
    ----------
    standard
        ``N·d + N²``: standard attention, ``Θ(Nd + N²)``.
    flash
        ``N²·d²/M``: FlashAttention, ``Θ(N²d²M⁻¹)`` (``M`` the SRAM size in
        elements).
    sram_elements
        ``M``.
    """

    n: int
    d: int
    sram_elements: int
    standard: float
    flash: float

    @property
    def ratio(self) -> float:
        """How many times fewer accesses FlashAttention needs (``standard/flash``)."""
        return self.standard / self.flash


def io_complexity(n: int, d: int, sram_bytes: int, elem_bytes: int = 2) -> IOComplexity:
    """The paper's asymptotic HBM-access counts, constants dropped.

    Parameters
    ----------
    n, d
        Sequence length ``N`` and head dimension ``d``.
    sram_bytes
        On-chip memory ``M`` in bytes (e.g. 192 KiB per SM on an A100).
    elem_bytes
        Bytes per element (2 for float16), to express ``M`` in elements.

    Notes
    -----
    Valid in the paper's regime ``d <= M <= N·d``; the flash count is
    ``N²d²/M``, which is ``N·d`` or more there.
    """
    for name, x in (
        ("n", n),
        ("d", d),
        ("sram_bytes", sram_bytes),
        ("elem_bytes", elem_bytes),
    ):
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {x!r}")
    m = sram_bytes // elem_bytes
    if m < 1:
        raise ValueError(f"sram_bytes={sram_bytes} holds no {elem_bytes}-byte element")
    return IOComplexity(
        n=n,
        d=d,
        sram_elements=m,
        standard=float(n * d + n * n),
        flash=float(n * n * d * d) / m,
    )
