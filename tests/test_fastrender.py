"""FastRenderScene draws exactly what Manim's own moving/still split draws.

``FastRenderScene`` (``flashanim/engine/fastrender.py``) redraws per frame only what
moves (and still mobjects above it that it meets), resumes the background from
checkpoints and skips idle updates. Every frame must still be Manim's: each scene
here is rendered twice, once as shipped and once with Manim's own ``Scene`` methods
and renderer caches, and every frame of the two is compared pixel for pixel.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _scene_harness import scene_class

SMALL = {  # the tiling tests' tiny configuration
    "FLASHANIM_SEQ_LEN": "8",
    "FLASHANIM_HEAD_DIM": "4",
    "FLASHANIM_BLOCK_M": "4",
    "FLASHANIM_BLOCK_N": "4",
}


def _frames(module: str, cls: str, plain: bool, media, plays: int) -> list:
    from manim import Scene, tempconfig

    base = scene_class(module, cls)
    frames: list[np.ndarray] = []

    class Probe(base):
        if plain:  # Manim's own split and frame updates

            def get_moving_and_static_mobjects(self, animations):
                return Scene.get_moving_and_static_mobjects(self, animations)

            def update_to_time(self, t):
                return Scene.update_to_time(self, t)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if plain:  # drop the instance-level renderer and writer overrides
                self.renderer.__dict__.pop("save_static_frame_data", None)
                self.renderer.__dict__.pop("render", None)
                self.renderer.file_writer.__dict__.pop(
                    "open_partial_movie_stream", None
                )
            add_frame = self.renderer.add_frame

            def capture(frame, num_frames=1):
                frames.append(frame[..., :3].copy())
                return add_frame(frame, num_frames)

            self.renderer.add_frame = capture

    opts = {"pixel_width": 192, "pixel_height": 108, "frame_rate": 5,
            "media_dir": str(media), "disable_caching": True, "progress_bar": "none",
            "verbosity": "WARNING", "upto_animation_number": plays,
            "output_file": f"{cls}{'Plain' if plain else 'Fast'}"}  # fmt: skip
    with tempconfig(opts):
        Probe().render()
    return frames


@pytest.mark.parametrize("module, cls", [("tiling", "TilingScene"),
                                         ("standard_attention", "StandardAttentionScene")])  # fmt: skip
def test_every_frame_equals_manims_own_split(module, cls, tmp_path, monkeypatch):
    from flashanim.engine import fastrender

    for var in [v for v in os.environ if v.startswith("FLASHANIM_")]:
        monkeypatch.delenv(var)
    # frames reach add_frame as RGBA (not converted to YUV in the renderer)
    monkeypatch.setattr(fastrender, "_yuv_direct", lambda renderer: False)
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    fast = _frames(module, cls, False, tmp_path / "fast", 40)
    plain = _frames(module, cls, True, tmp_path / "plain", 40)
    assert len(fast) == len(plain) > 40
    bad = [i for i, (a, b) in enumerate(zip(fast, plain, strict=True))
           if not np.array_equal(a, b)]  # fmt: skip
    assert not bad, f"{len(bad)} of {len(fast)} frames differ, first {bad[:5]}"


def test_frames_converted_in_the_renderer_make_the_same_movie(tmp_path, monkeypatch):
    """The renderer hands the encoder YUV converted straight from the camera's
    pixels (``fastrender._yuv_direct``) instead of a copy of the RGBA pixels:
    the movie decodes to the same frames, and the direct path was taken."""
    import av

    from flashanim.engine import fastrender

    pytest.importorskip("cv2")
    for var in [v for v in os.environ if v.startswith("FLASHANIM_")]:
        monkeypatch.delenv(var)
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)
    direct = fastrender._yuv_direct
    taken = []

    def counted(renderer):
        ok = direct(renderer)
        taken.append(ok)
        return ok

    movies = []
    for name, chooser in (("direct", counted), ("copied", lambda r: False)):
        monkeypatch.setattr(fastrender, "_yuv_direct", chooser)
        _frames("tiling", "TilingScene", False, tmp_path / name, 12)
        movies.append(next((tmp_path / name).rglob("TilingSceneFast.mp4")))
    assert taken and all(taken)
    decoded = []
    for m in movies:
        with av.open(str(m)) as c:
            decoded.append([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)])
    assert len(decoded[0]) == len(decoded[1]) > 12
    for a, b in zip(*decoded, strict=True):
        np.testing.assert_array_equal(a, b)
