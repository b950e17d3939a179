"""The standard-attention and loop-order scenes play their real traces and render.

Each scene is rendered once, small (192x108 at 5 frames/s, N = 8, 4x4 blocks), and
shared by the tests below:

1. the events the scene animated equal its traces' events, in order (every event;
   the loop-order scene: all of ``fa1-fwd`` then all of ``fa2-fwd``);
2. the render finishes fast and writes a movie, with the expected sections;
3. the last frame of each section matches its control frame
   (``tests/control_frames/{standard,looporder}_*.npz``; regenerate with
   ``FLASHANIM_UPDATE_CONTROL=1`` after looking at them);
4. the closing totals are the traces' own sums;
5. bad configuration is refused before anything renders.
"""

from __future__ import annotations

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import pytest
from _scene_harness import check_record, compare_control, render_probe, scene_class

from flashanim.config import ConfigError
from flashanim.trace import hbm_traffic

SMALL_ENV = {
    "FLASHANIM_SEQ_LEN": "8",
    "FLASHANIM_HEAD_DIM": "4",
    "FLASHANIM_BLOCK_M": "4",
    "FLASHANIM_BLOCK_N": "4",
    "FLASHANIM_THEME": "dark",
    "FLASHANIM_SEED": "0",
}


def _render(module, cls, tmp_path_factory):
    media = tmp_path_factory.mktemp(module)
    return render_probe(module, cls, SMALL_ENV, media)


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    return _render("standard_attention", "StandardAttentionScene", tmp_path_factory)


@pytest.fixture(scope="module")
def looporder(tmp_path_factory):
    return _render("loop_order", "LoopOrderScene", tmp_path_factory)


# -- standard attention ----------------------------------------------------------
def test_standard_plays_every_event(standard):
    scene, *_ = standard
    assert scene.trace.meta.kernel == "standard"
    played = [e.key() for e in scene.player.played_events]
    assert played == [e.key() for e in scene.trace.events]
    assert {p.launch for p in scene.trace.programs} == {"qk", "softmax", "pv"}


def test_standard_renders(standard):
    _, frames, movies = standard
    assert movies and max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["setup", "S to HBM", "softmax", "PV", "vs FA2"]


def test_standard_counts_the_trace(standard):
    scene, *_ = standard
    c = scene.counter
    traffic = hbm_traffic(scene.trace)
    for (tensor, direction), n in traffic.items():
        assert c.totals[(direction, tensor)] == n
    # the comparison run is a real fa2-fwd trace of the same shape
    m, f = scene.trace.meta, scene.fa2.meta
    assert f.kernel == "fa2-fwd"
    assert (f.seq_len_q, f.head_dim, f.block_m, f.block_n) == (
        m.seq_len_q,
        m.head_dim,
        m.block_m,
        m.block_n,
    )
    assert sum(traffic.values()) > sum(hbm_traffic(scene.fa2).values())


def test_standard_frames_match_controls(standard):
    _, frames, *_ = standard
    compare_control("standard", frames)


# -- loop order --------------------------------------------------------------------
def test_looporder_plays_every_event(looporder):
    scene, *_ = looporder
    assert scene.fa1.meta.kernel == "fa1-fwd"
    assert scene.fa2.meta.kernel == "fa2-fwd"
    for col, trace in ((scene.col1, scene.fa1), (scene.col2, scene.fa2)):
        played = [e.key() for e in col["player"].played_events]
        assert played == [e.key() for e in trace.events]


def test_looporder_visit_order_is_the_traces(looporder):
    scene, *_ = looporder
    for col, trace in ((scene.col1, scene.fa1), (scene.col2, scene.fa2)):
        order = [(e.row, e.col) for e in trace.events if e.op == "qk"]
        got = sorted(col["visits"].visited, key=col["visits"].visited.get)
        assert got == order
    # FA1: column by column (outer j); FA2: row by row (outer i)
    fa1 = sorted(scene.col1["visits"].visited, key=scene.col1["visits"].visited.get)
    assert fa1[:2] == [(0, 0), (1, 0)]
    fa2 = sorted(scene.col2["visits"].visited, key=scene.col2["visits"].visited.get)
    assert fa2[:2] == [(0, 0), (0, 1)]


def test_looporder_counts_the_traces(looporder):
    scene, *_ = looporder
    for col, trace in ((scene.col1, scene.fa1), (scene.col2, scene.fa2)):
        for (tensor, direction), n in hbm_traffic(trace).items():
            assert col["counter"].totals[(direction, tensor)] == n


def test_looporder_names_its_gpu_and_source(looporder):
    """The narrow memory panels name the render's one preset (--gpu, A100 by
    default); its source is on screen, bottom right, in the closing frame too."""
    from flashanim.hardware import get_preset

    scene, *_ = looporder
    gpu = get_preset("a100")
    assert scene.gpu.key == gpu.key
    said = "".join(t.text for t in scene.source)  # (Text.text drops the spaces)
    for part in (gpu.name, gpu.source):
        assert part.replace(" ", "") in said.replace(" ", "")
    assert scene.source in scene.mobjects  # kept to the end


def test_looporder_renders(looporder):
    _, frames, movies = looporder
    assert movies and max(m.stat().st_size for m in movies) > 1000
    assert list(frames) == ["setup", "FA1 order", "FA2 order", "compare"]


def test_looporder_frames_match_controls(looporder):
    _, frames, *_ = looporder
    compare_control("looporder", frames)


# -- configuration -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "cls"),
    [
        ("standard_attention", "StandardAttentionScene"),
        ("loop_order", "LoopOrderScene"),
    ],
)
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLASHANIM_THEME": "neon"}, "unknown theme"),
        ({"FLASHANIM_BLOCK_M": "3"}, "power of two"),
        ({"FLASHANIM_SEQ_LEN": "4096"}, "between 1 and 64"),
    ],
)
def test_bad_config_fails_before_rendering(
    module, cls, env, message, monkeypatch, tmp_path
):
    from manim import tempconfig

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with tempconfig(
        {"media_dir": str(tmp_path), "progress_bar": "none", "verbosity": "WARNING"}
    ):
        scene = scene_class(module, cls)()
        with pytest.raises(ConfigError, match=message):
            scene.render()
    assert not list(tmp_path.rglob("*.mp4"))


def test_standard_render_record_carries_events_and_captions(standard, tmp_path):
    scene = standard[0]
    check_record(scene, scene.player.played_events, tmp_path)


def test_looporder_render_record_carries_events_and_captions(looporder, tmp_path):
    scene = looporder[0]
    played = scene.col1["player"].played_events + scene.col2["player"].played_events
    check_record(scene, played, tmp_path)
