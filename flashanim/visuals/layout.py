"""The screen of a forward pass: HBM and SRAM panels, tiles, counters, code, progress.

:class:`ForwardLayout` places everything on a 16:9 frame (14.2 x 8 units) so that
nothing overlaps and every label stays readable at 480p::

    caption ........................................................................
    ┌ HBM (off-chip) ─────────┐ ┆ ┌ SRAM (on-chip) ──────────────────────────────┐
    │ Q   K   V   O   LSE     │ ┆ │ Q_i      K_j      V_j       m_i  l_i        │
    │ (heat maps, blocks)     │ ┆ │ S_ij     P_ij     acc       alpha LSE_i     │
    └─────────────────────────┘ ┆ └──────────────────────────────────────────────┘
    i = … of T_r   j = … of T_c   step k of n  ━━━━━━━━━━━━━━━
    HBM traffic (bytes)            kernels/fa2.py (current line lit)

It holds the mobjects only; :class:`~flashanim.visuals.player.TracePlayer` moves them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    Animation,
    Mobject,
    Text,
    VGroup,
)

from ..trace.analysis import finite_range, value_ranges
from .caption import Caption
from .code import CodePanel, KernelSource
from .counters import TrafficCounter
from .memory import chip_boundary, hbm_panel, sram_panel
from .progress import ProgressPanel
from .theme import DARK, Theme
from .tiles import TileGrid, slot_tile, tensor_swatch

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ["ForwardLayout", "Legend", "SRAM_SLOTS"]


#: SRAM slots of the forward pass: name -> (tensor, on-screen label).
SRAM_SLOTS: Mapping[str, tuple[str, str]] = {
    "Q": ("Q", "Q_i"),
    "K": ("K", "K_j"),
    "V": ("V", "V_j"),
    "S": ("S", "S_ij"),
    "P": ("P", "P_ij"),
    "acc": ("acc", "acc"),
    "m": ("m", "m_i"),
    "l": ("l", "l_i"),
    "alpha": ("alpha", "alpha"),
    "LSE": ("LSE", "LSE_i"),
}


class Legend(VGroup):
    """Colour swatches with tensor names (and what the shading means).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import Legend

        class L(Scene):
            def construct(self):
                self.add(Legend(["Q", "K", "V", "O"]))
    """

    def __init__(
        self,
        tensors: Sequence[str],
        *,
        notes: Mapping[str, str] | None = None,
        columns: int = 4,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        notes = notes or {}
        items = VGroup()
        for name in tensors:
            sw = tensor_swatch(name, 0.22, theme)
            label = name + (f"  {notes[name]}" if name in notes else "")
            t = Text(label, font=theme.font, font_size=theme.body_size,
                     color=theme.foreground)  # fmt: skip
            t.next_to(sw, RIGHT, buff=0.1)
            items.add(VGroup(sw, t))
        items.arrange_in_grid(cols=columns, buff=(0.35, 0.16), cell_alignment=LEFT)
        self.items = items
        self.add(items)


class ForwardLayout:
    """Every mobject of an FA2 forward-pass screen, placed.

    Parameters
    ----------
    seq_len, head_dim, block_m, block_n
        Sizes of the run (one head).
    q, k, v
        The head's inputs ``(N, d)`` (shaded heat maps in HBM).
    o_range, value_ranges
        Shading ranges: of O, and of each SRAM tensor (``"S"``, ``"P"``, ``"m"``...).
    numbers
        Write values in SRAM tiles.
    n_steps
        Number of events (for the progress bar).
    code_ops
        ``(op, tensor)`` pairs whose source lines the code panel shows.
    kernel_module
        Kernel file under ``kernels/`` for the code panel.
    theme
        Colours and fonts.
    gpu
        The hardware preset whose figures the memory panels show (``None``: the
        render's ``--gpu`` / ``FLASHANIM_GPU``).

    Attributes
    ----------
    caption, hbm, sram, boundary, grids, slots, counter, progress, code, legend
        The parts; ``grids`` maps ``"Q"``, ``"K"``, ``"V"``, ``"O"``, ``"LSE"`` to
        the HBM :class:`TileGrid` s; ``slots`` maps SRAM slot names to the centre
        point of each slot.

    Examples
    --------
    .. code-block:: python

        import numpy as np
        from manim import Scene
        from flashanim.visuals import ForwardLayout

        class Screen(Scene):
            def construct(self):
                x = np.random.defaultfinite_range(0).standard_normal((16, 4))
                lay = ForwardLayout(16, 4, 4, 4, x, x, x, n_steps=180)
                self.add(lay.static_group())
    """

    def __init__(
        self,
        seq_len: int,
        head_dim: int,
        block_m: int,
        block_n: int,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        *,
        o_range: tuple[float, float] | None = None,
        value_ranges: Mapping[str, tuple[float, float]] | None = None,
        numbers: bool = True,
        n_steps: int = 0,
        t_r: int | None = None,
        t_c: int | None = None,
        code_ops: Iterable[tuple[str, str]] = (),
        kernel_module: str = "fa2",
        title: str = "FlashAttention-2 forward",
        theme: Theme = DARK,
        gpu=None,
    ) -> None:
        self.theme = th = theme
        self.seq_len, self.head_dim = seq_len, head_dim
        self.block_m, self.block_n = block_m, block_n
        self.numbers = numbers
        self.value_ranges = dict(value_ranges or {})
        t_r = t_r or -(-seq_len // block_m)
        t_c = t_c or -(-seq_len // block_n)

        # caption (top) -------------------------------------------------------------
        self.captions = Caption(th)
        self.title = self.captions.make_title(title)

        # panels --------------------------------------------------------------------
        top, bottom = 3.35, -0.3
        self.hbm = hbm_panel(gpu, width=4.6, height=top - bottom, theme=th)
        self.hbm.move_to([-7.0 + 0.1 + 2.3, (top + bottom) / 2, 0])
        self.sram = sram_panel(gpu, width=8.95, height=top - bottom, theme=th)
        self.sram.move_to([7.0 - 0.05 - 4.475, (top + bottom) / 2, 0])
        gap_x = (self.hbm.get_right()[0] + self.sram.get_left()[0]) / 2
        self.boundary = chip_boundary(top + 0.05, bottom - 0.05, gap_x, theme=th)

        # HBM grids -----------------------------------------------------------------
        avail_h = self.hbm.content_top() - 0.3 - (bottom + 0.12)
        cell_h = min(0.18, avail_h / seq_len)
        cell_w = min(0.22, 0.9 / head_dim)
        ranges = {"Q": finite_range(q), "K": finite_range(k), "V": finite_range(v)}
        self.grids: dict[str, TileGrid] = {}
        kw = dict(cell_width=cell_w, cell_height=cell_h, label_size=th.label_size,
                  theme=th)  # fmt: skip
        self.grids["Q"] = TileGrid(
            "Q",
            q,
            block_rows=block_m,
            label="Q",
            row_indices=True,
            value_range=ranges["Q"],
            **kw,
        )
        self.grids["K"] = TileGrid(
            "K",
            k,
            block_rows=block_n,
            label="K",
            row_indices=True,
            value_range=ranges["K"],
            **kw,
        )
        self.grids["V"] = TileGrid(
            "V", v, block_rows=block_n, label="V", value_range=ranges["V"], **kw
        )
        self.grids["O"] = TileGrid(
            "O",
            shape=(seq_len, head_dim),
            block_rows=block_m,
            label="O",
            value_range=o_range,
            **kw,
        )
        self.grids["LSE"] = TileGrid(
            "LSE", shape=(seq_len, 1), block_rows=block_m, label="LSE",
            value_range=self.value_ranges.get("LSE"), **kw,
        )  # fmt: skip
        row = VGroup(*(self.grids[n] for n in ("Q", "K", "V", "O", "LSE")))
        row.arrange(RIGHT, buff=0.3, aligned_edge=UP)
        row.move_to(self.hbm.box.get_center())
        row.align_to([0, self.hbm.content_top() - 0.02, 0], UP)
        if row.width > self.hbm.box.width - 0.3:
            row.scale_to_fit_width(self.hbm.box.width - 0.3)
        row.set_x(self.hbm.box.get_center()[0] + 0.08)

        # SRAM slots ----------------------------------------------------------------
        self.tile_w, self.tile_h = 2.28, 1.0
        self.stat_w = 0.52
        left = self.sram.box.get_left()[0] + 0.2
        y_a = self.sram.content_top() - 0.3 - self.tile_h / 2
        y_b = y_a - self.tile_h - 0.38
        xs = [left + self.tile_w / 2 + i * (self.tile_w + 0.12) for i in range(3)]
        x_stat0 = xs[2] + self.tile_w / 2 + 0.2 + self.stat_w / 2
        xs_stat = [x_stat0 + i * (self.stat_w + 0.15) for i in range(2)]
        self.slots: dict[str, np.ndarray] = {
            "Q": np.array([xs[0], y_a, 0]),
            "K": np.array([xs[1], y_a, 0]),
            "V": np.array([xs[2], y_a, 0]),
            "S": np.array([xs[0], y_b, 0]),
            "P": np.array([xs[1], y_b, 0]),
            "acc": np.array([xs[2], y_b, 0]),
            "m": np.array([xs_stat[0], y_a, 0]),
            "l": np.array([xs_stat[1], y_a, 0]),
            "alpha": np.array([xs_stat[0], y_b, 0]),
            "LSE": np.array([xs_stat[1], y_b, 0]),
        }
        self.slot_shapes = {
            "Q": (block_m, head_dim), "K": (block_n, head_dim),
            "V": (block_n, head_dim), "S": (block_m, block_n),
            "P": (block_m, block_n), "acc": (block_m, head_dim),
            "O": (block_m, head_dim),
            "m": (block_m, 1), "l": (block_m, 1), "alpha": (block_m, 1),
            "LSE": (block_m, 1),
        }  # fmt: skip
        # empty placeholders: where tiles will land
        self.placeholders = VGroup()
        for name, (_tensor, label) in SRAM_SLOTS.items():
            ph = self.make_tile(name, None, label=label, placeholder=True)
            self.placeholders.add(ph)

        # bottom strip --------------------------------------------------------------
        self.progress = ProgressPanel(t_r, t_c, n_steps, width=13.9, theme=th)
        self.progress.move_to([0, bottom - 0.32, 0])
        self.progress.align_to([-7.0, 0, 0], LEFT)
        strip_top = self.progress.get_bottom()[1] - 0.15
        self.counter = TrafficCounter(("Q", "K", "V"), ("O", "LSE"), theme=th)
        self.counter.move_to([0, 0, 0]).align_to([-7.0, strip_top, 0], UP + LEFT)
        self.code: CodePanel | None = None
        code_ops = list(code_ops)
        if code_ops:
            try:
                src = KernelSource.from_kernel(kernel_module)
            except (FileNotFoundError, ValueError):
                src = None
            if src is not None:
                self.code = CodePanel(
                    src, code_ops, title=f"kernels/{kernel_module}.py",
                    max_width=9.3, theme=th,
                    window=int((strip_top + 3.95 - 0.35) / 0.27),
                )  # fmt: skip
                self.code.align_to([-2.55, strip_top, 0], UP + LEFT)
        self.legend = Legend(
            ["Q", "K", "V", "O", "S", "P", "m", "l", "alpha", "acc", "LSE"],
            columns=4, theme=th,
        )  # fmt: skip
        self.shade_note = Text(
            "shade = value (faint: low, full colour: high);  −∞ = masked",
            font=th.font,
            font_size=th.body_size,
            color=th.muted,
        )
        legend = VGroup(self.legend, self.shade_note).arrange(DOWN, aligned_edge=LEFT,
                                                              buff=0.2)  # fmt: skip
        legend.align_to([-2.4, strip_top - 0.1, 0], UP + LEFT)

    @classmethod
    def from_trace(
        cls,
        trace,
        *,
        bh: int = 0,
        numbers: bool | None = None,
        theme: Theme = DARK,
        kernel_module: str = "fa2",
        gpu=None,
    ) -> ForwardLayout:
        """The layout for one head (``bh``) of a recorded forward trace.

        ``numbers`` defaults to "values were recorded and tiles are at most 4x4".
        """
        meta = trace.meta
        b, h = divmod(bh, meta.heads)
        t = trace.tensors
        n, d = meta.seq_len_q, meta.head_dim

        def head(name: str, rows: int) -> np.ndarray:
            if name in t:
                return np.asarray(t[name], dtype=float)[b, h]
            return np.zeros((rows, d))

        q, k, v = head("Q", n), head("K", meta.seq_len_k), head("V", meta.seq_len_k)
        ranges = value_ranges(trace.events)
        if "O" in t:
            o = np.asarray(t["O"], dtype=float)[b, h]
            ranges["O"] = ranges["acc"] = finite_range(o)
        if numbers is None:
            numbers = meta.values and max(meta.block_m, meta.block_n, d) <= 4
        ops = sorted({(e.op, e.tensor) for e in trace.events})
        return cls(
            n, d, meta.block_m, meta.block_n, q, k, v,
            o_range=ranges.get("O"), value_ranges=ranges, numbers=numbers,
            n_steps=len(trace.events), t_r=meta.t_r, t_c=meta.t_c, code_ops=ops,
            kernel_module=kernel_module, theme=theme, gpu=gpu,
        )  # fmt: skip

    # -- helpers ----------------------------------------------------------------------
    @property
    def caption(self) -> Mobject:
        """The caption now shown (top left)."""
        return self.captions.mob

    def make_caption_animation(self, text: str, run_time: float = 0.6) -> Animation:
        """Replace the caption with ``text`` (fade out, fade in)."""
        return self.captions.make_animation(text, run_time)

    def make_tile(
        self,
        slot: str,
        values: np.ndarray | None,
        *,
        tensor: str | None = None,
        label: str | None = None,
        placeholder: bool = False,
    ) -> TileGrid:
        """A tile for SRAM slot ``slot`` holding ``values``, placed in its slot.

        ``tensor`` overrides the slot's tensor (``"O"`` for the normalised
        accumulator); ``placeholder`` draws an empty, dim outline.
        """
        th = self.theme
        slot_tensor, slot_label = SRAM_SLOTS[slot]
        tensor = tensor or slot_tensor
        rows, cols = self.slot_shapes.get(tensor, self.slot_shapes[slot])
        if values is not None:
            values = np.asarray(values, dtype=float)
            if values.ndim == 1:
                values = values[:, None]
            rows, cols = values.shape
        stat = cols == 1 and slot in ("m", "l", "alpha", "LSE")
        width = self.stat_w if stat else self.tile_w
        cw = width / max(self.slot_shapes[slot][1], 1)
        ch = self.tile_h / max(self.slot_shapes[slot][0], 1)
        tile = slot_tile(
            tensor,
            values,
            shape=(rows, cols),
            cell_width=cw,
            cell_height=ch,
            label=label or slot_label,
            stat=stat,
            numbers=self.numbers,
            placeholder=placeholder,
            value_range=self.value_ranges.get(tensor),
            shade_strength=0.55 if self.numbers else 1.0,
            theme=th,
        )
        # place by the grid body (the label sits above)
        tile.shift(self.slots[slot] - tile.frame.get_center())
        tile.frame.get_top()
        return tile

    def hbm_block(self, tensor: str, block: int) -> VGroup:
        """The cells of HBM block ``block`` of ``tensor`` (rows of one tile)."""
        size = self.block_n if tensor in ("K", "V") else self.block_m
        return self.grids[tensor].region(block * size, (block + 1) * size)

    def static_group(self) -> VGroup:
        """Panels, HBM grids, placeholders, boundary, counter and progress."""
        return VGroup(
            self.hbm, self.sram, self.boundary, *self.grids.values(),
            self.placeholders, self.counter, self.progress, self.title,
        )  # fmt: skip

    def legend_group(self) -> VGroup:
        """The colour legend and the shading note."""
        return VGroup(self.legend, self.shade_note)


_ = (Mobject, DOWN)
