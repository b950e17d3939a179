"""Monospace strings composed from cached glyphs equal the Text that Pango lays out.

:func:`flashanim.engine.text.cached_text` composes single-line strings in the
themes' monospace font from copies of atlas glyphs instead of building a new
:class:`~manim.Text`; these tests hold the composed text against the real one,
glyph for glyph, and check where it must fall back to a real Text.
"""

from __future__ import annotations

import numpy as np
import pytest
from manim import RED, Text, Transform, tempconfig

from flashanim.engine import engine_on
from flashanim.engine import text as theme
from flashanim.engine.text import (
    GLYPH_FONTS,
    _glyph_atlas,
    _glyph_text,
    cached_text,
    merge_glyphs,
)
from flashanim.visuals.theme import DARK, THEMES


@pytest.fixture(autouse=True)
def _engine():
    """The text engine works while the engine is on (a scene renders)."""
    with engine_on():
        yield


def test_themes_monospace_fonts_are_glyph_fonts():
    assert {th.mono_font for th in THEMES.values()} <= GLYPH_FONTS


def test_engine_off_gives_manims_own_text():
    from manim import Text

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("flashanim.engine.text.is_on", lambda: False)
        t = cached_text("0.125", MONO, 17, "#FFFFFF")
    assert type(t) is Text and len(t.submobjects) == 5  # a glyph a character


MONO = DARK.mono_font

# Strings as the scenes write them: tile values, counters, byte totals, loop indices,
# the online-softmax formulas, plus leading, trailing and double spaces.
STRINGS = [
    "0",
    "7",
    "-3",
    "−.53",
    ".07",
    "3.1",
    "13",
    "−12",
    "−∞",
    "∞",
    "·",
    "–",
    "event 12 of 345",
    "event 1 of 9",
    "960 B",
    "4,096 B",
    "1,234,567 B",
    "= 12,288 B",
    "3.0 MiB",
    "read  Q",
    "wrote LSE",
    " 42",
    "42  ",
    "  a  b  ",
    "qk S(1, 2)",
    "load K(3)",
    "S = −∞ where masked",
    "S = q · K_jᵀ · scale",
    "l_i = alpha · l_i + Σ P",
    "load q, K_j, V_j  (HBM → SRAM)",
    "i = start_m / BLOCK_M = ",
    "LSE = m_i + log l_i = -1.234",
    "3 × 4 … dS = P∘(dP − D) ≤ 2",
    "!\"#$%&'*+/:;<=>?@[\\]^_`{|}~",
    "fi fl ffi -> <= != == www",
]

# (size, colour) pairs the scenes use with the monospace font
STYLES = [
    (DARK.small_size, DARK.muted),
    (DARK.body_size, DARK.foreground),
    (DARK.small_size + 1, "#D55E00"),
]


def _compare(composed: Text, real: Text) -> None:
    assert isinstance(composed, Text)
    assert composed.text == real.text
    assert composed.original_text == real.original_text
    assert len(composed) == len(real) == len(real.text)
    assert abs(composed.width - real.width) < 1e-3
    assert abs(composed.height - real.height) < 1e-3
    assert abs(composed.font_size - real.font_size) < 1e-3
    # both centred at the origin, as Text centres itself
    assert np.abs(composed.get_center()).max() < 1e-3
    assert np.abs(real.get_center()).max() < 1e-3
    for a, b in zip(composed, real, strict=True):
        assert type(a) is type(b)
        assert a.points.shape == b.points.shape
        assert np.abs(a.points - b.points).max() < 2e-3
        np.testing.assert_array_equal(a.fill_rgbas, b.fill_rgbas)
        np.testing.assert_array_equal(a.stroke_rgbas, b.stroke_rgbas)


def _compare_joined(joined: Text, real: Text) -> None:
    """``joined`` is ``real`` with its glyphs joined into one path (merge_glyphs)."""
    assert joined.text == real.text
    assert joined.original_text == real.original_text
    assert len(joined) == 1 and list(joined.chars) == joined.submobjects
    assert abs(joined.width - real.width) < 1e-3
    assert abs(joined.height - real.height) < 1e-3
    (leaf,) = joined.submobjects
    assert leaf.glyph_sizes == [len(g.points) for g in real]
    points = np.concatenate([g.points for g in real])
    assert leaf.points.shape == points.shape
    assert np.abs(leaf.points - points).max() < 2e-3
    for g in real:
        np.testing.assert_array_equal(leaf.fill_rgbas, g.fill_rgbas)
        np.testing.assert_array_equal(leaf.stroke_rgbas, g.stroke_rgbas)
        assert leaf.stroke_width == g.stroke_width


@pytest.mark.parametrize(("size", "color"), STYLES)
def test_composed_text_matches_text(size, color):
    for s in STRINGS:
        composed = _glyph_text(s, MONO, float(size), color)
        assert composed is not None, s
        real = Text(s, font=MONO, font_size=size, color=color)
        _compare(composed, real)
        # cached_text returns the composed text (which has no SVG file of its
        # own) with its glyphs joined
        t = cached_text(s, MONO, size, color)
        assert t.file_name is None
        if len(real) > 1:
            _compare_joined(t, real)
        else:
            _compare(t, real)


def _same_attributes(a, b, skip=()) -> None:
    assert a.__dict__.keys() == b.__dict__.keys()
    for k, va in a.__dict__.items():
        if k in skip:
            continue
        vb = b.__dict__[k]
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=k)
        else:
            assert type(va) is type(vb), k
            assert va == vb, k


def test_composed_text_has_text_attributes():
    s, size, color = "event 7 of 21", DARK.body_size, DARK.foreground
    composed = _glyph_text(s, MONO, float(size), color)
    # what cached_text returned before it composed: a copy of a real Text
    real = theme._text_proto(s, MONO, float(size), color, theme._frame_pixels()).copy()
    # content-dependent: checked above or meaningful only while parsing the SVG
    _same_attributes(composed, real, skip={"initial_height", "file_name", "submobjects",
                                           "chars", "id_to_vgroup_dict", "points",
                                           "original_id"})  # fmt: skip
    assert abs(composed.initial_height - real.initial_height) < 1e-9
    assert list(composed.chars) == composed.submobjects
    assert list(composed.id_to_vgroup_dict["root"]) == composed.submobjects
    for a, b in zip(composed, real, strict=True):
        _same_attributes(a, b, skip={"points", "original_id"})
        assert a.path_obj is None  # cheap copies


def test_fallback_to_real_text():
    # a proportional font
    s = "event 12 of 345"
    assert _glyph_text(s, DARK.font, 17.0, "#FFFFFF") is None
    t = cached_text(s, DARK.font, 17, "#FFFFFF")
    real = Text(s, font=DARK.font, font_size=17, color="#FFFFFF")
    _compare_joined(t, real)
    # characters not in the atlas, newlines, tabs, other whitespace, no glyph at all
    for s in ["12 ≠ 3", "λ = 1", "1\n2", "1\t2", "1\u00a02", "", "   "]:
        assert _glyph_text(s, MONO, 17.0, "#FFFFFF") is None, repr(s)
    t = cached_text("λ = 1", MONO, 17, "#FFFFFF")
    real = Text("λ = 1", font=MONO, font_size=17, color="#FFFFFF")
    assert t.original_text == "λ = 1" and len(real) == 3
    _compare_joined(t, real)


def test_fallback_for_lines_pango_would_wrap():
    # Text lays out in a box as wide as the frame in pixels; Pango wraps wider lines
    with tempconfig({"pixel_width": 200}):
        atlas = _glyph_atlas(MONO, 17.0)
        assert atlas.glyph("1") is not None  # (the atlas of this frame size)
        short = " ".join(["12"] * 21)  # 62 characters: fits in 200 px
        long = " ".join(["12"] * 24)  # 71 characters: wrapped
        assert (len(long) + 2) * atlas.advance / 0.05 > 200
        real_long = Text(long, font=MONO, font_size=17, color="#ABCDEF")
        assert real_long.height > 2 * Text("12", font=MONO, font_size=17).height
        assert _glyph_text(long, MONO, 17.0, "#ABCDEF") is None
        composed = _glyph_text(short, MONO, 17.0, "#ABCDEF")
        assert composed is not None
        _compare(composed, Text(short, font=MONO, font_size=17, color="#ABCDEF"))


def _composed(s, size, color):
    return _glyph_text(s, MONO, float(size), str(color))


@pytest.mark.parametrize("make", [_composed, cached_text])
def test_composed_texts_are_independent_copies(make):
    atlas = _glyph_atlas(MONO, 17.0)
    if make is cached_text:
        make = lambda s, size, color: cached_text(s, MONO, size, color)  # noqa: E731
    a = make("−1.5", 17, DARK.foreground)
    glyph = atlas.glyph("1")
    before = glyph.points.copy(), glyph.fill_rgbas.copy()
    shell_before = len(atlas.shell.submobjects), atlas.shell.original_text
    b = make("−1.5", 17, DARK.foreground)
    for ga, gb in zip(a, b, strict=True):
        assert ga is not gb
        assert not np.shares_memory(ga.points, gb.points)
        assert not np.shares_memory(ga.points, glyph.points)
        assert not np.shares_memory(ga.fill_rgbas, gb.fill_rgbas)
    n = len(b)
    a[-1].points += 1.0
    a.set_color(RED)
    a.shift([2, 1, 0]).scale(3)
    a.submobjects.pop()
    c = make("−1.5", 17, DARK.foreground)
    assert len(c) == len(b) and c.original_text == b.original_text
    for gc, gb in zip(c, b, strict=True):
        np.testing.assert_array_equal(gc.points, gb.points)
        np.testing.assert_array_equal(gc.fill_rgbas, gb.fill_rgbas)
    np.testing.assert_array_equal(glyph.points, before[0])
    np.testing.assert_array_equal(glyph.fill_rgbas, before[1])
    assert (len(atlas.shell.submobjects), atlas.shell.original_text) == shell_before
    assert len(c) == n


def test_composed_texts_work_as_texts():
    a = cached_text("event 1 of 9", MONO, 15, DARK.muted)
    b = cached_text("event 2 of 9", MONO, 15, DARK.muted)
    b.move_to([1, 2, 0]).next_to(a, [0, -1, 0])
    anim = Transform(a, b)
    anim.begin()
    anim.interpolate(0.5)
    anim.finish()
    assert np.allclose(a.get_center(), b.get_center())
    c = a.copy()
    assert len(c) == len(a) == len(b)
    assert repr(b) == "Text('event 2 of 9')"
    assert b.text == "event2of9"
    assert isinstance(cached_text("12", MONO, 15, DARK.muted)[0].points, np.ndarray)


def test_atlas_holds_every_character():
    atlas = _glyph_atlas(MONO, 14.0)
    missing = [c for c in theme._GLYPH_CHARS if atlas.glyph(c) is None]
    assert missing == []


def _pixels(mob) -> np.ndarray:
    from manim import Camera

    cam = Camera()
    cam.capture_mobject(mob)
    return cam.pixel_array[:, :, :3].astype(int)


def test_joined_glyphs_draw_as_the_glyphs():
    with tempconfig({"pixel_height": 480, "pixel_width": 854}):
        for s, font in [
            ("−1,234.5 B", MONO),
            ("Standard attention: S = QKᵀ", DARK.font),
        ]:
            real = Text(s, font=font, font_size=24, color=DARK.foreground)
            joined = merge_glyphs(real.copy())
            assert len(joined) == 1
            diff = np.abs(_pixels(real) - _pixels(joined))
            # the same shapes: at most an antialiasing level where glyph edges meet
            assert (diff.max(axis=2) > 0).sum() < 0.01 * diff[..., 0].size
            assert diff.max() <= 40


def test_merge_leaves_mixed_styles_alone():
    t = Text("ab", font=MONO, font_size=24, color=DARK.foreground)
    t[1].set_fill(RED)
    assert len(merge_glyphs(t)) == 2
    one = Text("a", font=MONO, font_size=24)
    assert merge_glyphs(one)[0] is one[0]


def test_joined_texts_morph_glyph_by_glyph():
    a = cached_text("1,234 B", MONO, 17, DARK.foreground)
    b = cached_text("18 B", MONO, 17, DARK.foreground).shift([0, -1, 0])
    glyphs_a = Text("1,234 B", font=MONO, font_size=17)
    anim = Transform(a, b)
    anim.begin()
    leaf, target = a[0], anim.target_copy[0]
    # aligned: as many glyphs on both sides, each pair with as many points
    assert len(leaf.glyph_sizes) == len(target.glyph_sizes) == len(glyphs_a)
    assert leaf.glyph_sizes == target.glyph_sizes
    assert sum(leaf.glyph_sizes) == len(leaf.points) == len(target.points)
    # each glyph of a still sits where it was: the morph pairs glyph with glyph
    parts = np.split(leaf.points, np.cumsum(leaf.glyph_sizes)[:-1])
    for part, g in zip(parts, glyphs_a.copy().move_to(a), strict=True):
        assert np.allclose(part.mean(axis=0)[:2], g.get_center()[:2], atol=0.05)
    # b's missing glyphs grow from the centre of its last one
    extra = np.split(target.points, np.cumsum(target.glyph_sizes)[:-1])[-1]
    assert np.ptp(extra, axis=0).max() == 0
    anim.interpolate(0.5)
    anim.finish()
    assert np.allclose(a.get_center(), b.get_center())
    # a later morph still goes glyph by glyph (a now holds 6 glyphs, two of
    # them grown from a point)
    Transform(a, cached_text("99 B", MONO, 17, DARK.foreground)).begin()
    assert len(a[0].glyph_sizes) == 6
    assert sum(a[0].glyph_sizes) == len(a[0].points)
    # a single glyph is not joined: nothing to join
    assert not hasattr(cached_text("7", MONO, 17, DARK.foreground)[0], "glyph_sizes")


def test_texts_are_written_to_a_folder_of_this_process():
    # two renders side by side must not read each other's half-written SVGs
    import os

    from manim import config

    from flashanim.engine.text import use_private_text_dir

    with tempconfig({}):
        d = use_private_text_dir()
        # this process's folder, and in it one folder per frame size
        assert str(os.getpid()) in os.path.basename(os.path.dirname(d))
        assert os.path.basename(d) == f"{config.pixel_width}x{config.pixel_height}"
        assert config.get_dir("text_dir") == __import__("pathlib").Path(d)
        theme._text_proto.cache_clear()
        theme._text_proto(
            "private folder", DARK.font, 17.0, "#FFFFFF", theme._frame_pixels()
        )
        assert any(f.endswith(".svg") for f in os.listdir(d))
        assert use_private_text_dir() == d


def test_joined_texts_align_colours_too():
    # as VMobject.align_points: the colour arrays are aligned with the points
    from manim import BLUE

    a = cached_text("1,234 B", MONO, 17, DARK.foreground)
    a[0].set_fill([RED, BLUE])  # a gradient: two fill colours
    b = cached_text("18 B", MONO, 17, DARK.foreground)
    anim = Transform(a, b)
    anim.begin()
    assert len(a[0].fill_rgbas) == len(anim.target_copy[0].fill_rgbas) == 2
    anim.interpolate(0.5)
    anim.finish()


def test_themed_text():
    from flashanim.engine.text import themed_text

    t = themed_text(DARK, "event 3 of 9", mono=True)
    want = cached_text("event 3 of 9", MONO, DARK.body_size, DARK.foreground)
    assert len(t) == len(want) == 1
    np.testing.assert_array_equal(t[0].points, want[0].points)
    np.testing.assert_array_equal(t[0].fill_rgbas, want[0].fill_rgbas)
    # other Text arguments: a new Text with them
    slanted = themed_text(DARK, "N", 20, RED, slant="ITALIC")
    assert slanted.slant == "ITALIC" and slanted.font == DARK.font


def test_a_tiny_frame_leaves_later_texts_as_they_should_be():
    # Pango lays Texts out as wide as the frame: at 40 px the atlas pieces wrap and
    # give no glyphs, and a line wraps. Built there first, neither may stay cached
    # for other frame sizes (the atlas did: every later string became a slow Text).
    s = "1,234.5 B"
    with tempconfig({"pixel_width": 40, "pixel_height": 30}):
        assert _glyph_text("12", MONO, 19.0, "#FFFFFF") is None
        assert _glyph_atlas(MONO, 19.0).glyph("1") is None
        wrapped = cached_text("wide line of words", DARK.font, 19, "#FFFFFF")
    with tempconfig({"pixel_width": 854, "pixel_height": 480}):
        composed = _glyph_text(s, MONO, 19.0, "#FFFFFF")
        assert composed is not None
        _compare(composed, Text(s, font=MONO, font_size=19, color="#FFFFFF"))
        line = cached_text("wide line of words", DARK.font, 19, "#FFFFFF")
        real = Text("wide line of words", font=DARK.font, font_size=19, color="#FFFFFF")
        assert line.height < 0.6 * wrapped.height  # one line, not the wrapped three
        _compare_joined(line, real)
