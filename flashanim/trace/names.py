"""The trace protocol's name tables: operation and tensor codes.

The kernels write codes (:mod:`flashanim.kernels._trace` imports these tables);
:func:`~flashanim.trace.decode` and :func:`~flashanim.trace.load_trace` turn them
back into names. This module imports nothing, so reading a trace file needs
neither torch nor Triton.
"""

from __future__ import annotations

__all__ = ["OPS", "TENSORS"]

#: Operation codes, in code order. Loads and stores move a tile between global
#: memory (HBM) and the program's registers/shared memory (SRAM); the others are
#: computations whose result is the event's tensor.
OPS: tuple[str, ...] = (
    "load",  # 0  HBM -> SRAM
    "store",  # 1  SRAM -> HBM
    "qk",  # 2  S = Q K^T * softmax_scale
    "mask",  # 3  S = where(causal/tail mask, S, -inf)
    "rowmax",  # 4  m_new = max(m_i, rowmax(S))
    "exp",  # 5  P = exp(S - m_new)
    "alpha",  # 6  alpha = exp(m_old - m_new)
    "rowsum",  # 7  l_i = l_i * alpha + rowsum(P)
    "rescale",  # 8  acc = acc * alpha
    "pv",  # 9  acc += P V
    "normalize",  # 10 O = acc / l_i
    "lse",  # 11 LSE = m_i + log(l_i)
    "rowdot",  # 12 D = rowsum(dO * O)
    "recompute",  # 13 P = exp(S - LSE)
    "dv",  # 14 dV += P^T dO
    "dp",  # 15 dP = dO V^T
    "ds",  # 16 dS = P * (dP - D)
    "dk",  # 17 dK += dS^T Q
    "dq",  # 18 dQ += dS K
    "softmax",  # 19 P = softmax(S) of whole rows (standard attention)
    "update",  # 20 FA1: O, l, m merged with the new block's statistics
    # --- split-K/V decoding (kernels/decode.py): appended, so earlier codes stay ---
    "merge",  # 21 reduce: acc = acc * alpha + exp(LSE_s - m) O_s over the splits
)

#: Tensor codes, in code order.
TENSORS: tuple[str, ...] = (
    "Q", "K", "V", "O", "dO", "dQ", "dK", "dV",
    "S", "P", "LSE", "l", "m", "D", "alpha", "acc", "dP", "dS",
    # --- split-K/V decoding (kernels/decode.py): a split's partial O and its LSE ---
    "O_s", "LSE_s",
)  # fmt: skip
