"""On-screen sentences of the deep-dive scenes, checked against the traces.

Each sentence that states which blocks a program visits or masks, how programs share
the SMs, or what a label computes, is formatted from the trace (or the hardware
table); these tests hold the formatted sentence to the trace's own events on small
recordings (BLOCK_M = BLOCK_N and BLOCK_M != BLOCK_N, causal and not, N not a
multiple of the block) and on the committed H200 schedule traces.
"""

from __future__ import annotations

import re
from pathlib import Path

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import pytest
from _scene_harness import scene_class
from flashanim.kernels import fa2

from flashanim.trace import load_trace, record
from flashanim.trace.analysis import (
    mask_rule,
    program_masks,
    program_visits,
    visit_rule,
)

ROOT = Path(__file__).resolve().parents[1]
GPU_TRACES = {
    c: ROOT / f"media/traces/gpu_schedule_{'causal' if c else 'noncausal'}.json.gz"
    for c in (False, True)
}
SHAPES = [  # (N, BLOCK_M, BLOCK_N, causal)
    (16, 4, 4, True),
    (32, 8, 4, True),
    (32, 8, 4, False),
    (30, 8, 4, True),
    (30, 8, 4, False),
    (16, 4, 8, True),
]


def _id(s) -> str:
    return f"N{s[0]}_{s[1]}x{s[2]}_{'causal' if s[3] else 'full'}"


@pytest.fixture(scope="module", params=SHAPES, ids=_id)
def small(request):
    n, bm, bn, causal = request.param
    return record("fa2-fwd", seq_len=n, head_dim=4, block_m=bm, block_n=bn,
                  causal=causal)  # fmt: skip


def _eval(expr: str, i: int) -> int:
    """``2i+1`` at ``i`` (the affine texts :func:`visit_rule` writes)."""
    m = re.fullmatch(r"(\d*)(i?)(?:([+−])(\d+))?", expr.strip())
    assert m, expr
    a, has_i, sign, b = m.groups()
    if not has_i:
        return int(a)
    val = (int(a) if a else 1) * i
    if sign:
        val += int(b) if sign == "+" else -int(b)
    return val


def _holds(rule: str, trace) -> None:
    """``rule`` (as :func:`visit_rule` says it) is exactly what each program did."""
    visits, t_c = program_visits(trace), trace.meta.t_c
    if rule.startswith("all T_c"):
        assert rule == f"all T_c = {t_c} K/V blocks"
        assert all(js == list(range(t_c)) for js in visits.values())
        return
    m = re.fullmatch(r"j = (\S+) … (\S+)(?: \(the last, i = (\d+): j = (\d+) … "
                     r"(\d+)\))?", rule)  # fmt: skip
    if m is None:  # the listed form: "program 0: j = 0; 1: j = 0…1; …"
        for part in rule.removeprefix("program ").split("; "):
            if part == "…":
                continue
            i, js = part.split(": j = ")
            want = []
            for r in js.split(", "):
                lo, _, hi = r.partition("…")
                want += list(range(int(lo), int(hi or lo) + 1))
            assert visits[int(i)] == want
        return
    lo, hi, last, last_lo, last_hi = m.groups()
    for i, js in visits.items():
        if last is not None and i == int(last):
            assert js == list(range(int(last_lo), int(last_hi) + 1))
        else:
            assert js == list(range(_eval(lo, i), _eval(hi, i) + 1)), (i, rule)


def test_visit_rule_is_what_every_program_did(small):
    m = small.meta
    rule = visit_rule(small)
    _holds(rule, small)
    # and the trace is the kernel's closed form
    for i, js in program_visits(small).items():
        want = [j for j, _ in fa2.visited_blocks(i, m.seq_len_q, m.seq_len_k,
                                                  m.block_m, m.block_n, m.causal)]  # fmt: skip
        assert js == want
    if m.causal and m.block_m == m.block_n:
        assert rule == "j = 0 … i"  # the old caption, true only here
    if m.causal and m.block_m == 2 * m.block_n:
        assert rule == "j = 0 … 2i+1"
        assert program_visits(small)[1] == [0, 1, 2, 3]


def test_mask_rule_counts_the_masked_blocks(small):
    visits, masks = program_visits(small), program_masks(small)
    said = mask_rule(small)
    counts = {len(masks[i]) for i in visits}
    if said == "no block masked":
        assert counts == {0}
        return
    m = re.search(r"its last (\d+ )?block", said)
    if m:
        n = int(m.group(1) or 1)
        assert counts == {n}
        assert all(masks[i] == js[-n:] for i, js in visits.items())
        assert ("(on the diagonal)" in said) == small.meta.causal
    if small.meta.causal and small.meta.block_m == 2 * small.meta.block_n:
        assert said.startswith("its last 2 blocks") and masks[1] == [2, 3]


def test_gpu_traces_rules():
    nc, ca = (load_trace(GPU_TRACES[c]) for c in (False, True))
    for t in (nc, ca):
        for bh in (0, t.meta.batch * t.meta.heads - 1):
            _holds(visit_rule(t, bh), t)
    assert ca.meta.block_m == 2 * ca.meta.block_n  # the shipped traces: 128 × 64
    assert visit_rule(ca) == "j = 0 … 2i+1"
    assert visit_rule(nc) == f"all T_c = {nc.meta.t_c} K/V blocks"


def test_causal_scene_captions(small):
    if not small.meta.causal:
        pytest.skip("the causal scene plays causal traces")
    mod = scene_class("causal", "CausalScene")
    import sys

    cs = sys.modules[mod.__module__]
    visits = program_visits(small)
    c0 = cs.program0_caption(small)
    shown = re.search(r"j = ([\d…, ]+)$", c0).group(1)
    assert shown.replace("…", "-") in (
        f"{visits[0][0]}-{visits[0][-1]}", f"{visits[0][0]}"
    )  # fmt: skip
    ci = cs.programs_caption(small)
    assert visit_rule(small) in ci and mask_rule(small) in ci
    assert "j = 0 … i:" not in ci or small.meta.block_m == small.meta.block_n


def test_backward_labels_say_the_scale_the_values_include():
    """Each ``dk``/``dq`` snapshot is the previous one plus ``scale·dSᵀQ_i`` /
    ``scale·dS K_j`` (the kernel's values), and the labels say so."""
    import numpy as np

    from flashanim.visuals.backward import BWD_LABELS

    t = record("fa2-bwd", seq_len=10, head_dim=4, block_m=4, block_n=4,
               values=True, softmax_scale=0.3)  # fmt: skip
    scale, checked = t.meta.softmax_scale, 0
    for p in t.programs:
        last: dict[str, np.ndarray] = {}
        acc = None
        for e in t.of_program(p.program):
            if e.value is None:
                continue
            v = np.asarray(e.value, float)
            if e.op in ("load", "ds"):
                last[e.tensor] = v
            elif e.op in ("dk", "dq"):
                ds = last["dS"]
                step = ds.T @ last["Q"] if e.op == "dk" else ds @ last["K"]
                prev = 0.0 if acc is None else acc
                n = min(v.shape[0], step.shape[0])
                np.testing.assert_allclose(v[:n], (prev + scale * step)[:n],
                                           rtol=1e-4, atol=1e-5)  # fmt: skip
                acc, checked = v, checked + 1
    assert checked > 0
    assert BWD_LABELS["dK"] == "dK_j += scale·dSᵀQ_i"
    assert BWD_LABELS["dQ"] == "dQ_i += scale·dS K_j"


def test_tiling_counts_program_0s_blocks(small):
    import sys

    mod = sys.modules[scene_class("tiling", "TilingScene").__module__]
    head = [e for e in small.events if e.bh == 0]
    prog0 = [e for e in head if e.program == head[0].program]
    n = len(program_visits(small)[head[0].row if head[0].op == "load" else 0])
    said = mod.after_blocks_caption(prog0, small.meta.t_c)
    if n == small.meta.t_c:
        assert said.startswith(f"After all T_c = {n} blocks")
    else:
        assert small.meta.causal
        assert said.startswith(f"After {n} of T_c = {small.meta.t_c} blocks (causal)")


def test_tiling_later_programs_one_step_per_kv_block(small):
    """The "other programs" caption names the trace's programs after program 0,
    and each compressed step it plays is one K/V block (from its K load to its
    ``pv``), between the program's Q load and its end (O and LSE written)."""
    import sys

    from flashanim.visuals.player import kv_steps

    mod = sys.modules[scene_class("tiling", "TilingScene").__module__]
    head = [e for e in small.events if e.bh == 0]
    programs = list(dict.fromkeys(e.program for e in head))
    assert len(programs) == small.meta.t_r
    said = mod.later_caption(small.meta.t_r)
    assert said.startswith(f"Programs i = 1 … {small.meta.t_r - 1}, one step per "
                           "K/V block")  # fmt: skip
    assert mod.later_caption(2).startswith("Programs i = 1, one step")
    visits = program_visits(small)
    for p in programs:
        events = [e for e in head if e.program == p]
        steps = kv_steps(events)
        assert [e for st in steps for e in st] == events  # a partition, in order
        assert [(e.op, e.tensor) for e in steps[0]] == [("load", "Q")]
        assert {e.op for e in steps[-1]} == {"normalize", "lse", "store"}
        blocks = steps[1:-1]
        q_row = steps[0][0].row
        assert [st[0].row for st in blocks] == sorted(visits[q_row])
        for st in blocks:
            assert (st[0].op, st[0].tensor) == ("load", "K")
            assert [e.op for e in st].count("pv") == 1 and st[-1].op == "pv"
            assert {e.col for e in st if e.op == "qk"} == {st[0].row}


def test_programs_per_sm_sentences_match_the_gpu_trace():
    """The H200 trace runs up to 2 programs per SM, in waves: the scenes must not
    say "all at once, one per SM"."""
    import sys

    from flashanim.visuals.schedule import schedule_stats

    for c in (False, True):
        st = schedule_stats(load_trace(GPU_TRACES[c]).programs)
        assert st["lanes"] >= 2 and st["waves"] >= 2
    mod = sys.modules[scene_class("tiling", "TilingScene").__module__]
    assert "one per SM" not in mod.ON_A_GPU and "all at once" not in mod.ON_A_GPU
    for name in ("tiling", "loop_order"):
        src = (ROOT / "scenes" / f"{name}.py").read_text()
        assert "one per SM" not in src


def test_memory_hierarchy_flash_sentences_match_a_trace():
    """FA2 forward: each Q block is loaded once, each K/V block once per Q block
    (T_r times), O and LSE are stored, S and P never; the scene's sentences say
    exactly that (and no longer "loaded once … only O is written")."""
    import sys
    from collections import Counter

    mod = sys.modules[scene_class("memory_hierarchy",
                                  "MemoryHierarchyScene").__module__]  # fmt: skip
    t = record("fa2-fwd", seq_len=12, head_dim=4, block_m=4, block_n=4)
    m = t.meta
    loads = Counter((e.tensor, e.row) for e in t.events
                    if e.op == "load" and e.bh == 0)  # fmt: skip
    assert all(loads[("Q", i)] == 1 for i in range(m.t_r))
    assert all(loads[(n, j)] == m.t_r for n in "KV" for j in range(m.t_c))
    stored = {e.tensor for e in t.events if e.op == "store"}
    assert {"O", "LSE"} <= stored and not stored & {"S", "P"}
    assert "Q_i once" in mod.FLASH_STEP and "S_ij, P_ij stay in SRAM" in mod.FLASH_STEP
    assert "once per Q block (T_r times)" in mod.FLASH_DONE
    assert "O and LSE are written" in mod.FLASH_DONE
    src = (ROOT / "scenes" / "memory_hierarchy.py").read_text()
    assert "only O is written" not in src and "loaded once;" not in src


def _io():
    import sys

    return sys.modules[scene_class("io_complexity", "IOComplexityScene").__module__]


def test_io_theory_curve_in_range_and_above_the_floor():
    io = _io()
    m = io.SRAM_BYTES // io.ELEM_BYTES
    ns = (64, 128, 256, 512)
    measured, traces = io.record_traffic(ns)
    curves, consts = io.theory_curves(measured, ns)
    drawn = [n for n, _ in curves["flash"]]
    assert drawn == [n for n in ns if m <= n * io.HEAD_DIM] == [256, 512]
    for n, b in curves["flash"]:
        assert b >= io.traffic_floor(n)
    assert curves["flash"][-1][1] == pytest.approx(dict(measured["flash"])[512])
    # the floor is what FA2 moves for Q, O and one pass of K, V (from its trace)
    for n in ns:
        t = traces[("flash", n)]
        q_o = sum(e.nbytes for e in t.events
                  if (e.op, e.tensor) in (("load", "Q"), ("store", "O")))  # fmt: skip
        kv = sum(e.nbytes for e in t.events if e.op == "load" and e.tensor in "KV")
        assert io.traffic_floor(n) == q_o + kv // t.meta.t_r


def test_io_runtime_axis_says_how_the_batch_changes():
    import json

    io = _io()
    path = ROOT / "media/bench/bench_NVIDIA_H200.json"
    data = json.loads(path.read_text())
    series, sl = io.runtime_series(data)
    note = io.batch_note(data, sl)
    rows = [r for r in data["grid"]
            if all(r[k] == sl[k] for k in ("dtype", "d", "causal", "mode"))]  # fmt: skip
    bn = {r["n"] * r["b"] for r in rows}
    assert len({r["b"] for r in rows}) > 1 and len(bn) == 1
    assert note == f"B = {io.format_count(bn.pop())}/N"


def test_chart_colours_are_no_tensor_colour():
    from flashanim.visuals.charts import SERIES_COLORS
    from flashanim.visuals.theme import TENSOR_COLORS

    tensor = {c.lower() for c in TENSOR_COLORS.values()}
    assert not {c.lower() for c in SERIES_COLORS.values()} & tensor
    assert SERIES_COLORS["flash"] != TENSOR_COLORS["V"]


@pytest.mark.parametrize("key", ["a100", "h100", "h200"])
def test_memory_panels_show_the_one_preset(key, monkeypatch):
    from flashanim.hardware import get_preset
    from flashanim.visuals.memory import hbm_panel, other_gpu, sram_label, sram_panel

    def txt(s: str) -> str:  # Text.text drops the spaces
        return s.replace(" ", "")

    p = get_preset(key)
    hbm = hbm_panel(p)
    assert txt(f"{p.hbm.capacity_label} · {p.hbm.bandwidth_label}") in hbm.title.text
    assert txt(p.source) in sram_panel(p).subtitle.text  # the source, on screen
    assert f"({key.upper()})" in sram_panel(p).title.text
    assert key.upper() in sram_label(p)
    monkeypatch.setenv("FLASHANIM_GPU", key)  # None: the render's --gpu
    assert hbm_panel().title.text == hbm.title.text
    assert other_gpu(p, "NVIDIA H200") == ("" if key == "h200" else
                                           f" (recorded there; --gpu is the {p.name})")  # fmt: skip


def test_online_softmax_row_caption_counts_the_rows_blocks(small):
    import sys

    mod = sys.modules[scene_class("online_softmax", "OnlineSoftmaxScene").__module__]
    m = small.meta
    for i, js in program_visits(small).items():
        prog = next(e.program for e in small.events
                    if e.bh == 0 and e.op == "load" and e.tensor == "Q" and e.row == i)  # fmt: skip
        r = min(i * m.block_m + 1, m.seq_len_q - 1)
        said = mod.row_caption(list(small.of_program(prog)), m, r)
        n = len(js)
        assert f" {n} K/V block{'s' * (n != 1)} " in said
        if m.causal:
            assert f"keys 0 … {r}" in said and str(m.seq_len_k) + " scores" not in said


@pytest.mark.parametrize("causal", [False, True])
def test_loop_order_fa1_reload_count(causal):
    import sys
    from collections import Counter

    mod = sys.modules[scene_class("loop_order", "LoopOrderScene").__module__]
    t = record("fa1-fwd", seq_len=16, head_dim=4, block_m=4, block_n=4,
               causal=causal)  # fmt: skip
    n = Counter(e.row for e in t.events
                if e.bh == 0 and e.op == "load" and e.tensor == "Q")  # fmt: skip
    said = mod.fa1_reload_caption(t)
    if causal:
        assert sorted(n.values()) == [1, 2, 3, 4] and "1–4 times" in said
    else:
        assert set(n.values()) == {t.meta.t_c} and f"T_c = {t.meta.t_c} times" in said


@pytest.mark.parametrize("n, block", [(16, 4), (12, 4), (16, 8)])
def test_standard_grouped_steps_match_the_trace(n, block):
    """After the first row of Q blocks, standard attention plays each program as
    grouped steps: the steps partition its events, every ``pv`` step is one K/V
    block (P_ij and V_j loads, the ``pv``), and the caption names the Q blocks and
    the number of programs so played."""
    import sys

    mod = sys.modules[scene_class("standard_attention",
                                  "StandardAttentionScene").__module__]  # fmt: skip
    t = record("standard", seq_len=n, head_dim=4, block_m=block, block_n=block)
    launch_of = {p.program: p.launch for p in t.programs}
    head = [e for e in t.events if e.bh == 0]
    for launch in mod.LAUNCHES:
        progs = mod._programs([e for e in head if launch_of[e.program] == launch])
        rest = [p for p in progs if p[0].row != progs[0][0].row]
        q_rows = sorted({e.row for p in rest for e in p if e.tensor in ("Q", "S", "P")
                         and e.op == "load"})  # fmt: skip
        assert q_rows == list(range(1, t.meta.t_r))
        said = mod.grouped_caption(launch, rest)
        last = t.meta.t_r - 1
        assert said.startswith(
            f"Q blocks i = 1 … {last}: the same"
            if last > 1
            else "Q blocks i = 1: the same"
        )
        for p in rest:
            steps = mod._steps(p)
            assert [e for st in steps for e in st] == p
            if launch != "pv":
                assert len(steps) == 1
                continue
            *blocks, store = steps
            assert [(e.op, e.tensor) for e in store] == [("store", "O")]
            assert [st[-1].op for st in blocks] == ["pv"] * t.meta.t_c
            for j, st in enumerate(blocks):
                assert [(e.op, e.tensor, e.row if e.tensor == "V" else e.col)
                        for e in st] == [("load", "P", j), ("load", "V", j),
                                         ("pv", "acc", j)]  # fmt: skip
        if launch != "pv":
            assert f"{len(rest)} programs, one per step" in said


def test_schedule_imbalance_sentence_matches_the_gpu_traces():
    """The imbalance caption's shares and the Q blocks of the last programs to
    finish, counted here from the committed H200 traces."""
    import sys

    mod = sys.modules[scene_class("gpu_schedule", "GpuScheduleScene").__module__]
    nc, ca = load_trace(GPU_TRACES[False]), load_trace(GPU_TRACES[True])
    said = mod.imbalance_caption(nc, ca)
    tiles = [sum(e.op == "qk" for e in t.events) for t in (nc, ca)]
    spans = [max(p.end_ns for p in t.programs) - min(p.start_ns for p in t.programs)
             for t in (nc, ca)]  # fmt: skip
    assert said.startswith(f"Causal: {tiles[1] / tiles[0]:.0%} of the tiles, "
                           f"{spans[1] / spans[0]:.0%} of the time")  # fmt: skip
    ends = sorted(p.end_ns for p in ca.programs)
    cut = ends[-mod.LATE]
    late_blocks = [p.block for p in ca.programs if p.end_ns >= cut]
    assert said.endswith(f"the last {mod.LATE} to end have i ≥ {min(late_blocks)}")
    # the late programs are the long ones: large i
    assert min(late_blocks) > ca.meta.t_r // 2
