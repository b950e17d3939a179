"""Themes: fixed tensor colours, a chart palette, backgrounds, fonts and sizes.

Every tensor has ONE colour in every scene and in both themes, so that a viewer who
learnt "Q is blue" in the first video still reads it right in the last one. Q, K, V
and O take the Okabe-Ito colour-blind-safe palette (Okabe & Ito, *Color Universal
Design*, 2008: blue lightened, orange, bluish green, reddish purple); S is red and P
violet, chosen so that K, S and P differ clearly in hue, also as protanopes and
deuteranopes see them; the row statistics m, l and LSE take cyan, khaki-lime and
dark olive. ``tests/test_palette.py`` measures all of it (CIEDE2000, with a colour-blind
simulation) from the palette itself.

Derived tensors (:data:`DERIVED_FROM`: the gradients dQ, dK, ..., the accumulator,
alpha, D) keep the CIELAB hue of the tensor they come from and differ in lightness
(:func:`variant`); gradient tiles also carry a hatch in their tensor's colour. The
value shades of a tile keep its hue too (:meth:`Theme.shade`): only lightness
varies. Colour is never the only cue: every tile also carries its name.

Charts take their own palette from the theme (:meth:`Theme.chart_color`): dark
grey, the foreground and the highlight, none near a tensor's colour, so that in a
chart no tensor colour means something else.

A :class:`Theme` holds the background, foreground and panel colours, the chart
palette, the fonts and the font sizes; :func:`get_theme` returns one of
:data:`THEMES` by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING

from manim import ManimColor

from .colorspace import (
    contrast_ratio,
    hex_to_lab,
    lab_to_hex,
    lab_to_lch,
    lab_to_linear_rgb,
    lch_to_lab,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "TENSOR_COLORS",
    "INK_CONTRAST",
    "DERIVED_FROM",
    "GRADIENT_OF",
    "variant",
    "THEMES",
    "Theme",
    "DARK",
    "LIGHT",
    "get_theme",
    "tensor_color",
]

#: Lightness (CIELAB L*) that a derived colour moves towards: the middle of the band
#: that reads on both backgrounds (see :func:`variant`).
_MID_L = 55.0


def _in_gamut_lab(L: float, C: float, h: float) -> str:
    """The colour ``(L*, C*, h)``, with its chroma reduced (never its hue or its
    lightness) until it fits in sRGB; as ``"#RRGGBB"``."""
    lo, hi = 0.0, C
    if _fits(lch_to_lab(L, C, h)):
        return lab_to_hex(lch_to_lab(L, C, h))
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _fits(lch_to_lab(L, mid, h)) else (lo, mid)
    return lab_to_hex(lch_to_lab(L, lo, h))


def _fits(lab) -> bool:
    rgb = lab_to_linear_rgb(lab)
    return bool(((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all())


def variant(base: str, d_lightness: float = 13.0) -> str:
    """A colour visibly tied to ``base``: the same CIELAB hue angle, the lightness
    moved by ``d_lightness`` towards the middle of the readable band (L* = 55; a
    negative value moves it away), chroma kept where sRGB allows.

    Examples
    --------
    >>> q, dq = hex_to_lab("#4A9BE0"), hex_to_lab(variant("#4A9BE0"))
    >>> round(q[0] - dq[0]), round(lab_to_lch(q)[2]) == round(lab_to_lch(dq)[2])
    (13, True)
    """
    L, C, h = lab_to_lch(hex_to_lab(base))
    L2 = L - d_lightness if L >= _MID_L else L + d_lightness
    return _in_gamut_lab(L2, C, h)


#: Base colours: each has a hue of its own (tests/test_palette.py measures their
#: CIEDE2000 distances, also as protanopes and deuteranopes see them).
_BASE = {
    # inputs and output: Okabe-Ito blue (lightened), orange, bluish green,
    # reddish purple
    "Q": "#4A9BE0",
    "K": "#E69F00",
    "V": "#009E73",
    "O": "#CC79A7",
    # scores and probabilities: red and violet, far from K's orange and from each
    # other (and from Q and O) in normal and in red-green colour-blind vision
    "S": "#D63B2F",
    "P": "#7853DA",
    # running statistics of a row: cyan, khaki-lime, dark olive (LSE = m + log l)
    "m": "#52B5CC",
    "l": "#A3AE6C",
    "LSE": "#617516",
}

#: Derived colours: the hue of the tensor they come from (name -> source).
DERIVED_FROM: Mapping[str, str] = MappingProxyType(
    {
        "acc": "O",  # the accumulator becomes O
        "alpha": "m",  # alpha = exp(m_old - m_new): deeper than m
        "D": "O",  # D = rowsum(dO * O): lighter than O
        # gradients: the hue of their tensor (their tiles also carry a hatch)
        "dO": "O",
        "dQ": "Q",
        "dK": "K",
        "dV": "V",
        "dP": "P",
        "dS": "S",
    }
)

#: How far (L*) each derived colour moves from its source's lightness.
_DERIVED_SHIFT = {"acc": 10.0, "alpha": 12.0, "D": -13.0}

#: The fixed colour of each tensor (hex), the same in every scene and both themes.
TENSOR_COLORS: Mapping[str, str] = MappingProxyType(
    {
        **_BASE,
        **{
            name: variant(_BASE[src], _DERIVED_SHIFT.get(name, 13.0))
            for name, src in DERIVED_FROM.items()
        },
    }
)

#: Gradient tensors and the tensor each is the gradient of.
GRADIENT_OF: Mapping[str, str] = MappingProxyType(
    {k: v for k, v in DERIVED_FROM.items() if k.startswith("d")}
)


def tensor_color(name: str) -> ManimColor:
    """The fixed colour of tensor ``name`` (e.g. ``"Q"``, ``"m"``, ``"acc"``).

    Parameters
    ----------
    name
        A tensor name of :data:`TENSOR_COLORS`.

    Raises
    ------
    KeyError
        For a name without a colour (the message lists the known names).

    Examples
    --------
    .. code-block:: python

        from manim import Scene, Square
        from flashanim.visuals import tensor_color

        class QSquare(Scene):
            def construct(self):
                self.add(Square().set_fill(tensor_color("Q"), opacity=0.5))
    """
    try:
        return ManimColor(TENSOR_COLORS[name])
    except KeyError:
        raise KeyError(
            f"no colour for tensor {name!r}; known: {', '.join(TENSOR_COLORS)}"
        ) from None


@dataclass(frozen=True)
class Theme:
    """Colours, fonts and sizes of one look.

    Sizes are Manim ``font_size`` values chosen to stay legible at 480p (854x480):
    ``small`` text is about 11 pixels high there, the least we allow.

    Attributes
    ----------
    name
        ``"dark"`` or ``"light"``.
    background, foreground, muted
        Frame background, main text colour, secondary text colour.
    panel_fill, panel_stroke
        Memory panel fill and border.
    cell_low
        Fill of an empty (not yet written) cell.
    shade_low
        CIELAB lightness of the lowest value in a shaded (heat-map) tile: dark on
        the dark theme, pale on the light one. Shades keep the tensor's hue and
        vary only lightness (and chroma with it), from here to the tensor's own
        colour (:meth:`shade`).
    hatch_lightness
        CIELAB lightness of a gradient tile's hatch (:meth:`hatch_color`): at the
        far end from :attr:`shade_low`, so the lines show on every shade.
    highlight
        Code highlight and "current" markers.
    masked
        Fill of masked (``-inf``) entries.
    chart_standard, chart_flash, chart_memory, chart_floor
        The chart palette (no tensor's colour, see :meth:`chart_color`): standard
        attention and its matmuls; FlashAttention (the foreground: the strongest
        mark); memory-bound steps (the highlight); the unavoidable-traffic floor.
    font, mono_font
        Pango font families for text and code.
    title_size, caption_size, label_size, body_size, small_size
        Font sizes.
    footer_size
        Font size of source lines and footers (:func:`~flashanim.visuals.caption.
        source_lines`): wrapped onto lines, never scaled below it (a capital is
        about 9 px high at 480p, 20 px at 1080p).
    """

    name: str
    background: str
    foreground: str
    muted: str
    panel_fill: str
    panel_stroke: str
    cell_low: str
    highlight: str
    masked: str
    shade_low: float
    hatch_lightness: float
    chart_standard: str
    chart_flash: str
    chart_memory: str
    chart_floor: str
    font: str = "DejaVu Sans"
    mono_font: str = "DejaVu Sans Mono"
    title_size: float = 30
    caption_size: float = 24
    label_size: float = 20
    body_size: float = 17
    small_size: float = 14
    footer_size: float = 15

    def __deepcopy__(self, memo: dict) -> Theme:
        return self  # immutable: mobject copies share their theme

    def color(self, tensor: str) -> ManimColor:
        """The fixed colour of ``tensor`` (see :func:`tensor_color`)."""
        return tensor_color(tensor)

    def shade(self, tensor: str, t: float) -> ManimColor:
        """Heat-map colour for a value at position ``t`` in ``[0, 1]`` of its range.

        ``t = 1`` is the tensor's own colour; lower values keep its CIELAB hue and
        move its lightness towards :attr:`shade_low` (chroma falls with it, to a
        fifth at ``t = 0``), so every shade of a tile reads as its tensor's colour.
        """
        t = min(max(float(t), 0.0), 1.0)
        return ManimColor(_shade_hex(tensor, self.shade_low, round(t * 255)))

    def ink(self, color) -> ManimColor:
        """Text colour for a tensor name or a colour: the colour itself where it
        contrasts at least :data:`INK_CONTRAST` with :attr:`background` (every tensor
        colour on the dark theme), else the same CIELAB hue moved in lightness
        (deeper on the light theme) until it does: K's "256 B" stays orange, and
        reads on white.
        """
        hx = TENSOR_COLORS[color] if color in TENSOR_COLORS else ManimColor(color)
        return ManimColor(_ink_hex(ManimColor(hx).to_hex().upper(), self.background))

    def hatch_color(self, tensor: str) -> ManimColor:
        """The hatch of a gradient tile of ``tensor``'s gradient: ``tensor``'s hue
        at :attr:`hatch_lightness` (light lines on the dark theme, deep ones on the
        light theme)."""
        _, C, h = lab_to_lch(hex_to_lab(TENSOR_COLORS[tensor]))
        return ManimColor(_in_gamut_lab(self.hatch_lightness, C, h))

    def chart_color(self, key: str) -> str:
        """Colour of a chart series: ``standard`` (also ``math``, ``matmul``),
        ``flash`` (also ``ours``, ``fused``, ``pytorch-flash``), ``memory``
        (memory-bound steps) or ``floor``.

        Raises
        ------
        KeyError
            For another key (the message lists them).
        """
        try:
            field = _CHART_KEYS[key]
        except KeyError:
            raise KeyError(
                f"no chart colour {key!r}; known: {', '.join(_CHART_KEYS)}"
            ) from None
        return getattr(self, field)


#: Chart series -> the :class:`Theme` field holding its colour.
_CHART_KEYS = {
    "standard": "chart_standard",
    "math": "chart_standard",
    "matmul": "chart_standard",
    "flash": "chart_flash",
    "ours": "chart_flash",
    "fused": "chart_flash",
    "pytorch-flash": "chart_flash",
    "memory": "chart_memory",
    "floor": "chart_floor",
}


#: The least WCAG contrast ratio of text against the background (:meth:`Theme.ink`):
#: the bound for large text and for graphics (WCAG 2.1, 1.4.3 and 1.4.11).
INK_CONTRAST = 3.0


@lru_cache(maxsize=1024)
def _ink_hex(color: str, background: str) -> str:
    if contrast_ratio(color, background) >= INK_CONTRAST:
        return color
    L, C, h = lab_to_lch(hex_to_lab(color))
    lo, hi = (0.0, L) if hex_to_lab(background)[0] > L else (L, 100.0)
    deeper = hi == L
    for _ in range(30):  # the lightness nearest L that still contrasts enough
        mid = (lo + hi) / 2
        ok = contrast_ratio(_in_gamut_lab(mid, C, h), background) >= INK_CONTRAST
        if deeper:
            lo, hi = (mid, hi) if ok else (lo, mid)
        else:
            lo, hi = (lo, mid) if ok else (mid, hi)
    return _in_gamut_lab(lo if deeper else hi, C, h)


@lru_cache(maxsize=8192)
def _shade_hex(tensor: str, low: float, k: int) -> str:
    L, C, h = lab_to_lch(hex_to_lab(TENSOR_COLORS[tensor]))
    t = k / 255
    return _in_gamut_lab(low + (L - low) * t, C * (0.2 + 0.8 * t), h)


#: Dark theme (default): near-black background.
DARK = Theme(
    name="dark",
    background="#121417",
    foreground="#ECEFF1",
    muted="#9AA3AD",
    panel_fill="#1C2026",
    panel_stroke="#5B6672",
    cell_low="#23272E",
    highlight="#F0E442",
    masked="#3A3F47",
    shade_low=22.0,
    hatch_lightness=85.0,
    chart_standard="#B8B0A8",
    chart_flash="#ECEFF1",
    chart_memory="#F0E442",
    chart_floor="#555555",
)

#: Light theme: near-white background, for slides with white backgrounds.
LIGHT = Theme(
    name="light",
    background="#FAFAF7",
    foreground="#16191D",
    muted="#5C6670",
    panel_fill="#EEF0F2",
    panel_stroke="#8A949E",
    cell_low="#E3E6EA",
    highlight="#5C3A00",
    masked="#B9BEC4",
    shade_low=93.0,
    hatch_lightness=30.0,
    chart_standard="#555555",
    chart_flash="#16191D",
    chart_memory="#5C3A00",
    chart_floor="#B8B0A8",
)

#: Themes by name.
THEMES: Mapping[str, Theme] = MappingProxyType({"dark": DARK, "light": LIGHT})


def get_theme(name: str | Theme = "dark") -> Theme:
    """Return the theme called ``name`` (a :class:`Theme` is returned as is).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the themes.

    Examples
    --------
    .. code-block:: python

        from manim import Scene, Text
        from flashanim.visuals import get_theme

        class Hello(Scene):
            def construct(self):
                th = get_theme("light")
                self.camera.background_color = th.background
                self.add(Text("Q", color=th.color("Q"), font=th.font))
    """
    if isinstance(name, Theme):
        return name
    key = str(name).strip().lower()
    if key not in THEMES:
        raise ValueError(f"unknown theme {name!r}; choose one of: {', '.join(THEMES)}")
    return THEMES[key]
