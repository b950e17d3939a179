"""The backward and GPU-schedule scenes play the real traces, render, and look as
they did.

* Backward (N = 8, causal: every op, masks included): the events played equal the
  trace's, in order; the gradients it checks match autograd; the split into groups
  partitions each program's events.
* GPU schedule (the committed H200 traces): every program is drawn exactly once, as
  a bar at its SM, from its start to its end.
* Both: the movie is written, the last frame of each section matches its control
  frame (``FLASHANIM_UPDATE_CONTROL=1`` rewrites them), bad configuration is
  refused before anything renders.
"""

from __future__ import annotations

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import pytest
from _scene_harness import (
    check_footer,
    check_record,
    compare_control,
    render_probe,
    scene_class,
)

from flashanim.config import ConfigError
from flashanim.trace import TraceFormatError, record

BACKWARD_ENV = {"FLASHANIM_SEQ_LEN": "8", "FLASHANIM_CAUSAL": "1"}


@pytest.fixture(scope="module")
def backward(tmp_path_factory):
    return render_probe("backward", "BackwardScene", BACKWARD_ENV,
                        tmp_path_factory.mktemp("bwd"))  # fmt: skip


@pytest.fixture(scope="module")
def schedule(tmp_path_factory):
    return render_probe("gpu_schedule", "GpuScheduleScene", {},
                        tmp_path_factory.mktemp("sched"))  # fmt: skip


# -- backward ------------------------------------------------------------------------
def test_backward_plays_every_event(backward):
    scene, _, _ = backward
    played = [e.key() for e in scene.player.played_events]
    assert played == [e.key() for e in scene.trace.events if e.bh == 0]
    assert len(played) == len(scene.trace.events)
    assert {e.op for e in scene.player.played_events} >= {
        "rowdot", "qk", "mask", "recompute", "dv", "dp", "ds", "dk", "dq", "store"
    }  # fmt: skip


def test_backward_renders_sections(backward):
    _, frames, movies = backward
    assert movies and max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["setup", "preprocess D", "dK dV block 0",
                            "other K-V blocks", "dQ", "check"]  # fmt: skip


def test_backward_frames_match_controls(backward):
    compare_control("backward", backward[1])


def test_backward_never_shows_nxn_in_hbm(backward):
    scene, _, _ = backward
    assert set(scene.layout.grids) == {"Q", "K", "V", "O", "dO", "LSE", "D", "dQ",
                                       "dK", "dV"}  # fmt: skip


def test_naive_gradients_match_kernel():
    naive_gradients = _scene_module("backward").naive_gradients
    for causal in (False, True):
        t = record("fa2-bwd", seq_len=12, head_dim=4, block_m=4, block_n=4,
                   causal=causal, values=False, keep_tensors=True)  # fmt: skip
        errs, refs = naive_gradients(t.tensors, t.meta)
        assert set(errs) == {"dQ", "dK", "dV"}
        assert max(errs.values()) < 1e-4, errs
        assert refs["dQ"].shape == (12, 4)


def test_split_program_partitions_events():
    from flashanim.visuals.backward import split_program

    t = record("fa2-bwd", seq_len=10, head_dim=4, block_m=4, block_n=4,
               causal=True, values=False)  # fmt: skip
    for p in t.programs:
        events = list(t.of_program(p.program))
        groups = split_program(events)
        assert [e for g in groups for e in g] == events
        loops = groups[1:-1]
        if p.launch == "dkdv":
            assert all(g[0].op == "load" and g[0].tensor == "Q" for g in loops)
        if p.launch == "dq":
            assert all(g[0].op == "load" and g[0].tensor == "K" for g in loops)
        assert all(e.op == "store" for e in groups[-1])


@pytest.mark.parametrize("phase", ["dkdv", "dq"])
def test_backward_sram_labels_keep_apart(phase):
    """Tile labels of one SRAM row ("dV_j += Pᵀ dO", "dK_j += scale·dSᵀQ_i", ...)
    stay LABEL_CLEARANCE apart and inside the SRAM panel."""
    from flashanim.visuals.backward import LABEL_CLEARANCE, BackwardLayout

    t = record("fa2-bwd", seq_len=8, head_dim=4, block_m=4, block_n=4,
               causal=True)  # fmt: skip
    lay = BackwardLayout(t)
    labels = [m.label for m in lay.placeholders(phase) if m.label is not None]
    assert len(labels) >= 10
    rows: dict[float, list] = {}
    for lab in labels:
        rows.setdefault(round(lab.get_center()[1], 1), []).append(lab)
        assert lab.get_left()[0] >= lay.sram.box.get_left()[0]
        assert lab.get_right()[0] <= lay.sram.box.get_right()[0]
    for row in rows.values():
        row.sort(key=lambda m: m.get_left()[0])
        for a, b in zip(row, row[1:], strict=False):
            gap = b.get_left()[0] - a.get_right()[0]
            assert gap >= LABEL_CLEARANCE, f"{a.text!r} and {b.text!r}: {gap:.2f}"


# -- GPU schedule --------------------------------------------------------------------
def test_schedule_draws_every_program_once(schedule):
    scene, _, _ = schedule
    for name, causal in (("non-causal", False), ("causal", True)):
        trace = scene.traces[causal]
        drawn = scene.drawn[name]
        assert sorted(p.program for p, _ in drawn) == sorted(
            p.program for p in trace.programs
        )
        assert len(drawn) == len(trace.programs) == 512
        assert {p for p, _ in drawn} == set(trace.programs)  # sm/start/end kept
        chart = scene.charts[name]
        tol = 2e-3 * (max(p.end_ns for p in trace.programs) - chart.t0_ns)
        for p, bar in drawn:
            assert abs(chart.ns_of(bar.get_left()[0]) - p.start_ns) < tol
            assert abs(chart.ns_of(bar.get_right()[0]) - p.end_ns) < tol
            assert chart.sm_of(bar.get_center()[1]) == p.sm


def test_schedule_source_lines_readable(schedule):
    """What ran where (GPU, versions, shapes, trace files): at the footer size,
    inside the frame, above the chart, at 480p (a tiny probe's Pango would wrap
    its lines at 192 px)."""
    from manim import tempconfig

    from flashanim.engine.text import use_private_text_dir

    scene, _, _ = schedule
    with tempconfig({"pixel_width": 854, "pixel_height": 480}):
        use_private_text_dir()
        info = scene.source_info()
    assert len(info) == 3  # one line each: GPU and versions, shapes, trace files
    info.to_corner([-1, 1, 0], buff=0.2).shift([0, -0.55, 0])  # as construct
    check_footer(info, scene.theme)
    axes = scene.charts["non-causal"].axes
    assert info.get_bottom()[1] > axes.get_top()[1]


def test_schedule_renders_sections(schedule):
    _, frames, movies = schedule
    assert movies and max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["setup", "non-causal", "causal", "imbalance"]


def test_schedule_frames_match_controls(schedule):
    compare_control("gpu_schedule", schedule[1])


def test_assign_lanes_never_overlaps():
    from flashanim.trace import load_trace
    from flashanim.visuals.schedule import assign_lanes, schedule_stats

    mod = _scene_module("gpu_schedule")
    trace = load_trace(mod.schedule_paths()[True])
    place = assign_lanes(trace.programs)
    seen: dict[tuple[int, int], list] = {}
    for p in trace.programs:
        seen.setdefault((p.sm, place[p.program].lane), []).append(p)
    for ps in seen.values():
        ps.sort(key=lambda p: p.start_ns)
        assert all(a.end_ns <= b.start_ns for a, b in zip(ps, ps[1:], strict=False))
    st = schedule_stats(trace.programs)
    assert st["n"] == 512 and st["sms"] <= 132 and st["max_us"] >= st["min_us"]


# -- bad configuration --------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "cls", "env", "error", "message"),
    [
        ("backward", "BackwardScene", {"FLASHANIM_THEME": "neon"}, ConfigError,
         "unknown theme"),
        ("backward", "BackwardScene", {"FLASHANIM_BLOCK_N": "3"}, ConfigError,
         "power of two"),
        ("gpu_schedule", "GpuScheduleScene",
         {"FLASHANIM_SCHEDULE_CAUSAL": "/nonexistent.json.gz"}, ConfigError,
         "no such trace file"),
        ("gpu_schedule", "GpuScheduleScene", {"FLASHANIM_THEME": "neon"},
         ConfigError, "unknown theme"),
    ],
)  # fmt: skip
def test_bad_config_fails_before_rendering(module, cls, env, error, message,
                                           monkeypatch, tmp_path):  # fmt: skip
    _render_fails(module, cls, env, error, message, monkeypatch, tmp_path)


def test_malformed_or_wrong_schedule_trace_is_refused(monkeypatch, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "nope"}')
    _render_fails("gpu_schedule", "GpuScheduleScene",
                  {"FLASHANIM_SCHEDULE_NONCAUSAL": str(bad)}, TraceFormatError, "",
                  monkeypatch, tmp_path)  # fmt: skip
    from flashanim.trace import save_trace

    cpu = save_trace(record("fa2-fwd", seq_len=8, values=False), tmp_path / "cpu.json")
    _render_fails("gpu_schedule", "GpuScheduleScene",
                  {"FLASHANIM_SCHEDULE_NONCAUSAL": str(cpu)}, ConfigError,
                  "without SM id or clock", monkeypatch, tmp_path)  # fmt: skip


def _render_fails(module, cls, env, error, message, monkeypatch, tmp_path):
    from manim import tempconfig

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    media = tmp_path / "media"
    with tempconfig({"media_dir": str(media), "progress_bar": "none",
                     "verbosity": "WARNING"}):  # fmt: skip
        scene = scene_class(module, cls)()
        with pytest.raises(error, match=message or None):
            scene.render()
    assert not list(media.rglob("*.mp4"))


def _scene_module(name: str):
    import sys

    scene_class(name, "__name__")
    return sys.modules[name]


def test_backward_render_record_carries_events_and_captions(backward, tmp_path):
    scene = backward[0]
    check_record(scene, scene.player.played_events, tmp_path)


def test_schedule_render_record_carries_captions(schedule, tmp_path):
    check_record(schedule[0], [], tmp_path)  # (programs, not events, are drawn)
