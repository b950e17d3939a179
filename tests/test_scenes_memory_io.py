"""The memory-hierarchy and IO-complexity scenes: data, presets, renders, key frames.

The IO scene's traffic points must be exactly what its recorded traces moved; the
benchmark part reads a synthetic JSON written here (a TEST FIXTURE, never shown as
a measurement). Both scenes render at a tiny size; their last frames are compared
with control frames under ``tests/control_frames/`` (regenerate with
``FLASHANIM_UPDATE_FRAMES=1``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from _scene_harness import check_footer, check_record, recorded

from flashanim.config import ConfigError
from flashanim.hardware import PRESETS, get_preset, preset_from_env
from flashanim.trace import hbm_traffic

ROOT = Path(__file__).resolve().parents[1]
CONTROL = Path(__file__).with_name("control_frames")


def _scene_module(name: str):
    spec = importlib.util.spec_from_file_location(
        f"_scene_{name}", ROOT / "scenes" / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def write_fixture_bench(folder: Path) -> Path:
    """A small SYNTHETIC benchmark JSON in the schema of bench/bench_attention.py."""
    grid = []
    for n in (512, 1024, 2048, 4096):
        for impl, c in (("ours", 1.0), ("flash", 1.1), ("math", 4.0)):
            for mode in ("fwd", "bwd"):
                ms = c * 1e-3 * n * (2.5 if mode == "bwd" else 1)
                grid.append(
                    dict(
                        dtype="fp16",
                        d=64,
                        causal=False,
                        n=n,
                        b=16384 // n,
                        h=32,
                        impl=impl,
                        mode=mode,
                        ms=ms,
                        tflops=1.0,
                    )
                )
    memory = [
        dict(
            n=1024 * 2**i,
            b=1,
            h=16,
            d=64,
            dtype="float16",
            ours_mib=6.0 * 2**i,
            math_mib=None if i >= 3 else 64.0 * 4**i,
            **({"math_oom": True} if i == 3 else {}),
        )
        for i in range(5)
    ]
    data = {
        "device": {
            "gpu": "TEST FIXTURE (synthetic)",
            "driver": "0",
            "torch": "0",
            "triton": "0",
            "date": "2000-01-01T00:00:00+00:00",
        },
        "grid": grid,
        "memory": memory,
    }
    path = folder / "bench_fixture.json"
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------- presets


def test_presets_validate():
    assert preset_from_env({}).key == "a100"  # the paper's, by default
    a = get_preset("A100")
    # Exactly the paper's Figure 1 (as seed 001 quotes it).
    assert (a.sram.bandwidth, a.sram.capacity) == (19e12, 20e6)
    assert (a.hbm.bandwidth, a.hbm.capacity) == (1.5e12, 40e9)
    assert (a.dram.bandwidth, a.dram.capacity_label) == (12.8e9, "> 1 TB")
    for p in PRESETS.values():
        assert all(lv.source for lv in p.levels)
        assert p.sram.bandwidth > p.hbm.bandwidth > p.dram.bandwidth
        assert p.sram.capacity < p.hbm.capacity < p.dram.capacity
    assert get_preset("h200").hbm.capacity == 141e9


@pytest.mark.parametrize("bad", ["v100", "", "h100 pcie"])
def test_unknown_gpu_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="FLASHANIM_GPU.*a100, h100, h200"):
        get_preset(bad) if bad else get_preset("nope")
    with pytest.raises(ConfigError):
        preset_from_env({"FLASHANIM_GPU": bad or "x"})


def test_missing_bench_is_a_clear_error(tmp_path):
    io = _scene_module("io_complexity")
    with pytest.raises(FileNotFoundError, match="make bench"):
        io.find_bench({"FLASHANIM_BENCH": str(tmp_path)})
    assert io.find_bench({"FLASHANIM_BENCH": str(write_fixture_bench(tmp_path))})
    bad = tmp_path / "bench_bad.json"
    bad.write_text(json.dumps({"device": {"gpu": "x"}}))
    with pytest.raises(ValueError, match="date"):
        io.load_bench(bad)


# ---------------------------------------------------------------------- renders


def _render(scene_cls, tmp_path):
    from manim import tempconfig

    with tempconfig(
        {
            "quality": "low_quality",
            "pixel_width": 426,
            "pixel_height": 240,
            "frame_rate": 10,
            "media_dir": str(tmp_path / "media"),
            "disable_caching": True,
            "progress_bar": "none",
            "verbosity": "WARNING",
        }
    ):
        scene = recorded(scene_cls)()
        scene.render()
        frame = np.asarray(scene.renderer.get_frame())[..., :3].copy()
    return scene, frame


def _compare(frame: np.ndarray, name: str) -> None:
    """Mean absolute difference against the stored control frame (0..255)."""
    from PIL import Image

    path = CONTROL / f"{name}.png"
    if os.environ.get("FLASHANIM_UPDATE_FRAMES") == "1" or not path.exists():
        if os.environ.get("FLASHANIM_UPDATE_FRAMES") != "1":
            pytest.fail(f"no control frame {path}; run with FLASHANIM_UPDATE_FRAMES=1")
        CONTROL.mkdir(exist_ok=True)
        Image.fromarray(frame).save(path)
        return
    ref = np.asarray(Image.open(path).convert("RGB"))
    assert ref.shape == frame.shape, f"{name}: frame size changed"
    diff = np.abs(ref.astype(int) - frame.astype(int)).mean()
    assert diff < 2.0, f"{name}: last frame differs from control (mean |Δ| {diff:.2f})"


@pytest.mark.render
def test_memory_hierarchy_renders(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASHANIM_GPU", raising=False)
    monkeypatch.delenv("FLASHANIM_THEME", raising=False)
    mod = _scene_module("memory_hierarchy")
    scene, frame = _render(mod.MemoryHierarchyScene, tmp_path)
    assert scene.gpu.key == "a100"
    # "O and LSE are written" (FLASH_DONE): both writes are drawn, one block per
    # program, into their own HBM boxes
    o, lse = scene.tensors["O_blocks"], scene.tensors["LSE_blocks"]
    assert len(o) == len(lse) == mod.Q_BLOCKS
    assert "LSE are written" in mod.FLASH_DONE
    box = scene.tensors["LSE"][0]
    for b in lse:
        assert box.get_left()[0] - 1e-6 <= b.get_center()[0] <= box.get_right()[0]
        assert box.get_bottom()[1] - 1e-6 <= b.get_center()[1] <= box.get_top()[1]
    assert scene.footers  # the hardware figures' source
    for f in scene.footers:
        check_footer(f, scene.theme, above=scene.captions.mob)
    check_record(scene, [], tmp_path)  # captions reach the SRT
    _compare(frame, "memory_hierarchy_last")


@pytest.mark.render
def test_io_complexity_renders_measured_points(tmp_path, monkeypatch):
    monkeypatch.setenv("FLASHANIM_BENCH", str(write_fixture_bench(tmp_path)))
    monkeypatch.setenv("FLASHANIM_IO_NS", "128,256")  # 128: outside Theorem 2
    monkeypatch.delenv("FLASHANIM_THEME", raising=False)
    mod = _scene_module("io_complexity")
    scene, frame = _render(mod.IOComplexityScene, tmp_path)

    # Every plotted traffic point is the hbm_traffic of a trace recorded in the run.
    chart = scene.charts["traffic"]
    for kind, kernel in (("standard", "standard"), ("flash", "fa2-fwd")):
        plotted = chart.series[kind].data_points_xy
        assert [n for n, _ in plotted] == [128, 256]
        for n, b in plotted:
            tr = scene.traces[(kind, n)]
            assert (tr.meta.kernel, tr.meta.seq_len_q, tr.meta.values) == (
                kernel,
                n,
                False,
            )
            assert b == sum(hbm_traffic(tr).values())
        # The theory curve is scaled to meet the measured point at the largest N;
        # FlashAttention's only where Theorem 2 holds (M <= N d: not N = 128).
        theory = chart.series[f"{kind}-theory"].data_points_xy
        assert theory[-1][1] == pytest.approx(plotted[-1][1])
        assert [n for n, _ in theory] == ([128, 256] if kind == "standard" else [256])
    assert scene.measured["standard"][-1][1] > scene.measured["flash"][-1][1]
    # The runtime chart plots the fixture's rows, nothing else.
    rt = scene.charts["runtime"].series["ours"].data_points_xy
    assert [n for n, _ in rt] == [512, 1024, 2048, 4096]
    assert len(scene.footers) == 3  # traffic, runtime, memory
    for f in scene.footers:
        check_footer(f, scene.theme, above=scene.captions.mob)
    check_record(scene, [], tmp_path)  # captions reach the SRT
    _compare(frame, "io_complexity_last")
