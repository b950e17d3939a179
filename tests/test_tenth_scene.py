"""The worked example of ARCHITECTURE.md (examples/tenth_scene.py) is a whole scene:
it plays exactly the trace's loads and stores and its record carries them."""

from __future__ import annotations

import importlib.util
import sys

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
from _scene_harness import ROOT, check_record, recorded


def test_tenth_scene_plays_the_traces_memory_events(tmp_path, monkeypatch):
    from manim import tempconfig

    path = ROOT / "examples" / "tenth_scene.py"
    spec = importlib.util.spec_from_file_location("_tenth_scene", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_tenth_scene", module)
    spec.loader.exec_module(module)
    for var in [
        v for v in list(__import__("os").environ) if v.startswith("FLASHANIM_")
    ]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("FLASHANIM_SEQ_LEN", "8")
    with tempconfig({"pixel_width": 192, "pixel_height": 108, "frame_rate": 5,
                     "media_dir": str(tmp_path), "disable_caching": True,
                     "progress_bar": "none", "verbosity": "WARNING"}):  # fmt: skip
        scene = recorded(module.TrafficScene)()
        scene.render()
    played = scene.player.played_events
    assert [e.key() for e in played] == [
        e.key() for e in scene.trace.events if e.is_memory
    ]
    cues = check_record(scene, played, tmp_path)
    assert "equal to the trace's HBM traffic" in cues[-1].text
    assert list(tmp_path.rglob("*.mp4"))
