"""The FlashAttention-1 order forward and the three-kernel standard attention.

Outputs are checked against the float64 reference with flash-attn's rule (error at
most twice that of plain PyTorch attention in the same precision); traces are
checked event by event against sequences built here from the rules the kernels'
docstrings state, and their byte counts against the closed forms.
"""

from __future__ import annotations

import math

import flashanim.kernels  # noqa: F401  (chooses the device before triton)
import pytest
import torch
from _kernel_checks import blk
from flashanim.kernels import BACKEND, fa1, standard
from flashanim.kernels._common import GPU_CLOCK
from flashanim.kernels._trace import OPS, TENSORS
from flashanim.kernels.reference import attention_ref, within_rule

DEV = BACKEND
gpu = pytest.mark.skipif(BACKEND != "cuda", reason="needs CUDA (compiled kernels)")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def make_qkv(b, h, n_q, n_k, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g).to(DEV, dtype)
    k = torch.randn(b, h, n_k, d, generator=g).to(DEV, dtype)
    v = torch.randn(b, h, n_k, d, generator=g).to(DEV, dtype)
    return q, k, v


def ref_scores(q, k, causal, scale=None):
    """float64 ``S`` (unmasked), the keep mask and ``P`` of the reference."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    n_q, n_k = q.shape[-2], k.shape[-2]
    keep = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device)
    if causal:
        keep = keep.tril()
    p = torch.softmax(s.masked_fill(~keep, float("-inf")), dim=-1)
    return s, keep, p


def check_rule(o, q, k, v, causal):
    ref = attention_ref(q, k, v, causal=causal)
    pt = attention_ref(q, k, v, causal=causal, upcast=False)
    ok, err, bound = within_rule(o, pt, ref)
    assert ok, f"error {err:.3g} > bound {bound:.3g}"


# (B, H, N_q, N_k, d, dtype, causal, BLOCK_M, BLOCK_N): lengths 1, 7, 17, 64, 113,
# N_q != N_k both ways, head dims 4, 5, 12 (not powers of two) and 32.
F32, F16 = torch.float32, torch.float16
CASES = [
    (2, 3, 1, 1, 4, F32, False, 16, 16),
    (1, 2, 7, 17, 5, F32, True, 4, 8),
    (2, 1, 17, 7, 4, F16, True, 8, 4),
    (1, 2, 64, 64, 16, F16, False, 16, 32),
    (1, 1, 113, 64, 12, F32, True, 32, 16),
    (2, 2, 113, 113, 32, F16, True, 32, 32),
    (1, 1, 64, 113, 8, F32, False, 32, 16),
    (1, 2, 17, 113, 4, F16, True, 16, 16),
    (1, 1, 113, 1, 4, F16, True, 16, 16),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[2:]))[:40])
def test_fa1_matches_reference(case):
    b, h, n_q, n_k, d, dtype, causal, bm, bn = case
    bm, bn = blk(bm), blk(bn)
    q, k, v = make_qkv(b, h, n_q, n_k, d, dtype)
    o, lse = fa1.attention_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert o.shape == q.shape and o.dtype == dtype
    check_rule(o, q, k, v, causal)
    s, keep, _ = ref_scores(q, k, causal)
    lse_ref = torch.logsumexp(s.masked_fill(~keep, float("-inf")), dim=-1)
    assert lse.dtype == torch.float32 and lse.shape == (b, h, n_q)
    torch.testing.assert_close(lse.double(), lse_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[2:]))[:40])
def test_standard_matches_reference(case):
    b, h, n_q, n_k, d, dtype, causal, bm, bn = case
    bm, bn = blk(bm), blk(bn)
    q, k, v = make_qkv(b, h, n_q, n_k, d, dtype)
    o = standard.attention_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    check_rule(o, q, k, v, causal)
    # S and P as naive PyTorch keeps them: in the input dtype.
    o2, s_out, p_out, _, _ = standard._run(q, k, v, causal, None, bm, bn, False, False)
    assert torch.equal(o2, o)
    s_ref, _, p_ref = ref_scores(q, k, causal)
    assert s_out.dtype == dtype and p_out.dtype == dtype
    tol = 1e-5 if dtype == F32 else 2e-3
    torch.testing.assert_close(s_out.double(), s_ref, rtol=tol, atol=tol)
    torch.testing.assert_close(p_out.double(), p_ref, rtol=tol, atol=tol)
    if causal:  # exactly zero above the diagonal
        assert (p_out.masked_select(~torch.ones_like(p_out).bool().tril()) == 0).all()


def test_defaults_and_scale():
    q, k, v = make_qkv(1, 2, 19, 23, 8, F32)
    o, _ = fa1.attention_forward(q, k, v, causal=True, softmax_scale=0.3)
    ref = attention_ref(q, k, v, causal=True, softmax_scale=0.3)
    pt = attention_ref(q, k, v, causal=True, softmax_scale=0.3, upcast=False)
    assert within_rule(o, pt, ref)[0]
    o = standard.attention_forward(q, k, v, causal=True, softmax_scale=0.3)
    assert within_rule(o, pt, ref)[0]


def test_noncontiguous_inputs():
    q, k, v = make_qkv(1, 9, 2, 2, 8, F32)  # (B, N, H, d) -> (B, H, N, d) views
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    assert not q.is_contiguous()
    o, _ = fa1.attention_forward(q, k, v, block_m=blk(4), block_n=blk(4))
    check_rule(o, q, k, v, False)
    o = standard.attention_forward(q, k, v, causal=True, block_m=blk(4),
                                  block_n=blk(4))  # fmt: skip
    check_rule(o, q, k, v, True)


# ------------------------------------------------------------------ raw traces


def raw_events(buf, with_values=False):
    """Per program: ``[(op, tensor, row, col, nbytes[, value])]`` from the buffers."""
    ev, hdr, vals = (t.cpu() for t in buf.kernel_args())
    out = []
    for p in range(hdr.shape[0]):
        n = int(hdr[p, 0])
        assert 0 <= n <= buf.max_events
        rows = []
        for r in ev[p, :n].tolist():
            item = (OPS[r[0]], TENSORS[r[1]], r[2], r[3], r[4])
            if with_values:
                assert r[5] >= 0
                item += (vals[p, r[5] : r[5] + r[6] * r[7]].reshape(r[6], r[7]),)
            rows.append(item)
        out.append(rows)
    return out


def fa1_expected(n_q, n_k, d, e, bm, bn, causal):
    """One FA1 program's events, from the docstring's rules (visit, mask, order)."""
    t_r, t_c = cdiv(n_q, bm), cdiv(n_k, bn)
    n_i = [min(bm, n_q - i * bm) for i in range(t_r)]
    n_j = [min(bn, n_k - j * bn) for j in range(t_c)]

    def visited(i, j):
        return not causal or j * bn <= min((i + 1) * bm, n_q) - 1

    out = []
    for i in range(t_r):
        out += [
            ("store", "O", i, 0, n_i[i] * d * 4),
            ("store", "l", i, 0, n_i[i] * 4),
            ("store", "m", i, 0, n_i[i] * 4),
        ]
    for j in range(t_c):
        rows = [i for i in range(t_r) if visited(i, j)]
        if not rows:
            continue
        out += [
            ("load", "K", j, 0, n_j[j] * d * e),
            ("load", "V", j, 0, n_j[j] * d * e),
        ]
        for i in rows:
            out += [
                ("load", "Q", i, 0, n_i[i] * d * e),
                ("load", "O", i, 0, n_i[i] * d * 4),
                ("load", "l", i, 0, n_i[i] * 4),
                ("load", "m", i, 0, n_i[i] * 4),
                ("qk", "S", i, j, 0),
            ]
            if (j + 1) * bn > n_k or (causal and (j + 1) * bn - 1 > i * bm):
                out.append(("mask", "S", i, j, 0))
            out += [
                ("rowmax", "m", i, 0, 0),
                ("exp", "P", i, j, 0),
                ("rowsum", "l", i, 0, 0),
                ("update", "O", i, 0, 0),
                ("store", "O", i, 0, n_i[i] * d * 4),
                ("store", "l", i, 0, n_i[i] * 4),
                ("store", "m", i, 0, n_i[i] * 4),
            ]
    return out


def standard_expected(n_q, n_k, d, e, bm, bn, causal, rows_per=None):
    """The three launches' events per program, from the docstring's rules."""
    t_r, t_c = cdiv(n_q, bm), cdiv(n_k, bn)
    n_i = [min(bm, n_q - i * bm) for i in range(t_r)]
    n_j = [min(bn, n_k - j * bn) for j in range(t_c)]
    rows_per = bm if rows_per is None else rows_per
    qk = [
        [
            ("load", "Q", i, 0, n_i[i] * d * e),
            ("load", "K", j, 0, n_j[j] * d * e),
            ("qk", "S", i, j, 0),
            ("store", "S", i, j, n_i[i] * n_j[j] * e),
        ]
        for i in range(t_r)
        for j in range(t_c)
    ]
    sm = []
    for i in range(t_r):
        ev = []
        for r0 in range(0, n_i[i], rows_per):
            n_r = min(rows_per, n_i[i] - r0)
            first = i * bm + r0
            ev += [("load", "S", i, j, n_r * n_j[j] * e) for j in range(t_c)]
            ev += [
                ("mask", "S", i, j, 0)
                for j in range(t_c)
                if (j + 1) * bn > n_k or (causal and (j + 1) * bn - 1 > first)
            ]
            ev += [("softmax", "P", i, j, 0) for j in range(t_c)]
            ev += [("store", "P", i, j, n_r * n_j[j] * e) for j in range(t_c)]
        sm.append(ev)
    pv = []
    for i in range(t_r):
        ev = []
        for j in range(t_c):
            ev += [
                ("load", "P", i, j, n_i[i] * n_j[j] * e),
                ("load", "V", j, 0, n_j[j] * d * e),
                ("pv", "acc", i, j, 0),
            ]
        pv.append(ev + [("store", "O", i, 0, n_i[i] * d * e)])
    return qk, sm, pv


def sum_bytes(programs):
    out = {}
    for prog in programs:
        for op, t, *_, nb in (x[:5] for x in prog):
            if op in ("load", "store"):
                out[(op, t)] = out.get((op, t), 0) + nb
    return {key: v for key, v in out.items() if v}


# (B, H, N_q, N_k, d, dtype, causal, BLOCK_M, BLOCK_N) of the traced runs: few
# programs, since every traced event costs the interpreter milliseconds.
TRACED = [
    (1, 2, 17, 10, 5, F16, False, 8, 4),
    (2, 1, 10, 17, 4, F32, True, 4, 4),
    (1, 1, 17, 9, 4, F32, True, 8, 4),
    (1, 1, 1, 1, 4, F32, True, 4, 4),
]


@pytest.mark.parametrize("case", TRACED, ids=lambda c: "-".join(map(str, c[2:])))
def test_fa1_trace(case):
    b, h, n_q, n_k, d, dtype, causal, bm, bn = case
    bm, bn = blk(bm), blk(bn)
    q, k, v = make_qkv(b, h, n_q, n_k, d, dtype, seed=1)
    raw = fa1.record_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert raw.kernel == "fa1-fwd" and raw.names == ["fwd"]
    assert (raw.block_m, raw.block_n) == (bm, bn)
    o, lse = fa1.attention_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert torch.equal(raw.outputs["O"], o) and torch.equal(raw.outputs["LSE"], lse)
    (buf,) = raw.launches
    hdr = buf.header.cpu()
    assert hdr[:, 2].tolist() == list(range(b * h))  # program = batch-head
    assert (hdr[:, 3] == -1).all()
    e = q.element_size()
    expected = fa1_expected(n_q, n_k, d, e, bm, bn, causal)
    programs = raw_events(buf)
    for prog in programs:
        assert prog == expected
    assert buf.max_events == len(expected)  # sized exactly
    # Causal skipping: no (Q_i, K_j) pair above the diagonal is ever loaded.
    for prog in programs:
        j = None
        for op, t, row, col, _ in prog:
            if (op, t) == ("load", "K"):
                j = col
            if (op, t) == ("load", "Q") and causal:
                assert j * bn <= min((row + 1) * bm, n_q) - 1
    # Bytes equal the closed forms, per batch-head times B*H.
    closed = fa1.hbm_traffic(n_q, n_k, d, e, bm, bn, causal)
    assert sum_bytes(programs) == {key: b * h * v for key, v in closed.items() if v}
    if not causal:  # the docstring's plain formulas
        t_c = cdiv(n_k, bn)
        assert closed[("load", "Q")] == t_c * n_q * d * e
        assert closed[("store", "O")] == (t_c + 1) * n_q * d * 4
        assert closed[("load", "K")] == n_k * d * e


@pytest.mark.skipif(BACKEND == "cuda", reason="small blocks: interpreter only")
def test_fa1_causal_skips_kv_blocks_no_query_sees():
    """N_q < N_k, causal: K/V blocks past the last query are never loaded."""
    q, k, v = make_qkv(1, 1, 5, 40, 4, F32)
    raw = fa1.record_forward(q, k, v, causal=True, block_m=4, block_n=4)
    (prog,) = raw_events(raw.launches[0])
    assert {row for op, t, row, _, _ in prog if t == "K"} == {0, 1}
    pairs = {(r, c) for op, t, r, c, _ in prog if op == "qk"}
    assert pairs == {(0, 0), (1, 0), (1, 1)}


@pytest.mark.skipif(BACKEND == "cuda", reason="small blocks: interpreter only")
def test_fa1_values():
    b, h, n_q, n_k, d, causal, bm, bn = 1, 1, 13, 11, 5, True, 8, 4
    q, k, v = make_qkv(b, h, n_q, n_k, d, F32, seed=2)
    raw = fa1.record_forward(
        q, k, v, causal=causal, block_m=bm, block_n=bn, values=True
    )
    o, _ = fa1.attention_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert torch.equal(raw.outputs["O"], o)
    (prog,) = raw_events(raw.launches[0], with_values=True)
    assert [x[:5] for x in prog] == fa1_expected(n_q, n_k, d, 4, bm, bn, causal)
    assert int(raw.launches[0].header[0, 1]) == raw.launches[0].max_values  # exact
    s_ref, keep, _ = ref_scores(q, k, causal)
    s_ref, keep = s_ref[0, 0].cpu(), keep.cpu()
    qc, kc = q[0, 0].cpu(), k[0, 0].cpu()
    last = {}
    for op, t, i, j, _, val in prog:
        rs = slice(i * bm, min((i + 1) * bm, n_q))
        nr = rs.stop - rs.start
        if (op, t) == ("load", "Q"):
            assert torch.equal(val[:nr, :d], qc[rs])
            assert (val[:, d:] == 0).all()
        if (op, t) == ("load", "K"):  # K tiles are (j, 0): the block index is the row
            assert torch.equal(val[: min(bn, n_k - i * bn), :d], kc[i * bn :][:bn])
        if op in ("qk", "mask"):
            cs = slice(j * bn, min((j + 1) * bn, n_k))
            got = val[:nr, : cs.stop - cs.start].double()
            want = s_ref[rs, cs].clone()
            if op == "mask":
                want = want.masked_fill(~keep[rs, cs], float("-inf"))
                assert torch.equal(torch.isinf(got), torch.isinf(want))
            fin = torch.isfinite(want)
            torch.testing.assert_close(got[fin], want[fin], rtol=1e-5, atol=1e-5)
        if (op, t) == ("store", "O"):
            last[("O", i)] = val[:nr, :d]
        if (op, t) in (("store", "l"), ("store", "m")):
            last[(t, i)] = val[:nr, 0]
        if (op, t) == ("exp", "P"):
            assert (val >= 0).all() and (val <= 1).all()
    for i in range(cdiv(n_q, bm)):
        rs = slice(i * bm, min((i + 1) * bm, n_q))
        assert torch.equal(last[("O", i)], raw.outputs["O"][0, 0, rs].cpu())
        assert torch.equal(last[("l", i)], raw.outputs["l"][0, 0, rs].cpu())
        assert torch.equal(last[("m", i)], raw.outputs["m"][0, 0, rs].cpu())


@pytest.mark.parametrize("case", TRACED, ids=lambda c: "-".join(map(str, c[2:])))
def test_standard_trace(case):
    b, h, n_q, n_k, d, dtype, causal, bm, bn = case
    bm, bn = blk(bm), blk(bn)
    q, k, v = make_qkv(b, h, n_q, n_k, d, dtype, seed=1)
    raw = standard.record(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert raw.kernel == "standard" and raw.names == ["qk", "softmax", "pv"]
    o = standard.attention_forward(q, k, v, causal=causal, block_m=bm, block_n=bn)
    assert torch.equal(raw.outputs["O"], o)
    e = q.element_size()
    exp_qk, exp_sm, exp_pv = standard_expected(n_q, n_k, d, e, bm, bn, causal)
    t_r, t_c = cdiv(n_q, bm), cdiv(n_k, bn)
    got = [raw_events(buf) for buf in raw.launches]
    for launch, expected in zip(got, (exp_qk, exp_sm, exp_pv), strict=True):
        assert launch == expected * (b * h)  # programs: block first, then bh
    for buf in raw.launches:
        assert buf.max_events == max(len(p) for p in raw_events(buf))
    hdr = raw.launches[0].header.cpu()
    assert hdr[:, 2].tolist() == [p // (t_r * t_c) for p in range(b * h * t_r * t_c)]
    assert hdr[:, 3].tolist() == [(p % (t_r * t_c)) // t_c for p in range(hdr.shape[0])]
    closed = standard.hbm_traffic(n_q, n_k, d, e, bm, bn, causal)
    for name, launch in zip(raw.names, got, strict=True):
        assert sum_bytes(launch) == {key: b * h * v for key, v in closed[name].items()}
    # The docstring's formulas, total over the three launches.
    total = sum(sum(x.values()) for x in closed.values())
    assert (
        total
        == (t_c * n_q * d + t_r * n_k * d + 4 * n_q * n_k + t_r * n_k * d + n_q * d) * e
    )


@pytest.mark.skipif(BACKEND == "cuda", reason="small blocks: interpreter only")
def test_standard_softmax_in_row_chunks(monkeypatch):
    """Long keys: the softmax program walks its Q block in chunks of ROWS rows."""
    monkeypatch.setattr(standard, "SOFTMAX_BUDGET", 32)
    n_q, n_k, d, bm, bn = 9, 17, 4, 8, 8
    assert standard.softmax_rows(bm, bn, n_k) == 1
    q, k, v = make_qkv(1, 1, n_q, n_k, d, F32, seed=3)
    raw = standard.record(q, k, v, causal=True, block_m=bm, block_n=bn, values=True)
    _, exp_sm, _ = standard_expected(n_q, n_k, d, 4, bm, bn, True, rows_per=1)
    got = raw_events(raw.launches[1], with_values=True)
    assert [[x[:5] for x in p] for p in got] == exp_sm
    check_rule(raw.outputs["O"], q, k, v, True)
    p_out = raw.outputs["P"][0, 0].cpu()
    seen = {}
    for prog in got:
        for op, t, i, j, _, val in prog:
            if (op, t) == ("store", "P"):
                seen.setdefault((i, j), []).append(val)
    for (i, j), chunks in seen.items():
        tile = torch.cat(chunks)[:, : min(bn, n_k - j * bn)]
        assert torch.equal(tile, p_out[i * bm : i * bm + len(chunks), j * bn :][:, :bn])


@pytest.mark.skipif(BACKEND == "cuda", reason="small blocks: interpreter only")
def test_standard_values():
    n_q, n_k, d, causal, bm, bn = 10, 17, 4, True, 4, 8
    q, k, v = make_qkv(1, 1, n_q, n_k, d, F16, seed=4)
    raw = standard.record(q, k, v, causal=causal, block_m=bm, block_n=bn, values=True)
    s_out, p_out = raw.outputs["S"][0, 0].cpu(), raw.outputs["P"][0, 0].cpu()
    o_out = raw.outputs["O"][0, 0].cpu()
    keep = torch.ones(n_q, n_k, dtype=torch.bool).tril()
    for launch in raw.launches:
        assert int(launch.header[:, 1].max()) == launch.max_values  # sized exactly
        for prog in raw_events(launch, with_values=True):
            for op, t, i, j, _, val in prog:
                rs = slice(i * bm, min((i + 1) * bm, n_q))
                cs = slice(j * bn, min((j + 1) * bn, n_k))
                nr, nc = rs.stop - rs.start, cs.stop - cs.start
                if t in ("S", "P") and op != "qk":
                    want = (s_out if t == "S" else p_out)[rs, cs].float()
                    if op == "mask":
                        want = want.masked_fill(~keep[rs, cs], float("-inf"))
                    assert torch.equal(val[:nr, :nc], want), (op, t, i, j)
                if (op, t) == ("store", "O"):
                    assert torch.equal(val[:nr, :d], o_out[rs].float())


def test_bad_inputs():
    q, k, v = make_qkv(1, 1, 8, 8, 4, F32)
    with pytest.raises(ValueError, match="block_m"):
        fa1.record_forward(q, k, v, block_m=3, block_n=4)
    with pytest.raises(ValueError, match="block_n"):
        standard.record(q, k, v, block_m=blk(4), block_n=6)
    with pytest.raises(TypeError):
        fa1.record_forward(q, k, v)  # block sizes are required keywords
    with pytest.raises(ValueError, match="head dim"):
        fa1.attention_forward(q, k[..., :2], v)
    with pytest.raises(ValueError, match="sequence length"):
        standard.attention_forward(q, k, v[:, :, :5])
    with pytest.raises(TypeError, match="dtype"):
        standard.attention_forward(q, k.half(), v)
    with pytest.raises(ValueError, match="4-D"):
        fa1.attention_forward(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="softmax_scale"):
        standard.attention_forward(q, k, v, softmax_scale=float("nan"))
    if BACKEND == "cpu":
        with pytest.raises(ValueError, match="bfloat16"):
            fa1.attention_forward(q.bfloat16(), k.bfloat16(), v.bfloat16())
        with pytest.raises(ValueError, match="on 'cpu'"):
            standard.record(q, k, v, block_m=256, block_n=4)


# ------------------------------------------------------------------ GPU


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "n_q, n_k, d",
    [(4096, 4096, 64), (1000, 1537, 128), (2049, 511, 64), (113, 113, 128)],
)
def test_gpu_forward(dtype, causal, n_q, n_k, d):
    q, k, v = make_qkv(2, 2, n_q, n_k, d, dtype)
    o, lse = fa1.attention_forward(q, k, v, causal=causal)
    check_rule(o, q, k, v, causal)
    o = standard.attention_forward(q, k, v, causal=causal)
    check_rule(o, q, k, v, causal)


@gpu
@pytest.mark.gpu
def test_gpu_long_keys_softmax():
    q, k, v = make_qkv(1, 2, 256, 16384, 64, torch.float16)
    o = standard.attention_forward(q, k, v, causal=False)
    check_rule(o, q, k, v, False)


def _check_gpu_clocks(buf, n_events: int) -> None:
    """Every program's header has its SM and a start <= end time (%smid and
    %globaltimer); with FLASHANIM_EVENT_CLOCK=1 every event is stamped too."""
    hdr = buf.header.cpu()
    assert (hdr[:, 4] >= 0).all() and (hdr[:, 5] > 0).all()
    assert (hdr[:, 6] >= hdr[:, 5]).all()
    if GPU_CLOCK >= 2:
        assert (buf.events[:, :n_events, 8] > 0).all()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_traces(dtype):
    b, h, n_q, n_k, d, bm, bn = 2, 2, 100, 70, 64, 32, 16
    q, k, v = make_qkv(b, h, n_q, n_k, d, dtype)
    e = q.element_size()
    raw = fa1.record_forward(q, k, v, causal=True, block_m=bm, block_n=bn)
    o, _ = fa1.attention_forward(q, k, v, causal=True, block_m=bm, block_n=bn)
    assert torch.equal(raw.outputs["O"], o)
    check_rule(o, q, k, v, True)
    expected = fa1_expected(n_q, n_k, d, e, bm, bn, True)
    assert raw_events(raw.launches[0]) == [expected] * (b * h)
    _check_gpu_clocks(raw.launches[0], len(expected))
    raw = standard.record(q, k, v, causal=True, block_m=bm, block_n=bn)
    exp = standard_expected(n_q, n_k, d, e, bm, bn, True)
    for buf, ex in zip(raw.launches, exp, strict=True):
        assert raw_events(buf) == ex * (b * h)
        _check_gpu_clocks(buf, min(map(len, ex)))
    check_rule(raw.outputs["O"], q, k, v, True)
