"""Where the kernels run: the GPU when CUDA is available, else Triton's interpreter.

Triton decides at decoration time (``@triton.jit``) whether a kernel is compiled or
interpreted, reading ``TRITON_INTERPRET`` when ``triton`` is first imported, so the
choice is made once per process, before any kernel module is imported:

* ``FLASHANIM_DEVICE=cpu`` forces the interpreter (even on a GPU machine);
* ``FLASHANIM_DEVICE=cuda`` insists on the GPU (an error if there is none);
* unset or ``auto``: CUDA when ``torch.cuda.is_available()``, else the interpreter.
"""

from __future__ import annotations

import functools
import os
import sys

import torch

__all__ = [
    "BACKEND", "INTERPRET", "check_device", "cuda_index", "default_device", "gpu_name",
    "pdl_capable",
]  # fmt: skip


def _choose() -> str:
    want = os.environ.get("FLASHANIM_DEVICE", "auto").strip().lower() or "auto"
    if want not in ("auto", "cpu", "cuda"):
        raise ValueError(
            f"FLASHANIM_DEVICE={want!r} is not understood; use 'auto', 'cpu' or 'cuda'"
        )
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("FLASHANIM_DEVICE=cuda, but PyTorch sees no CUDA device")
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cpu":
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                "flashanim needs Triton's CPU interpreter here, but triton was imported "
                "before flashanim.kernels without TRITON_INTERPRET=1; import "
                "flashanim.kernels first or set TRITON_INTERPRET=1 in the environment"
            )
        os.environ["TRITON_INTERPRET"] = "1"
    return want


#: ``"cuda"`` (compiled kernels) or ``"cpu"`` (Triton's interpreter), fixed per process.
BACKEND: str = _choose()
INTERPRET: bool = BACKEND == "cpu"


def default_device() -> torch.device:
    """The device the kernels run on in this process."""
    return torch.device(BACKEND)


def check_device(*tensors: torch.Tensor) -> torch.device:
    """Check that all tensors live on this process's kernel device; return it."""
    dev = default_device()
    for t in tensors:
        if t.device.type != dev.type:
            hint = (
                "move them with .cuda()"
                if BACKEND == "cuda"
                else "this process runs the kernels through Triton's CPU interpreter"
                " (no CUDA, or FLASHANIM_DEVICE=cpu)"
            )
            raise ValueError(
                f"flashanim kernels run on {BACKEND!r} in this process but got a tensor "
                f"on {t.device.type!r}; {hint}"
            )
    return dev


def cuda_index(device: torch.device) -> int:
    """The CUDA device's index (``torch.device("cuda")``: the current device)."""
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.lru_cache(maxsize=8)
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def pdl_capable(device: torch.device) -> bool:
    """Whether kernels on ``device`` can be launched as programmatic dependent
    launches (Triton's ``launch_pdl``, ``gdc_wait``): compiled CUDA kernels on
    compute capability 9.0 (Hopper) or later; never in the interpreter."""
    if INTERPRET or device.type != "cuda":
        return False
    return _capability(cuda_index(device)) >= (9, 0)


@functools.lru_cache(maxsize=8)
def _name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def gpu_name(device: torch.device) -> str:
    """The CUDA device's name (``"NVIDIA H200"``), for rules measured on one GPU
    model; ``""`` in the interpreter or off CUDA."""
    if INTERPRET or device.type != "cuda":
        return ""
    return _name(cuda_index(device))
