"""The talk cut: readability by rule, trace-exact clips, computed verdicts, the join.

Each clip is rendered at 480p, 2 frames/s (sizes on screen are in scene units, so
what is measured holds at 1080p); at every section end the clip wrote
down the texts on screen (:attr:`flashanim.talkkit.TalkClip.screens`), and the
rules of the talk cut are checked on them: no capital under 28 px at 1080p, at most
25 words of prose on screen, no code, file paths or version strings.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from _scene_harness import ROOT, compare_control, render_probe

from flashanim import cut, talkfacts
from flashanim.talkkit import MAX_ALL_WORDS, MAX_WORDS, MIN_PX

#: Code, paths and versions that must not be on screen (footers included).
FORBIDDEN = [
    (re.compile(r"\b\w+\.(py|json|gz|mp4)\b"), "a file name"),
    (re.compile(r"\w/\w"), "a path"),
    (re.compile(r"\bv?\d+\.\d+\.\d+"), "a version string"),
    (re.compile(r"\b(def|import|tl\.|torch\.|triton)\b"), "code"),
    (re.compile(r"[A-Za-z_]\w*\([^)]*\)\s*:"), "code"),
]


@pytest.fixture(scope="module")
def trace_cache(tmp_path_factory):
    """One trace folder for the module (each clip records the same small run)."""
    return str(tmp_path_factory.mktemp("traces"))


_RENDERED: dict[str, object] = {}


def rendered(name: str, tmp_path_factory, trace_cache):
    if name not in _RENDERED:
        c = cut.clip(name)
        media = tmp_path_factory.mktemp(name)
        # 480p: Pango wraps text at the frame's pixel width, so a tiny probe
        # would wrap the title card; sizes are measured in scene units anyway
        scene, frames, movies = render_probe(
            c.name, c.cls, {"FLASHANIM_TRACE_CACHE": trace_cache}, media,
            size=(854, 480), fps=2,
        )  # fmt: skip
        _RENDERED[name] = (scene, frames, movies)
    return _RENDERED[name]


NAMES = [c.name for c in cut.CUT]


def test_cut_list_in_one_place():
    assert len(NAMES) == len(set(NAMES))
    for c in cut.CUT:
        assert (ROOT / "scenes" / f"{c.name}.py").is_file()
        assert c.title and c.idea and c.notes
    assert NAMES[-1] == "talk_summary"
    notes = cut.speaker_notes([0.0] * len(cut.CUT))
    for c in cut.CUT:
        assert c.title in notes
    assert "{" not in notes and "}" not in notes


@pytest.mark.parametrize("name", NAMES)
def test_readable_by_rule(name, tmp_path_factory, trace_cache):
    scene, frames, movies = rendered(name, tmp_path_factory, trace_cache)
    assert movies, "no movie written"
    c = cut.clip(name)
    assert scene.TITLE == c.title
    assert scene.screens and scene.screens[0][0] == "title"
    assert [s for s, _ in scene.screens][1:] == list(frames)
    for section, texts in scene.screens:
        assert texts, f"{name}/{section}: nothing on screen"
        for t in texts:
            assert t.px >= MIN_PX, (
                f"{name}/{section}: {t.text!r} is {t.px:.1f} px at 1080p (< {MIN_PX})"
            )
            for pattern, what in FORBIDDEN:
                assert not pattern.search(t.text), (
                    f"{name}: {what} on screen: {t.text!r}"
                )
        prose = sum(t.prose for t in texts)
        assert prose <= MAX_WORDS, (
            f"{name}/{section}: {prose} words of prose on screen: "
            f"{[t.text for t in texts if t.prose]}"
        )
        every = sum(t.words for t in texts if not (t.footer or t.formula))
        assert every <= MAX_ALL_WORDS, f"{name}/{section}: {every} words on screen"
        for t in texts:
            if t.footer:
                assert t.words <= 12, f"{name}: footer too long: {t.text!r}"
        assert sum(t.footer for t in texts) <= 1
    # the title card: title and idea line, nothing else
    first = [t.text for t in scene.screens[0][1]]
    assert c.title in first and cut.idea(name) in first and len(first) == 2


@pytest.mark.parametrize("name", NAMES)
def test_control_frames(name, tmp_path_factory, trace_cache):
    """Each section's last frame, shrunk to 192x108, against its control frame."""
    from PIL import Image

    _, frames, _ = rendered(name, tmp_path_factory, trace_cache)
    small = {
        k: np.asarray(Image.fromarray(f).resize((192, 108), Image.BOX))
        for k, f in frames.items()
    }
    compare_control(name, small)


@pytest.mark.parametrize("name", NAMES)
def test_caption_lines_reach_the_subtitles(name, tmp_path, tmp_path_factory,
                                           trace_cache):  # fmt: skip
    """Every line a clip says (TalkClip.say) is in the render record, in order,
    and in the SRT written from it (markup without its tags)."""
    from flashanim.captions import cues_from_record, write_srt

    scene, _, _ = rendered(name, tmp_path_factory, trace_cache)
    rec = scene._fa_record()
    rec["duration"] = float(scene.renderer.time)
    captions = [p["caption"] for p in rec["plays"] if p["caption"]]
    assert captions == scene.said
    srt = Path(write_srt(cues_from_record(rec), tmp_path / "c.srt"))
    text = srt.read_text(encoding="utf-8")
    for line in scene.said:
        assert line in text
        assert "<" not in line, f"markup left in a subtitle: {line!r}"
    if name != "talk_summary":  # the summary card is its lines, not captions
        assert scene.said


def _reference_row(trace, row):
    """The followed row's scores and softmax, float64, from the trace's Q and K."""
    meta = trace.meta
    q = np.asarray(trace.tensors["Q"], dtype=np.float64)[0, 0, row]
    k = np.asarray(trace.tensors["K"], dtype=np.float64)[0, 0]
    s = (k @ q) * meta.softmax_scale
    w = np.exp(s - s.max())
    return s, w / w.sum()


def test_whole_row_plays_its_events_and_computes_its_verdict(
    tmp_path_factory, trace_cache
):
    scene, _, _ = rendered("talk_whole_row", tmp_path_factory, trace_cache)
    rs = scene.rs
    program = scene.trace.of_program(rs.program)
    want = [e for e in program if e.op in ("qk", "mask")]
    assert [e.key() for e in scene.played] == [e.key() for e in want]
    assert len(want) == scene.trace.meta.t_c
    s, w = _reference_row(scene.trace, rs.row)
    assert np.abs(rs.scores - s).max() < 1e-5
    v = scene.verdict
    assert abs(v["sum_block_local"] - scene.trace.meta.t_c) < 1e-9
    assert abs(v["sum_whole"] - 1) < 1e-12
    assert v["max_error"] == pytest.approx(np.abs(rs.block_local() - w).max(), abs=1e-5)


def test_online_softmax_plays_its_events_and_matches_softmax(
    tmp_path_factory, trace_cache
):
    scene, _, _ = rendered("talk_online_softmax", tmp_path_factory, trace_cache)
    rs = scene.rs
    want = [
        e for e in scene.trace.of_program(rs.program) if e.op in talkfacts.SOFTMAX_OPS
    ]
    assert [e.key() for e in scene.played] == [e.key() for e in want]
    # the bars shrink: some block raised the max, so some alpha < 1 was drawn
    alphas = [v for _, op, v in scene.drawn if op == "alpha"]
    assert any(0 < a < 1 for a in alphas)
    _, w = _reference_row(scene.trace, rs.row)
    err = np.abs(scene.verdict["online"] - w).max()
    assert err < 1e-6
    assert scene.verdict["max_error"] == pytest.approx(err, abs=1e-7)


def test_tiling_plays_one_program_and_every_gpu_program(tmp_path_factory, trace_cache):
    scene, _, _ = rendered("talk_tiling", tmp_path_factory, trace_cache)
    program = scene.trace.of_program(scene.program)
    assert [e.key() for e in scene.played] == [e.key() for e in program]
    # O is stored once, the Q block loaded once, every K/V block once
    stores = [e for e in program if e.op == "store" and e.tensor == "O"]
    assert len(stores) == 1
    # "scores stay on chip" (clips 1, 4, 5): no S or P tile ever goes to HBM
    assert not [e for e in scene.trace.events if e.is_memory and e.tensor in "SP"]
    loads_k = [e.row for e in program if e.op == "load" and e.tensor == "K"]
    assert sorted(loads_k) == list(range(scene.trace.meta.t_c))
    tr = scene.sched.trace
    drawn = {(p, sm, s, e) for p, sm, _, s, e in scene.bars}
    assert drawn == {(p.program, p.sm, p.start_ns, p.end_ns) for p in tr.programs}
    assert len(scene.bars) == len(tr.programs)
    # the claims on screen, counted from the trace here
    per_sm: dict[int, list] = {}
    for p in tr.programs:
        per_sm.setdefault(p.sm, []).append((p.start_ns, p.end_ns))
    most = 0
    for spans in per_sm.values():
        for s, _ in spans:
            most = max(most, sum(a <= s < b for a, b in spans))
    assert scene.sched.stats["lanes"] == most
    # one tag per wave, in time order, each inside the run
    span = max(e for *_, e in scene.bars) - min(s for *_, s, _ in scene.bars)
    assert [w for w, _ in scene.wave_tags] == list(
        range(1, int(scene.sched.stats["waves"]) + 1)
    )
    mids = [m for _, m in scene.wave_tags]
    assert mids == sorted(mids) and 0 < mids[0] and mids[-1] < span
    assert scene.sched.stats["sms"] == len(per_sm)
    assert "H200" in scene.sched.gpu


def test_bottleneck_bars_are_the_measurements(tmp_path_factory, trace_cache):
    scene, _, _ = rendered("talk_bottleneck", tmp_path_factory, trace_cache)
    b = scene.data
    import json

    data = json.loads((ROOT / "media" / "bench" / b.source).read_text())
    ms = data["settings"][0]["ms"]
    unit = scene.bars[0][4] / ms[scene.bars[0][0]]
    for key, _, _, v, h in scene.bars:
        assert v == ms[key]
        assert h == pytest.approx(v * unit)
    assert scene.fused_height == pytest.approx(data["settings"][0]["fused_ms"] * unit)
    shown = {k for k, *_ in scene.bars}
    assert shown == set(data["steps"]) - {"dropout"}
    # the caption under the brace names exactly the memory-bound steps drawn
    said = next(s for s in scene.said if "only read and write" in s).lower()
    for _, label, mb, *_ in scene.bars:
        assert (label.lower() in said) == mb, (label, said)


def test_payoff_lengths_are_the_closed_form_and_benchmark(
    tmp_path_factory, trace_cache
):
    scene, _, _ = rendered("talk_payoff", tmp_path_factory, trace_cache)
    p = scene.data
    assert scene.checked  # small traces of both kernels matched the closed form
    # the closed form at this size, summed here from its own terms (per head):
    n, d, e, bh = p.n, p.d, 2, p.batch * p.heads
    t_r, t_c = n // 128, n // 64
    standard = (t_c * n * d + 2 * t_r * n * d + 4 * n * n + n * d) * e * bh
    flash = ((2 + 2 * t_r) * n * d * e + n * 4) * bh
    assert p.traffic_standard == standard
    assert p.traffic_flash == flash
    for (v1, w1), (v2, w2) in scene.lengths.values():
        if min(w1, w2) > 0.03:  # bars not drawn at their least width
            assert w1 / w2 == pytest.approx(v1 / v2)


def test_summary_lines_hold(tmp_path_factory, trace_cache):
    scene, _, _ = rendered("talk_summary", tmp_path_factory, trace_cache)
    lines = scene.lines
    assert len(lines) == 4
    b = talkfacts.breakdown()
    share = b.memory_bound_ms / b.standard_ms
    assert f"{share:.0%}" in lines[0]
    rs = talkfacts.row_softmax(scene.trace)
    _, w = _reference_row(scene.trace, rs.row)
    assert ("exact" in lines[1]) == (np.abs(rs.online() - w).max() < 1e-6)
    tr = talkfacts.schedule().trace
    assert f"{len(tr.programs)} programs" in lines[2]
    assert f"{len({p.sm for p in tr.programs})} SMs" in lines[2]
    p = talkfacts.payoff()
    assert f"{p.traffic_standard / p.traffic_flash:.0f}× less traffic" in lines[3]


def _segment(path: Path, color, frames: int, fps: int, preset: str | dict,
             bframes: bool = True) -> Path:  # fmt: skip
    import av

    with av.open(str(path), "w") as dst:
        s = dst.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        x264 = preset if isinstance(preset, dict) else {"preset": preset}
        s.options = {"crf": "23", **x264}
        if not bframes:
            s.options = {**s.options, "bf": "0"}
        for i in range(frames):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:] = color
            img[: 4 + i % 8] = 255  # frames differ: B-frames get used
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            for pkt in s.encode(f):
                dst.mux(pkt)
        for pkt in s.encode():
            dst.mux(pkt)
    return path


def _clip(path: Path, color, seconds: float, fps: int = 10,
          preset: str | dict = "veryfast", seg: int = 5, bframes: bool = True) -> Path:  # fmt: skip
    """A clip as Manim writes one: segments of ``seg`` frames encoded apart,
    joined without re-encoding (a keyframe at each segment)."""
    from flashanim.talk import join_videos

    n = int(seconds * fps)
    parts = [_segment(path.with_name(f"{path.stem}_{k}.mp4"), color, seg, fps, preset,
                      bframes) for k in range(n // seg)]  # fmt: skip
    return join_videos(parts, path)


def test_join_without_bframes_copies_up_to_the_fade(tmp_path):
    """Clips without B-frames (the talk's clips: ``TalkClip.X264_OPTIONS``) are
    copied up to the first frame of their fade, not to their last keyframe
    before it; the encoder of the joins has the clips' parameter sets; the
    copied frames are the clips' own pixels."""
    import av

    from flashanim.talkkit import TalkClip

    assert TalkClip.X264_OPTIONS == {"bf": "0"}
    paths = [_clip(tmp_path / f"{n}.mp4", col, 2.8, seg=7, bframes=False)
             for n, col in (("a", (230, 30, 30)), ("b", (30, 30, 230)),
                            ("c", (30, 230, 30)))]  # fmt: skip
    clips = [cut._scan(p) for p in paths]
    assert [c.n for c in clips] == [28] * 3 and not any(c.reordered for c in clips)
    assert cut._scan(_clip(tmp_path / "r.mp4", (9, 9, 9), 2.0)).reordered
    assert clips[0].keyframes == [0, 7, 14, 21]
    plan = cut._plan(clips, 5)
    assert plan == [(0, 23), (7, 23), (7, 28)]  # 23 = 28 - 5: no keyframe there
    assert cut._same_parameter_sets(clips[0], {"preset": "veryfast"})
    out = tmp_path / "joined.mp4"
    starts = cut.join_with_crossfades(paths, out, fade=0.5, preset="veryfast")
    assert starts == pytest.approx([0.0, 2.3, 4.6])
    with av.open(str(out)) as src:
        dts = [p.dts for p in src.demux(src.streams.video[0]) if p.dts is not None]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)
    with av.open(str(out)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    assert len(frames) == 3 * 28 - 2 * 5
    with av.open(str(paths[0])) as src:
        own = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    for k in range(23):
        assert np.array_equal(frames[k], own[k])
    mean = [f[8:].reshape(-1, 3).mean(axis=0) for f in frames]
    reds = [m[0] for m in mean[23:28]]
    blues = [m[2] for m in mean[23:28]]
    assert reds == sorted(reds, reverse=True) and blues == sorted(blues)


@pytest.mark.parametrize("preset", ["veryfast", "ultrafast"])
def test_join_with_crossfades(tmp_path, preset):
    """The clips' own encoder settings: the joins are spliced in (``veryfast``
    given); others: every frame encoded again. Same frames either way."""
    import av

    a = _clip(tmp_path / "a.mp4", (230, 30, 30), 2.0)
    b = _clip(tmp_path / "b.mp4", (30, 30, 230), 2.0)
    c = _clip(tmp_path / "c.mp4", (30, 230, 30), 2.0)
    out = tmp_path / "joined.mp4"
    spliced = cut._same_parameter_sets(cut._scan(a), {"preset": preset})
    assert spliced == (preset == "veryfast")
    starts = cut.join_with_crossfades([a, b, c], out, fade=0.5, preset=preset)
    assert starts == pytest.approx([0.0, 1.5, 3.0])
    with av.open(str(out)) as src:
        s = src.streams.video[0]
        pkts = [p for p in src.demux(s) if p.dts is not None]
        dts = [p.dts for p in pkts]
        assert dts == sorted(dts) and len(set(dts)) == len(dts)
    with av.open(str(out)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    assert len(frames) == 60 - 2 * 5  # two fades of 5 frames overlap
    mean = [f[8:].reshape(-1, 3).mean(axis=0) for f in frames]
    assert mean[0][0] > 200 and mean[-1][1] > 200
    # in the first fade, red goes down and blue up, frame after frame: no black
    fade = mean[15:20]
    reds = [m[0] for m in fade]
    blues = [m[2] for m in fade]
    assert reds == sorted(reds, reverse=True) and blues == sorted(blues)
    assert all(m.sum() > 200 for m in mean)
    # outside the fades, the clips' own frames (copied: the very same pixels)
    assert all(m[0] > 200 for m in mean[:15]) and all(m[2] > 200 for m in mean[20:30])
    if spliced:
        a_end = cut._plan([cut._scan(p) for p in (a, b, c)], 5)[0][1]
        assert a_end > 0
        with av.open(str(a)) as src:
            own = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
        for k in range(a_end):
            assert np.array_equal(frames[k], own[k])
    assert not (tmp_path / ".joined.partial.mp4").exists()


def test_join_matches_the_default_1080p_encoder(tmp_path, monkeypatch):
    """Clips encoded as the renders encode them above 480 rows (``veryfast``
    with :data:`~flashanim.engine.fastrender.DEFAULT_X264_PARAMS`, no
    B-frames) are spliced by a join left to its default settings: the join's
    encoder writes the same parameter sets; plain ``veryfast`` does not."""
    from flashanim.engine.fastrender import PRESET_ENV, x264_options

    monkeypatch.delenv(PRESET_ENV, raising=False)
    x264 = x264_options(1080)
    assert x264["bf"] == "0" and "x264-params" in x264
    paths = [_clip(tmp_path / f"{n}.mp4", col, 2.0, preset=x264)
             for n, col in (("a", (230, 30, 30)), ("b", (30, 30, 230)))]  # fmt: skip
    clips = [cut._scan(p) for p in paths]
    assert not any(c.reordered for c in clips)
    assert cut._same_parameter_sets(clips[0], x264)
    assert not cut._same_parameter_sets(clips[0], {"preset": "veryfast"})
    seen = []
    real = cut._join_spliced
    monkeypatch.setattr(cut, "_join_spliced",
                        lambda *a: seen.append(a[-1]) or real(*a))  # fmt: skip
    import flashanim.engine.fastrender as fr

    monkeypatch.setattr(fr, "x264_options", lambda h, environ=None: x264)
    out = tmp_path / "joined.mp4"
    starts = cut.join_with_crossfades(paths, out, fade=0.5)
    assert starts == pytest.approx([0.0, 1.5]) and seen == [x264]


def test_cli_render_cut_talk(monkeypatch, capsys):
    """``flashanim render --cut talk`` hands quality and jobs to the cut's main;
    scenes named with it are refused in one line."""
    from flashanim import cli

    seen = []
    monkeypatch.setattr(cut, "main", lambda argv: seen.append(argv) or 0)
    assert (
        cli.main(["render", "--cut", "talk", "--quality", "high", "--jobs", "2"]) == 0
    )
    assert seen == [["--quality", "high", "--jobs", "2"]]
    assert cli.main(["render", "tiling", "--cut", "talk"]) == 2
    err = capsys.readouterr().err
    assert "--cut talk renders the whole talk cut" in err and len(err.splitlines()) == 1
