"""FlashAttention-2 forward, tile by tile, driven by the real kernel's trace.

Render from the repository root: ``manim render -ql scenes/tiling.py``. Sizes, mask,
theme and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`). Every motion comes from :class:`TracePlayer` playing the
recorded events; the scene only groups them into sections and writes captions.
"""

from __future__ import annotations

import numpy as np
import torch
from manim import *

from flashanim.scene import TraceScene
from flashanim.trace.check import closing_check
from flashanim.visuals import ForwardLayout, TileGrid, TracePlayer
from flashanim.visuals.player import kv_steps

#: How the programs run on a GPU (the H200 schedule trace holds up to 2 per SM,
#: in waves, not one program per SM at once; tests/test_claims.py checks it).
ON_A_GPU = "(on a GPU: in parallel, spread over the SMs)"


def after_blocks_caption(prog0, t_c: int) -> str:
    """What program 0 has done once its K/V loop ends, counted from its events
    (causal: fewer than ``T_c`` blocks)."""
    n = sum(e.op == "qk" for e in prog0)
    if n == t_c:
        return f"After all T_c = {t_c} blocks, acc holds O_i·l_i — no N×N matrix went to HBM"
    return (
        f"After {n} of T_c = {t_c} blocks (causal), acc holds O_i·l_i — no N×N in HBM"
    )


#: Speed of the first K/V block of program 0 and of its other blocks.
DETAIL_SPEED, PROGRAM0_SPEED = 1.0, 1.8
#: Seconds of one compressed step of a later program (its Q load, one K/V block,
#: or its end: O and LSE written).
LATER_STEP = 0.7


def later_caption(t_r: int) -> str:
    """What the "other programs" section shows: the later programs compressed,
    one after another, one step per K/V block (tests/test_claims.py)."""
    first = "i = 1" if t_r == 2 else f"i = 1 … {t_r - 1}"
    return f"Programs {first}, one step per K/V block {ON_A_GPU}"


class TilingScene(TraceScene):
    """The FA2 forward pass for one head: tiles, online softmax, output, check."""

    kernel = "fa2-fwd"
    hold_seconds = 1.2  # each section's closing frame

    def construct(self) -> None:
        trace, th = self.trace, self.theme
        meta = trace.meta
        head = [e for e in trace.events if e.bh == 0]
        self.layout = lay = ForwardLayout.from_trace(trace, theme=th, gpu=self.gpu)
        self.captions = lay.captions
        player = self.player = TracePlayer(lay, len(trace.events))
        prog0 = [e for e in head if e.program == head[0].program]
        later = [e for e in head if e.program != head[0].program]
        first_norm = next(k for k, e in enumerate(prog0) if e.op == "normalize")

        # Setup: HBM holds Q, K, V (O empty); SRAM is empty --------------------------
        self.section("setup")
        self.add(lay.caption)
        self.play(
            FadeIn(lay.hbm),
            FadeIn(lay.sram),
            Create(lay.boundary[0]),
            FadeIn(lay.title),
        )
        self.play(
            *(FadeIn(g) for g in lay.grids.values()),
            FadeIn(lay.placeholders),
            FadeIn(lay.legend_group()),
            FadeIn(lay.counter),
            FadeIn(lay.progress),
        )
        self.caption(
            f"Q, K, V ({meta.seq_len_q}×{meta.head_dim}) wait in HBM; one program "
            f"per {meta.block_m}-row Q block (T_r = {meta.t_r}) works in SRAM"
        )
        self.hold()

        # Load Q_i ------------------------------------------------------------------
        self.section("load Q")
        code = [lay.code] if lay.code is not None else []
        self.play(FadeOut(lay.legend_group()), *(FadeIn(c) for c in code))
        self.caption("Program i = 0 copies its Q block into SRAM: a copy, HBM keeps Q")
        player.play(self, prog0[:1], speed=DETAIL_SPEED)
        self.hold()

        # Stream K_j, V_j with the online softmax --------------------------------------
        self.section("stream K-V")
        self.caption(
            "For each K/V block j: S = Q_i K_jᵀ, update m_i and l_i, "
            "rescale acc, add P V_j"
        )
        body = prog0[1:first_norm]
        j0 = [e for e in body if _kv_block(e, body) == 0]
        rest = body[len(j0) :]
        player.play(self, j0, speed=DETAIL_SPEED)
        if rest:
            self.caption(
                "The same for the next K/V blocks: m_i, l_i, acc are only "
                "rescaled, never recomputed"
            )
            player.play(self, rest, speed=PROGRAM0_SPEED)
        self.caption(after_blocks_caption(prog0, meta.t_c))
        self.hold()

        # Write O_i and LSE_i --------------------------------------------------------
        self.section("write O")
        player.play(self, prog0[first_norm:], speed=DETAIL_SPEED)
        self.caption(
            "O_i = acc / l_i goes to HBM once; LSE_i = m_i + log l_i "
            "is kept for the backward"
        )
        self.hold()

        # The other programs -----------------------------------------------------------
        if later:
            self.section("other programs")
            self.caption(later_caption(meta.t_r))
            for p in dict.fromkeys(e.program for e in later):  # in trace order
                steps = kv_steps([e for e in later if e.program == p])
                player.play_groups(self, steps, run_time=LATER_STEP)
            self.caption(f"All {meta.t_r} Q blocks done: O and LSE are in HBM")
            self.hold()

        # Check against naive attention ---------------------------------------------
        self.section("check")
        self.check()
        self.hold(2)

    def check(self) -> None:
        """Compare the kernel's O with naive attention and show the max error."""
        from flashanim.kernels.reference import attention_ref

        lay, th, t, meta = self.layout, self.theme, self.trace.tensors, self.trace.meta
        q, k, v = (torch.from_numpy(np.asarray(t[n], dtype=np.float32)) for n in "QKV")
        ref = attention_ref(q, k, v, causal=meta.causal,
                            softmax_scale=meta.softmax_scale).numpy()  # fmt: skip
        out = np.asarray(t["O"], dtype=np.float64)
        verdict = closing_check("O", (out, ref), meta.dtype, scene="TilingScene")
        err = verdict.max_error
        tiles = list(self.player.tiles.values())
        ref_grid = TileGrid(
            "O", ref[0, 0], block_rows=meta.block_m, label="O_ref (naive)",
            cell_width=lay.grids["O"].cell_width,
            cell_height=lay.grids["O"].cell_height,
            value_range=lay.grids["O"].value_range, theme=th,
        )  # fmt: skip
        kern_grid = lay.grids["O"].copy()
        ref_grid.scale(kern_grid.frame.height / ref_grid.frame.height)
        kern_grid.label.become(
            Text(
                "O (kernel)", font=th.font, font_size=th.label_size, color=th.foreground
            ).move_to(kern_grid.label)
        )
        pair = VGroup(kern_grid, ref_grid).arrange(RIGHT, buff=0.5, aligned_edge=UP)
        pair.align_to(lay.sram.box, LEFT).shift(0.4 * RIGHT)
        pair.align_to([0, lay.sram.content_top() - 0.1, 0], UP)
        lines = VGroup(
            Text(
                "naive: O_ref = softmax(Q Kᵀ · scale) V",
                font=th.font,
                font_size=th.body_size,
                color=th.foreground,
            ),
            Text(
                "(float64, N×N matrix)",
                font=th.font,
                font_size=th.body_size,
                color=th.muted,
            ),
            Text(
                f"max |O − O_ref| = {err:.1e}",
                font=th.mono_font,
                font_size=th.label_size,
                color=th.highlight,
            ),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.18)
        lines.next_to(pair, RIGHT, buff=0.5)
        room = lay.sram.box.get_right()[0] - 0.25 - lines.get_left()[0]
        if lines.width > room:
            lines.scale_to_fit_width(room).next_to(pair, RIGHT, buff=0.5)
        self.play(*(FadeOut(x) for x in tiles), FadeOut(lay.placeholders))
        self.play(TransformFromCopy(lay.grids["O"], kern_grid), FadeIn(ref_grid))
        self.play(FadeIn(lines, shift=0.2 * UP))
        self.caption(verdict.headline())


def _kv_block(e, events) -> int:
    """The K/V block an event of the inner loop belongs to (loads open a block)."""
    j = -1
    for x in events:
        if x.op == "load" and x.tensor == "K":
            j = x.row
        if x is e:
            return j
    return j
