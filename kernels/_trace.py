"""The trace protocol the kernels write: fixed-width event records, program headers
and optional value snapshots.

Every kernel in this package takes the same three trace buffers and a few
compile-time switches:

``TRACE: tl.constexpr``
    When false, every trace statement sits under ``if TRACE:`` and compiles away.
``VALUES: tl.constexpr``
    Also write value snapshots (the tile an event produced or moved) into the
    float32 value buffer. Only for small runs (animations, tests).
``GPU_CLOCK: tl.constexpr``
    A level: 0 reads no clock (Triton's interpreter, where inline PTX does not
    run); 1 (the GPU default) writes each program's ``%smid`` and its start and
    end ``%globaltimer`` into its header; 2 also stamps every event with the time
    and SM. Level 2 costs much more than 1: a clock read is an inline-asm
    statement with side effects in the kernel's inner loop, which keeps Triton
    from software-pipelining the loads across it (measured in ``bench/NOTES.md``);
    set ``FLASHANIM_EVENT_CLOCK=1`` to ask for it.

Buffers (allocated by :class:`TraceBuffers`):

``events``  int64 ``[n_programs, max_events, REC_WIDTH]``, one record per event::

    [op, tensor, row, col, nbytes, voff, vrows, vcols, time_ns, sm]

``header``  int64 ``[n_programs, HDR_WIDTH]``, one row per program::

    [n_events, n_values, bh, pid_m, sm, t_start_ns, t_end_ns, reserved]

``values``  float32 ``[n_programs, max_values]``; an event with ``voff >= 0`` owns
``values[program, voff : voff + vrows * vcols]`` (row-major ``vrows x vcols``).

The program index is the linear program id ``pid_0 + pid_1 * grid_0``. Rows and
columns are *tile* (block) indices, not element indices. ``nbytes`` counts the
elements actually moved (masked tails excluded) times the element size, so the
sums over a trace equal the closed-form HBM traffic of each kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from flashanim.trace.names import OPS, TENSORS  # (the codes, read without Triton)

from . import _steps
from ._common import GPU_CLOCK

__all__ = [
    "OPS",
    "TENSORS",
    "REC_WIDTH",
    "HDR_WIDTH",
    "MAX_VALUE_ELEMENTS",
    "TraceBuffers",
    "RawTrace",
    "launch_buffers",
    "trace_args",
    "recorder",
    "RECORDER_PARAMETERS",
    "trace_start",
    "trace_stop",
    "rec",
    "iter_open",
    "iter_close",
]

REC_WIDTH = 10
HDR_WIDTH = 8


def op_code(name: str) -> int:
    """Code of operation ``name`` (a Python int, usable as a constexpr)."""
    return OPS.index(name)


def tensor_code(name: str) -> int:
    """Code of tensor ``name``."""
    return TENSORS.index(name)


@dataclass
class TraceBuffers:
    """The three buffers a traced kernel launch writes into.

    Parameters
    ----------
    n_programs
        Number of programs of the launch (product of the grid).
    max_events
        Room for events per program; a program that needs more sets its overflow
        flag instead of writing past the end (the decoder refuses such a trace).
    max_values
        Room for value snapshots per program, in float32 elements (0: no values).
    fill
        Pre-fill the event records with -1 (so the decoder can report a record
        that was counted but never written); off for large GPU traces, where the
        fill would cost a pass over the buffer.
    """

    events: torch.Tensor
    header: torch.Tensor
    values: torch.Tensor
    max_events: int
    max_values: int

    @classmethod
    def allocate(
        cls,
        n_programs: int,
        max_events: int,
        max_values: int = 0,
        device: torch.device | str = "cpu",
        fill: bool = True,
    ) -> TraceBuffers:
        shape = (n_programs, max_events, REC_WIDTH)
        if fill:  # -1: the decoder can tell a counted-but-unwritten record
            events = torch.full(shape, -1, dtype=torch.int64, device=device)
        else:  # large GPU traces: the decoder reads only the counted records
            events = torch.empty(shape, dtype=torch.int64, device=device)
        header = torch.full(
            (n_programs, HDR_WIDTH), -1, dtype=torch.int64, device=device
        )
        values = torch.full(
            (n_programs, max(max_values, 1)), float("nan"), dtype=torch.float32,
            device=device,
        )  # fmt: skip
        return cls(events, header, values, max_events, max(max_values, 1))

    @property
    def n_programs(self) -> int:
        return self.header.shape[0]

    def kernel_args(self) -> tuple:
        """Positional kernel arguments: the three pointers."""
        return (self.events, self.header, self.values)


@dataclass
class RawTrace:
    """What a recorder returns: the raw buffers of each launch, and the outputs.

    ``launches`` are in launch order; the decoder numbers programs on across them
    (launch 0's programs first). ``names`` says what each launch was (e.g.
    ``"preprocess"``, ``"dkdv"``, ``"dq"``). ``outputs`` holds the kernel's results
    (``"O"``, ``"LSE"``; ``"dQ"``, ``"dK"``, ``"dV"`` for the backward).
    """

    kernel: str
    launches: list[TraceBuffers]
    names: list[str]
    outputs: dict[str, torch.Tensor]
    block_m: int
    block_n: int


#: The parameters every recorder takes (the end of each recorder's docstring).
RECORDER_PARAMETERS = """
Parameters
----------
q, k, v, causal, softmax_scale
    As the kernel's ``attention_forward``.
block_m, block_n
    ``BLOCK_M`` and ``BLOCK_N``: they shape the trace (``None``: the kernel's
    default, where it has one; FA1 and standard attention need them given).
values
    Also record value snapshots (small runs only).
do
    The gradient of ``O`` for a backward kernel (``None``: drawn from a standard
    normal with seed 0); the forward kernels ignore it (one signature for all).
"""


def recorder(kernel: str, names: tuple[str, ...], run: Callable, doc: str):
    """A kernel's recorder, the one shape every kernel module offers::

        record(q, k, v, *, causal=False, softmax_scale=None, block_m=None,
               block_n=None, values=False, do=None, **extra) -> RawTrace

    ``run`` takes the same arguments (keywords) and returns ``(launches,
    outputs, (block_m, block_n))``: the trace buffers of its launches ``names``
    in launch order, the results by name and the block sizes it ran with.
    ``extra`` are a kernel's own options (decoding: ``cache_seqlens``,
    ``num_splits``). The recorder's docstring is ``doc`` with the
    parameters all recorders share (:data:`RECORDER_PARAMETERS`)."""

    def record(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        causal: bool = False,
        softmax_scale: float | None = None,
        block_m: int | None = None,
        block_n: int | None = None,
        values: bool = False,
        do: torch.Tensor | None = None,
        **extra,
    ) -> RawTrace:
        launches, outputs, (bm, bn) = run(
            q, k, v, causal=causal, softmax_scale=softmax_scale, block_m=block_m,
            block_n=block_n, values=values, do=do, **extra,
        )  # fmt: skip
        return RawTrace(kernel, list(launches), list(names), outputs, bm, bn)

    head, returns, tail = doc.rstrip().partition("\nReturns\n")
    record.__doc__ = head.rstrip() + "\n" + RECORDER_PARAMETERS + returns + tail
    return record


#: Value-buffer size (float32 elements of one launch) above which a ``values``
#: recording is refused: value snapshots are for small runs.
MAX_VALUE_ELEMENTS = 1 << 26


def launch_buffers(
    n_programs: int,
    max_events: int,
    max_values: int,
    values: bool,
    device: torch.device | str,
    fill: bool,
) -> TraceBuffers:
    """The trace buffers of one traced launch (``max_values`` counts only with
    ``values``); a ``values`` run larger than :data:`MAX_VALUE_ELEMENTS` is refused
    with a one-line message."""
    if values and n_programs * max_values > MAX_VALUE_ELEMENTS:
        raise ValueError(
            f"values=True would need {n_programs * max_values:,} float32 snapshots "
            f"({n_programs} programs x {max_values:,}); value snapshots are for small "
            f"runs (at most {MAX_VALUE_ELEMENTS:,}): use smaller shapes or "
            "values=False"
        )
    return TraceBuffers.allocate(n_programs, max_events, max_values if values else 0,
                                 device=device, fill=fill)  # fmt: skip


def trace_args(
    bufs: TraceBuffers | None, device: torch.device | str, values: bool = False
) -> tuple[tuple, dict]:
    """A launch's trace arguments: the three buffer pointers, positional, and the
    constexprs ``TRACE``, ``VALUES``, ``GPU_CLOCK``, ``MAX_EV``, ``MAX_VAL``. With
    ``bufs=None`` (untraced) one-element placeholders and ``TRACE=False``."""
    if bufs is None:
        i64 = torch.empty(1, dtype=torch.int64, device=device)
        ptrs = (i64, i64, torch.empty(1, dtype=torch.float32, device=device))
        return ptrs, {"TRACE": False, "VALUES": False, "GPU_CLOCK": GPU_CLOCK,
                      "MAX_EV": 1, "MAX_VAL": 1}  # fmt: skip
    return bufs.kernel_args(), {
        "TRACE": True, "VALUES": bool(values), "GPU_CLOCK": GPU_CLOCK,
        "MAX_EV": bufs.max_events, "MAX_VAL": bufs.max_values,
    }  # fmt: skip


@triton.jit
def _clock(GPU_CLOCK: tl.constexpr):
    if GPU_CLOCK:
        t = tl.inline_asm_elementwise(
            "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False,
            pack=1,
        )  # fmt: skip
    else:
        t = tl.full([], -1, tl.int64)
    return t


@triton.jit
def _smid(GPU_CLOCK: tl.constexpr):
    if GPU_CLOCK:
        s = tl.inline_asm_elementwise(
            "mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=True, pack=1
        ).to(tl.int64)
    else:
        s = tl.full([], -1, tl.int64)
    return s


# --------------------------------------------------------------------------------------
# The recorder: one tuple per program, one call per step
# --------------------------------------------------------------------------------------
# A kernel builds its launch's trace switches into one constexpr tuple,
# ``TC = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)``, opens its recorder
# with ``tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, block, TC)``, records
# each step with ``tr = rec(tr, TC, STEP, row, col, x, nbytes)`` and closes it with
# ``trace_stop(tr, TC)``. The recorder ``tr`` is a tuple of run-time values (the
# three buffers, the program, the event counter ``ev``, the value offset ``voff``
# and the iteration's staging, ``ev_base`` and ``stg``), which Triton passes through
# helpers and loops like one value; ``TC`` stays apart because a helper's return
# value is never a constexpr. With ``TRACE`` false every helper returns ``tr``
# unchanged and writes nothing, and the compiled kernel is the untraced one (the
# arguments of ``rec`` are dead code; ``tests/test_kinst.py`` compares the code).
#
# Staged events: with ``STAGE`` (events only, no value snapshots: what a GPU
# schedule trace records) the events of one inner-loop iteration, opened by
# :func:`iter_open` and closed by :func:`iter_close`, are built in a small register
# tile ``stg``, one row per event, and written with one store when the iteration
# ends instead of one store per event (measured in ``bench/NOTES.md``). The records
# are the same either way (tests compare the two). Whether an iteration is open is
# the shape of ``stg``: a ``16 x 8`` tile while open, a scalar otherwise.


@triton.jit
def trace_start(ev_ptr, hdr_ptr, val_ptr, prog, bh, block, TC: tl.constexpr):
    """Open program ``prog``'s recorder: with ``TRACE``, its identity (``bh``,
    ``block``) and start time into its header row; return the recorder."""
    TRACE: tl.constexpr = TC[0]
    GPU_CLOCK: tl.constexpr = TC[2]
    if TRACE:
        offs = tl.arange(0, 8)
        t = _clock(GPU_CLOCK)
        sm = _smid(GPU_CLOCK)
        h = tl.where(offs == 2, bh, 0).to(tl.int64)
        h = tl.where(offs == 3, block, h)
        h = tl.where(offs == 4, sm, h)
        h = tl.where(offs == 5, t, h)
        tl.store(hdr_ptr + prog.to(tl.int64) * 8 + offs, h,
                 mask=(offs >= 2) & (offs < 6))  # fmt: skip
    ev = tl.zeros([], tl.int32)
    return ev_ptr, hdr_ptr, val_ptr, prog, ev, tl.zeros([], tl.int64), ev, ev


@triton.jit
def trace_stop(tr, TC: tl.constexpr):
    """Close the recorder: the event and value counts and the end time into the
    program's header row."""
    ev_ptr, hdr_ptr, val_ptr, prog, ev, voff, ev_base, stg = tr
    TRACE: tl.constexpr = TC[0]
    GPU_CLOCK: tl.constexpr = TC[2]
    if TRACE:
        offs = tl.arange(0, 8)
        t = _clock(GPU_CLOCK)
        h = tl.where(offs == 0, ev, 0).to(tl.int64)
        h = tl.where(offs == 1, voff, h)
        h = tl.where(offs == 6, t, h)
        h = tl.where(offs == 7, 0, h)
        m = (offs == 0) | (offs == 1) | (offs == 6) | (offs == 7)
        tl.store(hdr_ptr + prog.to(tl.int64) * 8 + offs, h, mask=m)


@triton.jit
def _event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, voff, vrows, vcols,
           MAX_EV: tl.constexpr, GPU_CLOCK: tl.constexpr):  # fmt: skip
    """Write event record number ``ev`` of program ``prog``. Events past ``MAX_EV``
    are dropped (the header's count still counts them: the decoder reports the
    overflow)."""
    offs = tl.arange(0, 16)
    t = _clock(GPU_CLOCK >= 2)
    sm = _smid(GPU_CLOCK >= 2)
    f = tl.where(offs == 0, op, 0).to(tl.int64)
    f = tl.where(offs == 1, tensor, f)
    f = tl.where(offs == 2, row, f)
    f = tl.where(offs == 3, col, f)
    f = tl.where(offs == 4, nbytes, f)
    f = tl.where(offs == 5, voff, f)
    f = tl.where(offs == 6, vrows, f)
    f = tl.where(offs == 7, vcols, f)
    f = tl.where(offs == 8, t, f)
    f = tl.where(offs == 9, sm, f)
    evv = (offs * 0 + ev).to(tl.int64)
    base = (prog.to(tl.int64) * MAX_EV + evv) * 10
    tl.store(ev_ptr + base + offs, f, mask=(offs < 10) & (evv < MAX_EV))


@triton.jit
def _snapshot(val_ptr, prog, voff, x, MAX_VAL: tl.constexpr):
    """Store ``x`` (a tile, or a vector as ``R x 1``) row-major at ``voff``."""
    if len(x.shape) == 2:
        offs = (
            tl.arange(0, x.shape[0])[:, None] * x.shape[1]
            + tl.arange(0, x.shape[1])[None, :]
        )
    else:
        offs = tl.arange(0, x.shape[0])
    pos = (offs + voff).to(tl.int64)
    tl.store(val_ptr + prog.to(tl.int64) * MAX_VAL + pos, x.to(tl.float32),
             mask=pos < MAX_VAL)  # fmt: skip


@triton.jit
def rec(tr, TC: tl.constexpr, STEP: tl.constexpr, row, col, x, nbytes=0):
    """Record step ``STEP`` (e.g. ``step.LOAD_K``, :mod:`._steps`) of tile ``(row, col)``: ``x`` is
    what it produced or moved (its snapshot with ``VALUES``: a tile, or a vector
    stored as a column), ``nbytes`` the bytes it moved between HBM and SRAM (0 for
    a computation). Returns the recorder, advanced."""
    ev_ptr, hdr_ptr, val_ptr, prog, ev, voff, ev_base, stg = tr
    TRACE: tl.constexpr = TC[0]
    VALUES: tl.constexpr = TC[1]
    GPU_CLOCK: tl.constexpr = TC[2]
    MAX_EV: tl.constexpr = TC[3]
    MAX_VAL: tl.constexpr = TC[4]
    if TRACE:
        op: tl.constexpr = STEP // _steps.BASE
        tensor: tl.constexpr = STEP % _steps.BASE
        if len(stg.shape) == 2:  # staged: fields 0-4 into row ev of the tile
            c = tl.arange(0, 8)[None, :]
            r = tl.arange(0, 16)[:, None]
            new = tl.where(c == 0, op, tl.where(c == 1, tensor, stg))
            new = tl.where(c == 2, row, new)
            new = tl.where(c == 3, col, new)
            new = tl.where(c == 4, nbytes, new)
            stg = tl.where(r == ev, new, stg)
        elif VALUES:
            if len(x.shape) == 2:
                vcols: tl.constexpr = x.shape[1]
            else:
                vcols: tl.constexpr = 1
            _event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, voff, x.shape[0],
                   vcols, MAX_EV, GPU_CLOCK)  # fmt: skip
            _snapshot(val_ptr, prog, voff, x, MAX_VAL)
            voff = voff + x.shape[0] * vcols
        else:
            _event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, -1, 0, 0, MAX_EV,
                   GPU_CLOCK)  # fmt: skip
        ev = ev + 1
    return ev_ptr, hdr_ptr, val_ptr, prog, ev, voff, ev_base, stg


@triton.jit
def iter_open(tr, TC: tl.constexpr):
    """Open an inner-loop iteration: with ``STAGE``, its events go to a register
    tile (one row per event: op, tensor, row, col, nbytes, and voff = -1, vrows =
    vcols = 0 for "no snapshot") until :func:`iter_close`."""
    ev_ptr, hdr_ptr, val_ptr, prog, ev, voff, ev_base, stg = tr
    TRACE: tl.constexpr = TC[0]
    STAGE: tl.constexpr = TC[5]
    if TRACE:
        if STAGE:
            c = tl.arange(0, 8)[None, :]
            tile = tl.where(c == 5, -1, tl.zeros([16, 8], tl.int32))
            tr = ev_ptr, hdr_ptr, val_ptr, prog, ev * 0, voff, ev, tile
    return tr


@triton.jit
def iter_close(tr, TC: tl.constexpr):
    """Close an iteration: write its staged rows ``0 <= r < ev`` as events
    ``ev_base + r`` with one store (fields 8-9, time and SM, -1: staging is used
    without per-event clocks)."""
    ev_ptr, hdr_ptr, val_ptr, prog, ev, voff, ev_base, stg = tr
    MAX_EV: tl.constexpr = TC[3]
    if len(stg.shape) == 2:
        r = tl.arange(0, 16)[:, None]
        e = (ev_base + r).to(tl.int64)
        base = ev_ptr + (prog.to(tl.int64) * MAX_EV + e) * 10
        keep = (r < ev) & (e < MAX_EV)
        c = tl.arange(0, 8)[None, :]
        tl.store(base + c, stg.to(tl.int64), mask=keep & (c < 8))
        c2 = tl.arange(0, 2)[None, :]
        tl.store(base + 8 + c2, tl.full([16, 2], -1, tl.int64), mask=keep & (c2 < 2))
        tr = ev_ptr, hdr_ptr, val_ptr, prog, ev_base + ev, voff, ev_base, ev_base * 0
    return tr
