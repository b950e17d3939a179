"""Masks in the FA2 kernels and the drop-in modules of :mod:`flashanim.kernels.modules`.

Numbers are held to flash-attn's rule against a float64 reference: the error may be
at most 2x (outputs) or 3x (gradients) that of plain PyTorch in the same precision.
For :class:`FlashMultiheadAttention` the plain-PyTorch baseline is
``nn.MultiheadAttention`` itself (same state dict), and the reference is that module
in float64. Rows whose keys are all masked are compared with the documented result:
output 0 and zero gradients (a naive softmax gives NaN there).
"""

from __future__ import annotations

import copy
import math

import flashanim.kernels  # noqa: F401  (before triton: chooses the device)
import pytest
import torch
from _kernel_checks import DEVICE, assert_rule, blk, make_qkv
from flashanim.kernels import fa2
from flashanim.kernels._common import check_attn_mask, check_qkv
from flashanim.kernels.attention import flash_attention
from flashanim.kernels.modules import (
    FlashCrossAttention,
    FlashMultiheadAttention,
    FlashSelfAttention,
    flash_attn_func,
    flash_attn_kvpacked_func,
    flash_attn_qkvpacked_func,
)
from torch import nn

F32, F16 = torch.float32, torch.float16


def masked_ref(q, k, v, mask=None, causal=False, upcast=True):
    """Naive attention with an SDPA-style mask (bool ``True`` = attend, float
    added); rows with every key masked give 0 (the kernels' documented result)."""
    dtype = q.dtype
    if upcast:
        q, k, v = q.double(), k.double(), v.double()
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if s.dtype in (F16, torch.bfloat16):  # softmax in float32, as attention_ref
        s = s.float()
    if causal:
        keep = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, float("-inf"))
        else:
            s = s + mask.to(s.dtype)
    empty = torch.isneginf(s).all(-1, keepdim=True)
    p = torch.softmax(s.masked_fill(empty, 0.0), -1).masked_fill(empty, 0.0)
    o = torch.matmul(p.to(v.dtype), v)
    return o if upcast else o.to(dtype)


def _grads(fn, inputs, do):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*xs)
    out.backward(do.to(out.dtype))
    return out.detach(), [x.grad for x in xs]


def _make_mask(kind, b, h, nq, nk, seed):
    gen = torch.Generator().manual_seed(seed)
    if kind == "kpm":  # key padding, (B, 1, 1, N_k), True = attend
        lens = torch.randint(1, nk + 1, (b,), generator=gen)
        m = torch.arange(nk)[None, :] < lens[:, None]
        return m.view(b, 1, 1, nk)
    if kind == "bool2d":  # arbitrary (N_q, N_k), one key always kept
        m = torch.rand(nq, nk, generator=gen) > 0.6
        m[torch.arange(nq), torch.arange(nq) % nk] = True
        return m
    if kind == "float4d":
        m = torch.randn(b, h, nq, nk, generator=gen)
        m[..., 0, 1:] = float("-inf")
        return m
    if kind == "float_heads":  # (H, 1, N_k): broadcast over batch and rows
        return torch.randn(h, 1, nk, generator=gen)
    raise ValueError(kind)


# (kind, B, H, N_q, N_k, d, BLOCK_M, BLOCK_N, causal, dtype)
KERNEL_CASES = [
    ("kpm", 2, 2, 17, 29, 16, 8, 8, False, F32),
    ("kpm", 2, 1, 33, 33, 8, 16, 8, True, F16),
    ("bool2d", 1, 2, 23, 19, 40, 8, 16, False, F16),
    ("bool2d", 2, 1, 31, 31, 16, 16, 16, True, F32),
    ("float4d", 1, 2, 19, 23, 8, 8, 8, True, F32),
    ("float_heads", 2, 3, 9, 40, 16, 8, 16, False, F16),
]


@pytest.mark.parametrize(
    "case", KERNEL_CASES, ids=lambda c: f"{c[0]}-{c[3]}x{c[4]}-{'c' if c[8] else 'f'}"
)
def test_kernel_mask_forward_backward(case):
    kind, b, h, nq, nk, d, bm, bn, causal, dt = case
    q, k, v = make_qkv(b, h, nq, nk, d, dt, seed=nq + 3 * nk)
    mask = _make_mask(kind, b, h, nq, nk, seed=nk).to(DEVICE)
    gen = torch.Generator().manual_seed(1)
    do = torch.randn(q.shape, generator=gen).to(DEVICE, dt)
    o, lse = fa2.attention_forward(q, k, v, causal, None, blk(bm), blk(bn),
                                   attn_mask=mask)  # fmt: skip
    grads = fa2.attention_backward(q, k, v, o, lse, do, causal, None, blk(bm),
                                   blk(bn), attn_mask=mask)  # fmt: skip
    ref, ref_g = _grads(lambda *x: masked_ref(*x, mask, causal), (q, k, v), do)
    pt, pt_g = _grads(lambda *x: masked_ref(*x, mask, causal, False), (q, k, v), do)
    assert_rule("O", o, pt, ref, 2.0, 1e-5)
    for name, g, gp, gr in zip(("dQ", "dK", "dV"), grads, pt_g, ref_g, strict=True):
        assert_rule(name, g, gp, gr, 3.0, 1e-5)


def test_fully_masked_rows_give_zero_output_and_gradients():
    """Documented: O = 0, LSE = +inf and no gradient through a row that sees no key
    (PyTorch's softmax gives NaN there)."""
    q, k, v = make_qkv(1, 2, 12, 10, 8, F32, seed=2, requires_grad=True)
    mask = torch.ones(12, 10, dtype=torch.bool)
    mask[[0, 5, 11]] = False
    mask = mask.to(DEVICE)
    o = flash_attention(q, k, v, attn_mask=mask)
    _, lse = fa2.attention_forward(q.detach(), k.detach(), v.detach(), attn_mask=mask)
    assert torch.isfinite(o).all()
    assert (o[:, :, [0, 5, 11]] == 0).all()
    assert torch.isposinf(lse[:, :, [0, 5, 11]]).all()
    assert torch.isfinite(lse[:, :, [1, 2, 3]]).all()
    o.sum().backward()
    assert (q.grad[:, :, [0, 5, 11]] == 0).all()
    ref, ref_g = _grads(lambda *x: masked_ref(*x, mask), (q, k, v), torch.ones_like(o))
    torch.testing.assert_close(o.double(), ref, rtol=1e-5, atol=1e-5)
    for g, r in zip((q.grad, k.grad, v.grad), ref_g, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
    # a naive softmax, for the record, gives NaN for those rows
    s = (q @ k.transpose(-1, -2)).masked_fill(~mask, float("-inf"))
    assert torch.isnan(torch.softmax(s, -1)[:, :, 0]).all()


def test_float_mask_of_minus_inf_and_bool_mask_agree():
    q, k, v = make_qkv(2, 1, 16, 16, 8, F32, seed=3)
    keep = _make_mask("bool2d", 2, 1, 16, 16, seed=4).to(DEVICE)
    bias = torch.zeros(16, 16, device=DEVICE).masked_fill(~keep, float("-inf"))
    o_b, _ = fa2.attention_forward(q, k, v, attn_mask=keep)
    o_f, _ = fa2.attention_forward(q, k, v, attn_mask=bias)
    torch.testing.assert_close(o_b, o_f, rtol=1e-6, atol=1e-6)


def test_key_padding_mask_is_read_in_place():
    """A (B, 1, 1, N_k) mask is broadcast with stride 0: no copy of size N_q * N_k."""
    q, k, v = make_qkv(3, 4, 64, 48, 8, F32)
    kpm = torch.ones(3, 1, 1, 48, dtype=torch.bool, device=DEVICE)
    view = check_attn_mask(kpm, check_qkv(q, k, v))
    assert view.shape == (3, 4, 64, 48)
    assert view.stride() == (48, 0, 0, 1)
    assert view.data_ptr() == kpm.data_ptr()


@pytest.mark.parametrize(
    "mask, exc, msg",
    [
        (torch.ones(5, 7, dtype=torch.bool), ValueError, "does not broadcast"),
        (torch.ones(2, 2, 1, 1, 9, dtype=torch.bool), ValueError, "does not broadcast"),
        (torch.ones(9, 9, dtype=torch.int32), TypeError, "bool .* or floating"),
        ("mask", TypeError, "bool or floating torch.Tensor"),
        (torch.zeros(9, 9, requires_grad=True), TypeError, "requires grad"),
    ],
    ids=["shape", "ndim", "int", "str", "grad"],
)
def test_bad_masks_give_clear_errors(mask, exc, msg):
    q, k, v = make_qkv(1, 2, 9, 9, 8, F32)
    if isinstance(mask, torch.Tensor):
        mask = mask.to(DEVICE)
    with pytest.raises(exc, match=msg):
        fa2.attention_forward(q, k, v, attn_mask=mask)


def test_traced_runs_refuse_masks():
    q, k, v = make_qkv(1, 1, 8, 8, 4, F32)
    mask = torch.ones(8, 8, dtype=torch.bool, device=DEVICE)
    with pytest.raises(ValueError, match="cannot be traced"):
        fa2._forward(q, k, v, False, None, None, None, True, False, attn_mask=mask)


# ------------------------------------------------------------------------------------
# FlashMultiheadAttention against nn.MultiheadAttention
# ------------------------------------------------------------------------------------


def _mha_pair(e, h, seed, **kw):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(e, h, **kw).to(DEVICE)
    ours = FlashMultiheadAttention(e, h, **kw).to(DEVICE)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _run_mha(mod, inputs, kw, dtype):
    mod = copy.deepcopy(mod).to(dtype)
    xs = [x.detach().to(dtype).requires_grad_() for x in inputs]
    if len(xs) == 1:
        xs = xs * 3
    out, w = mod(*xs[:3], **kw)
    gen = torch.Generator().manual_seed(7)
    out.backward(torch.randn(out.shape, generator=gen).to(out.device, dtype))
    grads = [x.grad for x in dict.fromkeys(xs)]  # each distinct input once
    grads += [p.grad for p in mod.parameters()]
    return out.detach(), w, grads


MHA_CASES = [
    # (name, batch_first, kdim/vdim, masks)
    ("kpm-bool", False, None, "kpm"),
    ("kpm-float", True, None, "kpm_float"),
    ("attn-bool-2d", True, None, "am_bool"),
    ("attn-float-3d", False, None, "am_float3"),
    ("both-masks", False, None, "both"),
    ("causal", True, None, "causal"),
    ("cross-kdim-vdim", False, (12, 20), "kpm"),
    ("cross-attn-mask", True, (None, None), "am_bool"),
]


def _mha_masks(which, b, h, n_q, n_k):
    gen = torch.Generator().manual_seed(5)
    kpm = torch.zeros(b, n_k, dtype=torch.bool)
    kpm[0, n_k - 3 :] = True
    kpm[-1, : n_k // 2] = True
    am = torch.rand(n_q, n_k, generator=gen) > 0.7
    am[torch.arange(n_q), n_k - 1] = False  # the last key is always allowed
    if which == "kpm":
        return dict(key_padding_mask=kpm)
    if which == "kpm_float":
        return dict(key_padding_mask=torch.randn(b, n_k, generator=gen))
    if which == "am_bool":
        return dict(attn_mask=am)
    if which == "am_float3":
        return dict(attn_mask=torch.randn(b * h, n_q, n_k, generator=gen))
    if which == "both":
        return dict(attn_mask=am, key_padding_mask=kpm)
    if which == "causal":
        mask = nn.Transformer.generate_square_subsequent_mask(n_q)
        return dict(attn_mask=mask, is_causal=True)
    raise ValueError(which)


@pytest.mark.parametrize("case", MHA_CASES, ids=lambda c: c[0])
def test_mha_matches_nn_multihead_attention(case):
    name, batch_first, kv_dims, masks = case
    e, h, b, n_q = 32, 4, 3, 13
    cross = kv_dims is not None
    n_k = 17 if cross else n_q
    kdim, vdim = kv_dims if cross else (None, None)
    ref, ours = _mha_pair(e, h, seed=len(name), batch_first=batch_first, kdim=kdim,
                          vdim=vdim)  # fmt: skip
    gen = torch.Generator().manual_seed(11)

    def seq(n, width):
        shape = (b, n, width) if batch_first else (n, b, width)
        return torch.randn(shape, generator=gen).to(DEVICE)

    if cross:
        inputs = [seq(n_q, e), seq(n_k, kdim or e), seq(n_k, vdim or e)]
    else:
        inputs = [seq(n_q, e)]
    kw = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v
          for k, v in _mha_masks(masks, b, h, n_q, n_k).items()}  # fmt: skip
    kw["need_weights"] = False
    kw64 = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point()
            else v for k, v in kw.items()}  # fmt: skip
    out, w, grads = _run_mha(ours, inputs, kw, F32)
    assert w is None
    out_pt, _, grads_pt = _run_mha(ref, inputs, kw, F32)
    out_ref, _, grads_ref = _run_mha(ref, inputs, kw64, torch.float64)
    assert_rule("out", out, out_pt, out_ref, 2.0, 1e-5)
    names = [f"d_input{i}" for i in range(len(inputs))]
    names += [n for n, _ in ours.named_parameters()]
    assert len(names) == len(grads)
    for n, g, gp, gr in zip(names, grads, grads_pt, grads_ref, strict=True):
        assert_rule(n, g, gp, gr, 3.0, 1e-5)


def test_mha_state_dict_round_trip_and_parameter_names():
    ref = nn.MultiheadAttention(24, 3, kdim=8, vdim=16, bias=False)
    ours = FlashMultiheadAttention(24, 3, kdim=8, vdim=16, bias=False)
    assert set(ours.state_dict()) == set(ref.state_dict())
    assert {"q_proj_weight", "k_proj_weight", "v_proj_weight"} <= set(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.MultiheadAttention)


def test_mha_need_weights_and_unbatched_inputs():
    ref, ours = _mha_pair(16, 2, seed=3)
    ref.eval(), ours.eval()
    x = torch.randn(7, 16, device=DEVICE)  # unbatched (L, E)
    kpm = torch.tensor([False] * 5 + [True] * 2, device=DEVICE)
    with torch.no_grad():
        for avg in (True, False):
            r, rw = ref(x, x, x, key_padding_mask=kpm, average_attn_weights=avg)
            o, ow = ours(x, x, x, key_padding_mask=kpm, average_attn_weights=avg)
            assert o.shape == r.shape == (7, 16) and ow.shape == rw.shape
            torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(ow, rw, rtol=1e-5, atol=1e-6)


def test_mha_fully_masked_batch_row_gives_bias_only():
    """A sequence whose keys are all padded: attention output 0 (so the module returns
    ``out_proj.bias``) and finite gradients; the other sequence is unaffected."""
    ref, ours = _mha_pair(16, 2, seed=4, batch_first=True)
    with torch.no_grad():
        ref.out_proj.bias.normal_()
        ours.out_proj.bias.copy_(ref.out_proj.bias)
    x = torch.randn(2, 5, 16, device=DEVICE, requires_grad=True)
    kpm = torch.zeros(2, 5, dtype=torch.bool, device=DEVICE)
    kpm[1] = True
    out, _ = ours(x, x, x, key_padding_mask=kpm, need_weights=False)
    torch.testing.assert_close(out[1], ours.out_proj.bias.expand(5, 16).detach())
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    r, _ = ref(x[:1], x[:1], x[:1], need_weights=False)
    torch.testing.assert_close(out[:1], r, rtol=1e-5, atol=1e-5)


def test_mha_refusals_and_bad_masks():
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        FlashMultiheadAttention(16, 2, add_bias_kv=True)
    mha = FlashMultiheadAttention(16, 2, dropout=0.1).to(DEVICE)
    x = torch.randn(5, 2, 16, device=DEVICE)
    with pytest.raises(NotImplementedError, match="dropout"):
        mha(x, x, x, need_weights=False)
    mha.eval()  # dropout is off in eval mode, as in PyTorch
    assert mha(x, x, x, need_weights=False)[0].shape == (5, 2, 16)
    bad = [
        (dict(attn_mask=torch.zeros(4, 5, dtype=torch.bool)), ValueError, "2D"),
        (dict(attn_mask=torch.zeros(3, 5, 5)), ValueError, "3D"),
        (dict(attn_mask=torch.zeros(5, 5, dtype=torch.int64)), TypeError, "attn_mask"),
        (dict(key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)), ValueError,
         "key_padding_mask"),
        (dict(key_padding_mask=torch.zeros(2, 5, dtype=torch.int8)), TypeError,
         "key_padding_mask"),
    ]  # fmt: skip
    for kw, exc, msg in bad:
        kw = {k: v.to(DEVICE) for k, v in kw.items()}
        with pytest.raises(exc, match=msg):
            mha(x, x, x, need_weights=False, **kw)


# ------------------------------------------------------------------------------------
# flash-attn-style functions and modules
# ------------------------------------------------------------------------------------


def _sdpa_bshd(q, k, v, causal):
    """Reference in flash-attn's (B, S, H, d) layout, float64, bottom-right causal."""
    q, k, v = (x.double().transpose(1, 2) for x in (q, k, v))
    if k.shape[1] != q.shape[1]:
        g = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    mask = None
    if causal:
        n_q, n_k = q.shape[2], k.shape[2]
        i, j = torch.arange(n_q)[:, None], torch.arange(n_k)[None, :]
        mask = (j <= i + n_k - n_q).to(q.device)
    return masked_ref(q, k, v, mask).transpose(1, 2)


def test_flash_self_and_cross_attention_layouts():
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 11, 3, 4, 8, generator=gen).to(DEVICE)
    self_attn = FlashSelfAttention(causal=True)
    out = self_attn(qkv)
    assert out.shape == (2, 11, 4, 8) and out.is_contiguous()
    ref = _sdpa_bshd(*qkv.unbind(2), causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    # causal=False passed to forward overrides the module's causal=True
    torch.testing.assert_close(
        self_attn(qkv, causal=False).double(), _sdpa_bshd(*qkv.unbind(2), False),
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip
    # cross attention, fewer K/V heads (GQA) and S_q < S_k: bottom-right causal
    q = torch.randn(2, 5, 4, 8, generator=gen).to(DEVICE)
    kv = torch.randn(2, 9, 2, 2, 8, generator=gen).to(DEVICE)
    out = FlashCrossAttention(causal=True)(q, kv)
    assert out.shape == (2, 5, 4, 8)
    ref = _sdpa_bshd(q, *kv.unbind(2), causal=True)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flash_attn_kvpacked_func(q, kv, causal=True), out)
    torch.testing.assert_close(
        flash_attn_qkvpacked_func(qkv, 0.0, None, True), self_attn(qkv)
    )
    # S_q > S_k, causal: the first rows see no key and give 0 (as flash-attn)
    out = flash_attn_func(kv[:, :4, 0].repeat(1, 3, 2, 1), kv[:, :, 0], kv[:, :, 1],
                          causal=True)  # fmt: skip
    assert (out[:, :3] == 0).all() and (out[:, 3:] != 0).any()


def test_flash_modules_refusals_and_gradients():
    qkv = torch.randn(1, 6, 3, 2, 8, device=DEVICE, requires_grad=True)
    mod = FlashSelfAttention(attention_dropout=0.1)
    with pytest.raises(NotImplementedError, match="dropout"):
        mod(qkv)
    mod.eval()
    mod(qkv).sum().backward()
    assert qkv.grad is not None and torch.isfinite(qkv.grad).all()
    with pytest.raises(NotImplementedError, match="variable-length"):
        FlashSelfAttention()(qkv, cu_seqlens=torch.tensor([0, 6], dtype=torch.int32))
    with pytest.raises(NotImplementedError, match="variable-length"):
        FlashCrossAttention()(qkv[:, :, 0], qkv[:, :, 1:], max_seqlen_k=6)
    with pytest.raises(NotImplementedError, match="window_size"):
        flash_attn_func(*qkv.unbind(2), window_size=(4, 0))
    with pytest.raises(ValueError, match="heads"):
        flash_attn_func(qkv[:, :, 0], qkv[:, :, 1, :1].repeat(1, 1, 3, 1),
                        qkv[:, :, 2, :1].repeat(1, 1, 3, 1))  # fmt: skip


# ------------------------------------------------------------------------------------
# GPU
# ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dt", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", ["kpm", "bool2d", "float4d"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("size", ["short", "table"])
def test_gpu_kernel_masks(dt, kind, causal, size):
    # "table": long enough for the backward's per-pass blocks (BWD_PASS_TABLE)
    b, h, nq, nk, d = 2, 4, 509, 1023 if not causal else 509, 64
    if size == "table":
        b, h, nq, nk = 1, 2, 1500, 2100 if not causal else 2100
    q, k, v = make_qkv(b, h, nq, nk, d, dt, seed=9)
    mask = _make_mask(kind, b, h, nq, nk, seed=3).to(DEVICE)
    do = torch.randn_like(q)
    o, lse = fa2.attention_forward(q, k, v, causal, attn_mask=mask)
    grads = fa2.attention_backward(q, k, v, o, lse, do, causal, attn_mask=mask)
    ref, ref_g = _grads(lambda *x: masked_ref(*x, mask, causal), (q, k, v), do)
    pt, pt_g = _grads(lambda *x: masked_ref(*x, mask, causal, False), (q, k, v), do)
    assert_rule("O", o, pt, ref, 2.0, 1e-5)
    for name, g, gp, gr in zip(("dQ", "dK", "dV"), grads, pt_g, ref_g, strict=True):
        assert_rule(name, g, gp, gr, 3.0, 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dt", [torch.float16, torch.bfloat16])
def test_gpu_mha_matches_nn_multihead_attention(dt):
    ref, ours = _mha_pair(256, 4, seed=0, batch_first=True)
    x = torch.randn(4, 300, 256, device=DEVICE)
    kpm = torch.zeros(4, 300, dtype=torch.bool, device=DEVICE)
    kpm[1, 200:] = True
    kw = dict(key_padding_mask=kpm, need_weights=False)
    out, _, grads = _run_mha(ours, [x], kw, dt)
    out_pt, _, grads_pt = _run_mha(ref, [x], kw, dt)
    out_ref, _, grads_ref = _run_mha(ref, [x], kw, torch.float64)
    assert_rule("out", out, out_pt, out_ref, 2.0, 1e-5)
    for g, gp, gr in zip(grads, grads_pt, grads_ref, strict=True):
        assert_rule("grad", g, gp, gr, 3.0, 1e-5)
