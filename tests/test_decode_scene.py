"""The decoding scene plays the real traces, renders, and looks as it did.

* The GPU part (the committed H200 traces, ``fa2-decode`` without and with splits):
  every program is drawn exactly once, as a bar at its SM from its start to its
  end; the captions' figures are those of the traces' clocks.
* The arithmetic part (a small run in Triton's interpreter with values): the events
  played are exactly the trace's, the split's steps together across its programs
  and the reduce's in order; the numbers drawn are the events' snapshots; the
  weights merge the partial results into the kernel's O; the verdict is computed.
* The movie is written, the last frame of each section matches its control frame
  (``FLASHANIM_UPDATE_CONTROL=1`` rewrites them), bad configuration is refused
  before anything renders.
"""

from __future__ import annotations

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import numpy as np
import pytest
import torch
from _scene_harness import check_record, compare_control, render_probe, scene_class

from flashanim.config import ConfigError
from flashanim.trace import TraceFormatError, record, save_trace


@pytest.fixture(scope="module")
def decoding(tmp_path_factory):
    return render_probe("decoding", "DecodingScene", {},
                        tmp_path_factory.mktemp("decoding"))  # fmt: skip


def _captions(scene) -> list[str]:
    return [p["caption"] for p in scene._fa_record()["plays"] if p["caption"]]


def test_plays_exactly_the_trace_events(decoding):
    scene = decoding[0]
    tr = scene.trace
    played = scene.player.played_events
    assert sorted(e.index for e in played) == list(range(len(tr.events)))
    assert len(played) == len(tr.events)
    split = [e for e in played if tr.programs[e.program].launch == "split"]
    reduce = [e for e in played if tr.programs[e.program].launch == "reduce"]
    # the split's programs advance together, step by step; the reduce in order
    assert [e.step for e in split] == sorted(e.step for e in split)
    assert reduce == [e for e in tr.events if tr.programs[e.program].launch
                      == "reduce"]  # fmt: skip
    assert played == split + reduce


def test_numbers_drawn_are_the_trace_values(decoding):
    scene = decoding[0]
    tr, pl = scene.trace, scene.player
    m = tr.meta
    for e in tr.where(op="normalize"):
        s = tr.programs[e.program].block
        np.testing.assert_array_equal(pl.os_values[s], e.value[0, : m.head_dim])
    lse_s = {tr.programs[e.program].block: e.value[0, 0]
             for e in tr.where(op="lse", tensor="LSE_s")}  # fmt: skip
    assert pl.lse_s_values == lse_s and len(lse_s) == m.num_splits
    # the weights: exp(LSE_s - LSE) of the trace's values; they merge the O_s
    lse = tr.tensors["LSE"][0, 0, 0]
    want = np.exp(np.array([lse_s[s] for s in range(m.num_splits)]) - lse)
    np.testing.assert_allclose(pl.weights, want, rtol=1e-6)
    o_s = np.stack([pl.os_values[s] for s in range(m.num_splits)])
    np.testing.assert_allclose(pl.weights @ o_s, tr.tensors["O"][0, 0, 0],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(pl.o, tr.where(op="merge")[0].value[0])


def test_verdict_is_computed_against_naive_attention(decoding):
    scene = decoding[0]
    tr = scene.trace
    q, k, v = (torch.from_numpy(tr.tensors[n]) for n in ("Q", "K", "V"))
    ref = torch.softmax(q @ k.transpose(-1, -2) * tr.meta.softmax_scale, -1) @ v
    err = float((torch.from_numpy(tr.tensors["O"]) - ref).abs().max())
    assert scene.verdict.ok and scene.verdict.max_error >= err
    assert _captions(scene)[-1] == scene.verdict.headline()


def test_draws_every_gpu_program_once(decoding):
    scene = decoding[0]
    for name in ("nosplit", "split"):
        trace = scene.gpu_traces[name]
        drawn = scene.drawn[name]
        assert sorted(p.program for p, _ in drawn) == [p.program for p in
                                                       trace.programs]  # fmt: skip
        chart = scene.charts[name]
        shift = scene.gaps[name]
        orig = {p.program: p for p in trace.programs}
        tol = 2e-3 * (max(p.end_ns for p, _ in drawn) - chart.t0_ns)
        for p, bar in drawn:
            o = orig[p.program]
            # each bar: its program's own clock, less its launch's cut host gap
            assert abs(chart.ns_of(bar.get_left()[0])
                       - (o.start_ns - shift[o.launch])) < tol + 1e3  # fmt: skip
            assert abs(chart.ns_of(bar.get_right()[0])
                       - (o.end_ns - shift[o.launch])) < tol + 1e3  # fmt: skip
            assert chart.sm_of(bar.get_center()[1]) == o.sm


def test_launch_gaps_cut_only_idle_time():
    from flashanim.trace.model import Program
    from flashanim.visuals.decode import close_launch_gaps

    def prog(i, launch, a, b):
        return Program(program=i, bh=0, block=i, n_events=1, sm=i, start_ns=a,
                       end_ns=b, launch=launch)  # fmt: skip

    ps = [prog(0, "split", 0, 100), prog(1, "split", 10, 120),
          prog(2, "reduce", 5120, 5130), prog(3, "reduce", 5125, 5140)]  # fmt: skip
    out, shift = close_launch_gaps(ps)
    assert shift == {"split": 0, "reduce": 5000}
    assert [(p.start_ns, p.end_ns) for p in out] == [(0, 100), (10, 120),
                                                     (120, 130), (125, 140)]  # fmt: skip
    # overlapping launches are not moved
    ps2 = [prog(0, "a", 0, 100), prog(1, "b", 50, 200)]
    assert close_launch_gaps(ps2)[1] == {"a": 0, "b": 0}


def test_the_gpu_traces_gap_is_the_one_stated(decoding):
    scene = decoding[0]
    sp = scene.gpu_traces["split"]

    def first(launch):
        return min(p.start_ns for p in sp.programs if p.launch == launch)

    end = max(p.end_ns for p in sp.programs if p.launch == "split")
    assert scene.gaps["split"]["reduce"] == max(0, first("reduce") - end)


def test_captions_say_the_traces_figures(decoding):
    scene = decoding[0]
    caps = _captions(scene)
    ns, sp = scene.gpu_traces["nosplit"], scene.gpu_traces["split"]
    n_sms = 1 + max(p.sm for t in (ns, sp) for p in t.programs)

    def launch(trace, name):
        ps = [p for p in trace.programs if p.launch == name]
        us = (max(p.end_ns for p in ps) - min(p.start_ns for p in ps)) / 1e3
        return len(ps), len({p.sm for p in ps}), us

    n, sms, us = launch(ns, "split")
    assert f"{n} programs on {sms} of {n_sms} SMs for {us:.0f} µs" in caps[1]
    assert n == ns.meta.batch * ns.meta.heads_kv and sms == n
    n2, sms2, us2 = launch(sp, "split")
    _, _, us_r = launch(sp, "reduce")
    assert caps[2] == (f"Split the cache: {n2} programs on {sms2} SMs read it in "
                       f"{us2:.1f} µs, then a {us_r:.1f} µs reduce")  # fmt: skip
    assert n2 == ns.meta.batch * sp.meta.heads_kv * sp.meta.num_splits
    kv = 2 * sp.meta.heads_kv * sp.meta.seq_len_k * sp.meta.head_dim * 2
    assert f"{kv / 1e6:.0f} MB" in caps[0]


def test_renders_sections(decoding):
    _, frames, movies = decoding
    assert movies and max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["one query", "no split", "split", "partials", "reduce",
                            "check"]  # fmt: skip


def test_frames_match_controls(decoding):
    compare_control("decoding", decoding[1])


def test_render_record_carries_events_and_captions(decoding, tmp_path):
    scene = decoding[0]
    check_record(scene, scene.player.played_events, tmp_path)


@pytest.mark.parametrize(
    ("var", "kind", "error", "message"),
    [
        ("FLASHANIM_DECODE_SPLIT", "missing", ConfigError, "no such trace file"),
        ("FLASHANIM_DECODE_SPLIT", "malformed", TraceFormatError, ""),
        ("FLASHANIM_DECODE_NOSPLIT", "fa2-fwd", ConfigError, "fa2-decode"),
        ("FLASHANIM_DECODE_NOSPLIT", "cpu", ConfigError, "without SM id or clock"),
        ("FLASHANIM_DECODE_NOSPLIT", "split", ConfigError, "one split"),
    ],
)
def test_bad_traces_are_refused_before_rendering(var, kind, error, message,
                                                 monkeypatch, tmp_path):  # fmt: skip
    from manim import tempconfig

    if kind == "missing":
        path = tmp_path / "none.json.gz"
    elif kind == "malformed":
        path = tmp_path / "bad.json"
        path.write_text('{"schema": "nope"}')
    elif kind == "fa2-fwd":
        path = save_trace(record("fa2-fwd", seq_len=8, values=False),
                          tmp_path / "fwd.json")  # fmt: skip
    elif kind == "cpu":
        path = save_trace(record("fa2-decode", seq_len=1, seq_len_k=16,
                                 values=False), tmp_path / "cpu.json")  # fmt: skip
    else:
        path = scene_class("decoding", "ROOT") / "media/traces/decode_split.json.gz"
    monkeypatch.setenv(var, str(path))
    media = tmp_path / "media"
    with tempconfig({"media_dir": str(media), "progress_bar": "none",
                     "verbosity": "WARNING"}):  # fmt: skip
        scene = scene_class("decoding", "DecodingScene")()
        with pytest.raises(error, match=message or None):
            scene.render()
    assert not list(media.rglob("*.mp4"))
