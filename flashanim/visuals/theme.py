"""Themes: fixed tensor colours, backgrounds, fonts and sizes for every scene.

Every tensor has ONE colour in every scene and in both themes, so that a viewer who
learnt "Q is blue" in the first video still reads it right in the last one. The
colours come from the Okabe-Ito colour-blind-safe palette (Okabe & Ito, *Color
Universal Design*, 2008), darkened or lightened a little where a colour must hold
its own against both a near-black and a near-white background. Colour is never the
only cue: every tile also carries its name.

A :class:`Theme` holds the background, foreground and panel colours, the fonts and
the font sizes; :func:`get_theme` returns one of :data:`THEMES` by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from manim import ManimColor, interpolate_color

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "TENSOR_COLORS",
    "THEMES",
    "Theme",
    "DARK",
    "LIGHT",
    "get_theme",
    "tensor_color",
]

#: The fixed colour of each tensor (hex), the same in every scene and both themes.
TENSOR_COLORS: Mapping[str, str] = MappingProxyType(
    {
        # inputs and output (Okabe-Ito blue lightened, orange, bluish green,
        # reddish purple)
        "Q": "#4A9BE0",
        "K": "#E69F00",
        "V": "#009E73",
        "O": "#CC79A7",
        # scores and probabilities (vermillion; yellow darkened to ochre so it shows
        # on white)
        "S": "#D55E00",
        "P": "#C7A200",
        # running statistics (sky blue, lavender, slate grey, indigo, olive)
        "m": "#56B4E9",
        "l": "#A48BE0",
        "alpha": "#8D99A6",
        "LSE": "#6C7FD8",
        "D": "#9AA63A",
        # the accumulator becomes O: a deeper shade of O's colour
        "acc": "#B0608E",
        # gradients: the colour of their tensor, deeper
        "dO": "#9E4F80",
        "dQ": "#2F76B8",
        "dK": "#B37A00",
        "dV": "#007559",
        "dP": "#B8864A",
        "dS": "#A8481A",
    }
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
        Colour of the lowest value in a shaded (heat-map) tile; the highest takes the
        tensor's colour.
    highlight
        Code highlight and "current" markers.
    masked
        Fill of masked (``-inf``) entries.
    font, mono_font
        Pango font families for text and code.
    title_size, caption_size, label_size, body_size, small_size
        Font sizes.
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
    font: str = "DejaVu Sans"
    mono_font: str = "DejaVu Sans Mono"
    title_size: float = 30
    caption_size: float = 24
    label_size: float = 20
    body_size: float = 17
    small_size: float = 14

    def __deepcopy__(self, memo: dict) -> Theme:
        return self  # immutable: mobject copies share their theme

    def color(self, tensor: str) -> ManimColor:
        """The fixed colour of ``tensor`` (see :func:`tensor_color`)."""
        return tensor_color(tensor)

    def shade(self, tensor: str, t: float) -> ManimColor:
        """Heat-map colour for a value at position ``t`` in ``[0, 1]`` of its range.

        ``t = 0`` gives :attr:`cell_low`, ``t = 1`` the tensor's own colour.
        """
        t = min(max(float(t), 0.0), 1.0)
        return interpolate_color(
            ManimColor(self.cell_low), tensor_color(tensor), 0.15 + 0.85 * t
        )


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
    highlight="#B8860B",
    masked="#B9BEC4",
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
