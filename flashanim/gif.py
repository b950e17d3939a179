"""Small GIFs of rendered scenes: a global palette, changed regions only.

Manim's own GIF writer (``--format gif``) dithers every frame in full and is far too
large for a README (about 9x an 8 MB budget at 480p). ``flashanim render --format
gif`` instead renders the scene through Manim as an MP4 (so section clips, posters
and captions are made exactly as for ``--format mp4``), captures every frame Manim
writes into a lossless side video (:func:`capture_frames`; H.264 RGB at ``qp=0``,
so the GIF is made from the exact frames, without MP4 compression noise), and then
:func:`make_gif` converts that video:

- one global palette of :data:`COLORS` colours (median cut over frames sampled
  across the whole scene), plus one transparent index; no dithering, so flat areas
  stay flat and compress well;
- while a pixel is moving, it is redrawn only when its new colour is more than
  ``tolerance`` away from the colour it shows (fades and moving anti-aliased edges
  do not rewrite the screen for invisible differences); once it stands still for a
  frame it shows its exact palette colour, so nothing is left behind;
- frames that change nothing are dropped and their time added to the frame before;
- each kept frame stores only the bounding box of the changed pixels, with unchanged
  pixels in it transparent (long LZW runs), on top of the previous frame (disposal 1).

The GIF is written to a temporary file next to its destination and moved into place
with :func:`os.replace`: a failure leaves an earlier file as it was.

Examples
--------
>>> make_gif("TilingScene.mp4", "TilingScene.gif")  # doctest: +SKIP
GifStats(frames=1027, kept=401, ...)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "COLORS",
    "TOLERANCE",
    "GifStats",
    "make_gif",
    "capture_frames",
    "CAPTURE_ENV",
]

#: Colours of the global palette (one more index is kept for transparency).
COLORS = 255
#: A moving pixel is redrawn when its colour is more than this far (max over R, G,
#: B, 0..255) from what the GIF shows there; a still one always shows its palette
#: colour. (Lossy input, e.g. an MP4, is never quite still: there the tolerance
#: is all that keeps compression noise out, and the GIF grows.)
TOLERANCE = 12
#: Environment variable naming the lossless side video :func:`capture_frames`
#: writes (set by ``flashanim render --format gif`` for the Manim child).
CAPTURE_ENV = "FLASHANIM_CAPTURE_FRAMES"

_LUT_BITS = 6  # bits per channel of the colour -> palette-index table
_PALETTE_SAMPLES = 48  # frames sampled across the video for the palette


@dataclass(frozen=True)
class GifStats:
    """What :func:`make_gif` wrote: frames in the video, frames kept in the GIF
    (the others changed nothing), the size in bytes, and the frame rate."""

    frames: int
    kept: int
    nbytes: int
    fps: float


def _frames(video: Path) -> Iterator[np.ndarray]:
    """Every frame of ``video`` as RGB ``uint8`` (H, W, 3)."""
    import av

    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _video_info(video: Path) -> tuple[int, float]:
    """Frame count (decoded, exact) and frame rate of ``video``."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        n = sum(1 for _ in container.decode(stream))
    if not n:
        raise RuntimeError(f"{video} has no frames")
    return n, float(rate) if rate else 10.0


def _palette(video: Path, n: int, colors: int) -> np.ndarray:
    """``colors`` RGB colours by median cut over frames sampled evenly, each
    distinct colour weighted by the square root of its pixel count (so that a
    small tile of a rare colour is not lost to the background)."""
    from PIL import Image

    want = set(np.linspace(0, n - 1, min(n, _PALETTE_SAMPLES)).round().astype(int))
    packed = np.concatenate(
        [
            (f.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)).ravel()
            for k, f in enumerate(_frames(video))
            if k in want
        ]
    )
    unique, counts = np.unique(packed, return_counts=True)
    weighted = np.repeat(unique, np.ceil(np.sqrt(counts)).astype(np.int64))
    rgb = np.stack([(weighted >> s) & 255 for s in (16, 8, 0)], -1).astype(np.uint8)
    q = Image.fromarray(rgb[None]).quantize(
        colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    return np.asarray(q.getpalette()[: 3 * colors], dtype=np.uint8).reshape(-1, 3)


def _lookup_table(pal: np.ndarray) -> np.ndarray:
    """Nearest palette index for every colour at :data:`_LUT_BITS` bits/channel."""
    n = 1 << _LUT_BITS
    step = 256 // n
    levels = (np.arange(n) * step + step // 2).astype(np.int32)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    p = pal.astype(np.int32)
    out = np.empty(len(grid), np.uint8)
    for i in range(0, len(grid), 4096):
        d = ((grid[i : i + 4096, None, :] - p[None]) ** 2).sum(-1)
        out[i : i + 4096] = d.argmin(1)
    return out.reshape(n, n, n)


def _header(width: int, height: int, table: np.ndarray) -> bytes:
    """GIF89a header, global colour table and a loop-forever extension."""
    bits = int(np.log2(len(table)))
    screen = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    packed = 0x80 | ((bits - 1) << 4) | (bits - 1)
    loop = b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    return b"GIF89a" + screen + bytes([packed, 0, 0]) + table.tobytes() + loop


def make_gif(
    video: str | os.PathLike,
    gif: str | os.PathLike,
    *,
    colors: int = COLORS,
    tolerance: int = TOLERANCE,
) -> GifStats:
    """Convert ``video`` (every frame, at its own frame rate) into ``gif``.

    Parameters
    ----------
    video
        Any video PyAV reads; best the lossless capture of :func:`capture_frames`.
    gif
        Destination; written to a temporary file beside it, then moved into place.
    colors
        Palette size, 2 to 255 (one more index is used for transparency).
    tolerance
        Redraw a pixel only when it moved more than this from what the GIF shows.
    """
    from PIL import GifImagePlugin, Image

    if not 2 <= colors <= 255:
        raise ValueError(f"colors must be between 2 and 255, got {colors}")
    video, gif = Path(video), Path(gif)
    n, fps = _video_info(video)
    pal = _palette(video, n, colors)
    lut = _lookup_table(pal)
    shift = 8 - _LUT_BITS
    clear = len(pal)  # the transparent index
    size = 1 << max(1, int(np.ceil(np.log2(clear + 1))))
    table = np.zeros((size, 3), np.uint8)
    table[: len(pal)] = pal
    table_list = table.ravel().tolist()
    shown_rgb = pal.astype(np.int16)

    tmp = gif.with_name(f".{gif.name}.{os.getpid()}.partial")
    kept = 0
    try:
        with open(tmp, "wb") as fh:
            shown: np.ndarray | None = None  # palette indices on screen
            rgb_prev: np.ndarray | None = None
            pending: tuple[np.ndarray, tuple[int, int], bool] | None = None
            start = end = 0  # centiseconds of the pending frame

            def emit(data, offset, transparent, duration_cs):
                im = Image.fromarray(data, "P")
                im.putpalette(table_list)
                params = {"duration": duration_cs * 10, "disposal": 1}
                if transparent:
                    params["transparency"] = clear
                for chunk in GifImagePlugin.getdata(im, offset, **params):
                    fh.write(chunk)

            for k, rgb in enumerate(_frames(video)):
                target = lut[rgb[..., 0] >> shift, rgb[..., 1] >> shift,
                             rgb[..., 2] >> shift]  # fmt: skip
                t_end = round((k + 1) * 100 / fps)
                previous, rgb_prev = rgb_prev, rgb
                if shown is None:
                    h, w = target.shape
                    fh.write(_header(w, h, table))
                    shown, pending, start, end = (
                        target,
                        (target, (0, 0), False),
                        0,
                        t_end,
                    )
                    continue
                far = np.abs(rgb.astype(np.int16) - shown_rgb[shown]).max(-1)
                # settled pixels (as in the frame before) show their exact colour
                still = (rgb == previous).all(-1)
                changed = (target != shown) & ((far > tolerance) | still)
                if not changed.any():
                    end = t_end  # nothing new: the pending frame lasts longer
                    continue
                emit(*pending, end - start)
                kept += 1
                ys = np.flatnonzero(changed.any(1))
                xs = np.flatnonzero(changed.any(0))
                y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
                box = changed[y0:y1, x0:x1]
                patch = np.where(box, target[y0:y1, x0:x1], clear).astype(np.uint8)
                shown = shown.copy()
                shown[y0:y1, x0:x1][box] = target[y0:y1, x0:x1][box]
                pending = (patch, (int(x0), int(y0)), True)
                start, end = end, t_end
            if pending is None:
                raise RuntimeError(f"{video} has no frames")
            emit(*pending, max(end - start, 1))
            kept += 1
            fh.write(b";")
        nbytes = tmp.stat().st_size
        os.replace(tmp, gif)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return GifStats(frames=n, kept=kept, nbytes=nbytes, fps=fps)


# ------------------------------------------------------------- frame capture


def capture_frames(path: str | os.PathLike) -> None:
    """In this (Manim) process, also write every frame Manim writes into ``path``,
    losslessly (H.264 RGB, ``qp=0``), at Manim's frame rate; the file is closed
    when Manim finishes the scene."""
    import av
    from manim import config
    from manim.scene.scene_file_writer import SceneFileWriter

    if getattr(SceneFileWriter.write_frame, "_flashanim_capture", False):
        return
    write_frame, finish = SceneFileWriter.write_frame, SceneFileWriter.finish
    state: dict = {}

    def stream(width: int, height: int):
        if "stream" not in state:
            from manim.scene.scene_file_writer import to_av_frame_rate

            container = av.open(str(path), mode="w", format="matroska")
            s = container.add_stream(
                "libx264rgb",
                rate=to_av_frame_rate(config.frame_rate),
                options={"qp": "0", "preset": "ultrafast"},
            )
            s.width, s.height, s.pix_fmt = width, height, "rgb24"
            state.update(container=container, stream=s)
        return state["stream"]

    def captured_write_frame(self, frame_or_renderer, num_frames: int = 1) -> None:
        write_frame(self, frame_or_renderer, num_frames)
        frame = frame_or_renderer
        if not isinstance(frame, np.ndarray):
            frame = frame.get_frame()
        rgb = np.ascontiguousarray(frame[..., :3])
        s = stream(rgb.shape[1], rgb.shape[0])
        for _ in range(num_frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in s.encode(vf):
                state["container"].mux(packet)

    def captured_finish(self) -> None:
        finish(self)
        if "stream" in state:
            for packet in state["stream"].encode():
                state["container"].mux(packet)
            state.pop("container").close()
            state.pop("stream")

    captured_write_frame._flashanim_capture = True
    SceneFileWriter.write_frame = captured_write_frame
    SceneFileWriter.finish = captured_finish
