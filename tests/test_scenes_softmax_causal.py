"""The online-softmax and causal scenes play the real trace and show its numbers.

Each scene renders once, tiny (192x108 at 5 frames/s, N = 8, 4x4 blocks), and the
tests check:

1. the played events equal the trace's events of the declared subset, in order
   (online softmax: the followed row's program; causal: head 0);
2. every number shown comes from the trace (the players record what they put on
   screen, the scenes what they computed from it);
3. the section-end frames match the control frames
   (``FLASHANIM_UPDATE_CONTROL=1`` rewrites them);
4. bad configuration is refused before anything renders.
"""

from __future__ import annotations

import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
import numpy as np
import pytest
from _scene_harness import check_record, compare_control, render_probe, scene_class

from flashanim.config import ConfigError, SceneConfig
from flashanim.trace import record, save_trace, visited_blocks, work_summary
from flashanim.visuals.softmax import implied_weights, pick_row, row_values

pytestmark = pytest.mark.render

SMALL = {
    "FLASHANIM_SEQ_LEN": "8",
    "FLASHANIM_HEAD_DIM": "4",
    "FLASHANIM_BLOCK_M": "4",
    "FLASHANIM_BLOCK_N": "4",
    "FLASHANIM_SEED": "0",
}


@pytest.fixture(scope="module")
def softmax_run(tmp_path_factory):
    env = dict(SMALL, FLASHANIM_ROW="5")
    return render_probe("online_softmax", "OnlineSoftmaxScene", env,
                        tmp_path_factory.mktemp("os"))  # fmt: skip


@pytest.fixture(scope="module")
def causal_run(tmp_path_factory):
    return render_probe("causal", "CausalScene", SMALL, tmp_path_factory.mktemp("ca"))


# -- online softmax ------------------------------------------------------------------
def test_softmax_plays_the_rows_program(softmax_run):
    scene, frames, movies = softmax_run
    assert scene.row == 5
    meta = scene.trace.meta
    q_load = next(
        e
        for e in scene.trace.events
        if e.op == "load" and e.tensor == "Q" and e.row == 5 // meta.block_m
    )
    expected = [e.key() for e in scene.trace.events
                if e.program == q_load.program]  # fmt: skip
    assert [e.key() for e in scene.player.played_events] == expected
    assert movies and list(frames) == ["setup", "block 0", "block 1", "normalize",
                                       "why exact", "check"]  # fmt: skip


def test_softmax_numbers_come_from_the_trace(softmax_run):
    scene, *_ = softmax_run
    meta, k = scene.trace.meta, 5 % scene.trace.meta.block_m
    by_index = {e.index: e for e in scene.trace.events}
    assert scene.player.shown
    for s in scene.player.shown:
        e = by_index[s.event]
        if e.tensor in ("K", "V"):
            n = min(meta.block_n, meta.seq_len_k - e.row * meta.block_n)
            want = np.asarray(e.value, float)[:n, : meta.head_dim].ravel()
        elif e.tensor in ("S", "P"):
            n = min(meta.block_n, meta.seq_len_k - e.col * meta.block_n)
            want = row_values(e, k, n)
        elif e.tensor in ("Q", "acc", "O"):
            want = row_values(e, k, meta.head_dim)
        else:
            want = row_values(e, k)
        assert np.array_equal(np.asarray(s.values), want), (s.what, e.op)
    # the S row the check uses is the one the qk/mask events showed
    s_row = np.concatenate([row_values(e, k, 4) for e in scene.events if e.op == "qk"])
    assert np.array_equal(scene.player.s_row, s_row)


def test_softmax_check_is_against_one_go(softmax_run):
    scene, *_ = softmax_run
    t, cv = scene.trace.tensors, scene.check_values
    q, kk, v = (np.asarray(t[n], float)[0, 0] for n in "QKV")
    s = (kk @ q[5]) * scene.trace.meta.softmax_scale
    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    assert np.allclose(cv["weights_naive"], w, rtol=0, atol=1e-15)
    assert np.allclose(cv["o_naive"], w @ v, rtol=0, atol=1e-15)
    norm = [e for e in scene.events if e.op == "normalize"][-1]
    assert np.array_equal(cv["o_kernel"], row_values(norm, 1, 4))
    assert np.array_equal(cv["weights_kernel"], implied_weights(
        scene.player.s_row, cv["m_final"], cv["l_final"]))  # fmt: skip
    assert cv["err_weights"] < 1e-5 and cv["err_o"] < 1e-5
    assert np.isclose(scene.exact_values["l_kernel"], scene.exact_values["l_one_go"],
                      rtol=1e-5)  # fmt: skip


def test_softmax_frames_match_controls(softmax_run):
    compare_control("online_softmax", softmax_run[1])


def test_default_row_is_picked_from_the_trace():
    trace = record("fa2-fwd", seq_len=16, head_dim=4, block_m=4, block_n=4)
    r = pick_row(trace)
    assert 0 <= r < 16


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLASHANIM_ROW": "99"}, "query row in 0 .. 7"),
        ({"FLASHANIM_ROW": "five"}, "not an integer"),
        ({"FLASHANIM_SEQ_LEN": "32"}, "at most 16 keys"),
        ({"FLASHANIM_HEAD_DIM": "8"}, "at most 4"),
        ({"FLASHANIM_THEME": "neon"}, "unknown theme"),
    ],
)
def test_softmax_bad_config_refused_before_rendering(env, message, tmp_path,
                                                     monkeypatch):  # fmt: skip
    from manim import tempconfig

    for k, v in dict(SMALL, **env).items():
        monkeypatch.setenv(k, v)
    with tempconfig({"media_dir": str(tmp_path), "progress_bar": "none",
                     "verbosity": "WARNING"}):  # fmt: skip
        scene = scene_class("online_softmax", "OnlineSoftmaxScene")()
        with pytest.raises(ConfigError, match=message):
            scene.render()
    assert not list(tmp_path.rglob("*.mp4"))


# -- causal --------------------------------------------------------------------------
def test_causal_plays_head_0(causal_run):
    scene, frames, movies = causal_run
    assert scene.trace.meta.causal and not scene.full.meta.causal
    expected = [e.key() for e in scene.trace.events if e.bh == 0]
    assert [e.key() for e in scene.player.played_events] == expected
    assert movies and list(frames) == ["setup", "program 0", "other programs",
                                       "skipped", "work saved"]  # fmt: skip


def test_causal_numbers_come_from_the_traces(causal_run):
    scene, *_ = causal_run
    by_index = {e.index: e for e in scene.trace.events}
    assert scene.player.shown_tiles
    for idx, tile in scene.player.shown_tiles:
        e = by_index[idx]
        assert e.op in ("qk", "mask")
        assert np.array_equal(tile, np.asarray(e.value, float)[:4, :4])
    masked = [t for i, t in scene.player.shown_tiles if by_index[i].op == "mask"]
    assert all(np.isneginf(t).any() for t in masked)
    # skipped blocks: exactly those without any event
    t_r = scene.trace.meta.t_r
    assert scene.skipped == [(i, j) for i in range(t_r) for j in range(t_r) if j > i]
    assert set(scene.skipped).isdisjoint(visited_blocks(scene.trace))
    assert scene.summary == {"causal": work_summary(scene.trace),
                             "full": work_summary(scene.full)}  # fmt: skip
    assert scene.summary["full"]["qk"] == t_r * t_r
    assert scene.player.counter.total() == scene.summary["causal"]["kv_bytes"]
    assert scene.player.computed.value == scene.summary["causal"]["qk"]


def test_causal_frames_match_controls(causal_run):
    compare_control("causal", causal_run[1])


def test_causal_refuses_a_non_causal_trace(tmp_path, monkeypatch):
    from manim import tempconfig

    path = tmp_path / "t.json"
    save_trace(record("fa2-fwd", seq_len=8, head_dim=4, block_m=4, block_n=4), path)
    monkeypatch.setenv("FLASHANIM_TRACE", str(path))
    with tempconfig({"media_dir": str(tmp_path), "progress_bar": "none",
                     "verbosity": "WARNING"}):  # fmt: skip
        scene = scene_class("causal", "CausalScene")()
        with pytest.raises(ConfigError, match="causal"):
            scene.render()
    assert not list(tmp_path.rglob("*.mp4"))


def test_causal_bad_config_refused():
    with pytest.raises(ConfigError, match="power of two"):
        SceneConfig.from_env({"FLASHANIM_BLOCK_M": "3"})


def test_softmax_render_record_carries_events_and_captions(softmax_run, tmp_path):
    scene = softmax_run[0]
    check_record(scene, scene.player.played_events, tmp_path)


def test_causal_render_record_carries_events_and_captions(causal_run, tmp_path):
    scene = causal_run[0]
    check_record(scene, scene.player.played_events, tmp_path)
