"""Plain data for a recorded kernel run: :class:`Trace`, :class:`Event`,
:class:`Program`.

Nothing here knows of Triton or Manim: a trace is what the kernel wrote into its own
trace buffers, decoded (see :mod:`flashanim.trace.decode`), and it can be saved and
loaded as JSON (see :mod:`flashanim.trace.io`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

__all__ = ["Event", "Program", "Trace", "TraceMeta", "KERNELS", "LOAD_STORE"]

#: The kernels that record traces, by their command-line names.
KERNELS: tuple[str, ...] = ("fa2-fwd", "fa2-bwd", "fa1-fwd", "standard", "fa2-decode")

#: Operations that move data between HBM (global memory) and SRAM.
LOAD_STORE: frozenset[str] = frozenset({"load", "store"})


@dataclass(frozen=True)
class Event:
    """One thing one program did, as the kernel recorded it.

    Attributes
    ----------
    index
        Position in :attr:`Trace.events` (programs in launch order, then steps).
    program
        Linear program id (``pid_0 + pid_1 * grid_0``); for the backward kernel the
        programs of its launches are numbered on, launch after launch.
    step
        Position of the event within its program.
    op
        Operation name, one of :data:`flashanim.trace.names.OPS` (``"load"``,
        ``"store"``, ``"qk"``, ``"rowmax"``, ``"pv"``, ...).
    tensor
        The tensor moved (loads/stores) or produced (computations), one of
        :data:`flashanim.trace.names.TENSORS` (``"Q"``, ``"K"``, ``"S"``,
        ``"m"``...).
    row, col
        Tile (block) coordinates in the tensor's own matrix, the same rule in every
        kernel: ``(i, 0)`` for the ``N_q x d`` tensors and row vectors (``Q``,
        ``O``, ``dO``, ``dQ``, ``acc``, ``m``, ``l``, ``alpha``, ``LSE``, ``D``),
        ``(j, 0)`` for ``K``, ``V``, ``dK``, ``dV``, and ``(i, j)`` for ``S``,
        ``P``, ``dP``, ``dS``.
    nbytes
        Bytes moved to or from HBM (0 for computations).
    bh
        Batch-head index (``b * H + h``) of the program.
    time_ns, sm
        GPU timestamp (``%globaltimer``) and SM id; ``None`` off the GPU.
    value
        Snapshot of the tile this event moved or produced, when the run recorded
        values (small runs), else ``None``. Masked entries are ``-inf``.
    """

    index: int
    program: int
    step: int
    op: str
    tensor: str
    row: int
    col: int
    nbytes: int
    bh: int
    time_ns: int | None = None
    sm: int | None = None
    value: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def is_memory(self) -> bool:
        """True for loads and stores (HBM traffic)."""
        return self.op in LOAD_STORE

    def key(self) -> tuple:
        """The identity of the event without its values (for comparisons)."""
        return (self.program, self.step, self.op, self.tensor, self.row, self.col)


@dataclass(frozen=True)
class Program:
    """One program (thread block) of a launch, from its header row."""

    program: int
    bh: int
    block: int  # the program's own block index (pid along the sequence), -1 if none
    n_events: int
    sm: int | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    launch: str = ""  # which launch of the recorder ("preprocess", "dkdv", "dq"...)


@dataclass(frozen=True)
class TraceMeta:
    """What was run: kernel, shapes, dtype, blocks, device and versions."""

    kernel: str
    batch: int
    heads: int
    seq_len_q: int
    seq_len_k: int
    head_dim: int
    block_m: int
    block_n: int
    causal: bool
    dtype: str
    softmax_scale: float
    device: str
    values: bool
    triton_version: str = ""
    torch_version: str = ""
    gpu_name: str = ""
    created: str = ""
    seed: int | None = None
    #: ``"fa2-decode"`` only (``None`` for the other kernels): the K/V heads
    #: (``heads`` stays the query heads; ``G = heads / heads_kv`` query heads share
    #: one K/V head and their ``G * N_q`` rows are packed into one Q block) and the
    #: number of slices (splits) the cache was cut into.
    heads_kv: int | None = None
    num_splits: int | None = None

    @property
    def elem_bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2}[self.dtype]

    @property
    def group(self) -> int:
        """Query heads per K/V head, ``G = heads / heads_kv`` (1 without
        ``heads_kv``)."""
        return self.heads // (self.heads_kv or self.heads)

    @property
    def rows_q(self) -> int:
        """Query rows along the Q-block axis: ``N_q``, or for ``"fa2-decode"`` the
        packed rows of one K/V head, ``G * N_q``."""
        if self.kernel == "fa2-decode":
            return self.group * self.seq_len_q
        return self.seq_len_q

    @property
    def batch_heads(self) -> int:
        """Programs' batch-head range: ``B * H``, or ``B * H_kv`` for
        ``"fa2-decode"`` (its ``bh`` counts K/V heads)."""
        if self.kernel == "fa2-decode":
            return self.batch * (self.heads_kv or self.heads)
        return self.batch * self.heads

    @property
    def t_r(self) -> int:
        """Number of Q blocks, ``T_r = ceil(N_q / BLOCK_M)`` (packed rows,
        :attr:`rows_q`, for ``"fa2-decode"``)."""
        return -(-self.rows_q // self.block_m)

    @property
    def t_c(self) -> int:
        """Number of K/V blocks, ``T_c = ceil(N_k / BLOCK_N)``."""
        return -(-self.seq_len_k // self.block_n)


@dataclass(frozen=True)
class Trace:
    """A decoded kernel trace.

    Attributes
    ----------
    meta
        The run's metadata.
    events
        Every event, programs in launch order, each program's events in order.
    programs
        One header per program.
    tensors
        For runs that recorded values: the run's inputs and outputs as float arrays
        (``"Q"``, ``"K"``, ``"V"``, ``"O"``, ``"LSE"``, and for the backward ``"dO"``,
        ``"dQ"``, ``"dK"``, ``"dV"``), shape ``(B, H, N, d)``; else empty.
    """

    meta: TraceMeta
    events: tuple[Event, ...]
    programs: tuple[Program, ...]
    tensors: dict[str, np.ndarray] = field(default_factory=dict, compare=False)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def of_program(self, program: int) -> tuple[Event, ...]:
        """The events of one program, in order."""
        return tuple(e for e in self.events if e.program == program)

    def identical(self, other: object) -> bool:
        """``self == other`` and also equal value snapshots and tensors.

        ``==`` compares metadata, events and programs but not the arrays (they are
        excluded from dataclass equality); this compares those too, exactly
        (same shapes, same entries, ``NaN`` equal to ``NaN``).
        """
        import numpy as np

        def same(a, b) -> bool:
            if a is None or b is None:
                return a is None and b is None
            a, b = np.asarray(a), np.asarray(b)
            return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))

        return (
            isinstance(other, Trace)
            and self == other
            and all(
                same(a.value, b.value)
                for a, b in zip(self.events, other.events, strict=True)
            )
            and self.tensors.keys() == other.tensors.keys()
            and all(same(v, other.tensors[k]) for k, v in self.tensors.items())
        )

    def where(self, **fields) -> tuple[Event, ...]:
        """Events whose attributes equal the given values, e.g. ``where(op="load")``."""
        return tuple(
            e for e in self.events if all(getattr(e, k) == v for k, v in fields.items())
        )
