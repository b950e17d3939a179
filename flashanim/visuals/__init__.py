"""Manim mobjects and animation factories that play a recorded kernel trace.

Modules, one per topic:

* :mod:`~flashanim.visuals.theme` -- fixed tensor colours, dark and light themes;
* :mod:`~flashanim.visuals.memory` -- HBM and SRAM panels (with real GPU figures);
* :mod:`~flashanim.visuals.tiles` -- tile grids, copy-travel loads and stores;
* :mod:`~flashanim.visuals.stats` -- ``m_i``, ``l_i``, ``alpha``, ``LSE`` columns;
* :mod:`~flashanim.visuals.counters` -- HBM traffic counters;
* :mod:`~flashanim.visuals.code` -- the real kernel source, current line lit;
* :mod:`~flashanim.visuals.progress` -- loop indices and "step k of n";
* :mod:`~flashanim.visuals.layout` -- the forward-pass screen, placed;
* :mod:`~flashanim.visuals.eventplayer` -- :class:`EventPlayer`, the player protocol;
* :mod:`~flashanim.visuals.caption` -- :class:`Caption`, a scene's one caption line;
* :mod:`~flashanim.visuals.player` -- :class:`TracePlayer`: one event, one animation.

Nothing here imports Triton; traces arrive as plain :mod:`flashanim.trace` data.
"""

from __future__ import annotations

from .backward import (
    BWD_DURATIONS,
    BWD_LABELS,
    BWD_SOURCES,
    PHASE_TENSORS,
    BackwardLayout,
    BackwardPlayer,
    split_program,
)
from .caption import Caption, caption_of, source_lines
from .causal import BlockMap, CausalPlayer, CountLine
from .code import (
    OP_PATTERNS,
    CodePanel,
    KernelSource,
    SourceLine,
    kernel_path,
    kernel_source_lines,
)
from .counters import TrafficCounter, format_bytes
from .eventplayer import EventPlayer, events_of
from .layout import SRAM_SLOTS, ForwardLayout, Legend
from .memory import (
    GPU_MEMORY,
    GpuMemory,
    MemoryPanel,
    chip_boundary,
    hbm_panel,
    sram_panel,
)
from .player import DURATIONS, TracePlayer
from .progress import ProgressPanel
from .roundtrip import (
    ROUNDTRIP_DURATIONS,
    ProgressBar,
    RoundTripPlayer,
    SramSlots,
    TrafficTable,
    VisitGrid,
    hbm_rows,
)
from .schedule import (
    BlockColorBar,
    DurationPlot,
    ScheduleChart,
    assign_lanes,
    block_color,
    schedule_stats,
)
from .softmax import (
    FormulaPanel,
    Ledger,
    RowBoard,
    RowPlayer,
    implied_weights,
    pick_row,
    row_values,
)
from .stats import STAT_LABELS, StatColumn
from .theme import DARK, LIGHT, TENSOR_COLORS, THEMES, Theme, get_theme, tensor_color
from .tiles import (
    CopyTravel,
    CrossFade,
    TileGrid,
    format_value,
    hidden_copy,
    make_compute_animation,
    make_load_animation,
    make_store_animation,
)

__all__ = [
    # theme
    "DARK", "LIGHT", "TENSOR_COLORS", "THEMES", "Theme", "get_theme", "tensor_color",
    # memory
    "GPU_MEMORY", "GpuMemory", "MemoryPanel", "chip_boundary", "hbm_panel",
    "sram_panel",
    # tiles
    "TileGrid", "CopyTravel", "CrossFade", "format_value", "hidden_copy",
    "make_load_animation", "make_store_animation", "make_compute_animation",
    # stats, counters, progress, code
    "StatColumn", "STAT_LABELS", "TrafficCounter", "format_bytes", "ProgressPanel",
    "CodePanel", "KernelSource", "SourceLine", "OP_PATTERNS", "kernel_path",
    "kernel_source_lines",
    # the player protocol and the caption
    "EventPlayer", "events_of", "Caption", "caption_of", "source_lines",
    # layout and player
    "ForwardLayout", "Legend", "SRAM_SLOTS",
    "TracePlayer", "DURATIONS",
    # online softmax (one row) and causal masking
    "RowBoard", "RowPlayer", "Ledger", "FormulaPanel", "row_values", "pick_row",
    "implied_weights", "BlockMap", "CausalPlayer", "CountLine",
    # backward pass and GPU schedule
    "BackwardLayout", "BackwardPlayer", "split_program", "BWD_DURATIONS",
    "BWD_SOURCES", "BWD_LABELS", "PHASE_TENSORS", "ScheduleChart", "DurationPlot",
    "BlockColorBar", "assign_lanes", "schedule_stats", "block_color",
    # standard attention and loop order
    "RoundTripPlayer", "SramSlots", "VisitGrid", "TrafficTable",
    "ProgressBar",
    "ROUNDTRIP_DURATIONS", "hbm_rows",
]  # fmt: skip
