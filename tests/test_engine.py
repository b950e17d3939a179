"""The speed engine is behind one switch: nothing is patched at import, a scene
turns it on for its own render, other Manim scenes are untouched, and on a Manim
version it was not written for it stays off with one warning line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What the engine may replace while it is on (Manim's and Triton's own otherwise).
_SNAPSHOT = r"""
import json, os, pkgutil, importlib, sys
os.environ.setdefault("TRITON_INTERPRET", "1")
import manim
from manim import Mobject, VMobject, Scene, Camera, Text
from manim.scene import scene_file_writer
from manim.renderer.cairo_renderer import CairoRenderer
from triton.runtime import interpreter

def snap():
    out = {}
    for cls in (Mobject, VMobject, Scene, Camera, Text, CairoRenderer,
                scene_file_writer.SceneFileWriter,
                scene_file_writer._PartialMovieEncodeJob,
                interpreter.GridExecutor, interpreter.InterpretedFunction):
        for k, v in vars(cls).items():
            out[f"{cls.__name__}.{k}"] = id(v)
    for k, v in vars(interpreter).items():
        if callable(v):
            out[f"interpreter.{k}"] = id(v)
    out["text_dir"] = str(manim.config.text_dir)
    return out

before = snap()
import flashanim
import flashanim.kernels  # (kernels/, installed as flashanim.kernels)
names = []
for pkg in (flashanim, flashanim.kernels):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
        names.append(m.name)
after = snap()
print(json.dumps({"modules": names,
                  "changed": sorted(k for k in before if after.get(k) != before[k]),
                  "added": sorted(set(after) - set(before))}))
"""


def test_no_module_patches_manim_or_triton_at_import():
    out = subprocess.run([sys.executable, "-c", _SNAPSHOT], cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "flashanim.engine.fastrender" in got["modules"]
    assert "flashanim.kernels.fa2" in got["modules"]
    assert got["changed"] == [] and got["added"] == []


def _own_scene_result(scene_cls, tmp_path) -> dict:
    """Render ``scene_cls`` tiny; what its construct saw of Manim's internals."""
    from manim import tempconfig

    with tempconfig({"media_dir": str(tmp_path), "disable_caching": True,
                     "progress_bar": "none", "verbosity": "WARNING",
                     "pixel_width": 854, "pixel_height": 480,
                     "frame_rate": 5}):  # fmt: skip
        scene = scene_cls()
        scene.render()
    return scene.seen


def _scenes():
    from manim import Mobject, Scene, Square

    from flashanim.engine import FastRenderScene, cached_text, is_on

    def look(scene):
        scene.seen = {
            "engine": is_on(),
            "get_family": Mobject.get_family.__module__,
            "deepcopy": Mobject.__deepcopy__.__module__,
            # a composed text has its glyphs joined into one path; Manim's, three
            "glyphs": len(cached_text("1.5", "DejaVu Sans Mono", 17, "#FFF")),
        }
        scene.play(Square().animate.shift([1, 0, 0]), run_time=0.2)

    class Ours(FastRenderScene):
        def construct(self):
            look(self)

    class Theirs(Scene):  # a user's own scene
        def construct(self):
            look(self)

    return Ours, Theirs


def test_a_scene_turns_the_engine_on_for_itself(tmp_path):
    from manim import Mobject

    from flashanim.engine import _speedups

    ours_cls, theirs_cls = _scenes()
    ours = _own_scene_result(ours_cls, tmp_path / "a")
    assert ours["engine"] and ours["get_family"] == _speedups.__name__
    assert ours["glyphs"] == 1
    # after it: Manim's own again, and a user's scene in the same process sees it
    assert Mobject.get_family is _speedups.MANIM_GET_FAMILY
    theirs = _own_scene_result(theirs_cls, tmp_path / "b")
    assert not theirs["engine"]
    assert theirs["get_family"] == theirs["deepcopy"] == "manim.mobject.mobject"
    assert theirs["glyphs"] == 3  # Manim's own Text


def test_other_manim_version_falls_back_loudly_once(tmp_path, monkeypatch, caplog):
    from manim import Mobject

    from flashanim.engine import _speedups, versions

    monkeypatch.setattr(versions, "MANIM_SERIES", ("0.0",))
    monkeypatch.setitem(versions._SERIES, "manim", ("0.0",))
    monkeypatch.setattr(versions, "_warned", set())
    ours_cls, _ = _scenes()
    with caplog.at_level(logging.WARNING, logger="flashanim"):
        first = _own_scene_result(ours_cls, tmp_path / "a")
        second = _own_scene_result(ours_cls, tmp_path / "b")
    assert not first["engine"] and not second["engine"]
    assert first["get_family"] == "manim.mobject.mobject"
    assert first["glyphs"] == 3 and Mobject.get_family is _speedups.MANIM_GET_FAMILY
    lines = [r.getMessage() for r in caplog.records if "speed engine" in r.getMessage()]
    assert len(lines) == 1 and "manim" in lines[0] and "own code path" in lines[0]
    assert "\n" not in lines[0]


@pytest.mark.parametrize("package", ["manim", "triton"])
def test_installed_versions_are_the_ones_written_for(package):
    from flashanim.engine import versions

    assert versions.supported(package)
