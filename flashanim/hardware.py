"""GPU memory-hierarchy presets: on-chip SRAM, HBM and host DRAM, with sources.

Pure data (no Manim, no Triton): the memory-hierarchy scene draws what is here, and
prints each figure's ``source`` on screen in small type.

Three presets, chosen with ``FLASHANIM_GPU`` (:func:`preset_from_env`):

``a100`` (default)
    The FlashAttention paper's own figures (Dao et al., *FlashAttention: Fast and
    Memory-Efficient Exact Attention with IO-Awareness*, NeurIPS 2022, Figure 1,
    left): "SRAM: 19 TB/s (20 MB), HBM: 1.5 TB/s (40 GB), main memory (CPU DRAM):
    12.8 GB/s (> 1 TB)", quoted exactly as the paper gives them (an A100 40 GB).
``h100``
    H100 SXM5 80 GB, from NVIDIA's datasheet and Hopper whitepaper.
``h200``
    H200 SXM 141 GB, from NVIDIA's datasheet (same GH100 chip as the H100: same
    SMs, shared memory and clocks; HBM3e instead of HBM3).

How the figures NVIDIA does not publish are derived (stated on screen as
estimates):

* **SRAM size** = SMs x shared memory per SM (the CUDA C++ Programming Guide's
  compute-capability table: up to 228 KB of shared memory per SM on 9.0). For the
  A100 the same rule (108 x 192 KB of L1/shared) gives 20.7 MB, the paper's 20 MB.
* **SRAM bandwidth** = SMs x 128 bytes per clock per SM (the shared-memory/L1
  load bandwidth of Ampere and Hopper SMs) x boost clock. For the A100 this is
  108 x 128 B x 1.41 GHz = 19.5 TB/s, the paper's 19 TB/s; for the H100/H200,
  132 x 128 B x 1.98 GHz = 33.5 TB/s.
* **Host DRAM** is what the GPU sees through its link to the CPU: for SXM boards in
  an HGX/DGX server that is PCIe Gen5 x16, 128 GB/s counting both directions
  (datasheet), so 64 GB/s each way; capacity is the server's (DGX H100 / DGX H200:
  2 TB). On a GH200 Grace Hopper the link would be NVLink-C2C at 900 GB/s instead.

Examples
--------
>>> p = get_preset("a100")
>>> p.sram.bandwidth_label, p.hbm.capacity_label
('19 TB/s', '40 GB')
>>> round(p.sram.bandwidth / p.hbm.bandwidth, 1)
12.7
>>> get_preset("v100")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
flashanim.errors.ConfigError: unknown GPU 'v100' (FLASHANIM_GPU); choose one of: ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from flashanim.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "MemoryLevel",
    "GpuPreset",
    "PRESETS",
    "DEFAULT_GPU",
    "ENV_VAR",
    "get_preset",
    "preset_from_env",
]

#: The environment variable choosing the preset.
ENV_VAR = "FLASHANIM_GPU"
#: The default preset: the FlashAttention paper's A100.
DEFAULT_GPU = "a100"

KB, MB, GB, TB = 1e3, 1e6, 1e9, 1e12


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy.

    Attributes
    ----------
    name
        ``"SRAM"``, ``"HBM"`` or ``"CPU DRAM"``.
    where
        Where it sits, for the viewer (``"on-chip"``, ...).
    capacity, bandwidth
        Bytes and bytes per second (decimal units: 1 TB/s = 1e12 B/s).
    capacity_label, bandwidth_label
        The figures as shown on screen (``"20 MB"``, ``"19 TB/s"``).
    capacity_at_least
        The capacity is a lower bound (the paper's "> 1 TB").
    source
        Where the figures come from, in one short line (printed on screen).
    derivation
        How an estimated figure was computed (empty when quoted).
    """

    name: str
    where: str
    capacity: float
    bandwidth: float
    capacity_label: str
    bandwidth_label: str
    source: str
    derivation: str = ""
    capacity_at_least: bool = False

    def __post_init__(self) -> None:
        if not (self.capacity > 0 and self.bandwidth > 0):
            raise ValueError(f"{self.name}: capacity and bandwidth must be > 0")
        if not self.source:
            raise ValueError(f"{self.name}: every figure needs a source")


@dataclass(frozen=True)
class GpuPreset:
    """The memory hierarchy of one GPU: SRAM, HBM and host DRAM.

    Attributes
    ----------
    key
        ``"a100"``, ``"h100"`` or ``"h200"``.
    name
        Display name (``"A100 40 GB"``).
    sram, hbm, dram
        The three levels, fastest first.
    link
        How the GPU reaches host DRAM (``"PCIe Gen5 x16"``).
    source
        One line naming the main source of the preset.
    """

    key: str
    name: str
    sram: MemoryLevel
    hbm: MemoryLevel
    dram: MemoryLevel
    link: str
    source: str

    @property
    def levels(self) -> tuple[MemoryLevel, MemoryLevel, MemoryLevel]:
        """``(sram, hbm, dram)``: fastest and smallest first."""
        return (self.sram, self.hbm, self.dram)

    @property
    def sources(self) -> tuple[str, ...]:
        """The distinct sources of the preset's figures, in level order."""
        out: list[str] = []
        for s in (self.source, *(lv.source for lv in self.levels)):
            if s not in out:
                out.append(s)
        return tuple(out)

    def bandwidth_ratio(self, faster: str, slower: str) -> float:
        """How many times more bandwidth level ``faster`` has than ``slower``."""
        by = {lv.name: lv for lv in self.levels}
        return by[faster].bandwidth / by[slower].bandwidth

    def capacity_ratio(self, larger: str, smaller: str) -> float:
        """How many times more capacity level ``larger`` has than ``smaller``."""
        by = {lv.name: lv for lv in self.levels}
        return by[larger].capacity / by[smaller].capacity


_PAPER = "FlashAttention paper (Dao et al. 2022), Fig. 1"
_SM_RULE = "SMs × 128 B/clk × boost clock (estimate; not published)"

_A100 = GpuPreset(
    key="a100",
    name="A100 40 GB",
    sram=MemoryLevel(
        "SRAM",
        "on-chip: where the computation happens",
        capacity=20 * MB,
        bandwidth=19 * TB,
        capacity_label="20 MB",
        bandwidth_label="19 TB/s",
        source=_PAPER,
        derivation="108 SMs × 192 KB = 20.7 MB; 108 × 128 B × 1.41 GHz = 19.5 TB/s",
    ),
    hbm=MemoryLevel(
        "HBM",
        "off-chip GPU memory",
        capacity=40 * GB,
        bandwidth=1.5 * TB,
        capacity_label="40 GB",
        bandwidth_label="1.5 TB/s",
        source=_PAPER,
    ),
    dram=MemoryLevel(
        "CPU DRAM",
        "main memory, across the host link",
        capacity=1 * TB,
        bandwidth=12.8 * GB,
        capacity_label="> 1 TB",
        bandwidth_label="12.8 GB/s",
        source=_PAPER,
        capacity_at_least=True,
    ),
    link="the host link (paper: 12.8 GB/s)",
    source=_PAPER,
)

# H100 and H200 SXM share the GH100 chip: 132 SMs, up to 228 KB shared memory per
# SM (CUDA C++ Programming Guide, compute capability 9.0), 1.98 GHz boost clock
# (NVIDIA Hopper architecture whitepaper).
_HOPPER_SMS, _HOPPER_SMEM, _HOPPER_CLOCK = 132, 228 * 1024, 1.98e9
_HOPPER_SRAM = dict(
    capacity=float(_HOPPER_SMS * _HOPPER_SMEM),  # 30.8 MB
    bandwidth=_HOPPER_SMS * 128 * _HOPPER_CLOCK,  # 33.5 TB/s
    capacity_label="31 MB",
    bandwidth_label="≈ 33 TB/s (est.)",
    source="132 SMs × 228 KB (CUDA Guide, cc 9.0); " + _SM_RULE,
    derivation="132 × 228 KiB = 30.8 MB; 132 × 128 B × 1.98 GHz = 33.5 TB/s",
)
_HOST_PCIE5 = "PCIe Gen5 x16: 128 GB/s both ways (datasheet) = 64 GB/s each way"


def _hopper(
    key: str, name: str, hbm_gb: float, hbm_tbs: float, hbm: str, source: str
) -> GpuPreset:
    return GpuPreset(
        key=key,
        name=name,
        sram=MemoryLevel(
            "SRAM", "on-chip: where the computation happens", **_HOPPER_SRAM
        ),
        hbm=MemoryLevel(
            "HBM",
            f"off-chip GPU memory ({hbm})",
            capacity=hbm_gb * GB,
            bandwidth=hbm_tbs * TB,
            capacity_label=f"{hbm_gb:g} GB",
            bandwidth_label=f"{hbm_tbs:g} TB/s",
            source=source,
        ),
        dram=MemoryLevel(
            "CPU DRAM",
            "host memory, across PCIe Gen5",
            capacity=2 * TB,
            bandwidth=64 * GB,
            capacity_label="2 TB (DGX)",
            bandwidth_label="64 GB/s",
            source=f"{_HOST_PCIE5}; DGX {name.split()[0]} system memory 2 TB",
        ),
        link="PCIe Gen5 x16 (a GH200 would use NVLink-C2C, 900 GB/s)",
        source=source,
    )


_H100 = _hopper(
    "h100",
    "H100 SXM 80 GB",
    80,
    3.35,
    "HBM3",
    "NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
)
_H200 = _hopper(
    "h200",
    "H200 SXM 141 GB",
    141,
    4.8,
    "HBM3e",
    "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
)

#: The presets by key.
PRESETS: Mapping[str, GpuPreset] = MappingProxyType(
    {"a100": _A100, "h100": _H100, "h200": _H200}
)


def get_preset(name: str = DEFAULT_GPU) -> GpuPreset:
    """The preset called ``name`` (case and spaces ignored).

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the presets.
    """
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise ConfigError(
            f"unknown GPU {name!r} ({ENV_VAR}); choose one of: {', '.join(PRESETS)}"
        )
    return PRESETS[key]


def preset_from_env(environ: Mapping[str, str] | None = None) -> GpuPreset:
    """The preset named by ``FLASHANIM_GPU`` (default ``a100``, the paper's).

    Examples
    --------
    >>> preset_from_env({"FLASHANIM_GPU": "H100"}).hbm.bandwidth_label
    '3.35 TB/s'
    """
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR, "").strip()
    return get_preset(raw or DEFAULT_GPU)
