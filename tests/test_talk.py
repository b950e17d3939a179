"""The talk's ordered scene list and the joining of clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flashanim.talk import TALK, join_videos, main, video_duration

ROOT = Path(__file__).resolve().parents[1]


def test_every_talk_scene_exists_and_defines_its_class():
    for s in TALK:
        src = (ROOT / s.path).read_text()
        assert f"class {s.cls}(" in src, f"{s.path} does not define {s.cls}"
    assert len({s.name for s in TALK}) == len(TALK)


def _clip(path: Path, frames: int, colour: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=15)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        for _ in range(frames):
            img = np.full((48, 64, 3), colour, dtype=np.uint8)
            for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)


def test_join_videos_concatenates_without_reencoding(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    _clip(a, 15, 30)
    _clip(b, 30, 200)
    out = join_videos([a, b], tmp_path / "talk.mp4")
    assert video_duration(out) == pytest.approx(
        video_duration(a) + video_duration(b), abs=0.1
    )
    assert not list(tmp_path.glob(".*partial*"))


def test_unknown_scene_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--only", "no_such_scene"])
    assert exc.value.code == 2
    assert "unknown scene(s) no_such_scene" in capsys.readouterr().err


def test_bench_table_reports_speed_from_the_measured_times(capsys):
    from pathlib import Path

    from flashanim.talk import TALK, RenderResult, print_bench

    a = RenderResult(TALK[0], True, 10.0, Path("a.mp4"), Path("a.log"), 30.0, 15.0)
    b = RenderResult(TALK[1], True, 20.0, Path("b.mp4"), Path("b.log"), 10.0, 20.0)
    print_bench([a, b], wall=25.0, jobs=2)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line}
    assert rows[TALK[0].name][1:] == ["30.0", "10.0", "3.00", "15.0", "2.00"]
    assert rows[TALK[1].name][1:] == ["10.0", "20.0", "0.50", "20.0", "0.50"]
    assert rows["whole"][2:7] == ["40.0", "25.0", "1.60", "35.0", "1.14"]


def test_longest_renders_start_first(monkeypatch, tmp_path):
    from pathlib import Path

    import flashanim.talk as talk

    started = []

    def fake(scene, quality, root, extra, server=None):
        started.append(scene.name)
        return talk.RenderResult(scene, True, 1.0, Path.cwd() / "x.mp4", Path("x.log"))

    monkeypatch.setattr(talk, "_render_one", fake)
    results = talk.render_scenes(talk.TALK, "low", jobs=1)
    assert [r.scene.name for r in results] == [s.name for s in talk.TALK]
    by_cost = sorted(talk.TALK, key=lambda s: -s.cost)
    assert started == [s.name for s in by_cost] != [s.name for s in talk.TALK]


def test_with_cut_renders_both_cuts_in_one_set_of_jobs(monkeypatch, tmp_path):
    from pathlib import Path

    import flashanim.cut as cut
    import flashanim.talk as talk

    seen = {}

    def render_selected(parser, args, scenes, unit, whole):
        seen["scenes"] = [s.name for s in scenes]
        res = [talk.RenderResult(s, True, 1.0, Path(f"{s.name}.mp4"), Path("x.log"),
                                 2.0, 1.0) for s in scenes]  # fmt: skip
        return res, 3.0, 0

    calls = []
    monkeypatch.setattr(talk, "render_selected", render_selected)
    monkeypatch.setattr(talk, "join_videos", lambda v, out: calls.append(("deep", v)))
    monkeypatch.setattr(cut, "finish", lambda r, q, w: calls.append(("cut", r, q, w)))
    monkeypatch.setattr(cut, "facts", lambda: calls.append(("facts",)))
    assert talk.main(["--with-cut", "--quality", "low"]) == 0
    assert seen["scenes"] == [s.name for s in talk.TALK] + [c.name for c in cut.CUT]
    assert calls[0] == ("facts",)  # read while the scenes rendered
    assert calls[1] == ("deep", [Path(f"{s.name}.mp4") for s in talk.TALK])
    kind, results, quality, wall = calls[2]
    assert kind == "cut" and quality == "low" and wall == 3.0
    assert [r.scene.name for r in results] == [c.name for c in cut.CUT]


def test_high_quality_starts_the_costliest_1080p_renders_first(monkeypatch):
    """At 1080p60 the order follows each render's cost there (a talk clip costs
    about ten times its 480p figure, a deep-dive scene about five), not the 480p
    order; x264 gets one thread per render while the renders fill every core."""
    import os
    from pathlib import Path

    import flashanim.cut as cut
    import flashanim.talk as talk
    from flashanim.engine.fastrender import THREADS_ENV

    scenes = list(talk.TALK) + [c.scene for c in cut.CUT]
    assert all(s.cost_high is not None for s in scenes)
    started, threads = [], []

    def fake(scene, quality, root, extra, server=None):
        started.append(scene.name)
        threads.append(os.environ.get(THREADS_ENV))
        return talk.RenderResult(scene, True, 1.0, Path.cwd() / "x.mp4", Path("x.log"))

    monkeypatch.setattr(talk, "_render_one", fake)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    talk.render_scenes(scenes, "high", jobs=1, fork=False)
    by_high = [s.name for s in sorted(scenes, key=lambda s: -s.cost_high)]
    by_low = [s.name for s in sorted(scenes, key=lambda s: -s.cost)]
    assert started == by_high != by_low
    assert threads == [None] * len(scenes)  # one job on two cores: x264 decides
    started.clear(), threads.clear()
    talk.render_scenes(scenes[:3], "high", jobs=2, fork=False)
    assert threads == ["1"] * 3 and THREADS_ENV not in os.environ


def test_x264_threads_from_the_environment():
    from flashanim.engine.fastrender import THREADS_ENV, x264_threads

    assert x264_threads({}) is None
    assert x264_threads({THREADS_ENV: " 1 "}) == "1"
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(ValueError, match="whole number"):
            x264_threads({THREADS_ENV: bad})
