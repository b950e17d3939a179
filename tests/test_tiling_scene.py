"""The tiling scene plays the real trace, renders, and looks as it did.

One small render (192x108 at 5 frames/s, N = 8 causal: every op, including masks)
is shared by the tests below:

1. the events the scene played equal the trace's events, in order;
2. the render finishes and writes a movie;
3. the last frame of each section matches the stored control frame
   (``tests/control_frames/*.npz``; regenerate with ``FLASHANIM_UPDATE_CONTROL=1``)
   and two renders of the same frame are identical;
4. bad configuration is refused before anything renders.
"""

from __future__ import annotations

import os
from pathlib import Path

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import numpy as np
import pytest
from _scene_harness import check_record, render_probe, scene_class

from flashanim.config import ConfigError, SceneConfig
from flashanim.trace import record
from flashanim.visuals import KernelSource

ROOT = Path(__file__).resolve().parents[1]
CONTROL = Path(__file__).parent / "control_frames"
UPDATE = os.environ.get("FLASHANIM_UPDATE_CONTROL") == "1"
#: Mean absolute difference (0..255 per channel) a frame may drift from its control.
TOLERANCE = 2.0

SMALL_ENV = {
    "FLASHANIM_SEQ_LEN": "8",
    "FLASHANIM_HEAD_DIM": "4",
    "FLASHANIM_BLOCK_M": "4",
    "FLASHANIM_BLOCK_N": "4",
    "FLASHANIM_CAUSAL": "1",
    "FLASHANIM_THEME": "dark",
    "FLASHANIM_SEED": "0",
}


def _scene_class():
    return scene_class("tiling", "TilingScene")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render the small scene once; keep its played events and section-end frames."""
    media = tmp_path_factory.mktemp("media")
    scene, frames, movies = render_probe("tiling", "TilingScene", SMALL_ENV, media)
    again = scene.renderer.get_frame()[..., :3].copy()
    return scene, frames, again, movies


def test_played_events_equal_trace(rendered):
    scene, *_ = rendered
    played = [e.key() for e in scene.player.played_events]
    expected = [e.key() for e in scene.trace.events if e.bh == 0]
    assert played == expected
    assert len(played) == len(scene.trace.events)  # one head: every event


def test_render_writes_movie(rendered):
    _, frames, _, movies = rendered
    assert movies, "no movie written"
    assert max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["setup", "load Q", "stream K-V", "write O",
                            "other programs", "check"]  # fmt: skip


def test_section_frames_match_controls(rendered):
    _, frames, again, _ = rendered
    assert np.array_equal(frames["check"], again)
    CONTROL.mkdir(exist_ok=True)
    for name, frame in frames.items():
        path = CONTROL / f"tiling_{name.replace(' ', '_').replace('/', '')}.npz"
        if UPDATE or not path.exists():
            if not UPDATE:
                pytest.skip(f"no control frame {path.name}; run with "
                            f"FLASHANIM_UPDATE_CONTROL=1")  # fmt: skip
            np.savez_compressed(path, frame=frame)
            continue
        control = np.load(path)["frame"]
        assert control.shape == frame.shape
        diff = np.abs(control.astype(np.int16) - frame.astype(np.int16)).mean()
        assert diff <= TOLERANCE, f"section {name!r} drifted: mean |diff| {diff:.2f}"


def test_every_op_maps_to_a_kernel_line():
    src = KernelSource.from_kernel("fa2")
    for kw in ({"seq_len": 8, "causal": True}, {"seq_len": 6, "causal": False}):
        trace = record("fa2-fwd", head_dim=4, block_m=4, block_n=4, values=False, **kw)
        for op, tensor in {(e.op, e.tensor) for e in trace.events}:
            line = src.line_for(op, tensor)
            assert line is not None, f"no source line for {op} {tensor}"
            assert "trace_" not in line.text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLASHANIM_THEME": "neon"}, "dark, light"),
        ({"FLASHANIM_BLOCK_M": "3"}, "power of two"),
        (
            {"FLASHANIM_SEQ_LEN": "8", "FLASHANIM_BLOCK_N": "16"},
            "larger than the sequence",
        ),
        ({"FLASHANIM_SEQ_LEN": "4096"}, "between 1 and 64"),
        ({"FLASHANIM_HEAD_DIM": "four"}, "not an integer"),
        ({"FLASHANIM_CAUSAL": "maybe"}, "true/false"),
        ({"FLASHANIM_TRACE": "/nonexistent/trace.json"}, "no such file"),
    ],
)
def test_bad_config_is_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        SceneConfig.from_env(env)


def test_bad_config_fails_before_rendering(monkeypatch, tmp_path):
    from manim import tempconfig

    monkeypatch.setenv("FLASHANIM_THEME", "neon")
    with tempconfig({"media_dir": str(tmp_path), "progress_bar": "none",
                     "verbosity": "WARNING"}):  # fmt: skip
        scene = _scene_class()()
        with pytest.raises(ConfigError, match="unknown theme"):
            scene.render()
    assert not list(tmp_path.rglob("*.mp4"))


def test_defaults():
    cfg = SceneConfig.from_env({})
    assert (cfg.seq_len, cfg.head_dim, cfg.block_m, cfg.block_n) == (16, 4, 4, 4)
    assert cfg.theme == "dark" and cfg.numbers and not cfg.causal
    assert not SceneConfig(seq_len=64, head_dim=16, block_m=16, block_n=16).numbers


def test_render_record_carries_events_and_captions(rendered, tmp_path):
    scene, *_ = rendered
    cues = check_record(scene, scene.player.played_events, tmp_path)
    assert any("load Q block 0 from HBM" in c.text for c in cues)
