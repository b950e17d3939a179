"""The fused-dQ backward EXPERIMENT (``bench/fused_bwd.py``, not in the package).

Its gradients are held to the rule of ``test_fa2.py`` (3x the error of plain PyTorch
attention against a float64 reference) on awkward shapes: ragged ``N``,
``N_q != N_k``, ``d`` not a power of two, strided inputs; and compared with the
package's three-kernel backward. The interpreter runs the pointer-atomics variant;
the TMA variants are GPU tests (marked ``gpu``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import flashanim.kernels  # noqa: F401  (chooses the device before triton is imported)
import pytest
import torch
from _kernel_checks import DEVICE, assert_rule, blk, case_id, make_qkv, reference_grads
from flashanim.kernels import fa2
from flashanim.kernels._device import BACKEND


def _load_experiment():
    """``bench/fused_bwd.py`` (bench/ is not a package: loaded from its path)."""
    name = "fused_bwd"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "bench" / "fused_bwd.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (Triton reads the kernels' source through it)
    spec.loader.exec_module(mod)
    return mod


fb = _load_experiment()
on_gpu = pytest.mark.skipif(BACKEND != "cuda", reason="kernels run on the CPU here")
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


def _check(q, k, v, causal, scale, bm, bn, seed=2):
    """The fused backward's gradients against the rule and the three kernels."""
    o, lse = fa2.attention_forward(q, k, v, causal, scale)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    do = torch.randn(q.shape, generator=gen).to(DEVICE, q.dtype)
    ref = reference_grads(q, k, v, do, causal, scale, upcast=True)
    pt = reference_grads(q, k, v, do, causal, scale, upcast=False)
    got = fb.fused_backward(q, k, v, o, lse, do, causal, scale, bm, bn)
    three = fa2.attention_backward(q, k, v, o, lse, do, causal, scale)
    for name, g, g_pt, g_ref, g3 in zip(
        ("dQ", "dK", "dV"), got, pt[1:], ref[1:], three, strict=True
    ):
        assert g.dtype == q.dtype and g.shape == g3.shape
        assert_rule(name, g, g_pt, g_ref, 3.0, 1e-5)
        if q.dtype == F32:  # the same sums in another order
            torch.testing.assert_close(g, g3, rtol=1e-4, atol=1e-5)


# (B, H, N_q, N_k, d, BLOCK_M, BLOCK_N, causal, dtype)
CASES = [
    (1, 2, 7, 17, 40, 8, 16, True, F32),
    (1, 2, 17, 7, 6, 4, 4, True, F16),
    (1, 1, 70, 64, 16, 16, 16, False, F32),
    (1, 1, 17, 113, 40, 8, 16, False, F16),
    (1, 1, 1, 113, 16, 4, 4, True, F16),
    (1, 1, 113, 1, 64, 16, 16, True, F16),
    (1, 1, 33, 29, 8, 16, 4, True, F32),
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_backward_against_reference(case):
    b, h, nq, nk, d, bm, bn, causal, dt = case
    q, k, v = make_qkv(b, h, nq, nk, d, dt, seed=nq * 5 + nk)
    _check(q, k, v, causal, None, blk(bm), blk(bn))


def test_default_blocks_scale_and_strides():
    q, k, v = make_qkv(2, 2, 37, 21, 24, F32, seed=3)
    _check(q, k, v, True, 0.3, None, None)
    q, k, v = (x.transpose(1, 2) for x in make_qkv(2, 19, 3, 3, 16, F16, seed=4))
    assert not q.is_contiguous()  # (B, N, H, d) viewed as (B, H, N, d)
    _check(q, k, v, False, None, blk(8), blk(8))


def test_autograd_matches_sdpa():
    q, k, v = make_qkv(2, 2, 23, 23, 16, F32, seed=5, requires_grad=True)
    o = fb.fused_attention(q, k, v, causal=True)
    grads = torch.autograd.grad(o.square().sum(), (q, k, v))
    qq, kk, vv = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
    ref_g = torch.autograd.grad(ref.square().sum(), (qq, kk, vv))
    for g, r in zip(grads, ref_g, strict=True):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4)


def test_bad_lse_is_refused():
    q, k, v = make_qkv(1, 1, 8, 8, 16, F32)
    o, lse = fa2.attention_forward(q, k, v, False)
    with pytest.raises(TypeError, match="lse must be float32"):
        fb.fused_backward(q, k, v, o, lse.half(), o, False)
    with pytest.raises(ValueError, match="lse must be a float32 tensor of shape"):
        fb.fused_backward(q, k, v, o, lse[..., :4], o, False)


GPU_CASES = [  # (dtype, causal, d, N_q, N_k, dQ by TMA reduce, Q/dO by TMA)
    (BF16, True, 64, 1000, 1000, False, False),
    (F16, False, 128, 1000, 1500, False, False),
    (F16, True, 128, 8192, 8192, False, False),
    (BF16, True, 64, 200, 333, False, False),
    (BF16, True, 64, 1000, 1000, True, False),
    (F16, False, 64, 3000, 2000, True, False),
    (BF16, True, 128, 3000, 3000, True, False),
    (F16, False, 96, 2100, 2100, True, True),
    (BF16, True, 128, 1000, 1500, True, True),
]


@pytest.mark.gpu
@on_gpu
@pytest.mark.parametrize("dt, causal, d, nq, nk, dq_tma, tma", GPU_CASES)
def test_gpu_fused_backward(dt, causal, d, nq, nk, dq_tma, tma):
    # each way of adding dQ (pointer atomics, TMA reduce) and of loading Q/dO
    q, k, v = make_qkv(1, 2, nq, nk, d, dt, seed=nq + d + 1)
    o, lse = fa2.attention_forward(q, k, v, causal)
    do = torch.randn_like(q)
    ref = reference_grads(q, k, v, do, causal, None, upcast=True)
    pt = reference_grads(q, k, v, do, causal, None, upcast=False)
    # the TMA reduce stages a BLOCK_M x d float32 tile in shared memory: at d > 64
    # the default 128 x 64 blocks, 2 stages do not fit (232 KB on an H200); the
    # sweep ran it at 64 x 64
    blocks = (dict(block_m=64, block_n=64, num_warps=4, num_stages=2)
              if dq_tma and d > 64 else {})  # fmt: skip
    got = fb.fused_backward(q, k, v, o, lse, do, causal, dq_tma=dq_tma, tma=tma,
                            **blocks)  # fmt: skip
    for name, g, g_pt, g_ref in zip(("dQ", "dK", "dV"), got, pt[1:], ref[1:],
                                    strict=True):  # fmt: skip
        assert_rule(name, g, g_pt, g_ref, 3.0, 1e-5)
    torch.cuda.empty_cache()
