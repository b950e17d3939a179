"""The faster Manim internals return exactly what Manim's own code returns."""

from __future__ import annotations

import random

import pytest
from manim import Mobject, Square, Text, VGroup

from flashanim.engine import _speedups, engine_on, fastrender


@pytest.fixture(autouse=True)
def _manims_own_after():
    """Tests here install pieces by hand: Manim's own code again after each."""
    yield
    _speedups.uninstall()


def _random_tree(rng: random.Random, n: int, shared: bool) -> Mobject:
    nodes = [Mobject() for _ in range(n)]
    for k in range(1, n):
        parent = nodes[rng.randrange(k)]
        parent.submobjects.append(nodes[k])
        if shared and rng.random() < 0.2:  # the same mobject under two parents
            other = nodes[rng.randrange(k)]
            if other is not parent:
                other.submobjects.append(nodes[k])
    return nodes[0]


def test_get_family_equals_manims_on_random_trees():
    rng = random.Random(0)
    for trial in range(300):
        root = _random_tree(rng, rng.randint(1, 60), shared=trial % 2 == 1)
        for m in [root, *root.submobjects]:
            ours = _speedups.get_family(m)
            theirs = _speedups.MANIM_GET_FAMILY(m)
            assert [id(x) for x in ours] == [id(x) for x in theirs]


def test_get_family_equals_manims_on_real_mobjects():
    sq = Square()
    g = VGroup(Text("flash"), VGroup(sq, Square()), sq)  # sq twice
    ours = _speedups.get_family(g)
    theirs = _speedups.MANIM_GET_FAMILY(g)
    assert [id(x) for x in ours] == [id(x) for x in theirs]
    assert len(ours) == len({id(x) for x in ours})


def test_installed_only_while_the_engine_is_on():
    from flashanim.engine import engine_on

    assert Mobject.get_family is _speedups.MANIM_GET_FAMILY
    with engine_on():
        assert Mobject.get_family is _speedups.get_family
        with engine_on():  # nested: one switch
            pass
        assert Mobject.get_family is _speedups.get_family
    assert Mobject.get_family is _speedups.MANIM_GET_FAMILY


def _same(a, b, seen: set) -> bool:
    """``a`` and ``b`` (copies of one thing made by two methods) are alike."""
    import numpy as np

    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, Mobject):
        if (id(a), id(b)) in seen:
            return True
        seen.add((id(a), id(b)))
        return a.__dict__.keys() == b.__dict__.keys() and all(
            k == "original_id" or _same(a.__dict__[k], b.__dict__[k], seen)
            for k in a.__dict__
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(
            _same(x, y, seen) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], seen) for k in a)
    if callable(a) and not isinstance(a, type):
        return True  # updaters are copied the same way by both (deepcopy)
    return a == b


def _sample_mobjects():
    from manim import Arrow, DashedLine, Rectangle, RoundedRectangle

    from flashanim.engine.text import cached_text

    with engine_on():  # (a composed text, as the scenes make them)
        number = cached_text("event 3 of 12", "DejaVu Sans Mono", 20, "#ffffff")
    sq = Square().set_fill("#ff0000", 0.5)
    sq.add_updater(lambda m: m)
    shared = VGroup(sq, Arrow(), DashedLine())
    return [
        Text("QK^T", font="DejaVu Sans Mono"),
        number,
        VGroup(shared, shared.copy(), RoundedRectangle(corner_radius=0.1)),
        Rectangle().set_stroke(width=0),
    ]


def test_deepcopy_like_manims():
    import copy

    _speedups.install()
    for mob in _sample_mobjects():
        ours = copy.deepcopy(mob)
        _speedups.uninstall()
        try:
            theirs = copy.deepcopy(mob)
        finally:
            _speedups.install()
        assert _same(ours, theirs, set())
        # a copy, not a view: changing it leaves the original as it was
        before = [m.points.copy() for m in mob.get_family()]
        for m in ours.get_family():
            m.shift([1, 2, 0])
            m.set_fill(opacity=0.25)
        assert all(
            (a == m.points).all() for a, m in zip(before, mob.get_family(), strict=True)
        )


def test_deepcopy_keeps_shared_arrays_shared():
    sq = Square()
    other = Square()
    other.points = sq.points  # one array under two mobjects
    g = VGroup(sq, other)
    c = _speedups.deepcopy_mobject(g, {})
    assert c[0].points is c[1].points and c[0].points is not sq.points


def test_restructured_list_like_manims():
    rng = random.Random(1)
    for trial in range(200):
        roots = [_random_tree(rng, rng.randint(1, 15), shared=trial % 2 == 1)
                 for _ in range(rng.randint(1, 6))]  # fmt: skip
        everything = [m for r in roots for m in _speedups.MANIM_GET_FAMILY(r)]
        to_remove = rng.sample(everything, rng.randint(0, min(4, len(everything))))
        ours = _speedups.get_restructured_mobject_list(None, roots, to_remove)
        theirs = _speedups.MANIM_RESTRUCTURED(None, roots, to_remove)
        assert [id(m) for m in ours] == [id(m) for m in theirs]


def test_x264_preset_by_quality_and_environment():
    import pytest

    from flashanim.engine.fastrender import PRESET_ENV, x264_preset

    assert x264_preset(480, {}) == "ultrafast"  # previews
    assert x264_preset(1080, {}) == "veryfast"
    assert x264_preset(480, {PRESET_ENV: "Medium"}) == "medium"
    with pytest.raises(ValueError, match="not an x264 preset; choose one of ultrafast"):
        x264_preset(1080, {PRESET_ENV: "quick"})


def test_x264_options_add_the_fast_settings_only_to_the_default_preset():
    from flashanim.engine.fastrender import (
        DEFAULT_X264_PARAMS,
        PRESET_ENV,
        x264_options,
    )

    assert x264_options(1080, {}) == {
        "preset": "veryfast", "bf": "0", "x264-params": DEFAULT_X264_PARAMS}  # fmt: skip
    assert x264_options(480, {}) == {"preset": "ultrafast"}
    # a preset the user chose is theirs alone, even when it is the default one
    assert x264_options(1080, {PRESET_ENV: "veryfast"}) == {"preset": "veryfast"}
    assert x264_options(1080, {PRESET_ENV: "slow"}) == {"preset": "slow"}


def test_partial_movie_streams_get_preset_threads_and_class_options():
    """What ``_use_preset`` hands x264 when Manim opens a partial movie stream:
    the preset, the thread count (when given) and a scene's ``X264_OPTIONS``."""
    from types import SimpleNamespace

    from flashanim.engine import fastrender

    def writer():
        w = SimpleNamespace()

        def open_partial_movie_stream():
            ctx = SimpleNamespace(options={"crf": "23"}, is_open=False, name="libx264")
            w._current_encode_job = SimpleNamespace(stream=SimpleNamespace(
                codec_context=ctx))  # fmt: skip

        w.open_partial_movie_stream = open_partial_movie_stream
        return w

    w = writer()
    fastrender._use_preset(w, {"preset": "veryfast"}, "1", {"bf": "0"})
    w.open_partial_movie_stream()
    opts = w._current_encode_job.stream.codec_context.options
    assert opts == {"crf": "23", "preset": "veryfast", "threads": "1", "bf": "0"}
    w = writer()
    fastrender._use_preset(w, {"preset": "ultrafast"})
    w.open_partial_movie_stream()
    opts = w._current_encode_job.stream.codec_context.options
    assert opts == {"crf": "23", "preset": "ultrafast"}


def test_updaters_possible_once_an_updater_is_added(monkeypatch):
    monkeypatch.setattr(_speedups, "_updater_added", False)
    _speedups.install()
    assert Mobject.add_updater is _speedups.add_updater
    assert not _speedups.updaters_possible()
    sq = Square()
    seen = []
    sq.add_updater(lambda m, dt: seen.append(dt))
    assert _speedups.updaters_possible()
    VGroup(sq).update(0.5)  # the updater itself still runs as Manim runs it
    assert seen == [0.5]


def test_updaters_possible_when_a_class_overrides_update(monkeypatch):
    monkeypatch.setattr(_speedups, "_updater_added", False)
    _speedups.install()
    assert not _speedups.updaters_possible()

    class Ticking(Square):
        def update(self, dt=0, recursive=True):
            return super().update(dt, recursive)

    assert _speedups.updaters_possible()


def test_scene_skips_the_update_walk_only_without_updaters(monkeypatch):
    from manim import tempconfig

    from flashanim.engine.fastrender import FastRenderScene

    calls = []
    monkeypatch.setattr(_speedups, "_updater_added", False)
    _speedups.install()
    # (a class overriding update, left by another test, would count)
    monkeypatch.setattr(_speedups, "_overrides_update", lambda cls: False)
    monkeypatch.setattr(
        Mobject, "update", lambda self, dt=0, recursive=True: calls.append(self)
    )
    with tempconfig({"dry_run": True}):
        scene = FastRenderScene()
        scene._fr_on = True  # (as while it renders)
        scene.add(Square())
        monkeypatch.setattr(_speedups, "MANIM_UPDATE", Mobject.update)
        scene.update_mobjects(0.1)
        assert calls == []
        monkeypatch.setattr(_speedups, "_updater_added", True)
        scene.update_mobjects(0.1)
        assert len(calls) == 1


def test_adding_animated_mobjects_like_manim():
    # the scene's mobjects after add_mobjects_from_animations, ours and Manim's,
    # on random scenes: new mobjects, groups holding some of the scene's, repeats
    import copy

    from manim import Animation, Group, Scene, tempconfig

    from flashanim.engine.fastrender import FastRenderScene

    def names(mobs):
        return [m.name for m in mobs]

    def structure(mobs):
        return [(m.name, structure(m.submobjects)) for m in mobs]

    rng = random.Random(3)
    with tempconfig({"dry_run": True}):
        for _trial in range(60):
            roots = [_random_tree(rng, rng.randint(1, 8), shared=False)
                     for _ in range(rng.randint(1, 4))]  # fmt: skip
            members = [m for r in roots for m in r.get_family()]
            for k, m in enumerate(members):
                m.name = f"m{k}"
            anims = []
            for j in range(rng.randint(1, 5)):
                kind = rng.random()
                if kind < 0.4:
                    mob = Mobject(name=f"new{j}")
                elif kind < 0.7:
                    mob = Group(*rng.sample(members, rng.randint(1, len(members))))
                    mob.name = f"group{j}"
                else:
                    mob = rng.choice(members)
                anims.append(mob)
            ours, theirs = FastRenderScene(), Scene()
            ours._fr_on = True  # (as while it renders)
            state = copy.deepcopy((roots, anims))
            ours.mobjects = list(roots)
            theirs.mobjects = list(state[0])
            ours.add_mobjects_from_animations([Animation(m) for m in anims])
            Scene.add_mobjects_from_animations(theirs, [Animation(m) for m in state[1]])
            assert names(ours.mobjects) == names(theirs.mobjects)
            assert structure(ours.mobjects) == structure(theirs.mobjects)


def test_subpaths_like_manims():
    import numpy as np
    from manim import VMobject

    rng = np.random.default_rng(5)
    vm = VMobject()
    for _ in range(400):
        n = int(rng.integers(0, 30))
        pts = rng.normal(size=(n, 3))
        # join some curves: the next curve starts where the last one ended
        for b in range(4, n, 4):
            if rng.random() < 0.6:
                pts[b] = pts[b - 1] + (rng.random() < 0.2) * 1e-9
        if n and rng.random() < 0.2:
            pts[rng.integers(n)] = rng.choice([np.nan, np.inf, -np.inf])
        ours = _speedups.get_subpaths_from_points(vm, pts)
        theirs = _speedups.MANIM_SUBPATHS(vm, pts)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


def _encode_with(fn, frames, counts, height, width) -> tuple[bytes, list]:
    """The MP4 bytes and decoded RGB frames of ``frames`` (each written
    ``counts[i]`` times) through the encoder method ``fn``."""
    import io

    import av

    class Job:  # what the encoder method uses of Manim's job
        pass

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.options = {"crf": "23", "preset": "ultrafast"}
        job = Job()
        job.stream, job.container = s, c
        for f, n in zip(frames, counts, strict=True):
            fn(job, f, n)
        for packet in s.encode(None):
            c.mux(packet)
    data = buf.getvalue()
    buf.seek(0)
    with av.open(buf) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return data, decoded


def _random_frames(height, width):
    import numpy as np

    rng = np.random.default_rng(2)
    frames = (rng.random((4, height, width, 4)) * 255).astype(np.uint8)
    frames[3] = frames[2]  # a repeat of a frame after a single one
    return frames, (1, 5, 1, 3)


@pytest.mark.parametrize("height,width", [(64, 96), (480, 854), (90, 62)])
def test_repeated_frames_encode_as_manims_without_opencv(height, width, monkeypatch):
    """Converted by swscale (no OpenCV), frames built by copying into PyAV's
    planes, and still frames converted once, reach x264 exactly as Manim's own
    ``from_ndarray`` frames (the same bytes out; 854 and 62 columns: chroma rows
    of 427 and 31 bytes, padded)."""
    import numpy as np
    from manim.scene import scene_file_writer as sfw

    _speedups._encode_repeats_once(sfw._PartialMovieEncodeJob)
    ours = sfw._PartialMovieEncodeJob._encode_and_write_frame
    assert ours._flashanim
    monkeypatch.setattr(_speedups, "_opencv", lambda: None)
    frames, counts = _random_frames(height, width)
    mine = _encode_with(ours, frames, counts, height, width)
    manims = _encode_with(ours._original, frames, counts, height, width)
    assert len(mine[1]) == len(manims[1]) == 10
    for a, b in zip(mine[1], manims[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert mine[0] == manims[0]


@pytest.mark.parametrize("height,width", [(64, 96), (90, 62)])
def test_repeated_frames_encode_the_opencv_conversion(height, width):
    """With OpenCV, each frame reaches x264 as :func:`rgba_to_yuv420p` converts
    it, a still frame once per write (the same bytes as encoding those planes
    one frame at a time)."""
    from manim.scene import scene_file_writer as sfw

    pytest.importorskip("cv2")
    _speedups._encode_repeats_once(sfw._PartialMovieEncodeJob)
    ours = sfw._PartialMovieEncodeJob._encode_and_write_frame

    def planes_one_by_one(job, frame, n):
        yuv = _speedups.rgba_to_yuv420p(frame)
        for _ in range(n):
            for p in job.stream.encode(_speedups._frame_from_array(yuv, "yuv420p")):
                job.container.mux(p)

    frames, counts = _random_frames(height, width)
    mine = _encode_with(ours, frames, counts, height, width)
    ref = _encode_with(planes_one_by_one, frames, counts, height, width)
    assert len(mine[1]) == 10 and mine[0] == ref[0]


def test_rgba_to_yuv420p_is_bt601_limited_range():
    """Y within 1 level of BT.601's limited-range luma computed in floating
    point (swscale's too), U and V within 1.5 of the chroma of each 2 x 2
    pixels' mean colour; on random pixels (every colour edge) and a frame's
    worth of them."""
    import av
    import numpy as np

    pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for h, w in ((90, 62), (480, 854)):
        a = (rng.random((h, w, 4)) * 255).astype(np.uint8)
        a[..., 3] = 255
        r, g, b = (a[..., i].astype(float) for i in range(3))
        y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
        u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
        v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255

        def pool(c):
            return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: B023

        flat = _speedups.rgba_to_yuv420p(a).reshape(-1).astype(float)
        n, c = h * w, (h // 2) * (w // 2)
        assert np.abs(flat[:n].reshape(h, w) - y).max() <= 1
        assert np.abs(flat[n : n + c].reshape(h // 2, w // 2) - pool(u)).max() <= 1.5
        assert np.abs(flat[n + c :].reshape(h // 2, w // 2) - pool(v)).max() <= 1.5
        swscale = av.VideoFrame.from_ndarray(a, format="rgba").reformat(
            format="yuv420p").to_ndarray().reshape(-1).astype(float)  # fmt: skip
        assert np.abs(swscale[:n] - flat[:n]).max() <= 1


def test_frame_from_array_matches_pyav():
    import av
    import numpy as np

    rng = np.random.default_rng(3)
    rgba = (rng.random((36, 50, 4)) * 255).astype(np.uint8)
    mine = _speedups._frame_from_array(rgba, "rgba")
    np.testing.assert_array_equal(mine.to_ndarray(), rgba)
    yuv = av.VideoFrame.from_ndarray(rgba, format="rgba").reformat(format="yuv420p")
    planes = yuv.to_ndarray()
    np.testing.assert_array_equal(
        _speedups._frame_from_array(planes, "yuv420p").to_ndarray(), planes
    )


def test_opacities_scale_like_separate_arrays():
    import numpy as np
    from manim import Rectangle

    from flashanim.visuals.tiles import _Opacities

    g = VGroup(*(VGroup(Rectangle(fill_opacity=0.7), Text(s)) for s in ("1.5", "-2")))
    g[0][0].set_stroke(opacity=0.4)
    shared = g[1][0]
    shared.background_stroke_rgbas = shared.stroke_rgbas  # one array, two names
    leaves = [m for m in g.get_family() if len(m.fill_rgbas)]
    names = ("fill_rgbas", "stroke_rgbas", "background_stroke_rgbas")
    start = {(id(m), n): getattr(m, n).copy() for m in leaves for n in names}
    op = _Opacities(g)
    for m in leaves:  # same values, now views of one buffer
        for n in names:
            np.testing.assert_array_equal(getattr(m, n), start[id(m), n])
    assert shared.background_stroke_rgbas is shared.stroke_rgbas
    g[0][0].fill_rgbas = g[0][0].fill_rgbas.copy()  # replaced since: still scaled
    for factor in (0.0, 0.37, 1.0, 0.5):
        op.apply(factor)
        for m in leaves:
            for n in names:
                want = start[id(m), n].copy()
                want[:, 3] *= factor
                np.testing.assert_array_equal(getattr(m, n), want)


def test_copy_travel_clean_up_like_two_removes(monkeypatch):
    # the scene after a load (new tile) and a store (into cells in the scene),
    # with and without the one-step clean-up
    from manim import Rectangle, Scene, tempconfig

    from flashanim.visuals import tiles

    def run(fast: bool):
        if not fast:
            monkeypatch.setattr(
                tiles.CopyTravel, "_replace_carrier", lambda s, sc: False
            )
        else:
            monkeypatch.undo()
        with tempconfig({"dry_run": True}):
            scene = Scene()
            grid = VGroup(*(Rectangle(name=f"cell{k}") for k in range(4)))
            grid.name = "grid"
            other = Square(name="other")
            scene.add(grid, other)
            new_tile = Square(name="tile")
            cells = VGroup(grid[1], grid[2], name="cells")
            end = cells.copy().set_fill(opacity=1)
            for anim in (
                tiles.CopyTravel(grid[0], new_tile),  # a load
                tiles.CopyTravel(new_tile, cells, target_end=end),  # a store
            ):
                scene.play(anim)

            def names(mobs):
                return [(m.name, names(m.submobjects)) for m in mobs]

            return names(scene.mobjects)

    slow = run(fast=False)
    assert run(fast=True) == slow
    # (the store's cells take the carrier's place at the top level, as Manim's
    # remove of the traveller leaves them)
    assert [n for n, _ in slow][-2:] == ["tile", "cells"]


def test_replayed_paths_draw_the_same_pixels():
    import numpy as np
    from manim import Camera, Circle, tempconfig

    with tempconfig({"pixel_height": 120, "pixel_width": 214}):
        mobs = [Text("−1.25 B"), Circle(radius=1.3).set_fill(opacity=0.5), Square()]

        def draw(fast: bool) -> np.ndarray:
            cam = Camera()
            if fast:
                cam.set_cairo_context_path = fastrender._set_path.__get__(cam)
            cam.capture_mobjects(mobs)
            return cam.pixel_array.copy()

        want = draw(fast=False)
        for _ in range(3):  # built, built and kept, replayed
            np.testing.assert_array_equal(draw(fast=True), want)
        leaf = mobs[2]
        assert fastrender._PATHS[leaf][1] is not None  # drawn alike: kept
        leaf.shift([0.5, 0, 0])  # moved: built again, nothing kept until it stays
        want = draw(fast=False)
        np.testing.assert_array_equal(draw(fast=True), want)
        assert fastrender._PATHS[leaf][1] is None


@pytest.mark.parametrize("engine", [False, True])
def test_tile_cells_are_the_rectangles_manim_builds(engine):
    """A tile's cells are copies of one built cell, shifted
    (``tiles._cell``): the same points, to the bit, and the same style as
    ``VGroup(Rectangle(...)).move_to(centre)``, the way they were built before;
    with the engine's copies and with Manim's own."""
    import numpy as np
    from manim import Rectangle, VGroup

    from flashanim.visuals import tiles
    from flashanim.visuals.theme import DARK

    if engine:
        _speedups.install()
    try:
        grid = tiles.TileGrid("Q", np.arange(12.0).reshape(3, 4), cell_width=0.37,
                              cell_height=0.21, theme=DARK)  # fmt: skip
        for r in range(3):
            for c in range(4):
                built = VGroup(Rectangle(width=0.37, height=0.21, stroke_width=0.6,
                                         stroke_color=DARK.panel_stroke,
                                         stroke_opacity=0.6))  # fmt: skip
                built.move_to(np.array([(c + 0.5) * 0.37, -(r + 0.5) * 0.21, 0]))
                ours = grid.cell(r, c)
                assert ours is not grid.cell((r + 1) % 3, c)
                assert np.array_equal(ours[0].points, built[0].points)
                assert np.array_equal(ours[0].stroke_rgbas, built[0].stroke_rgbas)
                assert ours[0].stroke_width == built[0].stroke_width
        # each cell its own copy: painting one leaves the prototype alone
        grid.cell(0, 0)[0].shift([5, 0, 0])
        again = tiles.TileGrid("Q", np.zeros((1, 1)), cell_width=0.37,
                               cell_height=0.21, theme=DARK)  # fmt: skip
        assert np.allclose(again.cell(0, 0)[0].get_center(), [0.185, -0.105, 0])
    finally:
        if engine:
            _speedups.uninstall()
