"""Talk cut, clip 2: a softmax needs the whole row.

Render from the repository root: ``manim render -ql scenes/talk_whole_row.py``.
One query row of a recorded FA2 forward trace (the defaults of
:class:`~flashanim.config.SceneConfig`: N = 16, d = 4, 4 x 4 blocks; the row whose
running max rises most). Shown: that row's slice of the ``qk`` events of its
program (one per K/V block), as bars, through :class:`ScoresPlayer` (an
:class:`~flashanim.visuals.EventPlayer`). Each block's own softmax (what tiling a
softmax naively would give) is drawn, then the softmax of the whole row (numpy,
float64): they differ, by the amounts computed and shown.
"""

from __future__ import annotations

import numpy as np
from manim import *

from flashanim.talkfacts import row_softmax
from flashanim.talkkit import RowBars, TalkClip
from flashanim.visuals.eventplayer import EventPlayer
from flashanim.visuals.softmax import row_values

X0, X1 = -4.6, 6.4


class ScoresPlayer(EventPlayer):
    """The followed row's slice of each ``qk`` (or ``mask``) event, as bars that
    grow from the baseline, with the K block's name above them."""

    durations = {"qk": 0.7, "mask": 0.7}

    def __init__(self, clip, bars: RowBars, k: int, block_n: int, n: int) -> None:
        super().__init__()
        self.clip, self.rows, self.k, self.block_n, self.n = clip, bars, k, block_n, n
        self.blocks: dict[int, VGroup] = {}

    def event_animations(self, e) -> list[Animation]:
        th, j = self.clip.theme, e.col
        a = j * self.block_n
        vals = row_values(e, self.k, self.block_n)[: self.n - a]
        bars = VGroup(*(self.rows.bar(a + c, v, th.color("S"))
                        for c, v in enumerate(vals)))  # fmt: skip
        anims: list[Animation] = [
            GrowFromEdge(r, DOWN if v >= 0 else UP)
            for r, v in zip(bars, vals, strict=True)
        ]
        if j in self.blocks:  # the mask redraws the block
            anims.append(FadeOut(self.blocks[j]))
        else:
            lo, hi = self.rows.block_span(j)
            tag = self.clip.formula(f"<i>K</i><sub>{j}</sub>", "label", th.color("K"))
            anims.append(FadeIn(tag.move_to([(lo + hi) / 2, 2.65, 0])))
        self.blocks[j] = bars
        return anims


class TalkWholeRow(TalkClip):
    NAME = "talk_whole_row"
    kernel = "fa2-fwd"
    FIRST_SECTION = "scores"

    def prepare(self) -> None:
        self.rs = row_softmax(self.trace)
        #: the trace events this clip plays, in order

    def shown_events(self) -> list:
        """The events this clip plays: the followed row's ``qk``/``mask`` events."""
        return [e for e in self.rs.shown if e.op in ("qk", "mask")]

    def body(self) -> None:
        rs, th, meta = self.rs, self.theme, self.trace.meta
        self.footer(f"Query row {rs.row} of a recorded kernel run · N {meta.seq_len_k}, "
                    f"d {meta.head_dim}, blocks of {meta.block_n} keys")  # fmt: skip
        s = rs.scores
        top = RowBars(len(s), rs.block_n, X0, X1, 1.0,
                      1.3 / max(np.abs(s).max(), 1e-9), th)  # fmt: skip
        s_label = self.formula("scores <i>S</i>", "label", th.color("S"))
        s_label.move_to([X0 - 1.1, 1.0, 0])
        self.play(Create(top.baseline()), FadeIn(s_label), run_time=0.6)
        self.say("One query row: its scores arrive one K block at a time")
        player = ScoresPlayer(self, top, rs.k, rs.block_n, len(s))
        player.play(self, self.shown_events())
        self.played = player.played_events
        blocks = player.blocks
        self.next_section("block by block")

        # Naive tiling: a softmax per block ------------------------------------------
        local, whole = rs.block_local(), rs.softmax
        unit = 1.9 / max(local.max(), whole.max())
        low = RowBars(len(s), rs.block_n, X0, X1, -2.2, unit, th)
        w_label = self.text("weights", "label", th.foreground)
        w_label.move_to([X0 - 1.1, -1.0, 0])
        local_t = self.text("per block", "label", th.muted)
        local_t.move_to([X0 - 1.1, -1.5, 0])
        self.play(Create(low.baseline()), FadeIn(w_label), FadeIn(local_t),
                  run_time=0.5)  # fmt: skip
        self.say("Tile it naively: a softmax of each block on its own")
        ghosts = VGroup(*(low.bar(k, local[k], th.muted, outline=True)
                          for k in range(len(s))))  # fmt: skip
        n_blocks = len(blocks)
        for j in range(n_blocks):
            part = ghosts[j * rs.block_n : (j + 1) * rs.block_n]
            self.play(*(GrowFromEdge(r, DOWN) for r in part), run_time=0.5)
        self.wait(1.0)
        self.next_section("whole row")

        # The real softmax: the row's max and sum ------------------------------------
        m = float(s.max())
        self.say(
            "softmax(<i>S</i>)<sub><i>k</i></sub> = "
            "e<sup><i>S</i><sub><i>k</i></sub> − <i>m</i></sup> / "
            "Σ<sub><i>k′</i></sub> e<sup><i>S</i><sub><i>k′</i></sub> − <i>m</i></sup>"
            "    with <i>m</i> = max<sub><i>k</i></sub> <i>S</i><sub><i>k</i></sub>",
            markup=True,
        )
        m_line = DashedLine([X0, top.base_y + m * top.unit, 0],
                            [X1, top.base_y + m * top.unit, 0],
                            color=th.color("m"), stroke_width=3)  # fmt: skip
        m_tag = self.formula(f"<i>m</i> = max = {m:.2f}".replace("-", "−"), "label",
                             th.color("m"))  # fmt: skip
        m_tag.next_to(m_line, UP, buff=0.08).align_to(m_line, RIGHT)
        self.play(Create(m_line), FadeIn(m_tag), run_time=0.8)
        true_bars = VGroup(*(low.bar(k, whole[k], th.color("P"))
                             for k in range(len(s))))  # fmt: skip
        whole_t = self.text("whole row", "label", th.color("P"))
        whole_t.move_to([X0 - 1.1, -2.0, 0])
        self.play(*(GrowFromEdge(r, DOWN) for r in true_bars), FadeIn(whole_t),
                  run_time=1.0)  # fmt: skip
        self.wait(1.0)
        self.next_section("verdict")

        # The verdict, computed -------------------------------------------------------
        total_local = float(local.sum())
        err = float(np.abs(local - whole).max())
        self.verdict = {"sum_block_local": total_local, "sum_whole": float(whole.sum()),
                        "max_error": err}  # fmt: skip
        self.say(f"Per-block weights sum to {total_local:.1f}, not 1: each off by "
                 f"up to {err:.2f}")  # fmt: skip
        self.wait(3.0)
