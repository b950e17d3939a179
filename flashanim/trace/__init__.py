"""Recorded kernel traces as plain data: record, decode, save, load, count traffic.

This package is the only bridge between the Triton kernels and the visuals::

    flashanim.kernels  ── recorder(kernel)(q, k, v, ...) ──► RawTrace (torch buffers)
          │                                                       │
          │   record(kernel, seq_len=16, ...)   ◄── decode(raw, meta)
          ▼
    Trace (meta, events, programs, tensors)  ◄──►  save_trace / load_trace (JSON)
          │
          ├──► hbm_traffic / traffic_summary / running_traffic   (counters)
          └──► flashanim.visuals  (one event -> one animation)

* :func:`record` draws seeded inputs, runs a kernel with ``TRACE=True`` and
  decodes its own trace buffers (:func:`decode`) into a :class:`Trace`: every load,
  store and computation of every program, in order, with value snapshots for small
  runs.
* :func:`save_trace` / :func:`load_trace` write and read the JSON schema
  ``"flashanim.trace/1"`` (``.json.gz`` gzip'ed); loading validates everything and
  raises :class:`TraceFormatError` naming the problem.
* :func:`hbm_traffic` sums the bytes each tensor moved; :func:`closed_form_traffic`
  gives the same numbers from each kernel's formulas (the tests hold them equal).
* :mod:`~flashanim.trace.analysis` counts what a trace did: :func:`visited_blocks`,
  :func:`work_summary`, :func:`value_ranges`.

Importing this package imports neither Manim, torch nor Triton: the kernels are
imported when a trace is recorded; the name tables are in the dependency-free
:mod:`~flashanim.trace.names`, so loading a trace file needs none of them.
"""

from __future__ import annotations

from ._protocol import TraceFormatError
from .analysis import finite_range, value_ranges, visited_blocks, work_summary
from .decode import decode, tile_index
from .io import SCHEMA, dumps_trace, load_trace, loads_trace, save_trace
from .model import KERNELS, LOAD_STORE, Event, Program, Trace, TraceMeta
from .record import record
from .traffic import (
    IOComplexity,
    TrafficSummary,
    closed_form_tile_loads,
    closed_form_traffic,
    hbm_traffic,
    io_complexity,
    running_traffic,
    tile_loads,
    traffic_summary,
)

__all__ = [
    "Event",
    "Program",
    "Trace",
    "TraceMeta",
    "KERNELS",
    "LOAD_STORE",
    "SCHEMA",
    "TraceFormatError",
    "record",
    "decode",
    "tile_index",
    "save_trace",
    "load_trace",
    "dumps_trace",
    "loads_trace",
    "hbm_traffic",
    "closed_form_traffic",
    "tile_loads",
    "closed_form_tile_loads",
    "traffic_summary",
    "running_traffic",
    "TrafficSummary",
    "io_complexity",
    "IOComplexity",
    "visited_blocks",
    "work_summary",
    "value_ranges",
    "finite_range",
]
