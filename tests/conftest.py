"""Shared pytest configuration: GPU tests are skipped where there is no CUDA."""

from __future__ import annotations

import os

import pytest

# The scenes and kernels choose their device once per process; tests run on the CPU
# interpreter unless a GPU is present (GPU tests are marked and skipped otherwise).
os.environ.setdefault("FLASHANIM_DEVICE", "auto")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# Recordings are checked, not reused: the trace cache stays off in tests except where
# a test points it at its own folder.
os.environ["FLASHANIM_TRACE_CACHE"] = "off"
