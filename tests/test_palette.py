"""The palette, measured from itself: distinct tensor hues, related derived colours,
a chart palette apart from every tensor colour, and charts that keep to it.

Distances are CIEDE2000 (:func:`flashanim.visuals.colorspace.delta_e2000`, checked
here against Sharma, Wu & Dalal's published test pairs), in normal vision and as
protanopes, deuteranopes and tritanopes see the colours (Machado et al. 2009).

Thresholds, and why:

* ``DISTINCT = 20`` (normal vision) between the tensors Q, K, V, O, S, P: one
  ΔE00 is a just-noticeable difference for large patches side by side, and the
  difference needed to tell colours apart at a glance grows several-fold for small
  marks (Stone, Szafir & Setlur, *An engineering model for color difference as a
  function of size*, 2014); 20 is a clear categorical difference for tiles a few
  percent of the frame wide. Under protanopia and deuteranopia (about 1 in 12 men)
  the bound is ``DISTINCT_CVD = 10``: the red-green axis collapses, only lightness
  and blue-yellow are left, and 10 is still several noticeable steps. Tritanopia
  (about 1 in 10,000) gets ``DISTINCT_TRITAN = 8``.
* The row statistics m, l, LSE are narrow labelled columns: ``STAT = 15`` (normal)
  and ``STAT_CVD = 6`` against each other and the tensors.
* A derived colour (dK, acc, alpha, ...) keeps its source's CIELAB hue within
  ``HUE_BOUND = 5`` degrees and differs from it by at least ``VARIANT = 8`` (a
  visible variant, not the same colour); value shades keep the hue within
  ``SHADE_HUE_BOUND = 8`` degrees (8-bit rounding moves the hue of the palest,
  least saturated shades by a few degrees).
* Chart colours stay ``CHART = 15`` (normal) and ``CHART_CVD = 8`` (protanopia,
  deuteranopia) from every tensor colour, derived ones included, and ``10`` apart
  from each other within a theme.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from flashanim.visuals import colorspace as cs
from flashanim.visuals.charts import series_colors
from flashanim.visuals.theme import (
    DERIVED_FROM,
    GRADIENT_OF,
    INK_CONTRAST,
    TENSOR_COLORS,
    THEMES,
)

TENSORS = ("Q", "K", "V", "O", "S", "P")
STATS = ("m", "l", "LSE")
DISTINCT, DISTINCT_CVD, DISTINCT_TRITAN = 20.0, 10.0, 8.0
STAT, STAT_CVD = 15.0, 6.0
HUE_BOUND, SHADE_HUE_BOUND, VARIANT = 5.0, 8.0, 8.0
CHART, CHART_CVD, CHART_APART = 15.0, 8.0, 10.0
VISIONS = ("normal", "protanopia", "deuteranopia", "tritanopia")


def de(c1: str, c2: str, vision: str = "normal") -> float:
    return cs.delta_e2000(
        cs.hex_to_lab(cs.simulate_cvd(c1, vision)),
        cs.hex_to_lab(cs.simulate_cvd(c2, vision)),
    )


def hue(color: str) -> float:
    return cs.lab_to_lch(cs.hex_to_lab(color))[2]


# -- the colour arithmetic itself ------------------------------------------------------
@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [  # Sharma, Wu & Dalal (2005), Table 1: pairs 1, 7, 11, 17, 25
        ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
        ((50, 0, 0), (50, -1, 2), 2.3669),
        ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792),
        ((50, -0.001, 2.49), (50, 0.0011, -2.49), 4.7461),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ],
)
def test_ciede2000_matches_published_pairs(lab1, lab2, expected):
    assert cs.delta_e2000(lab1, lab2) == pytest.approx(expected, abs=1e-4)
    assert cs.delta_e2000(lab2, lab1) == pytest.approx(expected, abs=1e-4)


def test_lab_round_trip_and_cvd_keeps_greys():
    assert cs.hex_to_lab("#FFFFFF") == pytest.approx([100, 0, 0], abs=0.01)
    assert cs.hex_to_lab("#000000") == pytest.approx([0, 0, 0], abs=0.01)
    for c in [*TENSOR_COLORS.values(), "#808080"]:
        assert cs.lab_to_hex(cs.hex_to_lab(c)) == c.upper()
    for kind in ("protanopia", "deuteranopia", "tritanopia"):
        # a dichromat sees greys as greys; red and green come closer
        for g in ("#000000", "#7F7F7F", "#FFFFFF"):
            assert de(g, cs.simulate_cvd(g, kind)) < 1.0
    assert de("#FF0000", "#00A000", "deuteranopia") < de("#FF0000", "#00A000") / 2
    with pytest.raises(ValueError, match="unknown colour vision"):
        cs.simulate_cvd("#FFFFFF", "achromatopsia")


# -- tensors ----------------------------------------------------------------------------
@pytest.mark.parametrize("vision", VISIONS)
def test_tensor_colours_clearly_distinct(vision):
    bound = {"normal": DISTINCT, "tritanopia": DISTINCT_TRITAN}.get(
        vision, DISTINCT_CVD
    )
    worst = min(
        (de(TENSOR_COLORS[a], TENSOR_COLORS[b], vision), a, b)
        for a, b in itertools.combinations(TENSORS, 2)
    )
    assert worst[0] >= bound, f"{vision}: {worst[1]}-{worst[2]} ΔE00 {worst[0]:.1f}"


def test_k_s_p_have_distinct_hues():
    # the case: K, S and P were three near hues (orange, vermillion, ochre)
    for a, b in itertools.combinations(("K", "S", "P"), 2):
        d = cs.hue_difference(hue(TENSOR_COLORS[a]), hue(TENSOR_COLORS[b]))
        assert d >= 30, f"{a}/{b}: hue angles {d:.0f}° apart"


@pytest.mark.parametrize("vision", VISIONS[:3])
def test_statistics_distinct(vision):
    bound = STAT if vision == "normal" else STAT_CVD
    for s in STATS:
        for t in (*TENSORS, *STATS):
            if t != s:
                d = de(TENSOR_COLORS[s], TENSOR_COLORS[t], vision)
                assert d >= bound, f"{vision}: {s}-{t} ΔE00 {d:.1f}"


def test_every_colour_readable_on_both_backgrounds():
    for th in THEMES.values():
        for name, c in TENSOR_COLORS.items():
            assert de(c, th.background) >= 25, f"{name} on {th.name}"
            assert cs.contrast_ratio(c, th.background) >= 1.6, f"{name} on {th.name}"


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_text_ink_reads_and_keeps_the_hue(theme):
    th = THEMES[theme]
    for name, c in TENSOR_COLORS.items():
        ink = th.ink(name).to_hex()
        assert cs.contrast_ratio(ink, th.background) >= INK_CONTRAST - 0.01, name
        assert cs.hue_difference(hue(ink), hue(c)) <= HUE_BOUND, name
        if cs.contrast_ratio(c, th.background) >= INK_CONTRAST:
            assert ink.upper() == c.upper(), f"{name}: readable, yet changed"


def test_no_two_tensors_share_a_colour_that_meet_on_screen():
    forward = ("Q", "K", "V", "O", "S", "P", "m", "l", "alpha", "LSE", "acc")
    backward = ("Q", "K", "V", "O", "S", "P", "LSE", "D", "dO", "dQ", "dK", "dV",
                "dP", "dS")  # fmt: skip
    for group in (forward, backward):
        for a, b in itertools.combinations(group, 2):
            assert de(TENSOR_COLORS[a], TENSOR_COLORS[b]) >= 5, (a, b)


# -- derived colours and shades ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(DERIVED_FROM))
def test_derived_colour_keeps_its_source_hue(name):
    src = DERIVED_FROM[name]
    c, base = TENSOR_COLORS[name], TENSOR_COLORS[src]
    assert cs.hue_difference(hue(c), hue(base)) <= HUE_BOUND
    assert de(c, base) >= VARIANT, f"{name} too close to {src}"


def test_gradients_are_gradients_of_tensors():
    assert GRADIENT_OF and all(g == "d" + t for g, t in GRADIENT_OF.items())


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_value_shades_keep_the_hue_and_vary_lightness(theme):
    th = THEMES[theme]
    for name, c in TENSOR_COLORS.items():
        shades = [th.shade(name, t).to_hex() for t in np.linspace(0, 1, 11)]
        assert shades[-1].upper() == c.upper()
        for s in shades:
            assert cs.hue_difference(hue(s), hue(c)) <= SHADE_HUE_BOUND, (name, s)
        ls = [cs.hex_to_lab(s)[0] for s in shades]
        # lightness runs monotonically from the theme's low end to the colour's
        step = np.diff(ls) * np.sign(ls[-1] - ls[0])
        assert (step >= -0.5).all() and abs(ls[-1] - ls[0]) >= 10, (name, ls)


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_gradient_tile_has_its_tensor_outline_and_a_hatch(theme):
    from flashanim.visuals.tiles import TileGrid

    th = THEMES[theme]
    for grad, base in GRADIENT_OF.items():
        g = TileGrid(grad, np.zeros((2, 2)), theme=th)
        assert len(g.hatch) > 0
        frame = g.frame.get_stroke_color().to_hex()
        assert de(frame, TENSOR_COLORS[base]) < 1, (grad, frame)
        for line in g.hatch:
            c = line.get_stroke_color().to_hex()
            assert cs.hue_difference(hue(c), hue(TENSOR_COLORS[base])) <= HUE_BOUND
            # the hatch shows on every shade of the tile: far in lightness from all
            for t in np.linspace(0, 1, 6):
                assert de(c, th.shade(grad, t).to_hex()) >= VARIANT, (grad, t)
    assert len(TileGrid("K", np.zeros((2, 2)), theme=th).hatch) == 0


# -- charts -----------------------------------------------------------------------------
@pytest.mark.parametrize("theme", sorted(THEMES))
def test_chart_palette_apart_from_tensor_colours(theme):
    th = THEMES[theme]
    chart = dict(series_colors(th))
    chart["highlight"] = th.highlight
    for key, c in chart.items():
        for name, t in TENSOR_COLORS.items():
            for vision in VISIONS[:3]:
                bound = CHART if vision == "normal" else CHART_CVD
                d = de(c, t, vision)
                assert d >= bound, f"{theme} {key} vs {name} ({vision}): {d:.1f}"
        assert de(c, th.background) >= 15, f"{theme} {key} on the background"
    distinct = {th.chart_color(k) for k in ("standard", "flash", "memory", "floor")}
    for a, b in itertools.combinations(distinct, 2):
        for vision in VISIONS[:3]:
            assert de(a, b, vision) >= CHART_APART, (theme, a, b, vision)


def _render_section_ends(scene_module: str, cls: str, theme: str, media: Path,
                         collect, size: tuple[int, int]) -> None:  # fmt: skip
    """Render ``scenes/<scene_module>.py:<cls>`` in ``theme`` at ``size`` pixels,
    calling ``collect(scene)`` at every section end."""
    from manim import tempconfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenes"))
    try:
        mod = __import__(scene_module)
    finally:
        sys.path.pop(0)

    class Probe(getattr(mod, cls)):
        def next_section(self, *args, **kwargs):
            collect(self)
            super().next_section(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setenv("FLASHANIM_THEME", theme)
    opts = {"pixel_width": size[0], "pixel_height": size[1], "frame_rate": 2,
            "media_dir": str(media), "disable_caching": True,
            "progress_bar": "none", "verbosity": "WARNING"}  # fmt: skip
    try:
        with tempconfig(opts):
            scene = Probe()
            scene.render()
            collect(scene)
    finally:
        mp.undo()


def _colours_used(scene_module: str, cls: str, theme: str, media: Path) -> set[str]:
    """Every fill and stroke colour (not transparent) on screen at any section end
    of ``scenes/<scene_module>.py:<cls>``, rendered in ``theme``."""
    from manim import VMobject

    seen: set[str] = set()

    def collect(scene) -> None:
        for top in scene.mobjects:
            for m in top.get_family():
                if not isinstance(m, VMobject) or not len(m.points):
                    continue
                pairs = [*zip(m.get_fill_colors(), m.get_fill_opacities(),
                              strict=False),
                         *zip(m.get_stroke_colors(), m.get_stroke_opacities(),
                              strict=False)]  # fmt: skip
                if m.get_stroke_width() == 0:
                    pairs = pairs[: len(m.get_fill_colors())]
                seen.update(c.to_hex().upper() for c, o in pairs if o > 0.05)

    # 480p as tests/test_talk_cut.py renders these clips: Pango wraps text at the
    # frame's pixel width, and the process-wide text cache would keep a tiny
    # render's wrapping for later renders
    _render_section_ends(scene_module, cls, theme, media, collect, (854, 480))
    return seen


@pytest.mark.render
@pytest.mark.parametrize("theme", sorted(THEMES))
@pytest.mark.parametrize(
    ("module", "cls", "keys"),
    [
        ("talk_bottleneck", "TalkBottleneck", ("matmul", "memory", "fused")),
        ("talk_payoff", "TalkPayoff", ("standard", "flash")),
    ],
)
def test_talk_charts_use_no_tensor_colour(module, cls, keys, theme, tmp_path):
    """The talk's chart clips draw no tensor: every colour on screen must be
    apart from every tensor colour, and the chart palette must be what they use."""
    th = THEMES[theme]
    used = _colours_used(module, cls, theme, tmp_path)
    for k in keys:
        assert th.chart_color(k).upper() in used, f"{module} does not use {k}"
    for c in used:
        for name, t in TENSOR_COLORS.items():
            assert de(c, t) >= CHART, f"{module} ({theme}) draws {c}, near {name}"


# -- text on the light theme ------------------------------------------------------------
@pytest.mark.parametrize("theme", sorted(THEMES))
def test_scene_text_helper_inks_tensor_colours(theme):
    """TraceScene.text (every scene's text helper) gives a tensor-coloured text its
    ink: at least INK_CONTRAST against the background, in the tensor's hue."""
    from types import SimpleNamespace

    from flashanim.scene import TraceScene
    from flashanim.visuals.theme import tensor_color

    th = THEMES[theme]
    scene = SimpleNamespace(theme=th, text_width=None)
    for name, c in TENSOR_COLORS.items():
        for color in (tensor_color(name), name, c):
            got = _drawn(TraceScene.text(scene, name, th.small_size, color))
            assert cs.contrast_ratio(got, th.background) >= INK_CONTRAST - 0.01, (
                f"{theme}: {name} text drawn {got}"
            )
            assert cs.hue_difference(hue(got), hue(c)) <= HUE_BOUND, name
    assert _drawn(TraceScene.text(scene, "x")) == th.foreground.upper()


def _drawn(text) -> str:
    """The fill colour of ``text``'s glyphs (its first leaf with points)."""
    leaf = next(m for m in text.get_family() if len(m.points))
    return leaf.get_fill_color().to_hex().upper()


def _text_colours(scene_module: str, cls: str, theme: str, media: Path) -> dict:
    """colour -> a text drawn in it, for every Text on screen at any section end of
    ``scenes/<scene_module>.py:<cls>`` rendered in ``theme`` (small: only colours
    are read)."""
    from manim import Text

    seen: dict[str, str] = {}

    def collect(scene) -> None:
        for top in scene.mobjects:
            for m in top.get_family():
                if isinstance(m, Text) and len(m.get_family()) > 1:
                    leaf = next((g for g in m.get_family() if len(g.points)), None)
                    if leaf is not None and leaf.get_fill_opacity() > 0.05:
                        seen.setdefault(_drawn(m), m.text)

    _render_section_ends(scene_module, cls, theme, media, collect, (426, 240))
    return seen


@pytest.mark.render
def test_light_theme_scene_text_reads(tmp_path):
    """memory_hierarchy on the light theme (it writes text in S's red, Q's blue,
    O's and LSE's colours): every text on screen contrasts at least INK_CONTRAST
    with the background."""
    th = THEMES["light"]
    seen = _text_colours("memory_hierarchy", "MemoryHierarchyScene", "light",
                         tmp_path)  # fmt: skip
    tensor_hued = [c for c in seen
                   if min(de(c, t) for t in TENSOR_COLORS.values()) < 25]  # fmt: skip
    assert tensor_hued, "no tensor-coloured text found: the test sees nothing"
    for c, s in seen.items():
        r = cs.contrast_ratio(c, th.background)
        assert r >= INK_CONTRAST - 0.01, f"{s!r} drawn {c}: contrast {r:.2f}"
