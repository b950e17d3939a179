"""Compile the kernels for a Hopper GPU (sm_90) without one, and write their code.

    python bench/compiled_code.py OUT_DIR [--traced] [--pdl] [--tma]

Every launch the package makes (FA2 forward and backward, causal and not, d = 64 and
128, a tail block; FA1; standard attention; split-K/V decoding) is captured as its
arguments (the launch itself is never made), specialized as Triton's JIT does on a
GPU (an int argument equal to 1 becomes a constant, a multiple of 16 is marked
divisible: without that, unit strides are unknown and no load is vectorized or
pipelined), compiled with :func:`triton.compile` for ``cuda:90``, and the PTX
written to ``OUT_DIR`` (one file per launch, line-number comments and debug
sections removed, so that two source trees' files can be compared). Run it once from each tree (or with another
Triton on ``PYTHONPATH``) and compare the folders with ``diff -r``: identical files
mean identical machine code. Untraced launches only, unless ``--traced`` (then the
traced launches, events only and with values, are written as well). ``--pdl``:
as on a Hopper GPU, the decoding reduce is a programmatic dependent launch (the
split and reduce kernels' ``PDL``; their PTX holds ``griddepcontrol``). ``--tma``:
the FA2 forward loads K/V through tensor descriptors wherever the layout allows
(``fa2._use_tma``).
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

import torch

# Pretend to be a CUDA process: the kernels are then compiled, not interpreted;
# tensors stay on the CPU because nothing is launched.
os.environ["FLASHANIM_DEVICE"] = "cuda"
os.environ.pop("TRITON_INTERPRET", None)
torch.cuda.is_available = lambda: True

import flashanim.kernels._device as device  # noqa: E402
import triton  # noqa: E402
from triton._C.libtriton import native_specialize_impl  # noqa: E402
from triton.backends.compiler import BaseBackend, GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

device.default_device = lambda: torch.device("cpu")

from flashanim.kernels import decode, fa1, fa2, standard  # noqa: E402

DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32",
          torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8"}  # fmt: skip
CAPTURED: list[tuple[JITFunction, dict]] = []


def _capture(self, *args, grid=None, warmup=False, **kwargs):
    opts = {k: kwargs.pop(k) for k in ("num_warps", "num_stages", "launch_pdl")
            if k in kwargs}  # fmt: skip
    bound = inspect.signature(self.fn).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    CAPTURED.append((self, dict(bound.arguments), opts))


JITFunction.run = _capture


def compile_ptx(fn: JITFunction, args: dict, opts: dict) -> str:
    return normalise(compile_kernel(fn, args, opts).asm["ptx"])


def compile_kernel(fn: JITFunction, args: dict, opts: dict):
    """One captured launch compiled for ``cuda:90`` (Triton's compiled kernel)."""
    sig, consts, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        v = args[p.name]
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            consts[p.name] = v
        elif isinstance(v, torch.Tensor):
            sig[p.name] = "*" + DTYPES[v.dtype]
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif isinstance(v, bool):
            sig[p.name] = "i1"
        elif isinstance(v, int):
            # as the JIT specializes an int launch argument on a GPU: 1 becomes a
            # constant, a multiple of 16 is marked so (unit strides then give
            # contiguous, vectorized and pipelined loads, as in the real launch)
            ty, spec = native_specialize_impl(
                BaseBackend, v, False, not p.do_not_specialize,
                not p.do_not_specialize_on_alignment,
            )  # fmt: skip
            if ty == "constexpr":
                sig[p.name], consts[p.name] = "constexpr", v
            else:
                sig[p.name] = ty
                if "D" in spec:
                    attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[p.name] = "fp32"
    src = ASTSource(fn, sig, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)


def normalise(ptx: str) -> str:
    """PTX without debug sections, line-number and comment lines."""
    ptx = ptx.split("\t.section\t.debug")[0]
    keep = []
    for line in ptx.splitlines():
        s = line.split("//")[0].rstrip()
        if not s.strip() or re.match(r"\s*\.(loc|file)\b", s):
            continue
        if re.match(r"\$L__(tmp|func_begin|func_end)\d*:", s.strip()):
            continue
        keep.append(s)
    return "\n".join(keep) + "\n"


def launches(traced: bool) -> None:
    """Call every launcher on small CPU tensors (captured, not launched)."""
    g = torch.Generator().manual_seed(0)

    def qkv(n, d, dtype, nk=None, h=2, hkv=None):
        q = torch.randn(1, h, n, d, generator=g).to(dtype)
        k = torch.randn(1, hkv or h, nk or n, d, generator=g).to(dtype)
        v = torch.randn(1, hkv or h, nk or n, d, generator=g).to(dtype)
        return q, k, v

    modes = [(False, False)] + ([(True, False), (True, True)] if traced else [])
    for trace, values in modes:
        for d, dtype, n in ((64, torch.bfloat16, 1024), (128, torch.float16, 1000)):
            q, k, v = qkv(n, d, dtype)
            for causal in (False, True):
                o, lse, _, _ = fa2._forward(q, k, v, causal, None, None, None, trace,
                                            values)  # fmt: skip
                fa2._backward(q, k, v, o, lse, q, causal, None, None, None, trace,
                              values)  # fmt: skip
        q, k, v = qkv(256, 64, torch.float16)
        fa1._launch(q, k, v, True, None, 64, 64, None, False) if not trace else None
        standard._run(q, k, v, True, None, 64, 64, trace, values)
        q, k, v = qkv(1, 128, torch.bfloat16, nk=4096, h=8, hkv=2)
        decode._decode(q, k, v, causal=True, num_splits=8, trace=trace, values=values)


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if "--pdl" in sys.argv:
        decode.pdl_capable = lambda device: True
    if "--tma" in sys.argv:
        fa2._use_tma = lambda *args: True
    launches("--traced" in sys.argv)
    seen: dict[str, int] = {}
    for fn, args, opts in CAPTURED:
        flags = "".join(
            f"{k}{int(args[k]) if isinstance(args[k], bool) else args[k]}"
            for k in ("TRACE", "VALUES", "STAGE", "CAUSAL", "HEAD_DIM", "EVEN_M")
            if k in args
        )
        name = f"{fn.__name__}_{flags}"
        seen[name] = seen.get(name, 0) + 1
        name += f"_{seen[name]}"
        ptx = compile_ptx(fn, args, opts)
        (out / f"{name}.ptx").write_text(ptx)
        print(f"{name}: {len(ptx.splitlines())} lines", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
