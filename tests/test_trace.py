"""flashanim.trace: decoding, JSON round trips, hostile files, HBM traffic.

The traffic tests run every kernel through Triton's interpreter on small, awkward
shapes (sequence lengths that are not multiples of the blocks, ``N_q != N_k``,
``BLOCK_M != BLOCK_N``, several batch-heads, float16) and hold the bytes the
kernel says it moved equal to the closed forms of :mod:`flashanim.trace.traffic`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch as _torch

from flashanim.trace import (
    KERNELS,
    SCHEMA,
    Event,
    Program,
    Trace,
    TraceFormatError,
    TraceMeta,
    closed_form_tile_loads,
    closed_form_traffic,
    decode,
    hbm_traffic,
    io_complexity,
    load_trace,
    record,
    running_traffic,
    save_trace,
    tile_loads,
    traffic_summary,
)
from flashanim.trace.decode import tile_index
from flashanim.trace.io import (
    check_semantics,
    dumps_trace,
    loads_trace,
    trace_from_dict,
    trace_to_dict,
)
from flashanim.trace.traffic import col_visible, row_visible, visible

# These tests record animation-size traces (2x2 .. 8x8 blocks) through Triton's CPU
# interpreter, as CI does; the compiled GPU trace path is tested in test_fa2.py.
pytestmark = pytest.mark.skipif(
    _torch.cuda.is_available(),
    reason="interpreter-path trace tests (animation-size blocks); run on the CPU",
)

# --------------------------------------------------------------------- fixtures

#: Small awkward configurations (kwargs of :func:`record`).
CONFIGS = {
    "square": dict(seq_len=8, head_dim=4, block_m=4, block_n=4),
    "causal-tails": dict(
        seq_len=7,
        seq_len_k=6,
        head_dim=3,
        block_m=4,
        block_n=2,
        causal=True,
        heads=2,
    ),
    # K/V block 1 is seen by no query: FA1 never loads it.
    "causal-fp16": dict(
        seq_len=5,
        seq_len_k=9,
        head_dim=5,
        block_m=2,
        block_n=8,
        causal=True,
        dtype="float16",
        batch=2,
    ),
    "wide-fp16": dict(
        seq_len=6,
        seq_len_k=4,
        head_dim=2,
        block_m=2,
        block_n=4,
        dtype="float16",
    ),
}


@cache
def _recorded(kernel: str, config: str) -> Trace:
    return record(kernel, values=True, seed=3, **CONFIGS[config])


def _meta(**kw) -> TraceMeta:
    base = dict(
        kernel="fa2-fwd",
        batch=1,
        heads=1,
        seq_len_q=6,
        seq_len_k=5,
        head_dim=3,
        block_m=4,
        block_n=4,
        causal=False,
        dtype="float32",
        softmax_scale=0.5,
        device="cpu",
        values=True,
    )
    base.update(kw)
    return TraceMeta(**base)


def _small_trace() -> Trace:
    """A hand-made trace with awkward values (no kernel run)."""
    meta = _meta(seed=7, created="2024-01-01T00:00:00+00:00")
    s = np.array([[0.5, -np.inf, 1e-310], [-0.0, np.nan, 3.0]])
    events = (
        Event(0, 0, 0, "load", "Q", 0, -1, 36, 0, value=np.arange(12.0).reshape(4, 3)),
        Event(1, 0, 1, "qk", "S", 0, 0, 0, 0, value=s),
        Event(2, 0, 2, "store", "O", 0, -1, 36, 0, time_ns=123, sm=4),
        Event(3, 1, 0, "load", "K", -1, 1, 12, 0),
    )
    programs = (
        Program(0, 0, 0, 3, sm=4, start_ns=100, end_ns=200, launch="fwd"),
        Program(1, 0, 1, 1, launch="fwd"),
    )
    tensors = {
        "Q": np.linspace(-1, 1, 18).reshape(1, 1, 6, 3),
        "LSE": np.array([[[1.0, -np.inf, np.inf, 2.0, 3.0, np.nan]]]),
    }
    return Trace(meta, events, programs, tensors)


# --------------------------------------------------------------------- import


def test_import_does_not_import_manim_or_the_kernels():
    code = (
        "import sys, flashanim.trace\n"
        "bad = [m for m in ('manim', 'flashanim.kernels', 'triton')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
        "flashanim.trace.record('fa2-fwd', seq_len=2, head_dim=2, block_m=2,"
        " block_n=2)\n"
        "assert 'manim' not in sys.modules\n"
    )
    env = {**os.environ, "FLASHANIM_DEVICE": "cpu"}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------- decode


def _raw(programs: list[list[list[int]]], *, values=None, max_ev=4, kernel="fa2-fwd"):
    """A RawTrace of one launch from hand-written records (header written)."""
    import torch
    from flashanim.kernels._trace import RawTrace, TraceBuffers

    n_val = 0 if values is None else max(len(v) for v in values)
    bufs = TraceBuffers.allocate(len(programs), max_ev, n_val)
    for p, recs in enumerate(programs):
        for s, r in enumerate(recs[:max_ev]):
            bufs.events[p, s] = torch.tensor(r)
        nv = 0 if values is None else len(values[p])
        if values is not None and nv:
            bufs.values[p, :nv] = torch.tensor(values[p])
        bufs.header[p] = torch.tensor([len(recs), nv, p, p, -1, -1, -1, 0])
    return RawTrace(kernel, [bufs], ["fwd"], {}, 4, 4)


def _code(op: str, tensor: str) -> tuple[int, int]:
    from flashanim.kernels._trace import OPS, TENSORS

    return OPS.index(op), TENSORS.index(tensor)


def test_decode_crops_snapshots_and_numbers_programs_across_launches():
    ld, q = _code("load", "Q")
    qk, s = _code("qk", "S")
    meta = _meta(seq_len_q=6, seq_len_k=5, head_dim=3)  # last blocks: 2 and 1 rows
    tile = list(range(16))  # a 4x4 snapshot (head dim padded 3 -> 4)
    raw = _raw(
        [
            [[ld, q, 1, -1, 24, 0, 4, 4, -1, -1], [qk, s, 1, 1, 0, 16, 4, 4, 55, 3]],
            [[ld, q, 0, -1, 48, -1, 0, 0, -1, -1]],
        ],
        values=[tile + [v + 100 for v in tile], []],
    )
    raw2 = _raw([[[ld, q, 0, -1, 48, -1, 0, 0, -1, -1]]])
    raw.launches += raw2.launches
    raw.names.append("second")
    tr = decode(raw, meta)
    assert [p.program for p in tr.programs] == [0, 1, 2]
    assert [p.launch for p in tr.programs] == ["fwd", "fwd", "second"]
    assert [(e.program, e.step) for e in tr] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    q_tile = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(tr.events[0].value, q_tile[:2, :3])  # 6 - 4 rows
    np.testing.assert_array_equal(tr.events[1].value, q_tile[:2, :1] + 100)
    assert tr.events[0].time_ns is None and tr.events[0].sm is None
    assert (tr.events[1].time_ns, tr.events[1].sm) == (55, 3)
    assert tr.events[2].value is None
    assert tr.programs[0].sm is None and tr.programs[0].start_ns is None


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.launches[0].header.__setitem__((0, 0), -1), "never ran"),
        (lambda r: r.launches[0].header.__setitem__((0, 0), 9), "overflowed its event"),
        (
            lambda r: r.launches[0].header.__setitem__((0, 1), 99),
            "overflowed its value",
        ),
        (
            lambda r: r.launches[0].events.__setitem__((0, 0, 0), 99),
            "unknown operation",
        ),
        (lambda r: r.launches[0].events.__setitem__((0, 0, 1), 77), "unknown tensor"),
        (lambda r: r.launches[0].events.__setitem__((0, 0, 4), -5), "negative byte"),
        (lambda r: r.launches[0].events.__setitem__((0, 1), -1), "never written"),
        (lambda r: r.launches[0].events.__setitem__((0, 0, 5), 14), "outside"),
    ],
)
def test_decode_refuses_broken_buffers(mutate, message):
    ld, q = _code("load", "Q")
    raw = _raw(
        [[[ld, q, 0, -1, 48, 0, 4, 4, -1, -1], [ld, q, 1, -1, 24, -1, 0, 0, -1, -1]]],
        values=[list(range(16))],
    )
    decode(raw, _meta())  # the unbroken buffers decode
    mutate(raw)
    with pytest.raises(TraceFormatError, match=message):
        decode(raw, _meta())


@pytest.mark.parametrize("kernel", KERNELS)
def test_decoded_snapshots_match_the_tensors(kernel):
    tr = _recorded(kernel, "causal-tails")
    m = tr.meta
    q, k, v = (tr.tensors[n] for n in ("Q", "K", "V"))
    checked = 0
    for e in tr.events:
        if e.value is None:
            continue
        b, h = divmod(e.bh, m.heads)
        rows = slice(e.row * m.block_m, (e.row + 1) * m.block_m)
        if (e.op, e.tensor) == ("load", "Q"):
            np.testing.assert_array_equal(e.value, q[b, h, rows])
        elif (e.op, e.tensor) in (("load", "K"), ("load", "V")):
            j = tile_index(e.tensor, e.row, e.col)
            src = k if e.tensor == "K" else v
            np.testing.assert_array_equal(
                e.value, src[b, h, j * m.block_n : (j + 1) * m.block_n]
            )
        elif e.op == "qk":
            cols = slice(e.col * m.block_n, (e.col + 1) * m.block_n)
            want = q[b, h, rows] @ k[b, h, cols].T * m.softmax_scale
            np.testing.assert_allclose(e.value, want, rtol=1e-5, atol=1e-6)
        else:
            continue
        checked += 1
    assert checked >= 3 * m.batch * m.heads


# --------------------------------------------------------------------- JSON


@pytest.mark.parametrize("suffix", [".json", ".json.gz"])
def test_round_trip_is_exact(tmp_path, suffix):
    real = [_recorded(k, "causal-tails") for k in KERNELS]
    for tr in (_small_trace(), *real):
        path = save_trace(tr, tmp_path / f"t{suffix}")
        back = load_trace(path)
        assert back == tr
        assert back.identical(tr)
        assert not back.identical(replace(tr, tensors={}))
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == suffix.endswith(".gz")


def test_round_trip_keeps_every_value_bit():
    tr = _small_trace()
    back = loads_trace(dumps_trace(tr))
    s = back.events[1].value
    assert s[0, 1] == -np.inf and np.isnan(s[1, 1]) and s[0, 2] == 1e-310
    assert math.copysign(1.0, s[1, 0]) == -1.0  # -0.0 stays negative
    assert np.array_equal(back.tensors["LSE"], tr.tensors["LSE"], equal_nan=True)


def test_file_is_standard_json_with_a_compact_event_table(tmp_path):
    path = save_trace(_small_trace(), tmp_path / "t.json")
    text = path.read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in file"))
    assert doc["schema"] == SCHEMA
    assert doc["events"]["rows"][0][:4] == [0, 0, "load", "Q"]
    assert "-inf" in doc["values"][1]["data"][0]


def _doc() -> dict:
    return json.loads(dumps_trace(_small_trace()))


def _set(path: str, value):
    """A mutation setting ``doc[path]`` (dotted; ints index lists)."""

    def mutate(doc):
        *parents, last = (
            int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")
        )
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value

    return mutate


def _delete(path: str):
    def mutate(doc):
        *parents, last = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p) if p.isdigit() else p]
        del node[int(last) if last.isdigit() else last]

    return mutate


CORRUPTIONS = {
    "schema-version": (_set("schema", "flashanim.trace/2"), "unsupported schema"),
    "no-schema": (_delete("schema"), "missing key"),
    "extra-key": (_set("pickle", "cos\nsystem"), "unexpected key"),
    "meta-missing": (_delete("meta.head_dim"), "meta: missing key"),
    "meta-extra": (_set("meta.evil", 1), "meta: unexpected key"),
    "meta-kernel": (_set("meta.kernel", "fa9"), "meta.kernel: unknown 'fa9'"),
    "meta-dtype": (_set("meta.dtype", "float64"), "meta.dtype"),
    "meta-bool-int": (_set("meta.batch", True), "meta.batch: expected an integer"),
    "meta-zero": (_set("meta.seq_len_q", 0), "meta.seq_len_q"),
    "meta-causal": (_set("meta.causal", "yes"), "meta.causal: expected true"),
    "meta-scale": (_set("meta.softmax_scale", "big"), "meta.softmax_scale"),
    "huge-float": (_set("meta.softmax_scale", "<1e999>"), "meta.softmax_scale: number"),
    "huge-value": (_set("values.1.data.0.0", "<-1e400>"), "data[0][0]: number"),
    "huge-int": (_set("events.rows.0.6", 10**30), "out of range"),
    "columns": (_set("events.columns", ["program"]), "events.columns"),
    "row-length": (_set("events.rows.0", [0, 0, "load"]), "expected 9 entries"),
    "unknown-op": (_set("events.rows.0.2", "teleport"), "unknown 'teleport'"),
    "unknown-tensor": (_set("events.rows.0.3", "X"), "(tensor): unknown 'X'"),
    "op-type": (_set("events.rows.0.2", 0), "expected a string"),
    "row-range": (_set("events.rows.0.4", -2), "out of range"),
    "nbytes-negative": (_set("events.rows.0.6", -1), "(nbytes)"),
    "compute-bytes": (_set("events.rows.1.6", 8), "moves no bytes"),
    "step-gap": (_set("events.rows.1.1", 2), "out of order"),
    "unknown-program": (_set("events.rows.3.0", 5), "has no header"),
    "events-missing": (_delete("events.rows.3"), "ends before program 1"),
    "program-order": (_set("programs.rows.1.0", 3), "program 3 where 1"),
    "program-bh": (_set("programs.rows.0.1", 4), "(bh)"),
    "n-events": (_set("programs.rows.0.3", 2), "out of order"),
    "value-event": (_set("values.0.event", 40), "no event 40"),
    "value-order": (_set("values.1.event", 0), "not ascending"),
    "value-ndim": (_set("values.0.shape", [4, 3, 1]), "expected 2 entries"),
    "value-rows": (_set("values.0.shape", [2, 3]), "data: expected 2 entries"),
    "value-fit": (_set("values.0.shape", [4, 4]), "does not fit"),
    "value-string": (_set("values.1.data.0.0", "0.5"), "expected a number"),
    "value-bool": (_set("values.1.data.0.0", False), "expected a number"),
    "value-nested": (_set("values.1.data.0.0", [[1.0]]), "expected a number"),
    "tensor-name": (_set("tensors.Z", {"shape": [1], "data": [1.0]}), "unexpected"),
    "tensor-shape": (_set("tensors.Q.shape", [1, 1, 3, 6]), "does not match"),
    "tensor-dims": (_set("tensors.Q.shape", [1] * 9), "at most 8"),
    "tensor-big": (_set("tensors.Q.shape", [2**20, 2**20]), "too many elements"),
    "not-object": (lambda d: d.clear() or d.update({"schema": SCHEMA}), "missing"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_documents_are_refused(name):
    mutate, message = CORRUPTIONS[name]
    doc = _doc()
    mutate(doc)
    with pytest.raises(TraceFormatError) as info:
        text = json.dumps(doc).replace('"<', "").replace('>"', "")  # raw numbers
        loads_trace(text, where="t.json")
    msg = str(info.value)
    assert msg.startswith("t.json: ")
    assert message in msg, msg


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated JSON"),
        (b"not json at all", "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "expected an object"),
        (b'{"schema": "flashanim.trace/1", "meta": NaN}', "non-standard JSON"),
        (b'{"a": Infinity}', "non-standard JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"x": ' + b"9" * 5000 + b"}", "unreadable JSON number"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_hostile_bytes_are_refused(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(TraceFormatError, match=message) as info:
        load_trace(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_files_are_refused(tmp_path, keep):
    for name in ("t.json", "t.json.gz"):
        good = save_trace(_small_trace(), tmp_path / name).read_bytes()
        bad = tmp_path / f"cut-{name}"
        bad.write_bytes(good[: int(len(good) * keep)])
        with pytest.raises(TraceFormatError, match="truncated|invalid"):
            load_trace(bad)


def test_atomic_save_keeps_the_old_file_when_serialization_fails(tmp_path):
    path = save_trace(_small_trace(), tmp_path / "t.json")
    before = path.read_bytes()
    broken = replace(_small_trace(), meta=replace(_small_trace().meta, kernel="nope"))
    with pytest.raises(TraceFormatError):
        save_trace(broken, path)
    unserializable = replace(
        _small_trace(), meta=replace(_small_trace().meta, softmax_scale=object())
    )
    with pytest.raises(TypeError):
        save_trace(unserializable, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = save_trace(_small_trace(), tmp_path / "t.json.gz")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        save_trace(_recorded("fa2-fwd", "square"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.json.gz"]
    assert load_trace(path).identical(_small_trace())


# --------------------------------------------------------------------- traffic


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kernel", KERNELS)
def test_hbm_traffic_equals_the_closed_form(kernel, config):
    tr = _recorded(kernel, config)
    assert hbm_traffic(tr) == closed_form_traffic(tr.meta)
    s = traffic_summary(tr)
    assert s.matches_closed_form
    assert running_traffic(tr)[-1] == (s.read_bytes, s.write_bytes)
    assert s.loads == len(tr.where(op="load")) and s.stores == len(tr.where(op="store"))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kernel", KERNELS)
def test_every_tile_moves_as_often_as_the_closed_form_says(kernel, config):
    tr = _recorded(kernel, config)
    assert tile_loads(tr) == closed_form_tile_loads(tr.meta)
    assert tile_loads(tr, "store") == closed_form_tile_loads(tr.meta, "store")


@pytest.mark.parametrize("config", ["causal-tails", "causal-fp16", "square"])
@pytest.mark.parametrize("kernel", ["fa2-fwd", "fa1-fwd", "fa2-bwd"])
def test_causal_runs_compute_exactly_the_visible_blocks(kernel, config):
    tr = _recorded(kernel, config)
    m = tr.meta
    pairs: dict[tuple[int, int, int], int] = {}
    for e in tr.where(op="qk"):
        key = (e.bh, e.row, e.col)
        pairs[key] = pairs.get(key, 0) + 1
    want = {
        (bh, i, j)
        for bh in range(m.batch * m.heads)
        for i in range(m.t_r)
        for j in range(m.t_c)
        if visible(m, i, j)
    }
    assert set(pairs) == want
    # The backward computes S once for dK/dV and once again for dQ.
    assert set(pairs.values()) == {2 if kernel == "fa2-bwd" else 1}
    if m.causal:
        assert len(want) < m.batch * m.heads * m.t_r * m.t_c  # something skipped


def test_visibility_counts_agree():
    for causal in (False, True):
        for nq, nk, bm, bn in [(13, 7, 8, 2), (9, 17, 4, 8), (16, 16, 4, 4)]:
            m = _meta(seq_len_q=nq, seq_len_k=nk, block_m=bm, block_n=bn, causal=causal)
            grid = [[visible(m, i, j) for j in range(m.t_c)] for i in range(m.t_r)]
            assert [sum(r) for r in grid] == [row_visible(m, i) for i in range(m.t_r)]
            assert [sum(c) for c in zip(*grid, strict=True)] == [
                col_visible(m, j) for j in range(m.t_c)
            ]


def test_closed_forms_agree_with_the_kernels_own():
    """Each kernel module documents its own per batch-head formula."""
    import importlib

    from flashanim.kernels import RECORDERS

    checked = 0
    for kernel in KERNELS:
        mod = importlib.import_module(f"flashanim.kernels.{RECORDERS[kernel][0]}")
        own = getattr(mod, "hbm_traffic", None)
        if own is None:
            continue
        for config in CONFIGS.values():
            kw = dict(config)
            m = _meta(
                kernel=kernel,
                seq_len_q=kw["seq_len"],
                seq_len_k=kw.get("seq_len_k", kw["seq_len"]),
                head_dim=kw["head_dim"],
                block_m=kw["block_m"],
                block_n=kw["block_n"],
                causal=kw.get("causal", False),
                dtype=kw.get("dtype", "float32"),
            )
            theirs = own(
                m.seq_len_q,
                m.seq_len_k,
                m.head_dim,
                m.elem_bytes,
                m.block_m,
                m.block_n,
                m.causal,
            )
            if all(isinstance(x, dict) for x in theirs.values()):  # by launch
                theirs = [kv for launch in theirs.values() for kv in launch.items()]
            else:
                theirs = list(theirs.items())
            summed: dict[tuple[str, str], int] = {}
            for (op, tensor), nbytes in theirs:
                key = (tensor, "read" if op == "load" else "write")
                summed[key] = summed.get(key, 0) + nbytes
            assert {k: v for k, v in summed.items() if v} == closed_form_traffic(m)
            checked += 1
    assert checked >= len(CONFIGS)


def test_flash_moves_less_than_standard_for_long_sequences():
    kw = dict(seq_len=32, head_dim=2, block_m=16, block_n=16, values=False)
    std = traffic_summary(record("standard", **kw))
    fa2 = traffic_summary(record("fa2-fwd", **kw))
    assert fa2.total_bytes < std.total_bytes


def test_io_complexity():
    a = io_complexity(1024, 64, 100 * 1024, elem_bytes=2)
    b = io_complexity(2048, 64, 100 * 1024, elem_bytes=2)
    assert a.sram_elements == 100 * 1024 // 2
    assert b.flash == pytest.approx(4 * a.flash)  # Θ(N²): doubling N quadruples it
    assert a.ratio == pytest.approx(a.standard / a.flash)
    assert io_complexity(1024, 128, 100 * 1024).flash == pytest.approx(4 * a.flash)
    with pytest.raises(ValueError, match="n must be"):
        io_complexity(0, 64, 1024)
    with pytest.raises(ValueError, match="holds no"):
        io_complexity(8, 8, 1, elem_bytes=2)


# --------------------------------------------------------------------- record


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(kernel="fa3"), ValueError, "fa2-fwd, fa2-bwd, fa1-fwd, standard"),
        (dict(dtype="float64"), ValueError, "float32, float16, bfloat16"),
        (dict(seq_len=0), ValueError, "seq_len must be >= 1"),
        (dict(head_dim=2.5), TypeError, "head_dim must be an integer"),
        (dict(block_m=3), ValueError, "power of two"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(device="tpu"), ValueError, "cpu, cuda"),
        (dict(softmax_scale=float("nan")), ValueError, "finite"),
    ],
)
def test_record_refuses_bad_arguments(kwargs, error, message):
    kw = dict(kernel="fa2-fwd", seq_len=4, head_dim=2, block_m=2, block_n=2)
    kw.update(kwargs)
    with pytest.raises(error, match=message):
        record(kw.pop("kernel"), **kw)


def test_record_fills_meta_and_tensors():
    tr = _recorded("fa2-bwd", "causal-tails")
    m = tr.meta
    cfg = CONFIGS["causal-tails"]
    assert (m.seq_len_q, m.seq_len_k, m.heads, m.causal) == (
        cfg["seq_len"],
        cfg["seq_len_k"],
        cfg["heads"],
        cfg["causal"],
    )
    assert m.softmax_scale == 1 / math.sqrt(3) and m.seed == 3
    assert m.triton_version and m.torch_version and m.created.endswith("+00:00")
    for name in ("Q", "K", "V", "dO", "dQ", "dK", "dV"):
        assert tr.tensors[name].dtype == np.float64
    assert tr.tensors["dK"].shape == (1, cfg["heads"], cfg["seq_len_k"], 3)
    same = record("fa2-fwd", values=False, seed=3, **CONFIGS["causal-tails"])
    np.testing.assert_array_equal(same.tensors["Q"], tr.tensors["Q"])  # seeded
    assert all(e.value is None for e in same.events)


def test_saved_real_trace_file_exists(tmp_path):
    tr = _recorded("fa1-fwd", "causal-fp16")
    p = save_trace(tr, tmp_path / "fa1.json.gz")
    with gzip.open(p, "rt") as f:
        assert json.load(f)["meta"]["kernel"] == "fa1-fwd"
    assert Path(p).stat().st_size < len(json.dumps(trace_to_dict(tr)))


# ------------------------------------------------------- split-K/V decoding

#: Decoding shapes (GQA packed rows, ragged blocks, causal, several splits).
DECODE_CONFIGS = {
    "gqa-one-row": dict(
        seq_len=1,
        seq_len_k=37,
        heads=4,
        heads_kv=1,
        head_dim=5,
        block_n=4,
        num_splits=3,
    ),  # fmt: skip
    "gqa-causal-fp16": dict(
        seq_len=3,
        seq_len_k=22,
        heads=4,
        heads_kv=2,
        head_dim=3,
        block_m=4,
        block_n=4,
        causal=True,
        dtype="float16",
        batch=2,
    ),  # fmt: skip
}


@cache
def _decode_recorded(config: str) -> Trace:
    return record("fa2-decode", values=True, seed=5, **DECODE_CONFIGS[config])


@pytest.mark.parametrize("config", list(DECODE_CONFIGS))
def test_decode_traffic_equals_the_closed_form(config):
    tr = _decode_recorded(config)
    m = tr.meta
    cfg = DECODE_CONFIGS[config]
    assert m.kernel == "fa2-decode" and m.heads_kv == cfg["heads_kv"]
    assert m.rows_q == cfg["heads"] // cfg["heads_kv"] * cfg["seq_len"]
    if "num_splits" in cfg:
        assert m.num_splits == cfg["num_splits"]
    # the summed event bytes are the closed form's, tensor by tensor
    assert hbm_traffic(tr) == closed_form_traffic(m)
    assert traffic_summary(tr).matches_closed_form
    assert tile_loads(tr) == closed_form_tile_loads(m)
    assert tile_loads(tr, "store") == closed_form_tile_loads(m, "store")
    launches = {p.launch for p in tr.programs}
    assert launches == {"split", "reduce"}
    assert sum(p.launch == "reduce" for p in tr.programs) == (
        m.batch * m.heads_kv * m.rows_q
    )


@pytest.mark.parametrize("config", list(DECODE_CONFIGS))
def test_decode_snapshots_merge_to_the_output(config):
    """The reduce's loaded O_s and LSE_s, weighted by exp(LSE_s - LSE), give the
    row's O; the packed row r of K/V head kvh is query r % N_q of head
    kvh * G + r // N_q."""
    tr = _decode_recorded(config)
    m = tr.meta
    o, lse = tr.tensors["O"], tr.tensors["LSE"]
    checked = 0
    for p in (p for p in tr.programs if p.launch == "reduce"):
        ev = {(e.op, e.tensor): e for e in tr.of_program(p.program)}
        b, kvh = divmod(p.bh, m.heads_kv)
        r = p.block
        h, q = kvh * m.group + r // m.seq_len_q, r % m.seq_len_q
        ls = ev[("load", "LSE_s")].value[: m.num_splits, 0]
        os_ = ev[("load", "O_s")].value[: m.num_splits]
        assert ev[("merge", "O")].value.shape == (1, m.head_dim)
        if not np.isfinite(lse[b, h, q]):  # a row that sees no key
            continue
        w = np.exp(ls - lse[b, h, q])
        np.testing.assert_allclose(w @ os_, o[b, h, q], rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(ev[("merge", "O")].value[0], o[b, h, q],
                                   rtol=2e-3, atol=2e-3)  # fmt: skip
        checked += 1
    assert checked >= m.batch * m.heads * m.seq_len_q // 2


def test_decode_round_trip_and_meta_fields(tmp_path):
    tr = _decode_recorded("gqa-causal-fp16")
    back = load_trace(save_trace(tr, tmp_path / "d.json.gz"))
    assert back.identical(tr) and back.meta.heads_kv == 2
    doc = trace_to_dict(tr)
    assert tr.tensors["K"].shape[1] == 2  # K/V keep their own heads
    # the other kernels' files do not grow the decoding fields
    assert "heads_kv" not in trace_to_dict(_recorded("fa2-fwd", "square"))["meta"]
    for key, value, message in [
        ("heads_kv", None, "meta.heads_kv: required for kernel 'fa2-decode'"),
        ("heads_kv", 3, "do not divide 4 query heads"),
        ("num_splits", 0, "meta.num_splits"),
    ]:
        bad = json.loads(json.dumps(doc))
        if value is None:
            del bad["meta"][key]
        else:
            bad["meta"][key] = value
        with pytest.raises(TraceFormatError, match=message):
            trace_from_dict(bad)
    fwd = trace_to_dict(_recorded("fa2-fwd", "square"))
    fwd["meta"]["heads_kv"] = 1
    with pytest.raises(TraceFormatError, match="only kernel 'fa2-decode'"):
        trace_from_dict(fwd)


def test_decode_semantics_refuse_tiles_outside_the_packed_grid():
    tr = _decode_recorded("gqa-one-row")
    m = tr.meta
    reduce = next(p for p in tr.programs if p.launch == "reduce")
    e = tr.of_program(reduce.program)[-1]
    bad = replace(tr, events=tuple(
        replace(x, row=m.rows_q) if x.index == e.index else x for x in tr.events
    ))  # fmt: skip
    with pytest.raises(TraceFormatError, match="packed rows G\\*N_q = 4"):
        check_semantics(bad)
    split = tr.where(op="store", tensor="O_s")[0]
    bad = replace(tr, events=tuple(
        replace(x, col=m.num_splits) if x.index == split.index else x
        for x in tr.events
    ))  # fmt: skip
    with pytest.raises(TraceFormatError, match="num_splits = 3"):
        check_semantics(bad)
    with pytest.raises(TraceFormatError, match="split programs"):
        check_semantics(replace(tr, meta=replace(m, num_splits=2)))


def test_record_refuses_decoding_arguments_elsewhere():
    with pytest.raises(ValueError, match="for kernel 'fa2-decode', not 'fa2-fwd'"):
        record("fa2-fwd", seq_len=4, heads_kv=1)
    with pytest.raises(ValueError, match="heads_kv must divide heads"):
        record("fa2-decode", seq_len=1, heads=4, heads_kv=3)


@pytest.mark.parametrize("name", ["nosplit", "split"])
def test_committed_gpu_decode_traces_load_and_match_the_closed_form(name):
    root = Path(__file__).resolve().parents[1] / "media" / "traces"
    tr = load_trace(root / f"decode_{name}.json.gz")
    summary = json.loads((root / "decode_traces.json").read_text())
    m = tr.meta
    assert (m.kernel, m.heads, m.heads_kv) == (
        "fa2-decode",
        summary["heads"],
        summary["heads_kv"],
    )
    assert m.num_splits == summary["traces"][name]["splits"]
    assert hbm_traffic(tr) == closed_form_traffic(m)
    assert all(p.sm is not None and p.start_ns is not None for p in tr.programs)
