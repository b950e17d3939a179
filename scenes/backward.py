"""FlashAttention-2 backward, tile by tile, driven by the real kernel's trace.

Render from the repository root: ``manim render -ql scenes/backward.py``. Sizes,
mask, theme and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`; ``FLASHANIM_TRACE`` plays a saved ``fa2-bwd`` trace).

Three launches, as the kernel runs them: the preprocess computes
``D = rowsum(dO ∘ O)``; one program per K/V block ``j`` recomputes ``P`` from
``Q``, ``K`` and ``LSE`` and accumulates ``dV_j`` and ``dK_j``; one program per Q
block accumulates ``dQ_i``. HBM holds ``Q K V O dO LSE D`` and the gradients, never
``S``, ``P``, ``dP`` or ``dS``. Every motion is one recorded event (played by
:class:`~flashanim.visuals.backward.BackwardPlayer`); the last section checks the
kernel's gradients against autograd of naive attention.
"""

from __future__ import annotations

import numpy as np
import torch
from manim import *

from flashanim.scene import TraceScene
from flashanim.trace.check import closing_check
from flashanim.visuals import TileGrid
from flashanim.visuals.backward import BackwardLayout, BackwardPlayer, split_program

#: Speeds of the detailed first tile and of the rest of its program; later programs
#: play as groups (one loop iteration each) of GROUP_TIME seconds.
DETAIL_SPEED, PROGRAM_SPEED, GROUP_TIME = 1.0, 2.5, 0.8


class BackwardScene(TraceScene):
    """The FA2 backward pass for one head: D, dK/dV per K/V block, dQ, check."""

    kernel = "fa2-bwd"
    hold_seconds = 1.2  # each section's closing frame

    def swap_placeholders(self, phase: str) -> None:
        new = self.layout.placeholders(phase)
        old, self.holders = self.holders, new
        self.play(*(FadeOut(x) for x in old), FadeIn(new), run_time=0.5)

    def construct(self) -> None:
        trace, th = self.trace, self.theme
        meta = trace.meta
        head = [e for e in trace.events if e.bh == 0]
        progs: dict[str, list[list]] = {"preprocess": [], "dkdv": [], "dq": []}
        for p in trace.programs:
            if p.bh == 0:
                events = [e for e in head if e.program == p.program]
                if events:
                    progs[p.launch].append(events)
        self.layout = lay = BackwardLayout(trace, theme=th, gpu=self.gpu)
        self.captions = lay.captions
        self.player = player = BackwardPlayer(lay)
        self.holders = VGroup()

        # Setup: what the forward left in HBM ----------------------------------------
        self.section("setup")
        self.add(lay.caption)
        self.play(FadeIn(lay.hbm), FadeIn(lay.sram), Create(lay.boundary[0]),
                  FadeIn(lay.title))  # fmt: skip
        self.play(*(FadeIn(g) for g in lay.grids.values()), FadeIn(lay.progress),
                  FadeIn(lay.reads), FadeIn(lay.writes), FadeIn(lay.notes))  # fmt: skip
        self.caption(
            f"The forward left Q, K, V, O and LSE in HBM (N = {meta.seq_len_q}, "
            f"d = {meta.head_dim}); the loss sends dO. No N×N matrix was kept."
        )
        self.hold()

        # Launch 1: D = rowsum(dO ∘ O) -----------------------------------------------
        self.section("preprocess D")
        self.swap_placeholders("preprocess")
        self.caption("Launch 1 (preprocess): D_i = rowsum(dO_i ∘ O_i), one program "
                     "per Q block")  # fmt: skip
        pre = progs["preprocess"]
        if pre:
            player.play(self, pre[0], speed=DETAIL_SPEED)
            for events in pre[1:]:
                player.play_groups(self, events, run_time=GROUP_TIME)
        self.caption("D is in HBM: one number per query row (N×1), like LSE")
        self.hold()

        # Launch 2, program j = 0 in detail --------------------------------------------
        self.section("dK dV block 0")
        self.play(*player.clear_sram(), run_time=0.4)
        self.swap_placeholders("dkdv")
        dkdv = progs["dkdv"]
        if dkdv:
            first = dkdv[0]
            j0 = first[0].row
            self.caption(f"Launch 2 (dK, dV): program j = {j0} keeps K_{j0}, V_{j0} "
                         f"in SRAM and loops over the Q blocks i")  # fmt: skip
            groups = split_program(first)
            player.play(self, groups[0], speed=DETAIL_SPEED)  # load K_j, V_j
            if len(groups) > 2:
                player.play(self, groups[1], speed=DETAIL_SPEED)
                self.caption("P_ij = exp(S_ij − LSE_i) is recomputed from Q, K and "
                             "LSE: the forward never stored P")  # fmt: skip
                self.hold(0.5)
                self.caption("Next Q blocks: dV_j and dK_j accumulate in SRAM, "
                             "S, P, dP, dS are overwritten")  # fmt: skip
                for g in groups[2:-1]:  # one play per Q block (as the others)
                    self.play(player.group_animation(g, GROUP_TIME))
            player.play(self, groups[-1], speed=DETAIL_SPEED)  # store dK_j, dV_j
            self.caption(f"dK_{j0} and dV_{j0} go to HBM once; S, P, dP and dS never "
                         f"left SRAM")  # fmt: skip
        self.hold()

        # Launch 2, the other programs ---------------------------------------------------
        if len(dkdv) > 1:
            self.section("other K-V blocks")
            self.caption(f"Programs j = 1 … {len(dkdv) - 1} do the same (on a GPU: "
                         f"side by side)")  # fmt: skip
            for events in dkdv[1:]:
                player.play_groups(self, events, run_time=GROUP_TIME)
            self.caption(f"All T_c = {meta.t_c} K/V blocks done: dK and dV complete "
                         f"in HBM")  # fmt: skip
            self.hold()

        # Launch 3: dQ ---------------------------------------------------------------
        self.section("dQ")
        self.play(*player.clear_sram(), run_time=0.4)
        self.swap_placeholders("dq")
        self.caption("Launch 3 (dQ): one program per Q block loops over K/V blocks, "
                     "recomputing P once more")  # fmt: skip
        dq = progs["dq"]
        if dq:
            groups = split_program(dq[0])  # its first K/V block step by step,
            for g in groups[:2]:  # then one play per K/V block
                player.play(self, g, speed=PROGRAM_SPEED * 1.4)
            for g in groups[2:]:
                if g:
                    self.play(player.group_animation(g, GROUP_TIME))
            for events in dq[1:]:
                player.play_groups(self, events, run_time=GROUP_TIME)
        self.caption("dQ_i = scale · Σ_j dS_ij K_j: each program owns its dQ_i, "
                     "no atomics")  # fmt: skip
        self.hold()

        # Check against autograd of naive attention ---------------------------------------
        self.section("check")
        self.check()
        self.hold(2)

    def check(self) -> None:
        """Compare dQ, dK, dV with autograd of naive attention; show the errors."""
        lay, th, meta = self.layout, self.theme, self.trace.meta
        t = self.trace.tensors
        self.play(*self.player.clear_sram(), *(FadeOut(x) for x in self.holders),
                  run_time=0.5)  # fmt: skip
        self.holders = VGroup()
        need = ("Q", "K", "V", "dO", "dQ", "dK", "dV")
        if any(n not in t for n in need):
            self.caption("This trace kept no tensors: record it with values to check "
                         "it against autograd")  # fmt: skip
            return
        errs, refs = naive_gradients(t, meta)
        top = lay.sram.content_top() - 0.05
        room_h = top - 0.75 - (lay.sram.box.get_bottom()[1] + 0.2) - 0.55
        n = max(meta.seq_len_q, meta.seq_len_k)
        cell_h = min(0.16, room_h / n)
        cell_w = min(0.26, 1.0 / meta.head_dim)
        pairs = VGroup()
        grids = []
        for name in ("dQ", "dK", "dV"):
            kern = np.asarray(t[name], dtype=float)[0, 0]
            kw = dict(block_rows=lay.block_size(name), cell_width=cell_w,
                      cell_height=cell_h, value_range=lay.value_ranges[name],
                      label_size=th.small_size, theme=th)  # fmt: skip
            g_k = TileGrid(name, kern, label="kernel", **kw)
            g_r = TileGrid(name, refs[name], label="autograd", **kw)
            pair = VGroup(g_k, g_r).arrange(RIGHT, buff=0.35, aligned_edge=UP)
            head = Text(name, font=th.font, font_size=th.label_size,
                        color=th.color(name)).next_to(pair, UP, buff=0.1)  # fmt: skip
            err = Text(f"max |Δ| = {errs[name]:.1e}", font=th.mono_font,
                       font_size=th.body_size, color=th.highlight)  # fmt: skip
            err.next_to(pair, DOWN, buff=0.15)
            pairs.add(VGroup(head, pair, err))
            grids.append((name, g_k))
        pairs.arrange(RIGHT, buff=0.6, aligned_edge=UP)
        width = lay.sram.box.width - 0.5
        if pairs.width > width:
            pairs.scale_to_fit_width(width)
        pairs.move_to(lay.sram.box.get_center()).align_to([0, top, 0], UP)
        note = Text(
            "autograd of naive attention: softmax(Q Kᵀ · scale) V, "
            "N×N matrix, float64",
            font=th.font, font_size=th.body_size, color=th.muted,
        )  # fmt: skip
        if note.width > width:
            note.scale_to_fit_width(width)
        note.next_to(pairs, DOWN, buff=0.2)
        self.play(
            *(TransformFromCopy(lay.grids[name], g) for name, g in grids),
            *(FadeIn(VGroup(p[0], p[1][1])) for p in pairs),
        )
        self.play(*(FadeIn(p[2], shift=0.2 * UP) for p in pairs), FadeIn(note))
        verdict = closing_check(
            "dQ, dK, dV",
            [(np.asarray(t[n], dtype=float)[0, 0], refs[n]) for n in refs],
            meta.dtype,
            "autograd of naive attention",
            "BackwardScene",
        )
        self.caption(verdict.headline(plural=True))


def naive_gradients(tensors, meta) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Autograd of naive attention (float64) for head 0; max errors of the kernel's
    ``dQ``, ``dK``, ``dV`` against it, and the reference gradients."""
    q, k, v, do = (
        torch.tensor(np.asarray(tensors[n], dtype=np.float64)[0, 0],
                     requires_grad=n != "dO")
        for n in ("Q", "K", "V", "dO")
    )  # fmt: skip
    s = (q @ k.T) * meta.softmax_scale
    if meta.causal:
        keep = torch.ones_like(s, dtype=torch.bool).tril()
        s = s.masked_fill(~keep, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    o.backward(do)
    refs = {"dQ": q.grad.numpy(), "dK": k.grad.numpy(), "dV": v.grad.numpy()}
    errs = {
        name: float(
            np.abs(np.asarray(tensors[name], dtype=np.float64)[0, 0] - ref).max()
        )
        for name, ref in refs.items()
    }
    return errs, refs
