"""What ``flashanim render`` hands over: small GIFs, the same frames every time,
4:3 frames with nothing cut off, real alpha in transparent PNG/WebM/MOV, and a slide
deck of several scenes.

:func:`flashanim.gif.make_gif` is checked on a synthetic video (no Manim). The
render-marked tests render tiny configurations from a saved trace (N = 4, d = 2,
2x2 blocks) at 128x72 or 128x96 and 4 frames/s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from flashanim.cli import main
from flashanim.gif import make_gif
from flashanim.render import GIF_BUDGET_BYTES, decode_frames

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--resolution", "128x72", "--fps", "4"]
#: Pixel size of the budget: ``--quality low`` (480p).
BUDGET_PIXELS = 854 * 480


def _write_lossless(path: Path, frames: list[np.ndarray], fps: int) -> None:
    import av

    with av.open(str(path), "w", format="matroska") as container:
        s = container.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "rgb24"
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in s.encode():
            container.mux(packet)


def _synthetic(n: int = 30) -> list[np.ndarray]:
    """A square moving over a two-colour background, still for a while at the end."""
    frames = []
    for k in range(n):
        f = np.zeros((48, 64, 3), np.uint8)
        f[:, :32] = (20, 30, 40)
        f[:, 32:] = (200, 180, 40)
        x = min(k, n // 2) * 2
        f[10:20, x : x + 10] = (60, 140, 230)
        frames.append(f)
    return frames


def _gif_timeline(path: Path) -> list[tuple[np.ndarray, int]]:
    """The GIF's frames as shown (RGB) with their durations in ms."""
    from PIL import Image

    out = []
    with Image.open(path) as im:
        for k in range(im.n_frames):
            im.seek(k)
            out.append((np.asarray(im.convert("RGB")), im.info["duration"]))
    return out


def test_make_gif_keeps_changes_merges_still_frames(tmp_path):
    fps = 10
    frames = _synthetic()
    video = tmp_path / "v.mkv"
    _write_lossless(video, frames, fps)
    gif = tmp_path / "v.gif"
    stats = make_gif(video, gif)
    assert stats.frames == len(frames) and stats.fps == fps
    assert stats.nbytes == gif.stat().st_size

    distinct = 1 + sum(
        not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False)
    )
    shown = _gif_timeline(gif)
    assert stats.kept == len(shown) == distinct < len(frames)
    assert sum(d for _, d in shown) == len(frames) * 1000 // fps
    # frame by frame, the GIF shows the video (few colours: exact)
    t = 0
    for img, duration in shown:
        k = t * fps // 1000
        assert np.array_equal(img, frames[k]), k
        t += duration
    # later frames store only the changed box: the moving square, not the screen
    assert stats.nbytes < 2 * len(frames) * 10 * 12 + 2000


def test_make_gif_failure_keeps_earlier_file(tmp_path):
    gif = tmp_path / "v.gif"
    gif.write_bytes(b"an earlier good GIF")
    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"not a video")
    with pytest.raises(Exception):  # noqa: B017  (PyAV's own error types)
        make_gif(bad, gif)
    assert gif.read_bytes() == b"an earlier good GIF"
    assert [p.name for p in tmp_path.iterdir()] != [] and not [
        p for p in tmp_path.iterdir() if p.name.endswith(".partial")
    ]
    with pytest.raises(ValueError, match="colors"):
        make_gif(bad, gif, colors=300)


# ----------------------------------------------------------------- real renders


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    import flashanim.kernels  # noqa: F401  (chooses the device first)

    from flashanim.trace import record, save_trace

    trace = record("fa2-fwd", seq_len=4, head_dim=2, block_m=2, block_n=2, values=True)
    return save_trace(trace, tmp_path_factory.mktemp("trace") / "t.json")


def _render(out: Path, *argv: str) -> None:
    rc = main(["render", *argv, "-o", str(out)])
    logs = sorted((out / "logs").glob("*.log"))
    assert rc == 0, logs[0].read_text()[-3000:] if logs else rc


@pytest.mark.render
def test_gif_within_budget(trace_file, tmp_path, monkeypatch):
    """A GIF of the tiling scene at 214x120, 10 frames/s (the GIF default) stays
    within the budget scaled by pixel count (8 MiB at 854x480)."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "gif"
    _render(out, "tiling", "--trace", str(trace_file), "--format", "gif",
            "--resolution", "214x120", "--no-sections", "--no-captions")  # fmt: skip
    gif = out / "tiling" / "TilingScene.gif"
    size = gif.stat().st_size
    budget = GIF_BUDGET_BYTES * (214 * 120) / BUDGET_PIXELS
    print(f"GIF 214x120: {size / 1024:.0f} KiB (budget {budget / 1024:.0f} KiB)")
    assert 0 < size <= budget
    shown = _gif_timeline(gif)
    assert shown[0][0].shape == (120, 214, 3)
    # every duration a whole number of 10 frames/s steps; the total is the video's
    assert all(d % 100 == 0 for _, d in shown)
    assert not list(out.glob(".flashanim-render-*"))


@pytest.mark.render
def test_same_parameters_same_frames(trace_file, tmp_path, monkeypatch):
    """Two renders with the same parameters give the same frames, posters and
    captions (and the same MP4 bytes)."""
    monkeypatch.chdir(ROOT)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        _render(out, "tiling", "--trace", str(trace_file), *TINY)
    a, b = (o / "tiling" for o in outs)
    fa = list(decode_frames(a / "TilingScene.mp4"))
    fb = list(decode_frames(b / "TilingScene.mp4"))
    assert len(fa) == len(fb) > 0
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb, strict=True))
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    kinds = {Path(f).suffix for f in files}
    assert {".mp4", ".png", ".srt", ".vtt", ".json"} <= kinds
    for rel in files:  # posters, clips, captions, the record: byte for byte
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def _alpha_edges_clear(rgba: np.ndarray) -> bool:
    """No drawn pixel on the border: nothing reaches the frame's edge."""
    a = rgba[..., 3]
    return not (a[0].any() or a[-1].any() or a[:, 0].any() or a[:, -1].any())


@pytest.mark.render
def test_transparent_png_at_4_3(trace_file, tmp_path, monkeypatch):
    """PNG frames at 4:3 (128x96): RGBA, the background transparent, the drawing
    opaque, and nothing cut off (no drawn pixel on any edge, in any frame)."""
    from PIL import Image

    monkeypatch.chdir(ROOT)
    out = tmp_path / "png"
    _render(out, "tiling", "--trace", str(trace_file), "--format", "png",
            "--transparent", "--resolution", "128x96", "--fps", "2")  # fmt: skip
    scene = out / "tiling"
    frames = sorted((scene / "frames").glob("TilingScene_*.png"))
    assert len(frames) > 10
    poster = scene / "TilingScene.png"
    assert poster.read_bytes() == frames[-1].read_bytes()
    for path in frames:
        with Image.open(path) as im:
            assert (im.size, im.mode) == ((128, 96), "RGBA"), path.name
            rgba = np.asarray(im)
        assert _alpha_edges_clear(rgba), f"{path.name}: drawn up to the edge"
    alpha = rgba[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255
    # the 4:3 frame has room above and below the 16:9 layout: empty bands
    rows = np.flatnonzero(alpha.any(1))
    assert rows[0] >= 96 // 16 and rows[-1] < 96 - 96 // 16


@pytest.mark.render
def test_transparent_webm_and_mov(trace_file, tmp_path, monkeypatch):
    """WebM (VP9 with its alpha plane) and MOV (QuickTime RLE, ARGB): the right
    pixel size, a transparent background and opaque drawing; RGBA posters."""
    from PIL import Image

    monkeypatch.chdir(ROOT)
    for fmt in ("webm", "mov"):
        out = tmp_path / fmt
        _render(out, "tiling", "--trace", str(trace_file), "--format", fmt,
                "--transparent", *TINY, "--no-captions")  # fmt: skip
        scene = out / "tiling"
        frames = list(decode_frames(scene / f"TilingScene.{fmt}", alpha=True))
        assert frames and frames[0].shape == (72, 128, 4), fmt
        # (VP9's alpha plane is lossy: "transparent" may decode as 1 or 2)
        clear = 16 if fmt == "webm" else 1
        alpha = frames[-1][..., 3]
        assert alpha[0, 0] < clear and alpha.max() == 255, fmt
        clips = sorted((scene / "sections").glob(f"*.{fmt}"))
        assert clips, fmt
        for png in [scene / "TilingScene.png", *sorted(scene.glob("sections/*.png"))]:
            with Image.open(png) as im:
                assert (im.size, im.mode) == ((128, 72), "RGBA"), png.name
                lo, hi = im.getextrema()[3]
                assert lo < clear and hi == 255, png.name


@pytest.mark.render
def test_slides_deck_of_two_scenes(tmp_path, monkeypatch):
    """``flashanim slides A B``: one HTML deck, one slide per section of each scene,
    in the order given."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "deck"
    rc = main(["slides", "memory_hierarchy", "tiling", "--seq-len", "4",
               "--head-dim", "2", "--block-m", "2", "--block-n", "2", *TINY,
               "--no-captions", "-o", str(out)])  # fmt: skip
    assert rc == 0, sorted((out / "logs").glob("*.log"))
    sections = {}
    for name, cls in (("memory_hierarchy", "MemoryHierarchyScene"),
                      ("tiling", "TilingScene")):  # fmt: skip
        clips = sorted((out / name / "sections").glob("*.mp4"))
        slides = json.loads((out / name / f"{cls}.slides.json").read_text())
        assert len(slides["slides"]) == len(clips) > 1, name
        sections[name] = len(clips)
    html = (out / "flashanim_slides.html").read_text(encoding="utf-8")
    deck = len(re.findall(r"<section\s+data-background-size", html))
    assert deck == sum(sections.values())
    assert len(re.findall(r"data:video/mp4;base64,", html)) == sum(sections.values())
