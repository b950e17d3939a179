"""Recording in Triton's interpreter with the language patched once per launch
(flashanim.trace._interp.patch_once) gives the same traces as Triton's own way."""

from __future__ import annotations

import contextlib
import importlib

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import numpy as np
import pytest

record_module = importlib.import_module("flashanim.trace.record")

pytestmark = pytest.mark.skipif(
    flashanim.kernels.default_device().type != "cpu", reason="the interpreter path only"
)


def _events(trace):
    return [(e.op, e.tensor, e.row, e.col, e.program, e.step, e.nbytes, e.bh)
            for e in trace.events]  # fmt: skip


@pytest.mark.parametrize(
    ("kernel", "kw"),
    [
        ("fa2-fwd", dict(seq_len=13, head_dim=4, block_m=4, block_n=4, causal=True)),
        ("fa2-bwd", dict(seq_len=12, head_dim=4, block_m=4, block_n=4)),
        ("fa1-fwd", dict(seq_len=8, head_dim=4, block_m=4, block_n=4)),
        ("standard", dict(seq_len=8, head_dim=4, block_m=4, block_n=4)),
    ],
)
def test_same_trace_as_with_tritons_patching(monkeypatch, kernel, kw):
    ours = record_module.record(kernel, seed=3, cache=False, **kw)
    monkeypatch.setattr(record_module, "patch_once", contextlib.nullcontext)
    theirs = record_module.record(kernel, seed=3, cache=False, **kw)
    assert _events(ours) == _events(theirs)
    for a, b in zip(ours.events, theirs.events, strict=True):
        if a.value is None or b.value is None:
            assert a.value is None and b.value is None
        else:
            np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    assert ours.tensors.keys() == theirs.tensors.keys()
    for name in ours.tensors:
        np.testing.assert_array_equal(ours.tensors[name], theirs.tensors[name])


def test_interpreter_restored_after_the_block():
    from triton.runtime import interpreter as it

    from flashanim.trace._interp import patch_once

    before = (it._patch_lang, it.GridExecutor.__call__)
    with patch_once():
        assert it._patch_lang is not before[0]
    assert (it._patch_lang, it.GridExecutor.__call__) == before
