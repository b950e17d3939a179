"""The kernels' shared recorder (``kernels/_trace.py``) and its use.

A probe kernel records a few steps through the recorder and the records are checked
field by field against what :mod:`flashanim.kernels._trace` documents (tile and
vector snapshots, staged iterations written as one store, the header). The kernels
record the same way: FA2's forward loop is one ``rec`` line per step of
Algorithm 1, and no kernel keeps a copy of the old positional trace helpers. The
event sequences of the real kernels are checked against their documented rules in
``test_fa2.py``, ``test_fa1_standard.py`` and ``test_decode.py``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import flashanim.kernels  # noqa: F401  (before triton: chooses the device)
import pytest
import torch
import triton
import triton.language as tl
from flashanim.kernels import _steps as step
from flashanim.kernels import _trace
from flashanim.kernels._device import INTERPRET
from flashanim.kernels._trace import (
    iter_close,
    iter_open,
    rec,
    trace_start,
    trace_stop,
)

from flashanim.trace.names import OPS, TENSORS

KERNELS = Path(__file__).resolve().parents[1] / "kernels"
on_cpu = pytest.mark.skipif(not INTERPRET, reason="small probe: interpreter only")


@triton.jit
def _probe_inner(acc, X, lo, hi, tr, TC: tl.constexpr, B: tl.constexpr):
    for j in range(lo, hi):
        tr = iter_open(tr, TC)
        x = tl.load(X + j * B + tl.arange(0, B))
        tr = rec(tr, TC, step.LOAD_K, j, 0, x, B * 4)
        acc = acc * 0.5 + x
        tr = rec(tr, TC, step.PV_ACC, j, 1, tl.reshape(acc, [B // 4, 4]) * 2.0)
        tr = iter_close(tr, TC)
    return acc, tr


@triton.jit
def _probe(X, Y, N, ev_ptr, hdr_ptr, val_ptr, B: tl.constexpr, TRACE: tl.constexpr,
           VALUES: tl.constexpr, GPU_CLOCK: tl.constexpr, MAX_EV: tl.constexpr,
           MAX_VAL: tl.constexpr, STAGE: tl.constexpr):  # fmt: skip
    prog = tl.program_id(0)
    TC: tl.constexpr = (TRACE, VALUES, GPU_CLOCK, MAX_EV, MAX_VAL, STAGE)
    tr = trace_start(ev_ptr, hdr_ptr, val_ptr, prog, prog + 10, 7, TC)
    acc = tl.zeros([B], tl.float32)
    tr = rec(tr, TC, step.ROWMAX_M, prog, 0, acc)
    acc, tr = _probe_inner(acc, X, 0, N, tr, TC, B)
    tl.store(Y + prog * B + tl.arange(0, B), acc)
    tr = rec(tr, TC, step.STORE_O, prog, 0, acc, B * 4)
    trace_stop(tr, TC)


def _run_probe(values: bool, stage: bool, n: int = 3, b: int = 8):
    x = torch.arange(n * b, dtype=torch.float32)
    y = torch.zeros(2, b)
    n_ev = 2 + 2 * n
    n_val = b + n * (b + b) + b
    bufs = _trace.TraceBuffers.allocate(2, n_ev, n_val if values else 0)
    _probe[(2,)](x, y, n, *bufs.kernel_args(), B=b, TRACE=True, VALUES=values,
                 GPU_CLOCK=0, MAX_EV=bufs.max_events, MAX_VAL=bufs.max_values,
                 STAGE=stage)  # fmt: skip
    return x, y, bufs


def test_steps_name_an_operation_and_a_tensor():
    assert step.names(step.code("load", "K")) == ("load", "K")
    for op in OPS:
        for t in TENSORS:
            assert step.names(step.code(op, t)) == (op, t)
    assert step.names(step.RESCALE_ACC) == ("rescale", "acc")
    assert step.names(step.LSE_S) == ("lse", "LSE_s")
    assert step.names(step.DQ) == ("dq", "dQ")


@on_cpu
@pytest.mark.parametrize("values", [False, True])
def test_recorder_writes_each_step_as_documented(values):
    n, b = 3, 8
    x, y, bufs = _run_probe(values, stage=False, n=n, b=b)
    ev, hdr = bufs.events, bufs.header
    code = {name: (OPS.index(name[0]), TENSORS.index(name[1]))
            for name in (("rowmax", "m"), ("load", "K"), ("pv", "acc"),
                         ("store", "O"))}  # fmt: skip
    for p in range(2):
        want = [(*code["rowmax", "m"], p, 0, 0, b, 1)]
        for j in range(n):
            want += [(*code["load", "K"], j, 0, b * 4, b, 1),
                     (*code["pv", "acc"], j, 1, 0, b // 4, 4)]  # fmt: skip
        want.append((*code["store", "O"], p, 0, b * 4, b, 1))
        got = ev[p, :, :8].tolist()
        voff = 0
        for g, w in zip(got, want, strict=True):
            op, t, row, col, nb, vrows, vcols = w
            if values:
                assert g == [op, t, row, col, nb, voff, vrows, vcols]
                voff += vrows * vcols
            else:
                assert g == [op, t, row, col, nb, -1, 0, 0]
        assert (ev[p, :, 8:] == -1).all()  # no clocks in the interpreter
        # header: events, values, bh, block, sm, start, end, reserved
        assert hdr[p].tolist() == [len(want), voff, p + 10, 7, -1, -1, -1, 0]
    if values:  # snapshots: row-major tiles, vectors as columns
        acc, off = torch.zeros(b), b
        for j in range(n):
            xj = x[j * b : (j + 1) * b]
            assert torch.equal(bufs.values[0, off : off + b], xj)
            acc = acc * 0.5 + xj
            assert torch.equal(bufs.values[0, off + b : off + 2 * b], acc * 2.0)
            off += 2 * b
        assert torch.equal(bufs.values[0, off : off + b], y[0])


@on_cpu
def test_staged_iterations_write_the_same_records():
    _, y1, one = _run_probe(values=False, stage=False)
    _, y2, staged = _run_probe(values=False, stage=True)
    assert torch.equal(y1, y2)
    assert torch.equal(one.events, staged.events)
    assert torch.equal(one.header, staged.header)


def _rec_calls(fn: ast.FunctionDef) -> list[ast.Call]:
    return [
        n for n in ast.walk(fn)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "rec"
    ]  # fmt: skip


def test_fa2_forward_loop_is_one_line_per_step_of_algorithm_1():
    tree = ast.parse((KERNELS / "fa2.py").read_text())
    fns = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    calls = _rec_calls(fns["_attn_fwd_inner"])
    steps = [ast.unparse(c.args[2]) for c in sorted(calls, key=lambda c: c.lineno)]
    assert steps == [f"step.{s}" for s in (
        "LOAD_K", "LOAD_V", "QK_S", "MASK_S", "ROWMAX_M", "EXP_P", "ALPHA",
        "ROWSUM_L", "RESCALE_ACC", "PV_ACC")]  # fmt: skip
    assert all(c.lineno == c.end_lineno for c in calls)
    epilogue = [ast.unparse(c.args[2]) for c in _rec_calls(fns["_attn_fwd"])]
    assert epilogue == [f"step.{s}" for s in
                        ("LOAD_Q", "NORMALIZE_O", "LSE", "STORE_O", "STORE_LSE")]  # fmt: skip


@pytest.mark.parametrize("name", ["fa2", "fa1", "standard", "decode"])
def test_every_kernel_records_through_the_shared_recorder(name):
    src = (KERNELS / f"{name}.py").read_text()
    tree = ast.parse(src)
    calls = [c for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
             for c in _rec_calls(f)]  # fmt: skip
    assert calls, name
    for c in calls:  # recorder, switches, step, row, col, snapshot[, bytes]
        assert len(c.args) in (6, 7) and c.args[:2][0].id == "tr", ast.unparse(c)
    for old in ("trace_tile", "trace_vector", "stage_tile", "trace_event",
                "trace_begin", "tl.constexpr(op_code", "OPS.index"):  # fmt: skip
        assert old not in src, (name, old)


def test_config_and_hardware_import_no_circle():
    code = (
        "import sys, flashanim.hardware, flashanim.trace.check\n"
        "assert 'flashanim.config' not in sys.modules, 'config imported'\n"
        "import flashanim.config as c, flashanim.errors as e\n"
        "assert c.ConfigError is e.ConfigError is flashanim.hardware.ConfigError\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
