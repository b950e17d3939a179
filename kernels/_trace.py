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

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from flashanim.trace.names import OPS, TENSORS  # (the codes, read without Triton)

__all__ = [
    "OPS",
    "TENSORS",
    "REC_WIDTH",
    "HDR_WIDTH",
    "TraceBuffers",
    "RawTrace",
    "trace_event",
    "trace_tile",
    "trace_vector",
    "trace_values_1d",
    "trace_values_2d",
    "trace_begin",
    "trace_end",
    "trace_open",
    "trace_flush",
    "stage_tile",
    "stage_vector",
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


@triton.jit
def trace_event(
    ev_ptr, prog, ev, op, tensor, row, col, nbytes, voff, vrows, vcols,
    MAX_EV: tl.constexpr, GPU_CLOCK: tl.constexpr,
):  # fmt: skip
    """Write event record number ``ev`` of program ``prog``; return ``ev + 1``.

    ``voff`` is the value-buffer offset of this event's snapshot (``-1``: none) and
    ``vrows x vcols`` its shape. Events past ``MAX_EV`` are dropped (the header's
    event count still counts them, so the decoder can report the overflow).
    """
    offs = tl.arange(0, 16)
    t = _clock(GPU_CLOCK >= 2)
    sm = _smid(GPU_CLOCK >= 2)
    rec = tl.where(offs == 0, op, 0).to(tl.int64)
    rec = tl.where(offs == 1, tensor, rec)
    rec = tl.where(offs == 2, row, rec)
    rec = tl.where(offs == 3, col, rec)
    rec = tl.where(offs == 4, nbytes, rec)
    rec = tl.where(offs == 5, voff, rec)
    rec = tl.where(offs == 6, vrows, rec)
    rec = tl.where(offs == 7, vcols, rec)
    rec = tl.where(offs == 8, t, rec)
    rec = tl.where(offs == 9, sm, rec)
    evv = (offs * 0 + ev).to(tl.int64)  # a tensor even where ev is a Python int
    base = (prog.to(tl.int64) * MAX_EV + evv) * 10
    tl.store(ev_ptr + base + offs, rec, mask=(offs < 10) & (evv < MAX_EV))
    return ev + 1


@triton.jit
def trace_values_2d(val_ptr, prog, voff, x, R: tl.constexpr, C: tl.constexpr,
                    MAX_VAL: tl.constexpr):  # fmt: skip
    """Snapshot the ``R x C`` tile ``x`` at ``voff``; return the next offset."""
    offs = tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :]
    pos = (offs + voff).to(tl.int64)
    tl.store(val_ptr + prog.to(tl.int64) * MAX_VAL + pos, x.to(tl.float32),
             mask=pos < MAX_VAL)  # fmt: skip
    return voff + R * C


@triton.jit
def trace_values_1d(val_ptr, prog, voff, x, R: tl.constexpr, MAX_VAL: tl.constexpr):
    """Snapshot the length-``R`` vector ``x`` at ``voff``; return the next offset."""
    offs = tl.arange(0, R)
    pos = (offs + voff).to(tl.int64)
    tl.store(val_ptr + prog.to(tl.int64) * MAX_VAL + pos, x.to(tl.float32),
             mask=pos < MAX_VAL)  # fmt: skip
    return voff + R


@triton.jit
def trace_begin(hdr_ptr, prog, bh, pid_m, GPU_CLOCK: tl.constexpr):
    """Write the program's identity and start time into its header row."""
    offs = tl.arange(0, 8)
    t = _clock(GPU_CLOCK)
    sm = _smid(GPU_CLOCK)
    h = tl.where(offs == 2, bh, 0).to(tl.int64)
    h = tl.where(offs == 3, pid_m, h)
    h = tl.where(offs == 4, sm, h)
    h = tl.where(offs == 5, t, h)
    tl.store(hdr_ptr + prog.to(tl.int64) * 8 + offs, h, mask=(offs >= 2) & (offs < 6))


@triton.jit
def trace_end(hdr_ptr, prog, ev, voff, GPU_CLOCK: tl.constexpr):
    """Write the event and value counts and the end time into the header row."""
    offs = tl.arange(0, 8)
    t = _clock(GPU_CLOCK)
    h = tl.where(offs == 0, ev, 0).to(tl.int64)
    h = tl.where(offs == 1, voff, h)
    h = tl.where(offs == 6, t, h)
    h = tl.where(offs == 7, 0, h)
    m = (offs == 0) | (offs == 1) | (offs == 6) | (offs == 7)
    tl.store(hdr_ptr + prog.to(tl.int64) * 8 + offs, h, mask=m)


@triton.jit
def trace_tile(
    ev_ptr, val_ptr, prog, ev, voff, op, tensor, row, col, nbytes, x,
    R: tl.constexpr, C: tl.constexpr, VALUES: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, GPU_CLOCK: tl.constexpr,
):  # fmt: skip
    """Record one event whose snapshot (with ``VALUES``) is the ``R x C`` tile ``x``;
    return ``(ev, voff)`` advanced."""
    if VALUES:
        ev = trace_event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, voff, R, C,
                         MAX_EV, GPU_CLOCK)  # fmt: skip
        voff = trace_values_2d(val_ptr, prog, voff, x, R, C, MAX_VAL)
    else:
        ev = trace_event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, -1, 0, 0,
                         MAX_EV, GPU_CLOCK)  # fmt: skip
    return ev, voff


@triton.jit
def trace_vector(
    ev_ptr, val_ptr, prog, ev, voff, op, tensor, row, col, nbytes, x,
    R: tl.constexpr, VALUES: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, GPU_CLOCK: tl.constexpr,
):  # fmt: skip
    """Record one event whose snapshot (with ``VALUES``) is the length-``R`` vector
    ``x`` (stored ``R x 1``); return ``(ev, voff)`` advanced."""
    if VALUES:
        ev = trace_event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, voff, R, 1,
                         MAX_EV, GPU_CLOCK)  # fmt: skip
        voff = trace_values_1d(val_ptr, prog, voff, x, R, MAX_VAL)
    else:
        ev = trace_event(ev_ptr, prog, ev, op, tensor, row, col, nbytes, -1, 0, 0,
                         MAX_EV, GPU_CLOCK)  # fmt: skip
    return ev, voff


# --------------------------------------------------------------------------------------
# Staged events: one store per inner-loop iteration
# --------------------------------------------------------------------------------------
# With ``STAGE`` (events only, no value snapshots: what a GPU schedule trace records),
# the events of one inner-loop iteration are built in a small register tile, one row
# per event, at the point in the code where each happens, and written with one store
# when the iteration ends, instead of one store per event: measured in
# ``bench/NOTES.md``. The records are the same either way (tests compare the two).
# Without ``STAGE`` these helpers are ``trace_tile``/``trace_vector``.


@triton.jit
def trace_open(ev, STAGE: tl.constexpr):
    """Start an iteration: return ``(ev_base, ev, stage)``. With ``STAGE`` the event
    counter restarts at 0 (the row of the stage tile) and ``ev_base`` keeps the
    program's count; without, ``ev`` runs on and the stage is unused.

    The stage is an int32 ``16 x 8`` tile, one row per event: the record's first
    eight fields (op, tensor, row, col, nbytes, and voff = -1, vrows = vcols = 0 for
    "no snapshot"), narrow so that staging an event costs a few register selects."""
    if STAGE:
        c = tl.arange(0, 8)[None, :]
        stg = tl.where(c == 5, -1, tl.zeros([16, 8], tl.int32))
        return ev, ev * 0, stg
    else:
        return ev, ev, tl.zeros([], tl.int32)


@triton.jit
def trace_flush(ev_ptr, prog, ev_base, ev, stg, MAX_EV: tl.constexpr,
                STAGE: tl.constexpr):  # fmt: skip
    """End an iteration: write the staged rows ``0 <= r < ev`` as events
    ``ev_base + r`` (fields 0-7 from the stage, 8-9, time and SM, -1: staging is
    used without per-event clocks); return the program's event count."""
    if STAGE:
        r = tl.arange(0, 16)[:, None]
        e = (ev_base + r).to(tl.int64)
        base = ev_ptr + (prog.to(tl.int64) * MAX_EV + e) * 10
        keep = (r < ev) & (e < MAX_EV)
        c = tl.arange(0, 8)[None, :]
        tl.store(base + c, stg.to(tl.int64), mask=keep & (c < 8))
        c2 = tl.arange(0, 2)[None, :]
        tl.store(base + 8 + c2, tl.full([16, 2], -1, tl.int64), mask=keep & (c2 < 2))
        return ev_base + ev
    else:
        return ev


@triton.jit
def _stage_event(stg, ev, op, tensor, row, col, nbytes):
    """Put event ``ev``'s op, tensor, row, col and byte count into row ``ev``."""
    c = tl.arange(0, 8)[None, :]
    r = tl.arange(0, 16)[:, None]
    rec = tl.where(c == 0, op, tl.where(c == 1, tensor, stg))
    rec = tl.where(c == 2, row, rec)
    rec = tl.where(c == 3, col, rec)
    rec = tl.where(c == 4, nbytes, rec)
    return tl.where(r == ev, rec, stg), ev + 1


@triton.jit
def stage_tile(
    ev_ptr, val_ptr, prog, ev, voff, stg, op, tensor, row, col, nbytes, x,
    R: tl.constexpr, C: tl.constexpr, VALUES: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, GPU_CLOCK: tl.constexpr,
    STAGE: tl.constexpr,
):  # fmt: skip
    """:func:`trace_tile` inside an iteration opened by :func:`trace_open`; return
    ``(ev, voff, stage)``."""
    if STAGE:
        stg, ev = _stage_event(stg, ev, op, tensor, row, col, nbytes)
    else:
        ev, voff = trace_tile(ev_ptr, val_ptr, prog, ev, voff, op, tensor, row, col,
                              nbytes, x, R, C, VALUES, MAX_EV, MAX_VAL,
                              GPU_CLOCK)  # fmt: skip
    return ev, voff, stg


@triton.jit
def stage_vector(
    ev_ptr, val_ptr, prog, ev, voff, stg, op, tensor, row, col, nbytes, x,
    R: tl.constexpr, VALUES: tl.constexpr,
    MAX_EV: tl.constexpr, MAX_VAL: tl.constexpr, GPU_CLOCK: tl.constexpr,
    STAGE: tl.constexpr,
):  # fmt: skip
    """:func:`trace_vector` inside an iteration opened by :func:`trace_open`; return
    ``(ev, voff, stage)``."""
    if STAGE:
        stg, ev = _stage_event(stg, ev, op, tensor, row, col, nbytes)
    else:
        ev, voff = trace_vector(ev_ptr, val_ptr, prog, ev, voff, op, tensor, row, col,
                                nbytes, x, R, VALUES, MAX_EV, MAX_VAL,
                                GPU_CLOCK)  # fmt: skip
    return ev, voff, stg
