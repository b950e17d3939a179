"""The online softmax of one query row, with the kernel's own numbers.

Render from the repository root: ``manim render -ql scenes/online_softmax.py``.
Sizes, mask, theme and seed come from the ``FLASHANIM_*`` environment variables (see
:mod:`flashanim.config`); ``FLASHANIM_ROW`` picks the query row (default: the row
whose running max rises most often). The scene plays every event of that row's
program (one Q block) from a recorded FA2 forward trace, and shows the followed
row's slice of each event's value snapshot: scores ``S``, running max ``m_i``,
``P = exp(S - m_new)``, ``alpha = exp(m_old - m_new)``, ``l_i``, ``acc``. It ends
with the kernel's result beside softmax computed in one go (numpy, float64, from the
trace's ``Q``, ``K``, ``V``).

Sections: setup (load q); block 0; block 1; the other blocks; normalize and store;
why the rescale is exact; the check against one-go softmax.
"""

from __future__ import annotations

import os

import numpy as np
from manim import *

from flashanim.config import ConfigError, SceneConfig
from flashanim.scene import TraceScene
from flashanim.trace.check import closing_check
from flashanim.visuals import TileGrid
from flashanim.visuals.softmax import (
    RowBoard,
    RowPlayer,
    implied_weights,
    pick_row,
    row_values,
)

DETAIL_SPEED, REST_SPEED = 1.0, 1.8
#: Longest sequence whose every score is written on one line.
MAX_KEYS = 16


def row_from_env(environ=None) -> int | None:
    """``FLASHANIM_ROW`` as an integer (``None`` when unset)."""
    env = os.environ if environ is None else environ
    raw = env.get("FLASHANIM_ROW", "").strip()
    if not raw:
        return None
    try:
        return int(raw, 10)
    except ValueError:
        raise ConfigError(f"FLASHANIM_ROW={raw!r} is not an integer") from None


def check_config(cfg: SceneConfig, row: int | None) -> None:
    """Refuse what this scene cannot draw (before anything is recorded)."""
    if cfg.trace is None:
        if cfg.seq_len > MAX_KEYS:
            raise ConfigError(
                f"FLASHANIM_SEQ_LEN={cfg.seq_len}: the online-softmax scene writes "
                f"every score of the row; use at most {MAX_KEYS} keys"
            )
        if not cfg.numbers:
            raise ConfigError(
                f"FLASHANIM_HEAD_DIM={cfg.head_dim}, FLASHANIM_BLOCK_M={cfg.block_m}, "
                f"FLASHANIM_BLOCK_N={cfg.block_n}: the online-softmax scene writes "
                "every entry of q, K_j, V_j; use at most 4 for each"
            )
        if row is not None and not 0 <= row < cfg.seq_len:
            raise ConfigError(
                f"FLASHANIM_ROW={row}: must be a query row in 0 .. {cfg.seq_len - 1}"
            )


def _f(x: float) -> str:
    """Three decimals with a true minus sign."""
    return f"{x:.3f}".replace("-", "−")


def row_caption(events, meta, r: int) -> str:
    """How the followed row's scores arrive, counted from its program's events
    (causal: only the blocks it visits, keys 0 … r)."""
    n = sum(e.op == "qk" for e in events)
    blocks = f"{n} K/V block{'s' * (n != 1)} of up to {meta.block_n} keys"
    if meta.causal:
        return f"Follow query row {r}: it sees keys 0 … {r}, in {blocks}, one at a time"
    return f"Follow one query row: its {meta.seq_len_k} scores arrive in {blocks}, one at a time"


class OnlineSoftmaxScene(TraceScene):
    """One query row through the online softmax, block by block, real numbers."""

    kernel = "fa2-fwd"
    caption_style = {"fade_through": False, "blank": False}
    hold_seconds = 1.5  # each section's closing frame

    def settings(self) -> SceneConfig:
        cfg = super().settings()  # validated before anything renders
        self.row = row_from_env()
        check_config(cfg, self.row)  # (before anything is recorded)
        return cfg

    def setup(self) -> None:
        super().setup()
        row = self.row
        meta = self.trace.meta
        if not meta.values:
            raise ConfigError(
                "OnlineSoftmaxScene needs an fa2-fwd trace recorded with values "
                f"(got {meta.kernel!r}, values={meta.values})"
            )
        if meta.seq_len_k > MAX_KEYS or max(meta.head_dim, meta.block_n) > 4:
            raise ConfigError(
                f"trace too large for the online-softmax scene (N_k = "
                f"{meta.seq_len_k}, d = {meta.head_dim}, BLOCK_N = {meta.block_n}; "
                f"at most {MAX_KEYS}, 4 and 4)"
            )
        if row is not None and not 0 <= row < meta.seq_len_q:
            raise ConfigError(
                f"FLASHANIM_ROW={row}: must be a query row in 0 .. {meta.seq_len_q - 1}"
            )
        self.row = pick_row(self.trace) if row is None else row

    # -- the scene ---------------------------------------------------------------------
    def construct(self) -> None:
        trace, th = self.trace, self.theme
        meta = trace.meta
        r = self.row
        i, k = divmod(r, meta.block_m)
        program = next(
            e.program
            for e in trace.events
            if e.bh == 0 and e.op == "load" and e.tensor == "Q" and e.row == i
        )
        self.events = events = list(trace.of_program(program))
        ranges = self.value_ranges(events, k)
        self.board = board = RowBoard(
            meta.seq_len_k, meta.head_dim, meta.block_n, r, ranges=ranges,
            ops={e.op for e in events}, theme=th,
        )  # fmt: skip
        self.player = player = RowPlayer(board, k, meta.seq_len_k, meta.head_dim)
        # the P strip's heading lies inside the block marker's span: keep it
        # readable on top of the marker's outline
        board.p_strip.label.add_background_rectangle(color=th.background, opacity=1,
                                                     buff=0.04)  # fmt: skip
        board.p_strip.label.set_z_index(2)

        # Setup: the row we follow, and its query ------------------------------------
        self.section("setup")
        self.title = self.captions.make_title("Online softmax, one query row")
        subset = self.text(
            f"Shown: query row {r} only (row {k} of Q block i = {i}, program {program})"
            f" · all {len(events)} events of that program · N = {meta.seq_len_k}, "
            f"d = {meta.head_dim}, BLOCK_N = {meta.block_n}, "
            f"scale = {meta.softmax_scale:.3g}"
            + (", causal" if meta.causal else ""),
            th.small_size + 1, th.muted,
        )  # fmt: skip
        if subset.width > config.frame_width - 0.4:
            subset.scale_to_fit_width(config.frame_width - 0.4)
        subset.move_to([0, 3.2, 0]).to_edge(LEFT, buff=0.2)
        self.subset = subset
        legend = self.text(
            "values: 2 digits (.53 = 0.53, −∞ = masked); shade: faint low, full colour high",
            th.small_size,
            th.muted,
        )
        legend.to_corner(DOWN + RIGHT, buff=0.15)  # fmt: skip
        self.legend = legend
        self.play(FadeIn(self.title), FadeIn(subset), FadeIn(legend),
                  *(FadeIn(m) for m in board.static_group()))  # fmt: skip
        self.caption(row_caption(events, meta, r))
        player.play(self, events[:1], speed=DETAIL_SPEED)
        self.caption(f"q = Q[{r}] is loaded once; m_i = −∞, l_i = 0, acc = 0 to start")
        self.hold()

        first_norm = next(n for n, e in enumerate(events) if e.op == "normalize")
        body = events[1:first_norm]
        starts = [n for n, e in enumerate(body) if e.op == "load" and e.tensor == "K"]
        blocks = [body[a:b] for a, b in zip(starts, starts[1:] + [len(body)],
                                            strict=True)]  # fmt: skip
        stats = [self.block_stats(b, k) for b in blocks]

        # Block 0 ----------------------------------------------------------------------
        self.section("block 0")
        self.caption("Block 0: scores S = q·K_0ᵀ·scale, then the running statistics")
        player.play(self, blocks[0], speed=DETAIL_SPEED)
        m0, _, l0 = stats[0]
        self.caption(
            f"Block 0: m_i = max S = {_f(m0)}, P = exp(S − m_i), "
            f"l_i = Σ P = {_f(l0)}, acc = P·V_0"
        )
        self.hold()

        # Block 1 ----------------------------------------------------------------------
        if len(blocks) > 1:
            self.section("block 1")
            self.caption("Block 1: the same, but m_i, l_i and acc already hold block 0")
            player.play(self, blocks[1], speed=DETAIL_SPEED)
            m1, a1, l1 = stats[1]
            if m1 > m0:
                self.caption(
                    f"Block 1: max rose {_f(m0)} → {_f(m1)}, so alpha = "
                    f"exp({_f(m0)} − {_f(m1)}) = {_f(a1)} rescales l_i and acc"
                )
            else:
                self.caption(
                    f"Block 1: the max stayed {_f(m1)}, so alpha = {_f(a1)}: "
                    "l_i and acc just add the new block"
                )
            self.hold()

        # The other blocks -------------------------------------------------------------
        if len(blocks) > 2:
            self.section("other blocks")
            self.caption(
                f"Blocks 2 … {len(blocks) - 1}: each new max rescales "
                "everything so far by alpha"
            )
            for b in blocks[2:]:
                player.play(self, b, speed=REST_SPEED)
            mf, _, lf = stats[-1]
            self.caption(
                f"After all {len(blocks)} blocks: m_i = {_f(mf)}, l_i = {_f(lf)}; "
                "the alphas brought every block to the final m_i"
            )
            self.hold()

        # Normalize and store ----------------------------------------------------------
        self.section("normalize")
        player.play(self, events[first_norm:], speed=DETAIL_SPEED)
        self.caption(
            f"O[{r}] = acc / l_i, and LSE = m_i + log l_i for the backward, "
            "go to HBM once"
        )
        self.hold()

        # Why it is exact --------------------------------------------------------------
        self.section("why exact")
        self.why_exact(stats, k)
        self.hold()

        # Check against softmax in one go ----------------------------------------------
        self.section("check")
        self.check(k)
        self.hold(2)

    # -- data --------------------------------------------------------------------------
    def value_ranges(self, events, k: int) -> dict[str, tuple[float, float]]:
        """Shading ranges of the followed row's values (per tensor)."""
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}
        for e in events:
            if e.value is None:
                continue
            n = self.trace.meta.head_dim if e.tensor in ("Q", "acc", "O") else None
            if e.tensor in ("K", "V"):
                v = np.asarray(e.value, dtype=float)[:, : self.trace.meta.head_dim]
            else:
                v = row_values(e, k, n)
            v = v[np.isfinite(v)]
            if v.size:
                lo[e.tensor] = min(lo.get(e.tensor, np.inf), float(v.min()))
                hi[e.tensor] = max(hi.get(e.tensor, -np.inf), float(v.max()))
        for a in ("acc", "O"):
            if a in lo:
                lo["acc"] = lo["O"] = min(lo.get("acc", np.inf), lo.get("O", np.inf))
                hi["acc"] = hi["O"] = max(hi.get("acc", -np.inf), hi.get("O", -np.inf))
        return {t: (lo[t], hi[t]) for t in lo}

    @staticmethod
    def block_stats(block, k: int) -> tuple[float, float, float]:
        """``(m_i, alpha, l_i)`` of the row after one K/V block (from its events)."""
        get = {e.op: float(row_values(e, k)[0]) for e in block
               if e.op in ("rowmax", "alpha", "rowsum")}  # fmt: skip
        return get["rowmax"], get["alpha"], get["rowsum"]

    def one_go(self) -> tuple[np.ndarray, np.ndarray]:
        """Softmax weights and O row of the followed row, computed naively in float64
        from the trace's ``Q``, ``K``, ``V`` (one head, the whole row at once)."""
        meta, t = self.trace.meta, self.trace.tensors
        q = np.asarray(t["Q"], dtype=np.float64)[0, 0, self.row]
        kk = np.asarray(t["K"], dtype=np.float64)[0, 0]
        v = np.asarray(t["V"], dtype=np.float64)[0, 0]
        s = (kk @ q) * meta.softmax_scale
        if meta.causal:
            s[np.arange(meta.seq_len_k) > self.row] = -np.inf
        w = np.exp(s - s.max())
        w /= w.sum()
        return w, w @ v

    # -- the last two sections ---------------------------------------------------------
    def clear_lower(self) -> None:
        """Fade out everything but the caption, title, subset line and the strips."""
        b = self.board
        kept = [b.s_strip, b.p_strip, b.key_labels, self.captions.mob, self.title,
                self.legend, self.subset, *b.m_labels.values()]  # fmt: skip
        keep = {id(f) for m in kept for f in m.get_family()}
        gone: list[Mobject] = []
        seen: set[int] = set()

        def collect(m: Mobject) -> None:
            # fade whole groups unless they hold something kept (animation groups
            # left on the scene hold cells of the strips)
            if id(m) in seen or id(m) in keep:
                return
            seen.add(id(m))
            if not any(id(f) in keep for f in m.get_family()):
                gone.append(m)
            else:
                for sub in m.submobjects:
                    collect(sub)

        for m in self.mobjects:
            collect(m)
        self.play(*(FadeOut(m) for m in gone), run_time=0.6)

    def why_exact(self, stats, k: int) -> None:
        th = self.theme
        self.clear_lower()
        meta = self.trace.meta
        s_row = self.player.s_row
        mf, _, lf = stats[-1]
        l_one_go = float(np.nansum(np.exp(s_row - mf)))
        ms = [m for m, _, _ in stats]
        lines = VGroup(
            self.text("softmax(S)_k = exp(S_k − m) / Σ_k' exp(S_k' − m)   for ANY m:",
                      th.label_size),
            self.text("numerator and denominator share the factor exp(−m), it cancels",
                      th.body_size, th.muted),
            self.text("acc = Σ P_k V_k (numerator · V) and l_i = Σ P_k (denominator) "
                      "both use the current m_i", th.body_size),
            self.text("a new max multiplies BOTH by alpha = exp(m_old − m_new): "
                      "acc / l_i is unchanged", th.body_size),
            self.text("the max only keeps exp() from overflowing; nothing is "
                      "approximated", th.body_size, th.muted),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.2)  # fmt: skip
        lines.to_edge(LEFT, buff=0.5).align_to([0, 0.25, 0], UP)
        m_path = " → ".join(_f(m) for m in ms)
        nums = VGroup(
            self.text(f"this row: m_i went {m_path}", th.body_size,
                      th.color("m"), mono=True),
            self.text(f"l_i (kernel, block by block)         = {lf:.6f}", th.body_size,
                      th.color("l"), mono=True),
            self.text(f"Σ_k exp(S_k − m_final) (all {meta.seq_len_k} S at once) = "
                      f"{l_one_go:.6f}", th.body_size, th.color("l"), mono=True),
        ).arrange(DOWN, aligned_edge=LEFT, buff=0.16)  # fmt: skip
        nums.next_to(lines, DOWN, buff=0.45, aligned_edge=LEFT)
        for g in (lines, nums):
            if g.width > config.frame_width - 1.0:
                g.scale_to_fit_width(config.frame_width - 1.0).to_edge(LEFT, buff=0.5)
        self.exact_values = {"m_path": tuple(ms), "l_kernel": lf,
                             "l_one_go": l_one_go}  # fmt: skip
        self.play(FadeIn(lines, shift=0.2 * UP), run_time=1.0)
        self.wait(2.5)
        self.play(FadeIn(nums, shift=0.2 * UP), run_time=0.8)
        self.caption("Why it is exact: l_i and acc are rescaled by the same alpha, "
                     "so their ratio never changes")  # fmt: skip
        self.exact_group = VGroup(lines, nums)

    def check(self, k: int) -> None:
        th, meta = self.theme, self.trace.meta
        self.play(FadeOut(self.exact_group), run_time=0.6)
        events = self.events
        last = lambda op: [e for e in events if e.op == op][-1]  # noqa: E731
        m_final = float(row_values(last("rowmax"), k)[0])
        l_final = float(row_values(last("rowsum"), k)[0])
        w_kernel = implied_weights(self.player.s_row, m_final, l_final)
        o_kernel = row_values(last("normalize"), k, meta.head_dim)
        w_naive, o_naive = self.one_go()
        err_w = float(np.abs(w_kernel - w_naive).max())
        err_o = float(np.abs(o_kernel - o_naive).max())
        self.check_values = {
            "weights_kernel": w_kernel, "weights_naive": w_naive,
            "o_kernel": o_kernel, "o_naive": o_naive,
            "err_weights": err_w, "err_o": err_o,
            "m_final": m_final, "l_final": l_final,
        }  # fmt: skip
        n = meta.seq_len_k
        cw = min(0.55, 9.1 / n)
        rng = (0.0, float(max(w_kernel.max(), w_naive.max())))
        kw = dict(cell_width=cw, cell_height=0.4, block_cols=meta.block_n,
                  numbers=True, number_size=th.small_size, theme=th,
                  label_size=th.body_size, shade_strength=0.6)  # fmt: skip
        wk = TileGrid("P", w_kernel[None], value_range=rng,
                      label="softmax weights, kernel: exp(S − m_i) / l_i",
                      **kw)  # fmt: skip
        wn = TileGrid("P", w_naive[None], value_range=rng,
                      label="softmax in one go: softmax(q Kᵀ · scale) "
                      "(numpy, float64, from Q, K)", **kw)  # fmt: skip
        o_rng = (float(min(o_kernel.min(), o_naive.min())),
                 float(max(o_kernel.max(), o_naive.max())))  # fmt: skip
        kw_o = dict(kw, cell_width=0.55, block_cols=None)
        ok = TileGrid("O", o_kernel[None], value_range=o_rng,
                      label="O row, kernel (acc / l_i)", **kw_o)  # fmt: skip
        on = TileGrid("O", o_naive[None], value_range=o_rng,
                      label="O row, one go (weights · V)", **kw_o)  # fmt: skip
        x0 = self.board.s_strip.frame.get_left()[0]
        y = 0.0
        for g in (wk, wn):
            g.label.align_to(g.frame, LEFT)
            g.shift(np.array([x0, y, 0]) - g.frame.get_corner(UP + LEFT))
            y -= 0.95
        diff_w = self.text(f"max |difference| = {err_w:.1e}", th.label_size,
                           th.highlight, mono=True)  # fmt: skip
        diff_w.next_to(wn, DOWN, buff=0.15).align_to(wn.frame, LEFT)
        y = diff_w.get_bottom()[1] - 0.45
        for g, x in ((ok, x0), (on, x0 + 4.6)):
            g.label.align_to(g.frame, LEFT)
            g.shift(np.array([x, y, 0]) - g.frame.get_corner(UP + LEFT))
        diff_o = self.text(f"max |difference| = {err_o:.1e}", th.label_size,
                           th.highlight, mono=True)  # fmt: skip
        diff_o.next_to(VGroup(ok, on), DOWN, buff=0.15).align_to(ok.frame, LEFT)
        self.play(FadeIn(wk), FadeIn(wn), run_time=0.9)
        self.play(FadeIn(diff_w), run_time=0.5)
        self.play(FadeIn(ok), FadeIn(on), run_time=0.9)
        self.play(FadeIn(diff_o), run_time=0.5)
        v = closing_check("row", [(w_kernel, w_naive), (o_kernel, o_naive)],
                          meta.dtype, "softmax in one go", "OnlineSoftmaxScene")  # fmt: skip
        self.caption(
            f"Block by block {'equals' if v.ok else 'DOES NOT EQUAL'} all at once: "
            f"max difference {max(err_w, err_o):.1e} ({meta.dtype} kernel vs float64)"
        )
