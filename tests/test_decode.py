"""Split-K/V decoding (:mod:`flashanim.kernels.decode`): outputs, routing, traces.

Outputs are held to flash-attn's rule against a float64 reference (2x the error of
plain PyTorch attention in the same precision) on awkward shapes: N_q = 1, ragged
``cache_seqlens`` (0 and full included), GQA 8:1 and MQA, causal aligned
bottom-right, head dims 40 and 72, splits that do not divide the cache. The trace
tests rebuild each program's events from the module docstring's rule.
"""

from __future__ import annotations

import math

import flashanim.kernels  # noqa: F401  (before triton: chooses the device)
import numpy as np
import pytest
import torch
from _kernel_checks import DEVICE, LaunchLog, assert_rule, program_records
from flashanim.kernels import attention, decode, fa2
from flashanim.kernels._device import BACKEND
from flashanim.kernels.modules import flash_attn_func, flash_attn_with_kvcache

on_gpu = pytest.mark.skipif(BACKEND != "cuda", reason="kernels run on the CPU here")
F32, F16 = torch.float32, torch.float16


def naive(q, k, v, causal, lens=None, upcast=True):
    """Naive GQA attention on ``(B, H, N_q, d)`` / ``(B, H_kv, N_k, d)``, causal
    aligned bottom-right per sequence length; rows with no key give 0."""
    b, h, n_q, d = q.shape
    g = h // k.shape[1]
    dt = torch.float64 if upcast else q.dtype
    kk = k.to(dt).repeat_interleave(g, 1)
    vv = v.to(dt).repeat_interleave(g, 1)
    out = torch.zeros(b, h, n_q, d, dtype=dt, device=q.device)
    for z in range(b):
        n = k.shape[2] if lens is None else int(lens[z])
        s = (q[z].to(dt) @ kk[z, :, :n].transpose(-1, -2)) / math.sqrt(d)
        if causal:
            i = torch.arange(n_q, device=q.device)[:, None]
            j = torch.arange(n, device=q.device)[None, :]
            s = s.masked_fill(j > i + n - n_q, float("-inf"))
        p = torch.softmax(s.float() if not upcast else s, -1).nan_to_num(0.0)
        out[z] = (p.to(dt) @ vv[z, :, :n]).to(dt)
    return out


def _inputs(b, h, h_kv, n_q, n_k, d, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=gen).to(DEVICE, dtype)
    k = torch.randn(b, h_kv, n_k, d, generator=gen).to(DEVICE, dtype)
    v = torch.randn(b, h_kv, n_k, d, generator=gen).to(DEVICE, dtype)
    return q, k, v


# (B, H, H_kv, N_q, N_k, d, causal, lens, num_splits, dtype)
CASES = [
    (1, 8, 1, 1, 300, 40, False, None, None, F32),  # MQA, N_q = 1
    (2, 16, 2, 1, 257, 64, True, [257, 1], 5, F16),  # GQA 8:1, ragged
    (3, 4, 4, 3, 130, 72, True, [0, 77, 130], 3, F32),  # empty cache, d = 72
    (2, 6, 3, 5, 96, 16, True, [4, 96], 2, F16),  # N_q > L: rows with no key
    (1, 8, 1, 16, 200, 8, False, [199], 7, F32),  # G * N_q = 128 rows
    (2, 2, 1, 2, 33, 4, False, None, 1, F16),  # one split
]


def _id(c):
    b, h, hk, nq, nk, d, causal, lens, s, dt = c
    return (f"{b}x{h}:{hk}-{nq}x{nk}-d{d}-{'causal' if causal else 'full'}"
            f"-lens{lens}-S{s}-{str(dt)[6:]}")  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_split_matches_reference(case):
    b, h, h_kv, n_q, n_k, d, causal, lens, splits, dt = case
    q, k, v = _inputs(b, h, h_kv, n_q, n_k, d, dt, seed=n_k + d)
    cl = None if lens is None else torch.tensor(lens, dtype=torch.int32).to(DEVICE)
    o, lse = decode.attention_decode(q, k, v, causal, cache_seqlens=cl,
                                     num_splits=splits)  # fmt: skip
    ref = naive(q, k, v, causal, cl)
    assert_rule("O", o, naive(q, k, v, causal, cl, upcast=False), ref, 2.0, 1e-5)
    # LSE: the natural-log logsumexp of each row; +inf where a row sees no key
    g = h // h_kv
    for z in range(b):
        n = n_k if cl is None else lens[z]
        s = q[z].double() @ k[z].double().repeat_interleave(g, 0)[:, :n].mT
        s = s / math.sqrt(d)
        if causal:
            i = torch.arange(n_q, device=q.device)[:, None]
            j = torch.arange(n, device=q.device)[None, :]
            s = s.masked_fill(j > i + n - n_q, float("-inf"))
        want = torch.logsumexp(s, -1)
        want = torch.where(torch.isneginf(want), float("inf"), want)
        torch.testing.assert_close(lse[z].double(), want, rtol=1e-4, atol=1e-4)


def test_flash_attn_func_routes_decoding_without_expanding():
    # GQA with few queries: the split path, bottom-right causal, (B, S, H, d) views
    q, k, v = _inputs(2, 8, 2, 3, 150, 24, F32, seed=3)
    qs, ks, vs = (t.transpose(1, 2) for t in (q, k, v))  # (B, S, H, d), strided
    calls = []
    orig = decode._decode
    try:
        decode._decode = lambda *a, **kw: calls.append(1) or orig(*a, **kw)
        out = flash_attn_func(qs, ks, vs, causal=True)
    finally:
        decode._decode = orig
    assert calls, "flash_attn_func did not take the split path"
    ref = naive(q, k, v, True).transpose(1, 2)
    pt = naive(q, k, v, True, upcast=False).transpose(1, 2)
    assert_rule("O", out, pt, ref, 2.0, 1e-5)
    assert out.shape == qs.shape and out.is_contiguous()
    # with autograd the general kernels run, and gradients flow
    qg = qs.clone().requires_grad_()
    o2 = flash_attn_func(qg, ks, vs, causal=True)
    o2.sum().backward()
    assert qg.grad is not None and torch.isfinite(qg.grad).all()
    assert_rule("O (autograd path)", o2.detach(), pt, ref, 2.0, 1e-5)


def test_flash_attention_uses_the_split_for_long_caches():
    q, k, v = _inputs(1, 1, 1, 1, 700, 16, F32, seed=5)
    assert attention._split_pays(q, k, v)
    o = attention.flash_attention(q, k, v)
    o_ref, _ = fa2.attention_forward(q, k, v)
    torch.testing.assert_close(o, o_ref, rtol=1e-5, atol=1e-6)
    assert not attention._split_pays(q, k[:, :, :64], v[:, :, :64])  # short: fa2


def test_launch_plan_fills_one_wave():
    # the split count never spills the programs into a second, partial wave of the
    # plan's resident slots (B = 8 on 132 SMs with 5 slices of one-per-SM programs
    # measured 1.35x slower than 4 slices), and splits whenever two slices fit
    for sms in (4, 78, 108, 132):
        for programs in range(1, 3 * sms):
            for wide in (False, True):
                bn, _, _, per_sm = decode._plan(programs, wide, sms)
                s = decode.choose_splits(programs, 10**6, sms, per_sm, bn)
                assert s == 1 or programs * s <= per_sm * sms, (sms, programs, s)
                if 2 * programs <= per_sm * sms:
                    assert s >= 2, (sms, programs)
    # the measured points (H200, 132 SMs, GQA 32:4): B = 1 and 8 take "few"
    for b in (1, 8):
        assert decode._plan(b * 4, False, 132) == decode.DECODE_PLANS["few"]
    assert decode.choose_splits(4, 1024, 132, 1, 128) == 33
    assert decode.choose_splits(32, 1024, 132, 1, 128) == 4
    # a slice holds at least MIN_SPLIT_KEYS keys
    assert decode.choose_splits(1, 8, 132, 1, 32) == 8 * 32 // decode.MIN_SPLIT_KEYS


def test_kvcache_appends_and_attends():
    b, h, h_kv, d, cap = 3, 8, 2, 16, 80
    gen = torch.Generator().manual_seed(9)
    kc = torch.randn(b, cap, h_kv, d, generator=gen).to(DEVICE)
    vc = torch.randn(b, cap, h_kv, d, generator=gen).to(DEVICE)
    q = torch.randn(b, 2, h, d, generator=gen).to(DEVICE)
    kn = torch.randn(b, 2, h_kv, d, generator=gen).to(DEVICE)
    vn = torch.randn(b, 2, h_kv, d, generator=gen).to(DEVICE)
    lens = torch.tensor([0, 31, 78], dtype=torch.int32, device=DEVICE)
    kc0 = kc.clone()
    out, lse = flash_attn_with_kvcache(q, kc, vc, kn, vn, cache_seqlens=lens,
                                       causal=True, return_softmax_lse=True)  # fmt: skip
    for z, n in enumerate(lens.tolist()):
        assert torch.equal(kc[z, n : n + 2], kn[z]) and torch.equal(vc[z, n : n + 2],
                                                                    vn[z])  # fmt: skip
        assert torch.equal(kc[z, :n], kc0[z, :n]) and torch.equal(kc[z, n + 2 :],
                                                                  kc0[z, n + 2 :])  # fmt: skip
    new = lens + 2
    ref = naive(q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2), True, new)
    pt = naive(q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2), True, new,
               upcast=False)  # fmt: skip
    assert_rule("O", out.transpose(1, 2), pt, ref, 2.0, 1e-5)
    assert lse.shape == (b, h, 2) and torch.isfinite(lse).all()
    # an int length, no new keys
    out2 = flash_attn_with_kvcache(q, kc, vc, cache_seqlens=40)
    ref2 = naive(q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2), False,
                 [40] * b)  # fmt: skip
    torch.testing.assert_close(out2.transpose(1, 2).double(), ref2, rtol=1e-4,
                               atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("call, exc, msg", [
    (lambda q, kc, vc: flash_attn_with_kvcache(q, kc, vc, kc[:, :2], vc[:, :2],
                                               cache_seqlens=79), ValueError,
     "run past the cache"),
    (lambda q, kc, vc: flash_attn_with_kvcache(q, kc, vc, cache_seqlens=81),
     ValueError, "must lie in"),
    (lambda q, kc, vc: flash_attn_with_kvcache(q, kc, vc, kc[:, :2]), ValueError,
     "both k and v"),
    (lambda q, kc, vc: flash_attn_with_kvcache(q, kc, vc, block_table=kc),
     NotImplementedError, "block_table"),
    (lambda q, kc, vc: flash_attn_with_kvcache(q.requires_grad_(), kc, vc),
     RuntimeError, "forward-only"),
    (lambda q, kc, vc: decode.attention_decode(
        q.transpose(1, 2), torch.cat([kc, kc[:, :, :1]], 2).transpose(1, 2),
        torch.cat([vc, vc[:, :, :1]], 2).transpose(1, 2)),
     ValueError, "must divide"),
    (lambda q, kc, vc: decode.attention_decode(
        q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2),
        cache_seqlens=torch.zeros(5, dtype=torch.int32, device=DEVICE)),
     ValueError, "cache_seqlens must be"),
    (lambda q, kc, vc: decode.attention_decode(
        q.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2), num_splits=0),
     ValueError, "num_splits"),
])  # fmt: skip
def test_bad_decoding_inputs_give_clear_errors(call, exc, msg):
    q = torch.randn(2, 1, 8, 16, device=DEVICE)
    kc = torch.randn(2, 80, 2, 16, device=DEVICE)
    vc = torch.randn(2, 80, 2, 16, device=DEVICE)
    with pytest.raises(exc, match=msg):
        call(q, kc, vc)


# -- traces ---------------------------------------------------------------------------

TRACE_CASES = [
    (2, 4, 2, 3, 70, 8, True, [70, 9], 3, 4, 8),
    (1, 2, 1, 1, 33, 4, False, None, 2, 2, 8),
]


@pytest.mark.parametrize("case", TRACE_CASES)
def test_trace_event_sequences_follow_the_documented_rule(case):
    b, h, h_kv, n_q, n_k, d, causal, lens, splits, bm, bn = case
    q, k, v = _inputs(b, h, h_kv, n_q, n_k, d, F32, seed=1)
    cl = None if lens is None else torch.tensor(lens, dtype=torch.int32).to(DEVICE)
    raw = decode.record_forward(q, k, v, causal=causal, block_m=bm, block_n=bn,
                                values=True, cache_seqlens=cl,
                                num_splits=splits)  # fmt: skip
    assert raw.kernel == "fa2-decode" and raw.names == ["split", "reduce"]
    g = h // h_kv
    t_m = -(-g * n_q // bm)
    n_blocks = -(-n_k // bn)
    bps = -(-n_blocks // splits)
    s_eff = -(-n_blocks // bps)
    plan = dict(n_q=n_q, g=g, d=d, block_m=bm, block_n=bn, splits=s_eff, bps=bps,
                causal=causal, elem=4)  # fmt: skip
    split_buf, red_buf = raw.launches
    assert split_buf.n_programs == b * h_kv * t_m * s_eff
    assert red_buf.n_programs == b * h_kv * g * n_q
    for prog in range(split_buf.n_programs):
        s, t = prog % s_eff, prog // s_eff
        i, bh = t % t_m, t // t_m
        seq = n_k if lens is None else lens[bh // h_kv]
        want = decode.program_events("split", s, i, seq_len=seq, **plan)
        got = program_records(split_buf, prog)
        assert [(r["op"], r["tensor"], r["row"], r["col"], r["nbytes"]) for r in got] \
            == [w[:5] for w in want], f"split program {prog}"  # fmt: skip
        assert list(split_buf.header[prog, 2:4].tolist()) == [bh, s]
    for prog in range(red_buf.n_programs):
        r = prog % (g * n_q)
        want = decode.program_events("reduce", r, 0, seq_len=n_k, **plan)
        got = program_records(red_buf, prog)
        assert [(r["op"], r["tensor"], r["row"], r["col"], r["nbytes"]) for r in got] \
            == [w[:5] for w in want], f"reduce program {prog}"  # fmt: skip
    # the snapshots are the algorithm's: O_s, LSE_s stored = what the reduce loads,
    # and the merged O equals naive attention
    o_ref = naive(q, k, v, causal, cl)
    o, lse = decode.attention_decode(q, k, v, causal, cache_seqlens=cl,
                                     block_m=bm, block_n=bn,
                                     num_splits=splits)  # fmt: skip
    assert torch.equal(raw.outputs["O"], o) and torch.equal(raw.outputs["LSE"], lse)
    torch.testing.assert_close(o.double(), o_ref, rtol=1e-5, atol=1e-6)
    # the reduce of row 0 loads what the split programs of its Q block stored
    loaded = program_records(red_buf, 0)[0]["value"][:s_eff, 0]
    stored = [program_records(split_buf, s)[-1]["value"][0, 0] for s in range(s_eff)]
    torch.testing.assert_close(torch.as_tensor(loaded), torch.as_tensor(stored))
    o_rows = program_records(red_buf, 0)[1]["value"][:s_eff]
    o_split = [program_records(split_buf, s)[-4]["value"][0] for s in range(s_eff)]
    torch.testing.assert_close(torch.as_tensor(o_rows),
                               torch.as_tensor(np.stack(o_split)))  # fmt: skip


def test_traced_and_untraced_agree_and_staging_is_invisible(monkeypatch):
    q, k, v = _inputs(1, 4, 1, 2, 90, 8, F16, seed=2)
    o, lse = decode.attention_decode(q, k, v, True, num_splits=3, block_n=16)
    raws = []
    for staged in (True, False):
        monkeypatch.setattr(decode, "_stage", lambda t, v, s=staged: bool(t and s))
        raws.append(decode.record_forward(q, k, v, causal=True, num_splits=3,
                                          block_n=16))  # fmt: skip
    for raw in raws:
        assert torch.equal(raw.outputs["O"], o) and torch.equal(raw.outputs["LSE"], lse)
    for a, c in zip(raws[0].launches, raws[1].launches, strict=True):
        for p in range(a.n_programs):
            assert [r[:5] for r in _plain(program_records(a, p))] == [
                r[:5] for r in _plain(program_records(c, p))
            ]


def _plain(recs):
    return [(r["op"], r["tensor"], r["row"], r["col"], r["nbytes"]) for r in recs]


# -- GPU ------------------------------------------------------------------------------

GPU_CASES = [  # the "few" plan (programs <= SMs), then "many" (160 programs)
    (1, 32, 4, 1, 4096, 128, False, None, torch.bfloat16),
    (1, 32, 4, 1, 131072, 128, False, "ragged", torch.bfloat16),
    (8, 32, 4, 8, 16384, 128, True, "ragged", torch.bfloat16),
    (2, 16, 1, 1, 3001, 64, False, "ragged", torch.float16),
    (3, 8, 8, 4, 777, 72, True, None, torch.float16),
    (2, 8, 2, 1, 5000, 40, False, "ragged", torch.float32),
    (20, 16, 8, 1, 600, 64, False, None, torch.float16),
]


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_gpu_split_matches_reference(case):
    b, h, h_kv, n_q, n_k, d, causal, lens, dt = case
    q, k, v = _inputs(b, h, h_kv, n_q, n_k, d, dt, seed=n_k)
    cl = None
    if lens:
        gen = torch.Generator().manual_seed(n_k)
        cl = torch.randint(0, n_k + 1, (b,), generator=gen, dtype=torch.int32)
        cl[0] = n_k
        cl = cl.to(DEVICE)
    o, lse = decode.attention_decode(q, k, v, causal, cache_seqlens=cl)
    ref = naive(q, k, v, causal, cl)
    assert_rule("O", o, naive(q, k, v, causal, cl, upcast=False), ref, 2.0, 1e-5)
    # flash_attn_func takes the split path for these and agrees bit for bit
    if cl is None:
        out = flash_attn_func(*(t.transpose(1, 2) for t in (q, k, v)), causal=causal)
        assert torch.equal(out.transpose(1, 2), o)
    raw = decode.record_forward(q, k, v, causal=causal, cache_seqlens=cl)
    assert torch.equal(raw.outputs["O"], o) and torch.equal(raw.outputs["LSE"], lse)
    hdr = raw.launches[0].header.cpu()
    assert (hdr[:, 4] >= 0).all() and (hdr[:, 6] >= hdr[:, 5]).all()


def test_reduce_is_a_dependent_launch_only_where_capable(monkeypatch):
    """Programmatic dependent launch is GPU-only (SM 9.0+): never in the
    interpreter, whatever :data:`decode.PDL` says. Where capable the reduce is
    launched with ``launch_pdl``, traced or not (its programs wait before their
    trace starts), and the split kernel lets it go at its start (``PDL=1``) while
    the reduce's programs fit on the SMs one each, else after its K/V loop
    (``PDL=2``); :data:`decode.PDL_AT` forces the site, ``decode.PDL = False``
    turns it off."""
    if BACKEND != "cuda":
        assert not decode.use_pdl(torch.device(DEVICE))
    seen = []
    for name in ("_attn_fwd_split", "_attn_fwd_merge"):
        monkeypatch.setattr(decode, name, LaunchLog(name, seen))
    monkeypatch.setattr(decode, "pdl_capable", lambda device: True)
    sms = decode.sm_count(torch.device(DEVICE))

    def launches(n_q, trace=False):
        seen.clear()
        q, k, v = _inputs(1, sms, 1, n_q, 64, 8, F32, seed=0)  # sms x n_q rows
        decode._decode(q, k, v, num_splits=2, block_n=16, trace=trace)
        return list(seen)

    for trace in (False, True):
        assert launches(1, trace) == [("_attn_fwd_split", 1, False),
                                      ("_attn_fwd_merge", True, True)]  # fmt: skip
        assert launches(2, trace) == [("_attn_fwd_split", 2, False),
                                      ("_attn_fwd_merge", True, True)]  # fmt: skip
    monkeypatch.setattr(decode, "PDL_AT", "loop_end")
    assert launches(1)[0] == ("_attn_fwd_split", 2, False)
    monkeypatch.setattr(decode, "PDL_AT", "start")
    assert launches(2)[0] == ("_attn_fwd_split", 1, False)
    monkeypatch.setattr(decode, "PDL_AT", "end")
    with pytest.raises(ValueError, match="PDL_AT must be None, 'start' or 'loop_end'"):
        launches(1)
    monkeypatch.setattr(decode, "PDL", False)
    plain = [("_attn_fwd_split", 0, False), ("_attn_fwd_merge", False, False)]
    assert launches(1) == launches(2) == plain


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("n_q", [1, 8])  # let go at the split's start; after its loop
def test_gpu_reduce_launched_early_waits_for_the_split(n_q, monkeypatch):
    """With programmatic dependent launch (SM 9.0+) the reduce's programs may start
    while the split launch runs: the results are the same bits as with two plain
    launches, and in a GPU trace every reduce program starts after the last split
    program has ended (the wait comes before the trace's start stamp)."""
    q, k, v = _inputs(2, 32, 4, n_q, 32768, 128, torch.bfloat16, seed=5)
    cap = torch.cuda.get_device_capability()
    assert decode.use_pdl(q.device) == (cap >= (9, 0))
    o, lse = decode.attention_decode(q, k, v)
    monkeypatch.setattr(decode, "PDL", False)
    assert not decode.use_pdl(q.device)
    o0, lse0 = decode.attention_decode(q, k, v)
    assert torch.equal(o, o0) and torch.equal(lse, lse0)
    monkeypatch.setattr(decode, "PDL", None)
    raw = decode.record_forward(q, k, v, causal=False)
    split, red = (launch.header.cpu() for launch in raw.launches)
    assert torch.equal(raw.outputs["O"], o)
    assert int(red[:, 5].min()) >= int(split[:, 6].max())
