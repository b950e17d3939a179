"""The FlashAttention-2 kernels: outputs, gradients, traces and input checks.

Numbers are held to flash-attn's rule against a float64 reference (2x the error of
plain PyTorch attention in the same precision for ``O``, 3x for ``dQ, dK, dV``) on
awkward shapes: sequence lengths 1, 7, 17, 64, 113, ``N_q != N_k``, head dims 4,
16, 40 and 64, blocks smaller than and unequal to each other. The grid is chosen
pairwise (Triton's CPU interpreter is slow), not as a full product.

The trace tests rebuild each program's event sequence from the rule the module
docstring of :mod:`flashanim.kernels.fa2` states, element by element, and compare.
"""

from __future__ import annotations

import math

import flashanim.kernels  # noqa: F401  (before triton: chooses the device)
import pytest
import torch
from _kernel_checks import (
    DEVICE,
    assert_rule,
    blk,
    case_id,
    make_qkv,
    program_records,
    reference_grads,
)
from flashanim.kernels import fa2
from flashanim.kernels._common import GPU_CLOCK
from flashanim.kernels._device import BACKEND, INTERPRET
from flashanim.kernels.attention import flash_attention
from flashanim.kernels.reference import attention_ref

on_gpu = pytest.mark.skipif(BACKEND != "cuda", reason="kernels run on the CPU here")
on_cpu = pytest.mark.skipif(not INTERPRET, reason="interpreter-only behaviour")

# (B, H, N_q, N_k, d, BLOCK_M, BLOCK_N, causal, dtype): pairwise over the axes.
F32, F16 = torch.float32, torch.float16
CASES = [
    (1, 1, 1, 1, 16, 4, 4, False, F32),
    (2, 3, 7, 17, 40, 8, 16, True, F32),
    (1, 2, 17, 7, 4, 4, 4, True, F16),
    (2, 1, 64, 64, 64, 16, 16, True, F16),
    (1, 2, 113, 64, 16, 16, 16, False, F32),
    (1, 1, 17, 113, 40, 8, 16, False, F16),
    (1, 1, 113, 113, 64, 16, 16, True, F32),
    (2, 2, 64, 17, 4, 8, 16, False, F32),
    (1, 1, 1, 113, 16, 4, 4, True, F16),
    (1, 1, 113, 1, 64, 16, 16, True, F16),
    (1, 1, 33, 29, 8, 16, 4, True, F32),
]


def _check(q, k, v, causal, scale, bm, bn, seed=1):
    """Forward, LSE and gradients of the kernels against the rule."""
    o, lse = fa2.attention_forward(q, k, v, causal, scale, bm, bn)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    do = torch.randn(q.shape, generator=gen).to(DEVICE, q.dtype)
    ref = reference_grads(q, k, v, do, causal, scale, upcast=True)
    pt = reference_grads(q, k, v, do, causal, scale, upcast=False)
    assert o.shape == q.shape and o.dtype == q.dtype
    assert_rule("O", o, pt[0], ref[0], 2.0, 1e-5)
    # LSE: the natural-log logsumexp of each row of S, in float32
    d = q.shape[-1]
    s = q.double() @ k.double().transpose(-1, -2) * (scale or 1 / math.sqrt(d))
    if causal:
        keep = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    assert lse.dtype == torch.float32 and lse.shape == q.shape[:3]
    torch.testing.assert_close(lse.double(), torch.logsumexp(s, -1), rtol=1e-4,
                               atol=1e-4 if q.dtype == F32 else 2e-3)  # fmt: skip
    dq, dk, dv = fa2.attention_backward(q, k, v, o, lse, do, causal, scale, bm, bn)
    for name, g, g_pt, g_ref in zip(
        ("dQ", "dK", "dV"), (dq, dk, dv), pt[1:], ref[1:], strict=True
    ):
        assert g.dtype == q.dtype
        assert_rule(name, g, g_pt, g_ref, 3.0, 1e-5)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward_against_reference(case):
    b, h, nq, nk, d, bm, bn, causal, dt = case
    q, k, v = make_qkv(b, h, nq, nk, d, dt, seed=nq * 7 + nk)
    _check(q, k, v, causal, None, blk(bm), blk(bn))


def test_softmax_scale_and_default_blocks():
    q, k, v = make_qkv(1, 2, 37, 21, 24, F32, seed=3)
    _check(q, k, v, True, 0.3, None, None)


def test_strided_inputs():
    """Inputs laid out (B, N, H, d) and viewed as (B, H, N, d): strides honoured."""
    q, k, v = (x.transpose(1, 2) for x in make_qkv(2, 19, 3, 3, 16, F32, seed=4))
    assert not q.is_contiguous()
    _check(q, k, v, False, None, blk(8), blk(8))


def test_autograd_function_matches_sdpa():
    q, k, v = make_qkv(2, 2, 23, 23, 16, F32, seed=5, requires_grad=True)
    o = flash_attention(q, k, v, causal=True)
    o.square().sum().backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    qq, kk, vv = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
    ref.square().sum().backward()
    torch.testing.assert_close(o.double(), ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, (qq.grad, kk.grad, vv.grad), strict=True):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------
# Traces
# ------------------------------------------------------------------------------------


def _tiles(n_q, n_k, bm, bn, causal):
    """Visited and masked tiles from the element-level rule of the docstring."""
    t_r, t_c = -(-n_q // bm), -(-n_k // bn)
    visited, masked = set(), set()
    for i in range(t_r):
        rows = range(i * bm, min((i + 1) * bm, n_q))
        for j in range(t_c):
            cols = range(j * bn, (j + 1) * bn)  # nominal: the tail is masked
            if any(c < n_k and (not causal or c <= r) for r in rows for c in cols):
                visited.add((i, j))
                if any(c >= n_k or (causal and c > r) for r in rows for c in cols):
                    masked.add((i, j))
    return visited, masked


def _expected(launch, blk_idx, n_q, n_k, d, bm, bn, causal, e):
    """(op, tensor, row, col, nbytes) of one program, from the documented rule."""
    visited, masked = _tiles(n_q, n_k, bm, bn, causal)
    nq = lambda i: min(bm, n_q - i * bm) * d * e  # noqa: E731
    nk = lambda j: min(bn, n_k - j * bn) * d * e  # noqa: E731
    r4 = lambda i: min(bm, n_q - i * bm) * 4  # noqa: E731
    out = []
    if launch == "fwd":
        i = blk_idx
        out.append(("load", "Q", i, 0, nq(i)))
        for j in sorted(j for (ii, j) in visited if ii == i):
            out += [("load", "K", j, 0, nk(j)), ("load", "V", j, 0, nk(j)),
                    ("qk", "S", i, j, 0)]  # fmt: skip
            if (i, j) in masked:
                out.append(("mask", "S", i, j, 0))
            out += [("rowmax", "m", i, 0, 0), ("exp", "P", i, j, 0),
                    ("alpha", "alpha", i, 0, 0), ("rowsum", "l", i, 0, 0),
                    ("rescale", "acc", i, 0, 0), ("pv", "acc", i, 0, 0)]  # fmt: skip
        out += [("normalize", "O", i, 0, 0), ("lse", "LSE", i, 0, 0),
                ("store", "O", i, 0, nq(i)), ("store", "LSE", i, 0, r4(i))]  # fmt: skip
    elif launch == "preprocess":
        i = blk_idx
        out += [("load", "O", i, 0, nq(i)), ("load", "dO", i, 0, nq(i)),
                ("rowdot", "D", i, 0, 0), ("store", "D", i, 0, r4(i))]  # fmt: skip
    elif launch == "dkdv":
        j = blk_idx
        out += [("load", "K", j, 0, nk(j)), ("load", "V", j, 0, nk(j))]
        for i in sorted(i for (i, jj) in visited if jj == j):
            out += [("load", "Q", i, 0, nq(i)), ("load", "dO", i, 0, nq(i)),
                    ("load", "LSE", i, 0, r4(i)), ("load", "D", i, 0, r4(i)),
                    ("qk", "S", i, j, 0)]  # fmt: skip
            if (i, j) in masked:
                out.append(("mask", "S", i, j, 0))
            out += [("recompute", "P", i, j, 0), ("dv", "dV", j, 0, 0),
                    ("dp", "dP", i, j, 0), ("ds", "dS", i, j, 0),
                    ("dk", "dK", j, 0, 0)]  # fmt: skip
        out += [("store", "dK", j, 0, nk(j)), ("store", "dV", j, 0, nk(j))]
    else:  # dq
        i = blk_idx
        out += [("load", "Q", i, 0, nq(i)), ("load", "dO", i, 0, nq(i)),
                ("load", "LSE", i, 0, r4(i)), ("load", "D", i, 0, r4(i))]  # fmt: skip
        for j in sorted(j for (ii, j) in visited if ii == i):
            out += [("load", "K", j, 0, nk(j)), ("load", "V", j, 0, nk(j)),
                    ("qk", "S", i, j, 0)]  # fmt: skip
            if (i, j) in masked:
                out.append(("mask", "S", i, j, 0))
            out += [("recompute", "P", i, j, 0), ("dp", "dP", i, j, 0),
                    ("ds", "dS", i, j, 0), ("dq", "dQ", i, 0, 0)]  # fmt: skip
        out.append(("store", "dQ", i, 0, nq(i)))
    return out


# (B, H, N_q, N_k, d, BLOCK_M, BLOCK_N, causal, dtype)
TRACE_CASES = [
    (1, 2, 13, 11, 6, 8, 4, True, F32),
    (2, 1, 13, 19, 4, 4, 8, True, F16),
    (1, 1, 12, 12, 4, 4, 4, False, F32),
    (1, 2, 9, 21, 5, 4, 8, False, F16),
]


@pytest.mark.parametrize("case", TRACE_CASES, ids=case_id)
def test_trace_event_sequences_follow_the_documented_rule(case):
    b, h, nq, nk, d, bm, bn, causal, dt = case
    bm, bn = blk(bm), blk(bn)
    q, k, v = make_qkv(b, h, nq, nk, d, dt, seed=6)
    e = q.element_size()
    fwd = fa2.record_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    bwd = fa2.record_backward(q, k, v, causal=causal, softmax_scale=None, block_m=bm,
                              block_n=bn, values=False, do=None)  # fmt: skip
    assert (fwd.kernel, fwd.names) == ("fa2-fwd", ["fwd"])
    assert (bwd.kernel, bwd.names) == ("fa2-bwd", ["preprocess", "dkdv", "dq"])
    assert set(fwd.outputs) == {"O", "LSE"}
    assert set(bwd.outputs) == {"O", "LSE", "dO", "dQ", "dK", "dV"}
    t_r, t_c = -(-nq // bm), -(-nk // bn)
    traffic = {}
    for rt in (fwd, bwd):
        assert (rt.block_m, rt.block_n) == (bm, bn)
        for name, buf in zip(rt.names, rt.launches, strict=True):
            per_bh = t_c if name == "dkdv" else t_r
            assert buf.n_programs == per_bh * b * h
            longest = 0
            for p in range(buf.n_programs):
                bh, blk_idx = divmod(p, per_bh)
                assert buf.header[p, 2:4].tolist() == [bh, blk_idx]
                recs = program_records(buf, p)
                got = [(r["op"], r["tensor"], r["row"], r["col"], r["nbytes"])
                       for r in recs]  # fmt: skip
                assert got == _expected(name, blk_idx, nq, nk, d, bm, bn, causal, e)
                assert all(r["value"] is None for r in recs)
                longest = max(longest, len(recs))
                for r in recs:
                    key = (name, r["op"], r["tensor"])
                    traffic[key] = traffic.get(key, 0) + r["nbytes"]
            assert buf.max_events == longest  # sized exactly
    # closed-form HBM traffic of the docstring
    visited, _ = _tiles(nq, nk, bm, bn, causal)
    kv_read = sum(min(bn, nk - j * bn) for (_, j) in visited)
    q_read = sum(min(bm, nq - i * bm) for (i, _) in visited)
    bh = b * h
    closed = {
        ("fwd", "load", "Q"): nq * d * e, ("fwd", "load", "K"): kv_read * d * e,
        ("fwd", "load", "V"): kv_read * d * e, ("fwd", "store", "O"): nq * d * e,
        ("fwd", "store", "LSE"): 4 * nq,
        ("preprocess", "load", "O"): nq * d * e,
        ("preprocess", "load", "dO"): nq * d * e,
        ("preprocess", "store", "D"): 4 * nq,
        ("dkdv", "load", "K"): nk * d * e, ("dkdv", "load", "V"): nk * d * e,
        ("dkdv", "load", "Q"): q_read * d * e, ("dkdv", "load", "dO"): q_read * d * e,
        ("dkdv", "load", "LSE"): 4 * q_read, ("dkdv", "load", "D"): 4 * q_read,
        ("dkdv", "store", "dK"): nk * d * e, ("dkdv", "store", "dV"): nk * d * e,
        ("dq", "load", "Q"): nq * d * e, ("dq", "load", "dO"): nq * d * e,
        ("dq", "load", "LSE"): 4 * nq, ("dq", "load", "D"): 4 * nq,
        ("dq", "load", "K"): kv_read * d * e, ("dq", "load", "V"): kv_read * d * e,
        ("dq", "store", "dQ"): nq * d * e,
    }  # fmt: skip
    moved = {key: n for key, n in traffic.items() if key[1] in ("load", "store")}
    assert moved == {key: n * bh for key, n in closed.items()}
    assert all(n == 0 for key, n in traffic.items() if key not in moved)


def test_causal_visits_exactly_the_blocks_at_or_below_the_diagonal():
    nq, nk, bm, bn = 37, 29, blk(8), blk(4)
    q, k, v = make_qkv(1, 1, nq, nk, 8, F32, seed=7)
    rt = fa2.record_forward(q, k, v, causal=True, block_m=bm, block_n=bn)
    buf = rt.launches[0]
    seen = {(r["row"], r["col"]) for p in range(buf.n_programs)
            for r in program_records(buf, p) if r["op"] == "qk"}  # fmt: skip
    # tile (i, j) holds some query r and key c <= r, and nothing else is visited
    below = {(r // bm, c // bn) for r in range(nq) for c in range(min(r + 1, nk))}
    assert seen == below
    t_r, t_c = -(-nq // bm), -(-nk // bn)
    assert len(seen) < t_r * t_c  # some tiles were skipped entirely


@pytest.mark.parametrize("dt", [F32, F16], ids=["float32", "float16"])
def test_trace_does_not_change_the_outputs(dt):
    q, k, v = make_qkv(2, 1, 13, 9, 12, dt, seed=8)
    bm, bn = blk(8), blk(4)
    o, lse = fa2.attention_forward(q, k, v, True, None, bm, bn)
    for values in (False, True):
        rt = fa2.record_forward(q, k, v, causal=True, block_m=bm, block_n=bn,
                                values=values)  # fmt: skip
        assert torch.equal(rt.outputs["O"], o) and torch.equal(rt.outputs["LSE"], lse)
    gen = torch.Generator(device="cpu").manual_seed(0)
    do = torch.randn(q.shape, generator=gen).to(DEVICE, dt)
    grads = fa2.attention_backward(q, k, v, o, lse, do, True, None, bm, bn)
    rt = fa2.record_backward(q, k, v, causal=True, softmax_scale=None, block_m=bm,
                             block_n=bn, values=True, do=do)  # fmt: skip
    assert torch.equal(rt.outputs["O"], o) and torch.equal(rt.outputs["dO"], do)
    for name, g in zip(("dQ", "dK", "dV"), grads, strict=True):
        if BACKEND == "cpu":
            assert torch.equal(rt.outputs[name], g), name
        else:
            # Compiled, the traced build may contract multiply-adds differently: the
            # same arithmetic up to rounding (seen: entries that are pure cancellation
            # noise, ~1e-8, differ). Allow a few ulps of the tensor's scale.
            ulp = torch.finfo(dt).eps * g.abs().max().item()
            torch.testing.assert_close(rt.outputs[name], g, rtol=0, atol=8 * ulp)


def _counted_events(raw) -> list[torch.Tensor]:
    """Each launch's written records (the first ``n_events`` of every program)."""
    out = []
    for launch in raw.launches:
        ev, hdr = launch.events.cpu(), launch.header.cpu()
        out += [ev[p, : int(hdr[p, 0])] for p in range(launch.n_programs)]
    return out


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_staged_events_equal_one_store_per_event(causal, monkeypatch):
    # events-only traces build each inner-loop iteration's records in registers and
    # write them with one store (TRACE_STAGE); they must be exactly the records the
    # one-store-per-event path writes, forward and backward, ragged tails included
    on = BACKEND == "cuda"
    n_q, n_k, d = (200, 333, 64) if on else (21, 30, 8)
    bm, bn = (64, 32) if on else (8, 16)
    q, k, v = make_qkv(1, 2, n_q, n_k, d, F16 if on else F32, seed=5)
    got = {}
    for staged in (True, False):
        monkeypatch.setattr(fa2, "TRACE_STAGE", staged)
        fwd = fa2.record_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
        bwd = fa2.record_backward(q, k, v, causal=causal, block_m=bm, block_n=bn)
        got[staged] = _counted_events(fwd) + _counted_events(bwd)
    cols = slice(0, 8) if GPU_CLOCK >= 2 else slice(None)  # event clocks differ
    assert len(got[True]) == len(got[False]) > 0
    assert sum(len(e) for e in got[True]) > 10 * len(got[True])  # loops were traced
    for a, b in zip(got[True], got[False], strict=True):
        assert torch.equal(a[:, cols], b[:, cols])


def test_forward_value_snapshots_are_the_papers_quantities():
    nq, nk, d, bm, bn, scale = 11, 10, 5, blk(4), blk(4), 0.7
    q, k, v = make_qkv(1, 2, nq, nk, d, F32, seed=9)
    rt = fa2.record_forward(q, k, v, causal=True, softmax_scale=scale, block_m=bm,
                            block_n=bn, values=True)  # fmt: skip
    buf, t_r = rt.launches[0], -(-nq // bm)
    qd, kd = q.double().cpu(), k.double().cpu()
    for p in range(buf.n_programs):
        bh, i = divmod(p, t_r)
        b, h = divmod(bh, 2)
        rows = range(i * bm, min((i + 1) * bm, nq))
        nr = len(rows)
        recs = program_records(buf, p)
        m_prev = torch.full((nr,), -math.inf, dtype=torch.float64)
        l_run = torch.zeros(nr, dtype=torch.float64)
        for n, r in enumerate(recs):
            val = r["value"]
            assert val is not None
            if r["op"] == "qk":
                j = r["col"]
                cols = range(j * bn, min((j + 1) * bn, nk))
                s = scale * qd[b, h, rows] @ kd[b, h, cols].T
                got = val[:nr, : len(cols)]
                torch.testing.assert_close(got, s, rtol=1e-5, atol=1e-5)
                s_tile = got
            elif r["op"] == "mask":
                keep = torch.tensor([[c <= rr for c in cols] for rr in rows])
                got = val[:nr, : len(cols)]
                assert torch.isneginf(got[~keep]).all()
                assert torch.equal(got[keep], s_tile[keep])
                s_tile = got
            elif r["op"] == "rowmax":
                m_new = val[:nr, 0]
                want = torch.maximum(m_prev, s_tile.max(1).values)
                torch.testing.assert_close(m_new, want, rtol=1e-6, atol=1e-6)
            elif r["op"] == "exp":
                want = torch.exp(s_tile - m_new[:, None])
                torch.testing.assert_close(val[:nr, : len(cols)], want, rtol=1e-5,
                                           atol=1e-6)  # fmt: skip
                p_tile = val[:nr, : len(cols)]
            elif r["op"] == "alpha":
                want = torch.exp(m_prev - m_new)
                torch.testing.assert_close(val[:nr, 0], want, rtol=1e-5, atol=1e-6)
                alpha = val[:nr, 0]
            elif r["op"] == "rowsum":
                l_run = l_run * alpha + p_tile.sum(1)
                torch.testing.assert_close(val[:nr, 0], l_run, rtol=1e-5, atol=1e-6)
                m_prev = m_new
            elif r["op"] in ("normalize", "lse", "store") and r["tensor"] != "LSE":
                assert not torch.isnan(val[:nr, :d]).any(), (n, r["op"])
        # the stored O tile is the output; the stored LSE is the output's LSE
        o_rec = next(r for r in recs if r["op"] == "store" and r["tensor"] == "O")
        lse_rec = next(r for r in recs if r["op"] == "store" and r["tensor"] == "LSE")
        out_o = rt.outputs["O"][b, h, rows].double().cpu()
        assert torch.equal(o_rec["value"][:nr, :d], out_o)
        out_lse = rt.outputs["LSE"][b, h, rows].double().cpu()
        assert torch.equal(lse_rec["value"][:nr, 0], out_lse)
        torch.testing.assert_close(out_lse, (m_prev + l_run.log()).float().double(),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    ref = attention_ref(q, k, v, causal=True, softmax_scale=scale)
    torch.testing.assert_close(rt.outputs["O"].double(), ref, rtol=1e-5, atol=1e-5)


def test_backward_value_snapshots_recompute_p_from_lse():
    nq, nk, d, bm, bn = 9, 7, 4, blk(4), blk(4)
    q, k, v = make_qkv(1, 1, nq, nk, d, F32, seed=10)
    rt = fa2.record_backward(q, k, v, causal=True, softmax_scale=None, block_m=bm,
                             block_n=bn, values=True, do=None)  # fmt: skip
    lse = rt.outputs["LSE"][0, 0].double().cpu()
    do, o = rt.outputs["dO"][0, 0].double().cpu(), rt.outputs["O"][0, 0].double().cpu()
    vd = v[0, 0].double().cpu()
    dq_buf = rt.launches[rt.names.index("dq")]
    t_r = -(-nq // bm)
    for i in range(t_r):
        rows = range(i * bm, min((i + 1) * bm, nq))
        nr = len(rows)
        recs = program_records(dq_buf, i)
        for r in recs:
            if r["op"] in ("qk", "mask"):
                j = r["col"]
                cols = range(j * bn, min((j + 1) * bn, nk))
                s_tile = r["value"][:nr, : len(cols)]
            elif r["op"] == "recompute":
                want = torch.exp(s_tile - lse[list(rows)][:, None])
                torch.testing.assert_close(r["value"][:nr, : len(cols)], want,
                                           rtol=1e-5, atol=1e-6)  # fmt: skip
            elif r["op"] == "dp":
                want = do[list(rows)] @ vd[list(cols)].T
                torch.testing.assert_close(r["value"][:nr, : len(cols)], want,
                                           rtol=1e-5, atol=1e-5)  # fmt: skip
        store = recs[-1]
        assert (store["op"], store["tensor"]) == ("store", "dQ")
        want = rt.outputs["dQ"][0, 0, rows].double().cpu()
        assert torch.equal(store["value"][:nr, :d], want)
    pre = rt.launches[rt.names.index("preprocess")]
    for i in range(t_r):
        rows = list(range(i * bm, min((i + 1) * bm, nq)))
        d_rec = program_records(pre, i)[2]
        assert (d_rec["op"], d_rec["tensor"]) == ("rowdot", "D")
        want = (do[rows] * o[rows]).sum(1)
        torch.testing.assert_close(d_rec["value"][: len(rows), 0], want, rtol=1e-5,
                                   atol=1e-6)  # fmt: skip


def test_value_snapshots_refused_for_large_runs():
    q, k, v = make_qkv(1, 128, 256, 256, 64, F32, seed=0)  # >2x the limit, GPU too
    with pytest.raises(ValueError, match="small runs"):
        fa2.record_forward(q, k, v, causal=False, block_m=blk(4), block_n=blk(4),
                           values=True)  # fmt: skip


# ------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------


@on_cpu
def test_bfloat16_refused_on_the_interpreter():
    q, k, v = make_qkv(1, 1, 8, 8, 16, torch.bfloat16)
    with pytest.raises(ValueError, match=r"bfloat16 is GPU-only.*interpreter"):
        fa2.attention_forward(q, k, v)
    with pytest.raises(ValueError, match="bfloat16 is GPU-only"):
        fa2.record_forward(q, k, v, block_m=4, block_n=4)


def _qkv(*shape_q, n_k=None, dtype=F32):
    b, h, n, d = shape_q
    q = torch.zeros(b, h, n, d, dtype=dtype, device=DEVICE)
    kv = torch.zeros(b, h, n if n_k is None else n_k, d, dtype=dtype, device=DEVICE)
    return q, kv, kv.clone()


BAD_INPUTS = [
    ("3-D q", lambda: (torch.zeros(2, 8, 16), *_qkv(1, 2, 8, 16)[1:]), ValueError,
     r"q must be 4-D \(batch, heads, seq_len, head_dim\)"),
    ("not a tensor", lambda: ([[0.0]], *_qkv(1, 1, 8, 16)[1:]), TypeError,
     "q must be a torch.Tensor"),
    ("heads differ", lambda: (_qkv(1, 2, 8, 16)[0], *_qkv(1, 3, 8, 16)[1:]),
     ValueError, "same number of heads"),
    ("batch differs", lambda: (_qkv(2, 1, 8, 16)[0], *_qkv(1, 1, 8, 16)[1:]),
     ValueError, "same batch size"),
    ("k, v lengths differ", lambda: (*_qkv(1, 1, 8, 16)[:2], _qkv(1, 1, 9, 16)[2]),
     ValueError, "k and v must have the same sequence length"),
    ("head dims differ", lambda: (_qkv(1, 1, 8, 16)[0], *_qkv(1, 1, 8, 8)[1:]),
     ValueError, "same head dim"),
    ("head dim too large", lambda: _qkv(1, 1, 8, 300), ValueError,
     r"head dim d=300 is not supported; accepted: 1 <= d <= 256"),
    ("empty sequence", lambda: _qkv(1, 1, 0, 16), ValueError,
     "sequence lengths must be >= 1"),
    ("integer dtype", lambda: _qkv(1, 1, 8, 16, dtype=torch.int32), TypeError,
     "dtype torch.int32 is not supported; accepted: torch.float32, torch.float16"),
    ("mixed dtypes", lambda: (_qkv(1, 1, 8, 16)[0].half(), *_qkv(1, 1, 8, 16)[1:]),
     TypeError, "same dtype"),
    ("wrong device", lambda: tuple(x.to("meta") for x in _qkv(1, 1, 8, 16)),
     ValueError, "flashanim kernels run on"),
]  # fmt: skip


@pytest.mark.parametrize("make, exc, msg", [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])  # fmt: skip
def test_bad_inputs_give_clear_errors(make, exc, msg):
    q, k, v = make()
    with pytest.raises(exc, match=msg):
        fa2.attention_forward(q, k, v)
    with pytest.raises(exc, match=msg):
        fa2.record_forward(q, k, v)


@pytest.mark.parametrize(
    "block_m, block_n, exc, msg",
    [
        (12, 16, ValueError, r"block_m=12 is not accepted; use a power of two in"),
        (16, 0, ValueError, r"block_n=0 is not accepted; use a power of two in"),
        (16, 512, ValueError, r"block_n=512 is not accepted"),
        (16.0, 16, TypeError, "block_m must be an int"),
    ],
)
def test_bad_blocks_give_clear_errors(block_m, block_n, exc, msg):
    q, k, v = _qkv(1, 1, 8, 16)
    with pytest.raises(exc, match=msg):
        fa2.attention_forward(q, k, v, block_m=block_m, block_n=block_n)


@on_gpu
def test_small_blocks_refused_on_the_gpu():
    q, k, v = _qkv(1, 1, 8, 16)
    with pytest.raises(ValueError, match=r"power of two in 16\.\.256"):
        fa2.attention_forward(q, k, v, block_m=8, block_n=16)


def test_bad_scale_and_backward_arguments():
    q, k, v = _qkv(1, 1, 8, 16)
    with pytest.raises(ValueError, match="softmax_scale must be finite and > 0"):
        fa2.attention_forward(q, k, v, softmax_scale=-1.0)
    o, lse = fa2.attention_forward(q, k, v)
    with pytest.raises(ValueError, match=r"do must have the shape of q"):
        fa2.attention_backward(q, k, v, o, lse, o[..., :8])
    with pytest.raises(ValueError, match=r"lse must be a float32 tensor of shape"):
        fa2.attention_backward(q, k, v, o, lse[0], o)


@pytest.mark.parametrize(
    "dkdv, dq",
    [((8, 32, 4, 3), (32, 8, 4, 3)), ((16, 16, 4, 2), None), (None, (32, 16, 8, 2))],
    ids=["both", "dkdv-only", "dq-only"],
)
def test_backward_passes_with_their_own_blocks(monkeypatch, dkdv, dq):
    """The tuning table can give the dK/dV and dQ passes blocks of their own
    (:data:`~flashanim.kernels._common.BWD_PASS_TABLE`; each a separate launch):
    the gradients still follow the rule on a ragged causal shape, each pass's
    gradients equal those of a launch with that pass's blocks for everything, and
    traced or explicit-block launches ignore the table."""
    passes = {k: v for k, v in (("dkdv", dkdv), ("dq", dq)) if v is not None}
    looked_up = []

    def table(n_q, n_k, d, dtype, causal):
        looked_up.append((n_q, n_k, d, causal))
        return passes

    monkeypatch.setattr(fa2, "bwd_pass_config", table)
    monkeypatch.setattr(fa2, "_PLANS", {})
    b, h, n_q, n_k, d = 1, 2, 45, 37, 16
    q, k, v = make_qkv(b, h, n_q, n_k, d, F32, seed=5)
    gen = torch.Generator(device="cpu").manual_seed(6)
    do = torch.randn(q.shape, generator=gen).to(DEVICE, q.dtype)
    o, lse = fa2.attention_forward(q, k, v, True)
    grads = fa2.attention_backward(q, k, v, o, lse, do, True)
    assert looked_up == [(n_q, n_k, d, True)]
    plan = fa2._PLANS[(fa2._bwd_plan, n_q, n_k, d, F32, True)]
    for name, consts in (("dkdv", plan[3]), ("dq", plan[4])):
        cfg = passes.get(name, plan[:2])
        assert (consts["BLOCK_M"], consts["BLOCK_N"]) == tuple(cfg[:2])
    assert plan[3]["S_T"] == (plan[3]["BLOCK_M"] <= plan[3]["BLOCK_N"])
    ref = reference_grads(q, k, v, do, True, None, upcast=True)
    pt = reference_grads(q, k, v, do, True, None, upcast=False)
    for name, g, g_pt, g_ref in zip(("dQ", "dK", "dV"), grads, pt[1:], ref[1:],
                                    strict=True):  # fmt: skip
        assert_rule(name, g, g_pt, g_ref, 3.0, 1e-5)
    # each pass alone is the kernel with those blocks (the other pass's blocks do
    # not reach it): dQ from the dQ pass, dK and dV from the dK/dV pass; also with
    # a mask (the forward's bias recomputed in both passes)
    mask = torch.randn(1, 1, n_q, n_k, generator=gen).to(DEVICE)
    o_b, lse_b = fa2.attention_forward(q, k, v, True, attn_mask=mask)
    masked = fa2.attention_backward(q, k, v, o_b, lse_b, do, True, attn_mask=mask)
    for tag, o_, lse_, got, m in (("plain", o, lse, grads, None),
                                  ("mask", o_b, lse_b, masked, mask)):  # fmt: skip
        for name, idx in (("dq", (0,)), ("dkdv", (1, 2))):
            bm, bn = passes.get(name, plan[:2])[:2]
            alone = fa2.attention_backward(q, k, v, o_, lse_, do, True, None, bm, bn,
                                           attn_mask=m)  # fmt: skip
            for i in idx:
                assert torch.equal(got[i], alone[i]), (tag, name, i)
    # explicit blocks and traced launches never consult the table
    looked_up.clear()
    fa2.attention_backward(q, k, v, o, lse, do, True, None, 16, 16)
    fa2.record_backward(q, k, v, causal=True, softmax_scale=None, block_m=16,
                        block_n=16)  # fmt: skip
    assert looked_up == []


def test_causal_forward_order(monkeypatch):
    """Untraced causal forwards with a padded d of 128 or more run each batch-head's
    Q blocks from the last, the heaviest (``fa2.CAUSAL_ORDER``; measured on an H200,
    bench/NOTES.md session 12); d = 64, non-causal and traced launches keep the
    index order. Either order gives the same bits, and a trace records the order
    its programs ran in."""
    assert fa2._heavy_first(True, False, 128) and fa2._heavy_first(True, False, 96)
    assert not fa2._heavy_first(True, False, 64)
    assert not fa2._heavy_first(False, False, 128)
    assert not fa2._heavy_first(True, True, 128)
    q, k, v = make_qkv(2, 1, 70, 70, 128, F32, seed=5)
    o, lse = fa2.attention_forward(q, k, v, True, None, 32, 32)  # last block first
    monkeypatch.setattr(fa2, "CAUSAL_ORDER", "0")
    o0, lse0 = fa2.attention_forward(q, k, v, True, None, 32, 32)
    assert torch.equal(o, o0) and torch.equal(lse, lse0)
    monkeypatch.setattr(fa2, "CAUSAL_ORDER", "1")  # traced launches too
    rt = fa2.record_forward(q, k, v, causal=True, block_m=32, block_n=32)
    hdr = rt.launches[0].header.cpu()
    t_r = 3  # Q blocks per batch-head
    assert hdr[:, 2].tolist() == [p // t_r for p in range(2 * t_r)]  # batch-head
    assert hdr[:, 3].tolist() == [t_r - 1 - p % t_r for p in range(2 * t_r)]  # block
    assert torch.equal(rt.outputs["O"], o) and torch.equal(rt.outputs["LSE"], lse)
    monkeypatch.setattr(fa2, "CAUSAL_ORDER", "auto")
    hdr = fa2.record_forward(q, k, v, causal=True, block_m=32,
                             block_n=32).launches[0].header.cpu()  # fmt: skip
    assert hdr[:, 3].tolist() == [p % t_r for p in range(2 * t_r)]


def test_forward_gpu_table(monkeypatch):
    """A GPU model's own forward entries (:data:`_common.GPU_FWD_TABLE`) reach only
    plain calls on that model: blocks, warps, stages and descriptor loads together;
    another GPU, float32, explicit blocks and traced launches keep the rules. The
    plan cache tells GPU models apart."""
    from flashanim.kernels import _common

    monkeypatch.setattr(_common, "GPU_FWD_TABLE", {
        ("H200", 128, False): ((2048, (128, 128, 8, 3, True)),),
        ("H200", 64, True): ((1024, (64, 64, 4, 2, False)), (4096, (128, 64, 4, 3, True))),
    })  # fmt: skip
    monkeypatch.setattr(_common, "INTERPRET", False)  # as compiled for a GPU
    monkeypatch.setattr(fa2, "INTERPRET", False)
    h200, h100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"

    def plan(n_k, d, causal, gpu, dtype=BF16, blocks=(None, None), trace=False):
        return fa2._fwd_plan(1000, n_k, d, dtype, causal, *blocks, None, None, trace,
                             False, gpu)  # fmt: skip

    rules = _common.resolve_blocks(None, None, 1000, 4096, 128, BF16)
    bm, bn, consts, tma = plan(4096, 128, False, h200)
    got = (bm, bn, consts["num_warps"], consts["num_stages"], tma)
    assert got == (128, 128, 8, 3, True)
    assert plan(2048, 96, False, h200)[:2] == (128, 128)  # d = 96 pads to 128
    assert plan(1024, 128, False, h200)[3] is False  # below the row's bound
    assert plan(4096, 64, True, h200)[3] is True
    assert plan(2048, 64, True, h200)[:2] == (64, 64)  # the lower row
    assert plan(4096, 128, False, h100)[:2] == rules  # another GPU: the rules
    assert plan(4096, 128, False, h100)[3] is False
    assert plan(4096, 128, False, "")[3] is False  # no GPU: the interpreter
    assert plan(4096, 128, False, h200, dtype=F32)[3] is False
    assert plan(4096, 128, False, h200, blocks=(64, 64))[:2] == (64, 64)
    assert plan(4096, 128, False, h200, blocks=(64, 64))[3] is False
    assert plan(4096, 128, False, h200, trace=True)[:2] == rules
    # the cache: one entry per GPU model
    monkeypatch.setattr(fa2, "_PLANS", {})
    for gpu in (h200, h100):
        fa2._plan(fa2._fwd_plan, 1000, 4096, 128, BF16, False, None, None, None, None,
                  False, False, gpu)  # fmt: skip
    assert fa2._PLANS[(fa2._fwd_plan, 1000, 4096, 128, BF16, False, h200)][3]
    assert not fa2._PLANS[(fa2._fwd_plan, 1000, 4096, 128, BF16, False, h100)][3]


def test_forward_gpu_table_skips_masked_calls(monkeypatch):
    """The GPU's forward table was measured without masks: a masked plain call
    plans with the rules (looked up as no GPU), an unmasked one with the GPU's
    name."""
    asked = []

    def table(gpu, *args):
        asked.append(gpu)
        return None

    monkeypatch.setattr(fa2, "gpu_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(fa2, "gpu_fwd_config", table)
    monkeypatch.setattr(fa2, "_PLANS", {})
    q, k, v = make_qkv(1, 2, 24, 40, 16, F32, seed=2)
    mask = torch.ones(24, 40, dtype=torch.bool, device=DEVICE).tril(16)
    fa2.attention_forward(q, k, v)
    fa2.attention_forward(q, k, v, attn_mask=mask)
    assert asked == ["NVIDIA H200", ""]


def test_forward_gpu_table_is_well_formed():
    """Every entry names a GPU model and a padded head dim, its bounds rise, and
    its launch is one the GPU accepts."""
    from flashanim.kernels import _common

    for (gpu, bd, causal), rows in _common.GPU_FWD_TABLE.items():
        assert gpu and bd in (16, 32, 64, 128, 256) and isinstance(causal, bool)
        bounds = [bound for bound, _ in rows]
        assert bounds == sorted(bounds)
        for _, (bm, bn, warps, stages, tma) in rows:
            for b in (bm, bn):
                assert 16 <= b <= 256 and b & (b - 1) == 0
            assert warps in (1, 2, 4, 8, 16) and 1 <= stages <= 8
            assert isinstance(tma, bool)


def test_backward_pass_table_is_well_formed():
    """Every row of the per-pass table names known passes with power-of-two blocks
    the GPU accepts, and its bounds rise, so :func:`bwd_pass_config` picks the last
    row a size reaches."""
    from flashanim.kernels import _common

    for (bd, causal), rows in _common.BWD_PASS_TABLE.items():
        assert bd in (16, 32, 64, 128, 256) and isinstance(causal, bool)
        bounds = [bound for bound, _ in rows]
        assert bounds == sorted(bounds)
        for _, passes in rows:
            assert passes and set(passes) <= {"pre", "dkdv", "dq"}
            for bm, bn, warps, stages in passes.values():
                for b in (bm, bn):
                    assert 16 <= b <= 256 and b & (b - 1) == 0
                assert warps in (1, 2, 4, 8, 16) and 1 <= stages <= 8


def test_cached_launch_plans_change_nothing():
    """Untraced default-block launches remember their plan per shape (host time:
    ``bench/NOTES.md``, "Launch host time"): the plan is the rules' own, the
    outputs equal those of the uncached path (explicit blocks) bit for bit, the
    trace placeholders are allocated once, and the checks still refuse bad input
    of a shape already planned."""
    from flashanim.kernels import _common
    from flashanim.kernels import attention as attn_mod

    gen = torch.Generator(device=DEVICE).manual_seed(3)
    q, k, v, do = (torch.randn(1, 2, 24, 16, generator=gen, device=DEVICE)
                   for _ in range(4))  # fmt: skip
    for causal in (False, True):
        o1, lse1 = fa2.attention_forward(q, k, v, causal)
        o2, lse2 = fa2.attention_forward(q, k, v, causal)  # from the plan cache
        plan = fa2._PLANS[(fa2._fwd_plan, 24, 24, 16, F32, causal, "")]  # no GPU
        bm, bn = _common.resolve_blocks(None, None, 24, 24, 16, F32, causal=causal)
        assert plan[:2] == (bm, bn)
        o3, lse3 = fa2.attention_forward(q, k, v, causal, None, bm, bn)  # uncached
        assert torch.equal(o1, o2) and torch.equal(o1, o3)
        assert torch.equal(lse1, lse2) and torch.equal(lse1, lse3)
        g1 = fa2.attention_backward(q, k, v, o1, lse1, do, causal)
        g2 = fa2.attention_backward(q, k, v, o1, lse1, do, causal)
        bm, bn = _common.resolve_blocks(None, None, 24, 24, 16, F32, backward=True,
                                        causal=causal)  # fmt: skip
        assert fa2._PLANS[(fa2._bwd_plan, 24, 24, 16, F32, causal)][:2] == (bm, bn)
        g3 = fa2.attention_backward(q, k, v, o1, lse1, do, causal, None, bm, bn)
        for a, b, c in zip(g1, g2, g3, strict=True):
            assert torch.equal(a, b) and torch.equal(a, c)
    assert fa2._untraced_args(q.device) is fa2._untraced_args(q.device)
    # a planned shape is still checked in full
    with pytest.raises(TypeError, match="same dtype"):
        fa2.attention_forward(q, k.half(), v)
    with pytest.raises(ValueError, match=r"block_m=12 is not accepted"):
        fa2.attention_forward(q, k, v, block_m=12)
    with pytest.raises(TypeError, match="block_m must be an int"):
        fa2.attention_forward(q, k, v, block_m=16.0)
    # check_qkv's fast path (plain tensors) and full path (a subclass) agree
    p = torch.nn.Parameter(q.clone())
    assert _common.check_qkv(q, k, v) == _common.check_qkv(p, k, v)
    # remembered split decisions equal fresh ones
    for shape_q, shape_k in (((1, 2, 1, 16), (1, 2, 4096, 16)),
                             ((1, 2, 24, 16), (1, 2, 24, 16))):  # fmt: skip
        qq = torch.zeros(shape_q, device=DEVICE)
        kk = torch.zeros(shape_k, device=DEVICE)
        fresh = attn_mod._split_pays_uncached(qq, kk, kk)
        assert attn_mod._split_pays(qq, kk, kk) == fresh
        assert attn_mod._split_pays(qq, kk, kk) == fresh


# ------------------------------------------------------------------------------------
# GPU (skipped without CUDA)
# ------------------------------------------------------------------------------------

BF16 = torch.bfloat16
GPU_CASES = [  # (dtype, causal, d, N_q, N_k)
    (BF16, True, 64, 1000, 1000),
    (F16, False, 128, 1000, 1500),
    (BF16, False, 128, 4096, 4096),
    (F16, True, 64, 4096, 3000),
    (BF16, True, 128, 16384, 16384),
    (F16, False, 64, 16384, 16384),
    (F16, False, 128, 3000, 2100),  # ragged, the H200's forward table (128 x 128)
    (BF16, False, 64, 1000, 5000),  # ragged, the H200's forward table (descriptors)
    (F32, True, 64, 1000, 1000),
    # the backward's per-pass table (_common.BWD_PASS_TABLE), ragged and padded d
    (BF16, False, 64, 3000, 2500),
    (BF16, True, 40, 2000, 2100),
    (F16, True, 128, 2500, 3000),
    # short sequences: the short-sequence table's configurations and the rules
    (F16, False, 128, 128, 128),
    (BF16, False, 64, 256, 200),
    (F16, False, 64, 512, 512),
    (BF16, True, 64, 128, 128),
    (F16, True, 128, 128, 100),
    (F16, True, 64, 256, 200),
]


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dt, causal, d, nq, nk", GPU_CASES)
def test_gpu_against_reference(dt, causal, d, nq, nk):
    heads = 1 if nq > 8192 else 2
    q, k, v = make_qkv(1, heads, nq, nk, d, dt, seed=nq + d)
    _check(q, k, v, causal, None, None, None)
    torch.cuda.empty_cache()


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dt, causal, d, nq, nk", [
    (F16, False, 64, 1000, 1500), (BF16, True, 128, 3000, 3000),
    (F16, True, 96, 2100, 2100), (BF16, False, 128, 4096, 4096),
])  # fmt: skip
def test_gpu_tma_loads(dt, causal, d, nq, nk, monkeypatch):
    # K/V through tensor descriptors wherever the layout allows ("1"; by default
    # only where it measured faster): the same outputs as pointer loads, within the
    # reference rule, also with ragged tails and a padded head dimension (d = 96)
    q, k, v = make_qkv(1, 2, nq, nk, d, dt, seed=nq + d)
    # "auto": causal 256-byte rows from 2048 keys, or where the GPU's table plans it
    # (an H200: non-causal d = 128 from 2048 keys, d = 64 from 4096)
    assert fa2._use_tma(k, v, None, causal) == (causal and d > 64 and nk >= 2048)
    gpu = torch.cuda.get_device_name(q.device)
    planned = fa2._fwd_plan(nq, nk, d, dt, causal, None, None, None, None, False, False,
                            gpu)[3]  # fmt: skip
    h200 = "H200" in gpu
    assert planned == (h200 and not causal and nk >= (2048 if d > 64 else 4096))
    monkeypatch.setattr(fa2, "FWD_TMA", "1")
    assert fa2._use_tma(k, v, None, causal)
    _check(q, k, v, causal, None, None, None)
    o_tma, lse_tma = fa2.attention_forward(q, k, v, causal)
    monkeypatch.setattr(fa2, "FWD_TMA", "0")
    o_ptr, lse_ptr = fa2.attention_forward(q, k, v, causal)
    torch.testing.assert_close(o_tma, o_ptr, rtol=0, atol=4 * torch.finfo(dt).eps)
    torch.testing.assert_close(lse_tma, lse_ptr)


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dt, d", [(F16, 64), (BF16, 64), (BF16, 128)])
def test_gpu_trace_does_not_change_the_outputs(dt, d):
    # (d = 128: the untraced causal forward runs its Q blocks from the last)
    q, k, v = make_qkv(2, 2, 200, 333, d, dt, seed=11)
    o, lse = fa2.attention_forward(q, k, v, True, None, 64, 32)
    rt = fa2.record_forward(q, k, v, causal=True, block_m=64, block_n=32, values=True)
    assert torch.equal(rt.outputs["O"], o) and torch.equal(rt.outputs["LSE"], lse)
    hdr = rt.launches[0].header.cpu()
    sm, t0, t1 = hdr[:, 4], hdr[:, 5], hdr[:, 6]
    assert (sm >= 0).all() and (t0 > 0).all() and (t1 >= t0).all()
    if GPU_CLOCK >= 2:  # FLASHANIM_EVENT_CLOCK=1: every event stamped, in order
        times = [r["time"] for r in program_records(rt.launches[0], 1)]
        assert all(t > 0 for t in times) and times == sorted(times)
    bwd = fa2.record_backward(q, k, v, causal=True, softmax_scale=None, block_m=32,
                              block_n=32, values=False, do=None)  # fmt: skip
    grads = fa2.attention_backward(q, k, v, bwd.outputs["O"], bwd.outputs["LSE"],
                                   bwd.outputs["dO"], True, None, 32, 32)  # fmt: skip
    for name, g in zip(("dQ", "dK", "dV"), grads, strict=True):
        assert torch.equal(bwd.outputs[name], g), name


@pytest.mark.parametrize("bm, bn", [(8, 16), (16, 16), (16, 8)])
def test_dkdv_pass_computes_s_transposed_unless_the_q_block_is_taller(bm, bn):
    """The dK/dV pass computes ``S^T = K Q^T`` (``S_T``) when BLOCK_M <= BLOCK_N
    and ``S = Q K^T`` otherwise (the faster of the two on an H200 for each block
    shape: bench/NOTES.md, session 8); the gradients follow the rule either way
    (CASES holds blocks of each shape too), and the dK/dV pass's trace holds S,
    P and dP untransposed: P_ij = exp(S_ij - LSE_i), dP_ij = dO_i V_j^T."""
    *_, dkdv, _ = fa2._bwd_plan(40, 40, 16, F32, True, bm, bn, None, None, False,
                                False)  # fmt: skip
    assert dkdv["S_T"] == (bm <= bn)
    q, k, v = make_qkv(1, 1, 40, 40, 16, F32, seed=5)
    _check(q, k, v, True, None, bm, bn)
    nq = nk = 21
    q, k, v = make_qkv(1, 1, nq, nk, 4, F32, seed=6)
    rt = fa2.record_backward(q, k, v, causal=True, softmax_scale=None, block_m=bm,
                             block_n=bn, values=True, do=None)  # fmt: skip
    lse = rt.outputs["LSE"][0, 0].double().cpu()
    do, vd = rt.outputs["dO"][0, 0].double().cpu(), v[0, 0].double().cpu()
    buf = rt.launches[rt.names.index("dkdv")]
    seen = 0
    for j in range(-(-nk // bn)):
        cols = range(j * bn, min((j + 1) * bn, nk))
        for r in program_records(buf, j):
            if r["op"] in ("qk", "mask", "recompute", "dp"):
                assert r["col"] == j
                rows = range(r["row"] * bm, min((r["row"] + 1) * bm, nq))
                tile = r["value"][: len(rows), : len(cols)]
            if r["op"] in ("qk", "mask"):
                s_tile = tile
            elif r["op"] == "recompute":
                want = torch.exp(s_tile - lse[list(rows)][:, None])
                torch.testing.assert_close(tile, want, rtol=1e-5, atol=1e-6)
                seen += 1
            elif r["op"] == "dp":
                want = do[list(rows)] @ vd[list(cols)].T
                torch.testing.assert_close(tile, want, rtol=1e-5, atol=1e-5)
    assert seen > 0


def test_kernel_resources_reports_a_compiled_launch():
    """``bench/kernel_resources.py`` compiles one launch for a Hopper GPU without
    one and reports its registers, spills and shared memory: the dQ pass at
    d = 64, 64 x 64 blocks, 2 stages double-buffers its K and V blocks in shared
    memory (2 x 2 x 64 x 64 x 2 bytes at least); a malformed configuration is
    refused with what is wanted."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "bench/kernel_resources.py", "--pass", "dq", "--d", "64",
           "--n", "256", "--configs"]  # fmt: skip
    done = subprocess.run(cmd + ["64x64x4x2"], capture_output=True, text=True,
                          env=env, cwd=root, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    row = re.search(r"^64x64x4x2\s+(\d+)\s+(\d+)/(\d+)\s+(\d+)\s+(\d+) / (\d+)\s*$",
                    done.stdout, re.M)  # fmt: skip
    assert row, done.stdout
    regs, _, _, smem, in_loops, local = map(int, row.groups())
    assert 1 <= regs <= 255 and 0 <= in_loops <= local
    assert smem >= 2 * 2 * 64 * 64 * 2
    bad = subprocess.run(cmd + ["64x64x4"], capture_output=True, text=True, env=env,
                         cwd=root, timeout=300)  # fmt: skip
    assert bad.returncode != 0 and "BLOCK_MxBLOCK_NxWARPSxSTAGES" in bad.stderr
