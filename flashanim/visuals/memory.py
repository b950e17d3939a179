"""Memory panels: HBM (off-chip, large, slow) and SRAM (on-chip, small, fast).

The figures on the panels come from :data:`GPU_MEMORY`, a small table with its
sources; the FlashAttention papers argue from exactly this gap between a large, slow
off-chip memory and a small, fast on-chip one.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from manim import (
    DOWN,
    LEFT,
    UP,
    DashedLine,
    RoundedRectangle,
    Text,
    VGroup,
)

from .theme import DARK, Theme

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flashanim.hardware import GpuPreset

__all__ = ["GPU_MEMORY", "GpuMemory", "MemoryPanel", "hbm_panel", "sram_panel",
           "chip_boundary", "other_gpu", "sram_label"]  # fmt: skip


@dataclass(frozen=True)
class GpuMemory:
    """Memory figures of one GPU (as printed on the panels)."""

    name: str
    hbm_capacity: str
    hbm_bandwidth: str
    sram_per_sm: str
    n_sm: int
    sram_bandwidth: str


#: Memory figures by GPU. Sources:
#:
#: * H100 SXM5: 80 GB HBM3 at 3.35 TB/s -- NVIDIA H100 Tensor Core GPU datasheet
#:   (2023); 132 SMs with up to 228 KB of shared memory each -- NVIDIA Hopper
#:   architecture whitepaper ("H100 SM ... 256 KB combined L1/shared, up to 228 KB
#:   shared"), and the CUDA C++ Programming Guide, compute capability 9.0 table.
#:   On-chip bandwidth is not published; ~33 TB/s is the usual estimate
#:   (132 SMs x 128 B/clk x 1.98 GHz).
#: * A100 SXM4 40 GB: 1.555 TB/s -- NVIDIA A100 datasheet; 108 SMs, 192 KB
#:   L1/shared each (164 KB shared); the FlashAttention paper (Dao et al. 2022,
#:   Fig. 1) quotes "SRAM 19 TB/s (20 MB), HBM 1.5 TB/s (40 GB)".
#: * H200 SXM: 141 GB HBM3e at 4.8 TB/s -- NVIDIA H200 datasheet; the same GH100
#:   chip as the H100 (132 SMs, 228 KB shared memory each).
GPU_MEMORY: Mapping[str, GpuMemory] = MappingProxyType(
    {
        "H100": GpuMemory("H100", "80 GB", "3.35 TB/s", "228 KB", 132, "~33 TB/s"),
        "A100": GpuMemory("A100", "40 GB", "1.5 TB/s", "192 KB", 108, "19 TB/s"),
        "H200": GpuMemory("H200", "141 GB", "4.8 TB/s", "228 KB", 132, "~33 TB/s"),
    }
)


def _resolve(gpu: GpuPreset | str | None) -> tuple[GpuMemory, str]:
    """The panel figures and the source line of ``gpu``: a preset (its figures
    from :mod:`flashanim.hardware`), a :data:`GPU_MEMORY` key, or ``None`` (the
    render's one preset, ``FLASHANIM_GPU`` / ``--gpu``)."""
    from flashanim.hardware import preset_from_env

    if gpu is None:
        gpu = preset_from_env()
    if isinstance(gpu, str):
        return GPU_MEMORY[gpu.upper()], ""
    per_sm = GPU_MEMORY[gpu.key.upper()]
    g = GpuMemory(gpu.key.upper(), gpu.hbm.capacity_label, gpu.hbm.bandwidth_label,
                  per_sm.sram_per_sm, per_sm.n_sm,
                  gpu.sram.bandwidth_label.replace(" (est.)", ""))  # fmt: skip
    return g, gpu.source


def sram_label(gpu: GpuPreset | str | None = None) -> str:
    """A short SRAM title of ``gpu`` (as :func:`hbm_panel` reads it), e.g.
    ``"SRAM · 192 KB per SM (A100)"``."""
    g, _ = _resolve(gpu)
    return f"SRAM · {g.sram_per_sm} per SM ({g.name})"


def other_gpu(gpu: GpuPreset, recorded_on: str) -> str:
    """A note for data recorded on another GPU than the render's preset, e.g.
    ``" (recorded there; --gpu is the A100 40 GB)"``; ``""`` when it is the same
    chip.

    >>> from flashanim.hardware import get_preset
    >>> other_gpu(get_preset("h200"), "NVIDIA H200")
    ''
    >>> other_gpu(get_preset("a100"), "NVIDIA H200")
    ' (recorded there; --gpu is the A100 40 GB)'
    """
    if gpu.key.upper() in recorded_on.upper().replace(" ", ""):
        return ""
    return f" (recorded there; --gpu is the {gpu.name})"


class MemoryPanel(VGroup):
    """A labelled memory region: a rounded box, a title and a subtitle.

    Parameters
    ----------
    title
        First line (e.g. ``"HBM · 80 GB · 3.35 TB/s (H100)"``).
    subtitle
        Second, muted line (e.g. ``"off-chip · large · slow"``).
    width, height
        Box size in scene units.
    kind
        ``"hbm"`` or ``"sram"`` (SRAM gets a brighter border: it is the chip).
    theme
        Colours and fonts.

    Attributes
    ----------
    box, title, subtitle
        The parts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import hbm_panel

        class Panels(Scene):
            def construct(self):
                self.add(hbm_panel(width=6, height=4))
    """

    def __init__(
        self,
        title: str,
        subtitle: str,
        *,
        width: float = 6.0,
        height: float = 4.0,
        kind: str = "hbm",
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.kind = kind
        self.theme = theme
        self.box = RoundedRectangle(
            corner_radius=0.12,
            width=width,
            height=height,
            stroke_color=theme.foreground if kind == "sram" else theme.panel_stroke,
            stroke_width=3 if kind == "sram" else 2,
            fill_color=theme.panel_fill,
            fill_opacity=1.0,
        )
        self.title = Text(
            title, font=theme.font, font_size=theme.label_size, color=theme.foreground
        )
        self.subtitle = Text(
            subtitle, font=theme.font, font_size=theme.small_size + 1, color=theme.muted
        )
        for t in (self.title, self.subtitle):
            if t.width > width - 0.3:
                t.scale_to_fit_width(width - 0.3)
        self.title.align_to(self.box, UP + LEFT).shift(0.12 * DOWN + 0.15 * -LEFT)
        self.subtitle.next_to(self.title, DOWN, buff=0.06).align_to(self.title, LEFT)
        self.add(self.box, self.title, self.subtitle)

    def content_top(self) -> float:
        """The y coordinate just below the subtitle: where contents may start."""
        return self.subtitle.get_bottom()[1] - 0.1


def hbm_panel(
    gpu: GpuPreset | str | None = None,
    *,
    width: float = 6.0,
    height: float = 4.0,
    theme: Theme = DARK,
) -> MemoryPanel:
    """The HBM panel, titled with ``gpu``'s capacity and bandwidth (``gpu``: a
    preset, a :data:`GPU_MEMORY` key, or ``None``: the render's ``--gpu``).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import hbm_panel

        class HBM(Scene):
            def construct(self):
                self.add(hbm_panel("A100"))
    """
    g, _ = _resolve(gpu)
    return MemoryPanel(
        f"HBM · {g.hbm_capacity} · {g.hbm_bandwidth} ({g.name})",
        "off-chip · large · slow",
        width=width,
        height=height,
        kind="hbm",
        theme=theme,
    )


def sram_panel(
    gpu: GpuPreset | str | None = None,
    *,
    width: float = 6.0,
    height: float = 4.0,
    theme: Theme = DARK,
) -> MemoryPanel:
    """The SRAM panel (one program's share of on-chip memory); a preset's source
    is named in its subtitle (``gpu`` as in :func:`hbm_panel`).

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import sram_panel

        class SRAM(Scene):
            def construct(self):
                self.add(sram_panel())
    """
    g, src = _resolve(gpu)
    return MemoryPanel(
        f"SRAM · {g.sram_per_sm} per SM × {g.n_sm} · {g.sram_bandwidth} ({g.name})",
        "on-chip · small · fast — one program's tiles"
        + (f" · figures: {src}" if src else ""),
        width=width,
        height=height,
        kind="sram",
        theme=theme,
    )


def chip_boundary(
    top: float, bottom: float, x: float, *, theme: Theme = DARK
) -> VGroup:
    """A dashed vertical line at ``x`` marking the edge of the chip.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import chip_boundary

        class Edge(Scene):
            def construct(self):
                self.add(chip_boundary(3, -3, 0))
    """
    line = DashedLine(
        [x, top, 0], [x, bottom, 0], dash_length=0.12, color=theme.muted,
        stroke_width=2,
    )  # fmt: skip
    return VGroup(line)
