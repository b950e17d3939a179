"""The GPU memory hierarchy: why attention is bound by moving data, not by maths.

Render from the repository root: ``manim render -ql scenes/memory_hierarchy.py``.
``FLASHANIM_GPU`` picks the figures (``a100``, the FlashAttention paper's Figure 1,
by default; ``h100``, ``h200`` from NVIDIA's datasheets, see
:mod:`flashanim.hardware`), ``FLASHANIM_THEME`` the look. Every figure on screen
comes from the preset, and its source is printed under it.

Sections: the hierarchy (SRAM, HBM, CPU DRAM); bandwidth to scale; capacity to
scale; standard attention's round trips through HBM; FlashAttention's one fused,
tiled kernel; the takeaway.
"""

from __future__ import annotations

from manim import *

from flashanim.scene import TraceScene
from flashanim.visuals import (
    Caption,
    MemoryPanel,
    chip_boundary,
    source_lines,
    tensor_color,
)
from flashanim.visuals.charts import LogBarChart, format_si

CAPTION_Y, SOURCE_Y, TITLE_Y = -3.05, -3.72, 3.55
MAX_W = 13.4
#: Blocks per side drawn in the schematics (Q blocks in FlashAttention's pass).
BLOCKS, Q_BLOCKS = 4, 2

#: What FA2's forward moves (tests/test_claims.py holds both to a recorded trace:
#: Q_i loaded once, each K_j, V_j once per Q block, O and LSE stored, S, P never).
FLASH_STEP = ("Program i loads Q_i once, then streams every K_j, V_j past it; "
              "S_ij, P_ij stay in SRAM")  # fmt: skip
FLASH_DONE = ("K, V are read once per Q block (T_r times); S and P never reach "
              "HBM; O and LSE are written")  # fmt: skip


class MemoryHierarchyScene(TraceScene):
    """SRAM, HBM and host DRAM of one GPU, to scale; then what that means for
    attention."""

    kernel = None  # the hardware table's figures; no trace
    caption_style = {"y": CAPTION_Y, "width": MAX_W, "fade_through": False,
                     "blank": False}  # fmt: skip
    hold_seconds = 1.5  # each section's closing frame
    text_width = MAX_W

    def setup(self) -> None:
        super().setup()  # the GPU preset, validated before anything renders
        th = self.theme
        line = dict(width=MAX_W, fade_through=False, blank=False, run_time=1.0,
                    speaks=False)  # fmt: skip
        # wrapped at the footer size, never scaled down (readable at 480p)
        self.sources = Caption(
            th, y=SOURCE_Y, **line, make_text=lambda s: source_lines(th, s, MAX_W)
        )
        #: every source footer shown (tests hold them to the footer size)
        self.footers: list = []
        self.titles = Caption(th, y=TITLE_Y, size=th.title_size, **line)

    # ------------------------------------------------------------------ helpers
    def source(self, s: str) -> Animation:
        anim = self.sources.make_animation("Source: " + s)
        self.footers.append(self.sources.mob)
        return anim

    def title(self, s: str) -> Animation:
        if not s:
            return self.titles.make_clear_animation()
        return self.titles.make_animation(s)

    def level_colors(self) -> list[str]:
        th = self.theme
        return [th.highlight, th.foreground, th.muted]

    # ------------------------------------------------------------------ construct
    def construct(self) -> None:
        gpu, th = self.gpu, self.theme
        sram, hbm, dram = gpu.levels

        # The hierarchy: faster is smaller ------------------------------------------
        self.section("hierarchy")
        self.play(
            self.title(f"GPU memory hierarchy — {gpu.name}"),
            self.source(" · ".join(dict.fromkeys(lv.source for lv in gpu.levels))),
        )
        pyramid = self.pyramid()
        self.play(
            LaggedStart(
                *(FadeIn(t, shift=0.2 * UP) for t in pyramid),
                lag_ratio=0.4,
                run_time=2.4,
            )
        )
        self.caption(
            "The faster the memory, the smaller it is: computation happens "
            "in on-chip SRAM"
        )
        self.hold()

        # Bandwidth, to scale --------------------------------------------------------
        self.section("bandwidth")
        self.play(FadeOut(pyramid))
        bw = LogBarChart(
            [lv.name for lv in gpu.levels],
            [lv.bandwidth for lv in gpu.levels],
            labels=[lv.bandwidth_label for lv in gpu.levels],
            colors=self.level_colors(),
            value_range=(1e9, 1e14),
            unit="B/s",
            title="bandwidth (bytes per second, log scale: each grid line is 10×)",
            width=7.6,
            bar_height=0.45,
            theme=th,
        ).move_to([0.2, 0.75, 0])
        self.play(
            self.title("Bandwidth: how fast data can be read"),
            FadeIn(bw.chart),
            FadeIn(bw.names),
        )
        self.play(bw.make_bars_animation())
        r1 = gpu.bandwidth_ratio("SRAM", "HBM")
        r2 = gpu.bandwidth_ratio("HBM", "CPU DRAM")
        lin = self.linear_bars([lv.bandwidth for lv in gpu.levels], "bandwidth")
        lin.next_to(bw, DOWN, buff=0.3)
        self.play(FadeIn(lin))
        self.caption(
            f"SRAM is {r1:.0f}× faster than HBM, and HBM {r2:.0f}× faster than CPU DRAM"
        )
        self.hold()

        # Capacity, to scale ---------------------------------------------------------
        self.section("capacity")
        self.play(FadeOut(bw), FadeOut(lin))
        cap = LogBarChart(
            [lv.name for lv in gpu.levels],
            [lv.capacity for lv in gpu.levels],
            labels=[lv.capacity_label for lv in gpu.levels],
            colors=self.level_colors(),
            value_range=(1e6, 1e13),
            unit="B",
            open_ended=[lv.capacity_at_least for lv in gpu.levels],
            title="capacity (bytes, log scale: each grid line is 10×)",
            width=7.6,
            bar_height=0.45,
            theme=th,
        ).move_to([0.2, 0.75, 0])
        self.play(
            self.title("Capacity: how much data fits"),
            FadeIn(cap.chart),
            FadeIn(cap.names),
        )
        self.play(cap.make_bars_animation())
        # One head's N x N score matrix S at N = 16k in fp16, on the same axis.
        n = 16384
        s_bytes = n * n * 2
        x = cap.chart.c2p(s_bytes, 0)[0]
        top, bottom = cap.chart.axes.get_top()[1], cap.chart.axes.get_bottom()[1]
        marker = DashedLine(
            [x, bottom, 0], [x, top + 0.1, 0], color=tensor_color("S"), stroke_width=3
        )
        mlab = self.text(
            f"one N×N matrix S, N = 16k, fp16: {format_si(s_bytes, 'B')}",
            th.small_size + 1,
            tensor_color("S"),
        )
        mlab.next_to(marker, UP, buff=0.08)
        self.play(Create(marker), FadeIn(mlab))
        rc = gpu.capacity_ratio("HBM", "SRAM")
        self.caption(
            f"…but SRAM holds {rc:,.0f}× less than HBM: an N×N matrix fits only in HBM"
        )
        self.hold()

        # Standard attention: S and P go to HBM and back ----------------------------
        self.section("standard attention")
        self.play(FadeOut(cap), FadeOut(marker), FadeOut(mlab))
        hbm_p, sram_p, tensors = self.panels()
        self.tensors = tensors  # what the schematics drew (tests read it)
        self.play(
            self.title("Standard attention: three kernels, through HBM"),
            FadeIn(hbm_p),
            FadeIn(sram_p),
            FadeIn(self.boundary),
            FadeIn(VGroup(*(tensors[k] for k in "QKV"))),
        )
        steps = [  # (tensor, (i, j)) blocks read, the block written
            ([("Q", (0,)), ("K", (1,))], ("S", (0, 1)), "S = Q Kᵀ", "tiles"),
            ([("S", (0, None))], ("P", (0, None)), "P = softmax(S)", "rows"),
            ([("P", (0, 1)), ("V", (1,))], ("O", (0,)), "O = P V", "tiles"),
        ]
        for k, (reads, write, formula, by) in enumerate(steps, start=1):
            names = ", ".join(dict.fromkeys(n for n, _ in reads))
            self.caption(
                f"{k}. load {names} from HBM, {by} at a time · compute {formula} "
                f"in SRAM · write {write[0]} back to HBM"
            )
            self.round_trip(tensors, reads, write, formula, sram_p)
        self.caption(
            "S and P are N×N: written to HBM and read back — Θ(N²) memory traffic"
        )
        self.hold()

        # FlashAttention: one fused kernel over tiles ---------------------------------
        self.section("flashattention")
        self.play(
            FadeOut(tensors["S"]),
            FadeOut(tensors["P"]),
            FadeOut(tensors["O"]),
            self.title("FlashAttention: one fused kernel, tile by tile"),
            self.captions.make_animation(FLASH_STEP),
        )
        self.flash_pass(tensors, sram_p)
        self.caption(FLASH_DONE)
        self.hold()

        # Takeaway ------------------------------------------------------------------
        self.section("takeaway")
        # what is on screen (a faded-out tensor is not faded out again: it would
        # flash back in for the fade)
        lines = {self.captions.mob, self.sources.mob, self.titles.mob}
        self.play(*(FadeOut(m) for m in self.mobjects if m not in lines))
        self.takeaway()
        self.hold(2)

    # ------------------------------------------------------------------ parts
    def pyramid(self) -> VGroup:
        """Three stacked tiers (narrow SRAM on top), each with its figures."""
        th, gpu = self.theme, self.gpu
        tiers = VGroup()
        widths = [(1.2, 3.0), (3.0, 4.8), (4.8, 6.6)]
        h, top = 1.5, 2.75
        colors = self.level_colors()
        for k, (lv, (wt, wb), col) in enumerate(
            zip(gpu.levels, widths, colors, strict=True)
        ):
            y0 = top - k * (h + 0.12)
            x0 = -3.0
            poly = Polygon(
                [x0 - wt / 2, y0, 0],
                [x0 + wt / 2, y0, 0],
                [x0 + wb / 2, y0 - h, 0],
                [x0 - wb / 2, y0 - h, 0],
                color=col,
                fill_color=col,
                fill_opacity=0.22,
                stroke_width=3,
            )
            name = self.text(lv.name, th.label_size, th.foreground, weight="BOLD")
            name.move_to(poly).shift(0.2 * DOWN)
            figs = VGroup(
                self.text(
                    f"{lv.bandwidth_label}   ({lv.capacity_label})",
                    th.label_size,
                    col if k else th.highlight,
                    weight="BOLD",
                ),
                self.text(lv.where, th.body_size, th.muted),
            ).arrange(DOWN, aligned_edge=LEFT, buff=0.1)
            figs.move_to([x0 + 3.6, y0 - h / 2, 0], aligned_edge=LEFT)
            tiers.add(VGroup(poly, name, figs))
        return tiers

    def linear_bars(self, values: list[float], what: str) -> VGroup:
        """The same values on a LINEAR scale: the gap as the eye sees it."""
        th = self.theme
        top = max(values)
        width = 7.6
        rows = VGroup()
        for lv, v, col in zip(
            self.gpu.levels, values, self.level_colors(), strict=True
        ):
            w = width * v / top
            bar = Rectangle(
                width=max(w, 0.005),
                height=0.2,
                fill_color=col,
                fill_opacity=0.9,
                stroke_width=0,
            )
            name = self.text(lv.name, th.body_size, th.muted)
            row = VGroup(name, bar)
            y = -0.34 * len(rows)  # rows one under the other, bars aligned
            name.move_to([-0.2, y, 0], aligned_edge=RIGHT)
            bar.move_to([0, y, 0], aligned_edge=LEFT)
            if w < 0.05:
                note = self.text(
                    f"{100 * w / width:.2f}% of the SRAM bar: too thin to see",
                    th.body_size,
                    th.muted,
                )
                row.add(note.next_to(bar, RIGHT, buff=0.15))
            rows.add(row)
        head = self.text(
            f"the same {what} on a linear scale:", th.body_size, th.foreground
        )
        out = VGroup(head, rows).arrange(DOWN, aligned_edge=LEFT, buff=0.14)
        return out.move_to([0.2, out.get_center()[1], 0])

    def panels(self) -> tuple[MemoryPanel, MemoryPanel, dict[str, VGroup]]:
        """HBM (left) and SRAM (right) panels, with Q, K, V, S, P, O in HBM."""
        th, gpu = self.theme, self.gpu
        sram, hbm = gpu.sram, gpu.hbm
        hbm_p = MemoryPanel(
            f"HBM · {hbm.capacity_label} · {hbm.bandwidth_label}",
            "off-chip · large · slow",
            width=6.4,
            height=5.2,
            kind="hbm",
            theme=th,
        )
        sram_p = MemoryPanel(
            f"SRAM · {sram.capacity_label} · {sram.bandwidth_label}",
            "on-chip · small · fast",
            width=5.2,
            height=5.2,
            kind="sram",
            theme=th,
        )
        hbm_p.move_to([-3.6, 0.15, 0])
        sram_p.move_to([3.9, 0.15, 0])
        self.boundary = chip_boundary(2.7, -2.4, 0.55, theme=th)
        # Q, K, V, O are N×d (tall, thin); S and P are N×N (square); LSE is N×1.
        tensors: dict[str, VGroup] = {}
        top = hbm_p.content_top() - 0.25
        shapes = {
            "Q": (0.5, 1.6),
            "K": (0.5, 1.6),
            "V": (0.5, 1.6),
            "S": (1.6, 1.6),
            "P": (1.6, 1.6),
            "O": (0.5, 1.6),
            "LSE": (0.18, 1.6),
        }
        xs = {"Q": -6.2, "K": -5.45, "V": -4.7, "S": -3.25, "P": -1.5, "O": -4.7,
              "LSE": -4.7}  # fmt: skip
        for name, (w, h) in shapes.items():
            box = Rectangle(
                width=w,
                height=h,
                fill_color=tensor_color(name),
                fill_opacity=0.55,
                stroke_color=tensor_color(name),
                stroke_width=2,
            )
            lab = self.text(name, th.label_size, th.foreground, weight="BOLD")
            dims = self.text("N×N" if w == h else "N×1" if w < 0.3 else "N×d",
                             th.small_size, th.muted)  # fmt: skip
            if w < 0.3:  # too thin for its name: beside it
                lab.next_to(box, RIGHT, buff=0.1)
            else:
                lab.move_to(box)
            g = VGroup(box, lab, dims.next_to(box, DOWN, buff=0.06))
            g.move_to([xs[name], top, 0], aligned_edge=UP)
            tensors[name] = g
        tensors["O"].shift(2.05 * DOWN + 0.75 * LEFT)
        tensors["LSE"].shift(2.05 * DOWN + 0.15 * RIGHT)
        return hbm_p, sram_p, tensors

    def block(self, tensors, name: str, i: int, j: int | None = None) -> VGroup:
        """Block ``(i, j)`` of ``tensors[name]`` (a row block when ``j`` is
        ``None``), drawn over it, labelled with its name (``S_ij``)."""
        th, src = self.theme, tensors[name][0]
        h = src.height / BLOCKS
        square = src.width > 0.8 * src.height  # N×N (S, P), not N×d
        w = src.width / BLOCKS if (square and j is not None) else src.width
        box = Rectangle(width=w, height=h, fill_color=tensor_color(name),
                        fill_opacity=0.9, stroke_color=th.foreground,
                        stroke_width=1.5)  # fmt: skip
        box.move_to(src.get_corner(UP + LEFT) + [(j or 0) * w + w / 2,
                                                 -(i + 0.5) * h, 0])  # fmt: skip
        sub = "_i" if name in ("Q", "O") else "_j" if name in "KV" else "_ij"
        if j is None and square:
            sub = "_i (rows)"
        lab = self.text(name + sub, th.small_size, th.foreground)
        return VGroup(box, lab)

    def round_trip(self, tensors, reads, write, formula, sram_p) -> None:
        """Tiles of ``reads`` travel to SRAM, ``formula`` runs, a tile of ``write``
        returns (the kernels stream their operands tile by tile: an N×N matrix
        never fits in SRAM, only blocks of it do)."""
        th = self.theme
        c = sram_p.get_center()
        slots = [
            c + [-1.4 * (len(reads) - 1) / 2 + 1.4 * k, 0.85, 0]
            for k in range(len(reads))
        ]
        # A load is a copy of one block: the HBM tensor stays; its block travels.
        copies = []
        for (name, ij), slot in zip(reads, slots, strict=True):
            b = self.block(tensors, name, *ij)
            self.add(b[0])
            k = 1.0 if b[0].width > 1.0 else 1.5
            b[1].next_to(b[0].copy().scale(k).move_to(slot), UP, buff=0.05)
            copies.append((b, k, slot))
        self.play(
            *(b[0].animate.scale(k).move_to(s) for b, k, s in copies),
            *(FadeIn(b[1]) for b, _, _ in copies),
            run_time=1.2,
        )
        op = self.text(formula, th.label_size, th.highlight)
        op.move_to(c + 0.3 * DOWN)
        self.play(FadeIn(op, scale=1.2), run_time=0.6)
        name, ij = write
        out = self.block(tensors, name, *ij)
        target = out[0].get_center()
        k = 1.0 if out[0].width > 1.0 else 1.5
        out[0].scale(k).move_to(c + 1.45 * DOWN)
        out[1].next_to(out[0], DOWN, buff=0.05)
        self.play(FadeIn(out), *(FadeOut(b) for b, _, _ in copies), run_time=0.6)
        result = tensors[write[0]]
        self.play(out[0].animate.scale(1 / k).move_to(target), FadeOut(out[1]),
                  FadeOut(op), run_time=1.0)  # fmt: skip
        self.play(FadeIn(result), FadeOut(out[0]), run_time=0.6)

    def flash_pass(self, tensors, sram_p) -> None:
        """Program i loads Q_i once, streams every K_j, V_j (S_ij, P_ij tiles stay
        in SRAM), then writes O_i and LSE_i (the row statistic the backward
        reads) to HBM.

        A schematic of the idea only: the tiling scene plays the real kernel's trace.
        """
        th = self.theme
        out_blocks = VGroup()
        o = tensors["O"]
        o_box = o[0]
        o_empty = o_box.copy().set_fill(opacity=0.0)
        lse = tensors["LSE"]
        lse_box = lse[0]
        lse_empty = lse_box.copy().set_fill(opacity=0.0)
        lse_blocks = VGroup()
        self.play(FadeIn(VGroup(o_empty, o[1], o[2], lse_empty, lse[1], lse[2])))
        c = sram_p.get_center()
        tiles = VGroup()
        for k, name in enumerate("SP"):
            sq = Square(0.7, fill_color=tensor_color(name), fill_opacity=0.55,
                        stroke_color=tensor_color(name))  # fmt: skip
            lab = self.text(f"{name}_ij", th.small_size, th.foreground).move_to(sq)
            tiles.add(VGroup(sq, lab).move_to(c + [0.1 + 0.9 * k, -0.45, 0]))
        note = self.text("block-sized tiles, never written to HBM", th.small_size,
                         th.muted).next_to(tiles, DOWN, buff=0.1)  # fmt: skip
        for i in range(Q_BLOCKS):
            q = self.block(tensors, "Q", i)
            q_slot = c + [-1.7, 0.85, 0]
            q[1].next_to(q[0].copy().scale(1.5).move_to(q_slot), UP, buff=0.05)
            self.add(q[0])
            self.play(q[0].animate.scale(1.5).move_to(q_slot), FadeIn(q[1]),
                      run_time=0.6)  # fmt: skip
            if i == 0:
                self.play(FadeIn(tiles), FadeIn(note), run_time=0.4)
            for j in range(BLOCKS):  # K_j, V_j stream past Q_i
                kv = [self.block(tensors, n, j) for n in "KV"]
                for b in kv:
                    self.add(b[0])
                slots = [c + [-0.4 + 1.0 * k, 0.85, 0] for k in range(2)]
                self.play(*(b[0].animate.scale(1.5).move_to(s)
                            for b, s in zip(kv, slots, strict=True)),
                          run_time=0.5 if i == j == 0 else 0.3)  # fmt: skip
                self.play(*(FadeOut(b[0]) for b in kv), run_time=0.2)
            h = o_box.height / Q_BLOCKS
            ob = Rectangle(width=o_box.width, height=h,
                           fill_color=tensor_color("O"), fill_opacity=0.55,
                           stroke_width=0).move_to(c + 1.9 * DOWN)  # fmt: skip
            lb = Rectangle(width=lse_box.width, height=h,
                           fill_color=tensor_color("LSE"), fill_opacity=0.8,
                           stroke_width=0).next_to(ob, RIGHT, buff=0.25)  # fmt: skip
            target = o_box.get_top() + (i + 0.5) * h * DOWN
            lse_target = lse_box.get_top() + (i + 0.5) * h * DOWN
            self.play(FadeIn(ob), FadeIn(lb), FadeOut(q[0]), FadeOut(q[1]),
                      run_time=0.3)  # fmt: skip
            self.play(ob.animate.move_to(target), lb.animate.move_to(lse_target),
                      run_time=0.5)  # fmt: skip
            out_blocks.add(ob)
            lse_blocks.add(lb)
        self.play(FadeOut(tiles), FadeOut(note))
        tensors["O_blocks"] = out_blocks
        tensors["O_empty"] = VGroup(o_empty)
        tensors["LSE_blocks"] = lse_blocks
        tensors["LSE_empty"] = VGroup(lse_empty)

    def takeaway(self) -> None:
        th, gpu = self.theme, self.gpu
        r = gpu.bandwidth_ratio("SRAM", "HBM")
        head = self.text(
            "Attention's bottleneck is moving data between HBM and SRAM",
            th.title_size,
            th.foreground,
        )
        rc = gpu.capacity_ratio("HBM", "SRAM")
        lines = [
            (
                f"SRAM is {r:.0f}× faster than HBM but {rc:,.0f}× smaller",
                th.foreground,
            ),
            ("FlashAttention avoids the round trips with", th.foreground),
            ("•  tiling: blocks of Q, K, V small enough for SRAM", tensor_color("Q")),
            (
                "•  fusion: S = QKᵀ, softmax, PV in one kernel — S, P never reach HBM",
                tensor_color("S"),
            ),
            (
                "Exact (not an approximation) · extra memory O(N) instead of O(N²)",
                th.foreground,
            ),
            (
                "The paper reports GPT-2 training up to 3× faster; "
                "our own measurements follow",
                th.muted,
            ),
        ]
        body = VGroup(*(self.text(s, th.body_size + 2, c) for s, c in lines))
        body.arrange(DOWN, aligned_edge=LEFT, buff=0.28)
        body[2:4].shift(0.4 * RIGHT)
        group = VGroup(head, body).arrange(DOWN, buff=0.55).move_to([0, 0.35, 0])
        self.play(self.title(""), FadeIn(head, shift=0.2 * UP))
        self.play(
            LaggedStart(
                *(FadeIn(b, shift=0.1 * RIGHT) for b in body), lag_ratio=0.3, run_time=3
            )
        )
        self.caption("IO-aware: FlashAttention avoids HBM traffic by tiling and fusion")
        _ = group
