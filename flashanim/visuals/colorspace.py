"""Colour arithmetic for the palette: sRGB, CIELAB / LCh, CIEDE2000, colour blindness.

Pure numpy, no Manim: :mod:`~flashanim.visuals.theme` builds its value shades with
:func:`lab_to_hex` (lightness varies, hue stays), and ``tests/test_palette.py``
measures the palette with :func:`delta_e2000` and :func:`simulate_cvd`.

* sRGB (IEC 61966-2-1) to CIE XYZ (D65) to CIELAB, and back;
* :func:`delta_e2000` -- the CIEDE2000 colour difference (Sharma, Wu & Dalal, *The
  CIEDE2000 color-difference formula*, Color Res. Appl. 30, 2005);
* :func:`simulate_cvd` -- dichromat vision (protanopia, deuteranopia, tritanopia) by
  the matrices of Machado, Oliveira & Fernandes (*A physiologically-based model for
  simulation of color vision deficiency*, IEEE TVCG 15, 2009; severity 1.0), applied
  to linear RGB;
* :func:`contrast_ratio` -- WCAG 2 contrast between two colours.

Examples
--------
>>> round(delta_e2000(hex_to_lab("#FFFFFF"), hex_to_lab("#000000")), 1)
100.0
>>> lab_to_hex(hex_to_lab("#4A9BE0"))
'#4A9BE0'
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "hex_to_rgb",
    "rgb_to_hex",
    "hex_to_lab",
    "lab_to_hex",
    "rgb_to_lab",
    "lab_to_rgb",
    "lab_to_linear_rgb",
    "lab_to_lch",
    "lch_to_lab",
    "hue_difference",
    "delta_e2000",
    "simulate_cvd",
    "relative_luminance",
    "contrast_ratio",
    "CVD_MATRICES",
]

# sRGB (linear) -> XYZ, D65 white (IEC 61966-2-1)
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE = _RGB_TO_XYZ @ np.ones(3)

#: Machado et al. (2009), severity 1.0, on linear RGB.
CVD_MATRICES: dict[str, np.ndarray] = {
    "protanopia": np.array(
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ]
    ),
    "deuteranopia": np.array(
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ]
    ),
    "tritanopia": np.array(
        [
            [1.255528, -0.076749, -0.178779],
            [-0.078411, 0.930809, 0.147602],
            [0.004733, 0.691367, 0.303900],
        ]
    ),
}


def hex_to_rgb(color: str) -> np.ndarray:
    """``"#RRGGBB"`` -> sRGB in ``[0, 1]`` (gamma-encoded)."""
    s = str(color).strip().lstrip("#")
    if len(s) != 6:
        raise ValueError(f"not a #RRGGBB colour: {color!r}")
    return np.array([int(s[k : k + 2], 16) / 255 for k in (0, 2, 4)])


def rgb_to_hex(rgb) -> str:
    """sRGB in ``[0, 1]`` -> ``"#RRGGBB"`` (clipped to the gamut)."""
    v = np.clip(np.round(np.asarray(rgb, dtype=float) * 255), 0, 255).astype(int)
    return "#{:02X}{:02X}{:02X}".format(*v)


def _linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=float)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def _encode(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(np.asarray(lin, dtype=float), 0.0, 1.0)
    return np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb) -> np.ndarray:
    """sRGB in ``[0, 1]`` -> CIELAB ``(L*, a*, b*)`` (D65)."""
    xyz = _RGB_TO_XYZ @ _linear(rgb) / _WHITE
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def lab_to_linear_rgb(lab) -> np.ndarray:
    """CIELAB -> linear RGB, not clipped (outside ``[0, 1]``: out of the sRGB
    gamut)."""
    L, a, b = (float(x) for x in lab)
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    eps, kappa = 216 / 24389, 24389 / 27
    xyz = np.where(f**3 > eps, f**3, (116 * f - 16) / kappa)
    xyz[1] = fy**3 if L > kappa * eps else L / kappa
    return _XYZ_TO_RGB @ (xyz * _WHITE)


def lab_to_rgb(lab) -> np.ndarray:
    """CIELAB -> sRGB in ``[0, 1]``; out-of-gamut values are clipped."""
    return _encode(lab_to_linear_rgb(lab))


def hex_to_lab(color: str) -> np.ndarray:
    """``"#RRGGBB"`` -> CIELAB."""
    return rgb_to_lab(hex_to_rgb(color))


def lab_to_hex(lab) -> str:
    """CIELAB -> ``"#RRGGBB"``."""
    return rgb_to_hex(lab_to_rgb(lab))


def lab_to_lch(lab) -> tuple[float, float, float]:
    """CIELAB -> ``(L*, C*, h)`` with the hue angle ``h`` in degrees ``[0, 360)``."""
    L, a, b = (float(x) for x in lab)
    return L, math.hypot(a, b), math.degrees(math.atan2(b, a)) % 360


def lch_to_lab(L: float, C: float, h: float) -> np.ndarray:
    """``(L*, C*, h in degrees)`` -> CIELAB."""
    r = math.radians(h)
    return np.array([L, C * math.cos(r), C * math.sin(r)])


def hue_difference(h1: float, h2: float) -> float:
    """Smallest angle between two hue angles, in degrees ``[0, 180]``."""
    d = abs(h1 - h2) % 360
    return min(d, 360 - d)


def delta_e2000(lab1, lab2) -> float:
    """The CIEDE2000 difference of two CIELAB colours (k_L = k_C = k_H = 1)."""
    L1, a1, b1 = (float(x) for x in lab1)
    L2, a2, b2 = (float(x) for x in lab2)
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(c_bar**7 / (c_bar**7 + 25**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360 if c1p else 0.0
    h2p = math.degrees(math.atan2(b2, a2p)) % 360 if c2p else 0.0
    dLp, dCp = L2 - L1, c2p - c1p
    if c1p * c2p == 0:
        dhp = 0.0
    elif abs(h2p - h1p) <= 180:
        dhp = h2p - h1p
    elif h2p - h1p > 180:
        dhp = h2p - h1p - 360
    else:
        dhp = h2p - h1p + 360
    dHp = 2 * math.sqrt(c1p * c2p) * math.sin(math.radians(dhp / 2))
    Lbp, Cbp = (L1 + L2) / 2, (c1p + c2p) / 2
    if c1p * c2p == 0:
        hbp = h1p + h2p
    elif abs(h1p - h2p) <= 180:
        hbp = (h1p + h2p) / 2
    elif h1p + h2p < 360:
        hbp = (h1p + h2p + 360) / 2
    else:
        hbp = (h1p + h2p - 360) / 2
    t = (
        1
        - 0.17 * math.cos(math.radians(hbp - 30))
        + 0.24 * math.cos(math.radians(2 * hbp))
        + 0.32 * math.cos(math.radians(3 * hbp + 6))
        - 0.20 * math.cos(math.radians(4 * hbp - 63))
    )
    d_theta = 30 * math.exp(-(((hbp - 275) / 25) ** 2))
    rc = 2 * math.sqrt(Cbp**7 / (Cbp**7 + 25**7))
    sl = 1 + 0.015 * (Lbp - 50) ** 2 / math.sqrt(20 + (Lbp - 50) ** 2)
    sc = 1 + 0.045 * Cbp
    sh = 1 + 0.015 * Cbp * t
    rt = -math.sin(math.radians(2 * d_theta)) * rc
    return math.sqrt(
        (dLp / sl) ** 2
        + (dCp / sc) ** 2
        + (dHp / sh) ** 2
        + rt * (dCp / sc) * (dHp / sh)
    )


def simulate_cvd(color: str, kind: str) -> str:
    """``color`` as a dichromat of ``kind`` sees it (``"protanopia"``,
    ``"deuteranopia"``, ``"tritanopia"``; ``"normal"`` returns it unchanged)."""
    if kind == "normal":
        return rgb_to_hex(hex_to_rgb(color))
    try:
        m = CVD_MATRICES[kind]
    except KeyError:
        raise ValueError(
            f"unknown colour vision {kind!r}; known: normal, {', '.join(CVD_MATRICES)}"
        ) from None
    return rgb_to_hex(_encode(m @ _linear(hex_to_rgb(color))))


def relative_luminance(color: str) -> float:
    """WCAG 2 relative luminance of ``color``."""
    return float(np.array([0.2126, 0.7152, 0.0722]) @ _linear(hex_to_rgb(color)))


def contrast_ratio(c1: str, c2: str) -> float:
    """WCAG 2 contrast ratio ``(L1 + 0.05) / (L2 + 0.05)``, lighter over darker."""
    a, b = sorted((relative_luminance(c1), relative_luminance(c2)), reverse=True)
    return (a + 0.05) / (b + 0.05)
