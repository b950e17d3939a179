"""The trace's named steps: an operation and the tensor it produces or moves.

A kernel records a step as ``tr = rec(tr, TC, step.LOAD_K, row, col, x, nbytes)``
(:func:`flashanim.kernels._trace.rec`, with ``from . import _steps as step``). A
step's code is one constexpr, ``op * BASE + tensor``, the indices of its names in
:data:`flashanim.trace.names.OPS` and :data:`~flashanim.trace.names.TENSORS`.
"""

from __future__ import annotations

import triton.language as tl

from flashanim.trace.names import OPS, TENSORS

#: More than either name table holds.
BASE = 64


def code(op: str, tensor: str) -> tl.constexpr:
    """The constexpr code of step ``op tensor`` (e.g. ``code("load", "K")``)."""
    return tl.constexpr(OPS.index(op) * BASE + TENSORS.index(tensor))


def names(step: int) -> tuple[str, str]:
    """``(op, tensor)`` of a step code (the inverse of :func:`code`)."""
    return OPS[int(step) // BASE], TENSORS[int(step) % BASE]


# moves between HBM and SRAM
LOAD_Q, LOAD_K, LOAD_V = code("load", "Q"), code("load", "K"), code("load", "V")
LOAD_O, LOAD_DO, LOAD_S, LOAD_P = (code("load", t) for t in ("O", "dO", "S", "P"))
LOAD_LSE, LOAD_D, LOAD_L, LOAD_M = (code("load", t) for t in ("LSE", "D", "l", "m"))
LOAD_OS, LOAD_LSES = code("load", "O_s"), code("load", "LSE_s")
STORE_O, STORE_LSE, STORE_D = (code("store", t) for t in ("O", "LSE", "D"))
STORE_DQ, STORE_DK, STORE_DV = (code("store", t) for t in ("dQ", "dK", "dV"))
STORE_S, STORE_P, STORE_L, STORE_M = (code("store", t) for t in ("S", "P", "l", "m"))
STORE_OS, STORE_LSES = code("store", "O_s"), code("store", "LSE_s")
# the forward's computations (FlashAttention-2, Algorithm 1)
QK_S, MASK_S = code("qk", "S"), code("mask", "S")
ROWMAX_M, EXP_P, ALPHA = code("rowmax", "m"), code("exp", "P"), code("alpha", "alpha")
ROWSUM_L, RESCALE_ACC = code("rowsum", "l"), code("rescale", "acc")
PV_ACC, NORMALIZE_O, LSE = code("pv", "acc"), code("normalize", "O"), code("lse", "LSE")
NORMALIZE_OS, LSE_S = code("normalize", "O_s"), code("lse", "LSE_s")
# the backward's (Algorithm 2)
ROWDOT_D, RECOMPUTE_P = code("rowdot", "D"), code("recompute", "P")
DV, DP, DS, DK, DQ = (code(x.lower(), x) for x in ("dV", "dP", "dS", "dK", "dQ"))
# standard attention, FlashAttention-1's update, the decoding reduce
SOFTMAX_P, UPDATE_O, MERGE_O = (
    code("softmax", "P"),
    code("update", "O"),
    code("merge", "O"),
)
