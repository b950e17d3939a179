"""Shared helpers for scene tests: a small render, section-end frames, control frames.

``render_probe(module, cls, env)`` renders a scene at a tiny size with the given
``FLASHANIM_*`` environment, and returns the scene object (so tests can read what it
played, e.g. ``scene.player.played_events``), the last frame of every section (by
section name) and the movies written. The scene renders with the render record of
``flashanim render`` (:func:`recorded`); ``check_record(scene, played)`` holds that
record (the SRT/VTT captions' source) to what the scene played and said. ``compare_control(prefix, frames)`` checks each
frame against ``tests/control_frames/<prefix>_<section>.npz`` (mean absolute
difference at most :data:`TOLERANCE` per channel); ``FLASHANIM_UPDATE_CONTROL=1``
rewrites them.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTROL = Path(__file__).parent / "control_frames"
UPDATE = os.environ.get("FLASHANIM_UPDATE_CONTROL") == "1"
#: Mean absolute difference (0..255 per channel) a frame may drift from its control.
TOLERANCE = 2.0

__all__ = ["ROOT", "CONTROL", "TOLERANCE", "scene_class", "render_probe",
           "compare_control", "recorded", "check_record",
           "check_footer"]  # fmt: skip


def scene_class(module: str, cls: str):
    """Import ``scenes/<module>.py`` and return its class ``cls``."""
    sys.path.insert(0, str(ROOT / "scenes"))
    try:
        mod = importlib.import_module(module)
    finally:
        sys.path.pop(0)
    return getattr(mod, cls)


def recorded(base: type) -> type:
    """``base`` with the render record of ``flashanim render`` (its ``play`` and
    ``next_section`` hooks), as :func:`flashanim._scene_hooks.wrap_scene` makes it."""
    from flashanim._scene_hooks import _Recorder

    return type(base.__name__, (_Recorder, base), {"__module__": base.__module__})


def check_record(scene, played, tmp_path: Path) -> list:
    """The scene's render record holds exactly the events ``played`` (in order) and
    every caption it showed; the SRT written from it says them. Returns the cues."""
    from flashanim.captions import cues_from_record, write_srt

    rec = scene._fa_record()
    rec["duration"] = float(scene.renderer.time)
    got = [(e["index"], e["op"], e["program"]) for p in rec["plays"]
           for e in p["events"]]  # fmt: skip
    assert got == [(e.index, e.op, e.program) for e in played]
    captions = [p["caption"] for p in rec["plays"] if p["caption"]]
    assert captions, "the scene showed no caption"
    cues = cues_from_record(rec)
    srt = write_srt(cues, tmp_path / "captions.srt")
    text = Path(srt).read_text(encoding="utf-8")
    for c in captions:
        assert c in text
    assert len(cues) >= len(captions) + (1 if played else 0)
    return cues


def check_footer(footer, theme, above=None) -> None:
    """A source footer is readable: every line of it at least the theme's
    ``footer_size`` (never scaled below it), inside the frame, and wholly below
    ``above`` (the caption over it), if given."""
    from manim import config

    lines = [m for m in footer.get_family() if hasattr(m, "font_size")
             and hasattr(m, "text")]  # fmt: skip
    assert lines, "no text in the footer"
    for t in lines:
        assert t.font_size >= theme.footer_size - 1e-6, (
            f"footer line {t.text!r} at font size {t.font_size:.1f} "
            f"< {theme.footer_size}"
        )
    w, h = config.frame_width / 2, config.frame_height / 2
    assert footer.get_left()[0] >= -w and footer.get_right()[0] <= w
    assert footer.get_bottom()[1] >= -h and footer.get_top()[1] <= h
    if above is not None:
        assert footer.get_top()[1] < above.get_bottom()[1], "footer under caption"


def render_probe(module: str, cls: str, env: dict[str, str], media: Path,
                 size: tuple[int, int] = (192, 108), fps: int = 5):  # fmt: skip
    """Render ``scenes/<module>.py:<cls>`` small; return ``(scene, frames, movies)``.

    ``frames`` maps each section's name to its last frame (RGB, uint8).
    """
    from manim import tempconfig

    mp = pytest.MonkeyPatch()
    for var in [v for v in os.environ if v.startswith("FLASHANIM_")]:
        mp.delenv(var)
    for k, v in env.items():
        mp.setenv(k, v)
    base = scene_class(module, cls)
    frames: dict[str, np.ndarray] = {}

    class Probe(recorded(base)):
        def next_section(self, name: str = "unnamed", *args, **kwargs) -> None:
            if getattr(self, "_probe_section", None) is not None:
                frames[self._probe_section] = self.renderer.get_frame()[..., :3].copy()
            self._probe_section = name
            super().next_section(name, *args, **kwargs)

    opts = {
        "pixel_width": size[0],
        "pixel_height": size[1],
        "frame_rate": fps,
        "media_dir": str(media),
        "disable_caching": True,
        "progress_bar": "none",
        "verbosity": "WARNING",
        "output_file": f"{cls}Probe",
    }
    try:
        with tempconfig(opts):
            scene = Probe()
            scene.render()
            frames[scene._probe_section] = scene.renderer.get_frame()[..., :3].copy()
    finally:
        mp.undo()
    return scene, frames, sorted(Path(media).rglob("*.mp4"))


def compare_control(prefix: str, frames: dict[str, np.ndarray]) -> None:
    """Each frame against its stored control frame (or rewrite them on request)."""
    CONTROL.mkdir(exist_ok=True)
    missing = []
    for name, frame in frames.items():
        slug = name.replace(" ", "_").replace("/", "").replace("-", "_")
        path = CONTROL / f"{prefix}_{slug}.npz"
        if UPDATE:
            np.savez_compressed(path, frame=frame)
            continue
        if not path.exists():
            missing.append(path.name)
            continue
        control = np.load(path)["frame"]
        assert control.shape == frame.shape, f"{path.name}: shape changed"
        diff = np.abs(control.astype(np.int16) - frame.astype(np.int16)).mean()
        assert diff <= TOLERANCE, (
            f"{path.name}: frame differs by {diff:.2f} > {TOLERANCE}"
        )
    if missing:
        pytest.fail(f"no control frames {missing}; render them with "
                    f"FLASHANIM_UPDATE_CONTROL=1 and look at them first")  # fmt: skip
