"""Trace analysis counts what the events say; reading a trace needs no torch/Triton."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import numpy as np
import pytest
from flashanim.kernels import fa2

from flashanim.trace import (
    finite_range,
    record,
    save_trace,
    value_ranges,
    visited_blocks,
    work_summary,
)
from flashanim.trace.names import OPS, TENSORS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def causal():
    return record("fa2-fwd", seq_len=12, head_dim=4, block_m=4, block_n=4,
                  causal=True, values=True)  # fmt: skip


def test_visited_blocks_are_the_kernels_closed_form(causal):
    m = causal.meta
    want = {
        (i, j)
        for i in range(m.t_r)
        for j, _ in fa2.visited_blocks(
            i, m.seq_len_q, m.seq_len_k, m.block_m, m.block_n, True
        )  # fmt: skip
    }
    assert visited_blocks(causal) == want
    assert len(want) == m.t_r * (m.t_r + 1) // 2  # square blocks: the triangle


def test_work_summary_counts_the_events(causal):
    w = work_summary(causal)
    ev = causal.events
    assert w["qk"] == len(visited_blocks(causal)) == sum(e.op == "qk" for e in ev)
    kv = [e for e in ev if e.op == "load" and e.tensor in ("K", "V")]
    assert (w["kv_loads"], w["kv_bytes"]) == (len(kv), sum(e.nbytes for e in kv))
    assert w["mask"] == sum(e.op == "mask" for e in ev) > 0
    assert w["blocks"] == causal.meta.t_r * causal.meta.t_c


def test_value_ranges_are_finite_and_cover_every_snapshot(causal):
    ranges = value_ranges(causal.events)
    for e in causal.events:
        if e.value is None:
            continue
        v = np.asarray(e.value, float)
        v = v[np.isfinite(v)]
        if v.size:
            lo, hi = ranges[e.tensor]
            assert lo <= v.min() and v.max() <= hi
    assert all(np.isfinite(r).all() for r in ranges.values())
    assert ranges["acc"] == ranges["O"]  # acc becomes O: one shading
    assert finite_range([np.inf, -np.inf, np.nan]) == (0.0, 1.0)
    assert finite_range([[2.0, -np.inf], [-1.0, 0.5]]) == (-1.0, 2.0)


def test_kernels_write_the_codes_of_the_name_tables():
    from flashanim.kernels import _trace

    assert _trace.OPS is OPS and _trace.TENSORS is TENSORS
    assert len(set(OPS)) == len(OPS) and len(set(TENSORS)) == len(TENSORS)


_LOAD = """
import json, sys
from flashanim.trace import load_trace, hbm_traffic, work_summary
t = load_trace(sys.argv[1])
heavy = sorted(m for m in ("torch", "triton", "manim") if m in sys.modules)
print(json.dumps({"events": len(t.events), "heavy": heavy,
                  "bytes": sum(hbm_traffic(t).values()),
                  "qk": work_summary(t)["qk"]}))
"""


def test_reading_a_trace_file_imports_neither_torch_nor_triton(causal, tmp_path):
    path = save_trace(causal, tmp_path / "t.json.gz")
    out = subprocess.run([sys.executable, "-c", _LOAD, str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    assert got["events"] == len(causal.events)
    assert got["qk"] == work_summary(causal)["qk"]
