"""The talk cut's scene base: a title card, one caption, a footer, big type.

:class:`TalkClip` is the base of every ``scenes/talk_*.py``. It sets the theme, opens
with a title card (the clip's one idea), and offers the few pieces a clip needs:
:meth:`~TalkClip.say` (one caption line at the bottom, replaced as the story goes),
:meth:`~TalkClip.footer` (the source line), :meth:`~TalkClip.text` and
:meth:`~TalkClip.formula` (Pango markup: italics, sub- and superscripts, instead of
LaTeX). Type sizes are chosen for 1080p: no text's capital height is under
:data:`MIN_PX` pixels there.

At every section end (and at the end of the clip) the texts on screen are written
down in :attr:`TalkClip.screens` -- string, height in pixels at 1080p, words,
whether it is a footer -- so that a test can check the readability rules without a
full-quality render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from manim import (
    DOWN,
    LEFT,
    ORIGIN,
    RIGHT,
    UP,
    FadeIn,
    FadeOut,
    MarkupText,
    Mobject,
    Text,
    VGroup,
)

from .engine.text import themed_text, use_private_text_dir
from .scene import TraceScene
from .visuals.caption import Caption

__all__ = [
    "MIN_PX",
    "SIZES",
    "TalkClip",
    "ScreenText",
    "text_px",
    "cap_px_per_font_size",
]

#: Least capital height of any text on screen, in pixels of a 1080p frame.
MIN_PX = 28
#: Most words of prose on screen at once (footers aside).
MAX_WORDS = 25
#: Most words on screen at once, labels included (footers and formulas aside).
MAX_ALL_WORDS = 40
#: Font sizes (Manim ``font_size``): title card, idea line, clip header, caption,
#: label, footer. At 1080p a capital is about 1.37 px per unit of font size, so
#: the smallest (footer, 21) is about 29 px.
SIZES = {
    "title": 50,
    "idea": 32,
    "header": 30,
    "caption": 30,
    "label": 26,
    "footer": 21,
}
#: Seconds a caption is held per word after it appears (a slow reader's pace).
READ_SECONDS_PER_WORD = 0.22
#: Pango's ``<sub>``/``<sup>``/``<small>`` shrink text by this factor.
PANGO_SMALLER = 1 / 1.2


@lru_cache(maxsize=4)
def cap_px_per_font_size(font: str = "DejaVu Sans") -> float:
    """Height in pixels at 1080p of a capital ``H`` per unit of ``font_size``
    (measured from Pango's glyph, not assumed)."""
    use_private_text_dir()
    h = Text("H", font=font, font_size=100)
    return h.height * 1080 / 8.0 / 100


def text_px(t: Text | MarkupText) -> float:
    """Capital height at 1080p of the smallest type in ``t`` (its current size;
    sub- and superscripts count at their smaller size)."""
    base = getattr(t, "talk_size", None)
    if base is not None:  # (font size, height) at creation: scaled since by h / h0
        fs, h0 = base
        px = fs * (t.height / h0 if h0 > 0 else 1.0) * cap_px_per_font_size()
    else:
        px = float(t.font_size) * cap_px_per_font_size()
    src = getattr(t, "original_text", "") or getattr(t, "text", "")
    if isinstance(t, MarkupText) and re.search(r"<(sub|sup|small)>", src):
        depth = max(len(re.findall(r"<(?:sub|sup|small)>", part))
                    for part in re.split(r"</(?:sub|sup|small)>", src))  # fmt: skip
        px *= PANGO_SMALLER**depth
    return px


def plain(s: str) -> str:
    """Markup without its tags."""
    return re.sub(r"<[^>]+>", "", s)


def words(s: str) -> int:
    """Words of ``s``: whitespace-separated tokens with a letter in them."""
    return sum(any(c.isalpha() for c in tok) for tok in plain(s).split())


@dataclass(frozen=True)
class ScreenText:
    """One text on screen at a section end."""

    text: str
    px: float
    words: int
    footer: bool
    #: typeset markup (a formula or a symbol), not prose
    formula: bool = False

    @property
    def prose(self) -> int:
        """Words of prose: a text of four words or more (shorter ones are labels;
        footers and formulas are no prose)."""
        return (
            self.words if self.words >= 4 and not (self.footer or self.formula) else 0
        )


class TalkClip(TraceScene):
    """Base of the talk cut's clips (see the module docstring).

    Subclasses set :attr:`NAME` (their clip in :data:`flashanim.cut.CUT`, which
    holds the title and the one-idea line) and write :meth:`body`;
    :meth:`construct` plays the title card and then the body.
    """

    NAME = ""
    #: The kernel whose trace :class:`~flashanim.scene.TraceScene` loads into
    #: ``self.trace`` (``None``: the clip reads only its own data).
    kernel = None
    #: Name of the section that follows the title card.
    FIRST_SECTION = "body"
    #: x264 without B-frames (decode order = display order): the cut's join
    #: (:func:`flashanim.cut.join_with_crossfades`) can then copy a clip up to
    #: the first frame of its fade instead of up to its last keyframe, and
    #: encodes a few dozen frames a join again instead of a few hundred.
    X264_OPTIONS = {"bf": "0"}

    @property
    def TITLE(self) -> str:  # noqa: N802  (reads like the constant it stands for)
        from .cut import clip

        return clip(self.NAME).title

    def setup(self) -> None:
        super().setup()  # settings, trace (when ``kernel`` is set), theme
        #: the one caption line (bottom of the frame), in the render record
        self._markup = False
        #: every caption line said, in order (markup without its tags)
        self.said: list[str] = []
        self.captions = Caption(self.theme, blank=False, fade_through=False,
                                make_text=self._caption_text,
                                place=lambda t: t.to_edge(DOWN, buff=0.75))  # fmt: skip
        self.caption_mob: Mobject | None = None
        self.header: Mobject | None = None
        self.footers: list[Mobject] = []
        #: (section name, texts on screen at its end), for the readability test
        self.screens: list[tuple[str, list[ScreenText]]] = []
        self._section = "title"
        self.prepare()

    def prepare(self) -> None:
        """Load data (before anything is drawn); override."""

    def idea(self) -> str:
        from .cut import idea

        return idea(self.NAME)

    # -- texts ---------------------------------------------------------------------
    def text(self, s: str, size: str | float = "label", color=None, mono=False):
        fs = SIZES[size] if isinstance(size, str) else size
        color = self.theme.ink(color) if color is not None else None  # reads on both
        t = themed_text(self.theme, s, fs, color, mono=mono)
        t.talk_size = (fs, t.height)
        return t

    def formula(self, markup: str, size: str | float = "caption", color=None):
        """Typeset ``markup`` (Pango: ``<i>``, ``<sub>``, ``<sup>``)."""
        fs = SIZES[size] if isinstance(size, str) else size
        use_private_text_dir()
        t = MarkupText(markup, font=self.theme.font, font_size=fs,
                       color=self.theme.ink(color or self.theme.foreground))  # fmt: skip
        t.talk_size = (fs, t.height)
        return t

    def say(self, s: str, markup: bool = False, run_time: float = 0.6,
            hold: float | None = None) -> None:  # fmt: skip
        """Replace the caption line at the bottom of the frame, then hold it long
        enough to be read (:data:`READ_SECONDS_PER_WORD`, unless ``hold``).

        The line goes through the scene's one :class:`~flashanim.visuals.Caption`
        (:attr:`captions`), so it is in the render record and the SRT/VTT
        subtitles (markup without its tags)."""
        self._markup = markup
        self.said.append(plain(s) if markup else s)
        anim = self.captions.make_animation(s, run_time,
                                            spoken=plain(s) if markup else None)  # fmt: skip
        self.caption_mob = self.captions.mob
        self.play(anim)
        if hold is None:
            hold = READ_SECONDS_PER_WORD * max(words(s), 4)
        if hold > 0:
            self.wait(hold)

    def _caption_text(self, s: str, markup: bool | None = None) -> Mobject:
        """A caption line (markup typeset when ``markup``), at the bottom."""
        markup = self._markup if markup is None else markup
        t = self.formula(s) if markup else self.text(s, "caption")
        if t.width > 13.4:
            raise ValueError(f"caption too wide for the frame at its size: {s!r}")
        return t

    def unsay(self) -> None:
        if self.caption_mob is not None:
            self.play(self.captions.make_clear_animation(), run_time=0.4)
            self.caption_mob = None

    def footer(self, s: str) -> Mobject:
        """The source line, bottom right (replaces the one before)."""
        t = self.text(s, "footer", self.theme.muted)
        if t.width > 13.6:
            raise ValueError(f"footer too wide for the frame at its size: {s!r}")
        t.to_corner(DOWN + RIGHT, buff=0.18)
        for old in self.footers:
            self.remove(old)
        self.footers = [t]
        self.add(t)
        return t

    # -- structure -------------------------------------------------------------------
    def construct(self) -> None:
        self.title_card()
        self.body()

    def title_card(self) -> None:
        """The clip's title and its one idea, centred; then the title moves up to
        become the header and the idea line goes."""
        th = self.theme
        title = self.text(self.TITLE, "title")
        idea = self.text(self.idea(), "idea", th.muted)
        for t in (title, idea):
            if t.width > 13.4:
                raise ValueError(f"title card line too wide for the frame: {t.text!r}")
        VGroup(title, idea).arrange(DOWN, buff=0.45).move_to(ORIGIN)
        self.play(FadeIn(title, shift=0.15 * UP), run_time=0.8)
        self.play(FadeIn(idea), run_time=0.6)
        self.wait(3.0)
        self.next_section(self.FIRST_SECTION)  # the title card ends the first one
        header = self.text(self.TITLE, "header")
        header.to_corner(UP + LEFT, buff=0.3)
        self.play(title.animate.become(header), FadeOut(idea), run_time=0.8)
        self.header = title

    def body(self) -> None:
        raise NotImplementedError

    def clear(self, *keep: Mobject) -> None:
        """Fade out everything except the header, footers and ``keep``."""
        kept = {id(m) for k in (self.header, *self.footers, *keep) if k is not None
                for m in k.get_family()}  # fmt: skip
        gone = [m for m in self.mobjects if id(m) not in kept]
        if gone:
            self.play(*(FadeOut(m) for m in gone), run_time=0.5)
        if self.caption_mob is not None and id(self.caption_mob) not in kept:
            self.caption_mob = self.captions.mob = None

    # -- what is on screen -------------------------------------------------------------
    def on_screen_texts(self) -> list[ScreenText]:
        footer_ids = {id(m) for f in self.footers for m in f.get_family()}
        out, seen = [], set()
        for top in self.mobjects:
            for m in top.get_family():
                if id(m) in seen or not isinstance(m, (Text, MarkupText)):
                    continue
                seen.add(id(m))
                leaves = [f for f in m.get_family() if len(f.points)]
                if not leaves or max(float(np.max(f.get_fill_opacities()))
                                     for f in leaves) < 0.05:  # fmt: skip
                    continue
                s = getattr(m, "original_text", None) or m.text
                out.append(ScreenText(s, text_px(m), words(s), id(m) in footer_ids,
                                      isinstance(m, MarkupText)))  # fmt: skip
        return out

    def next_section(self, name: str = "unnamed", *args, **kwargs) -> None:
        self.screens.append((self._section, self.on_screen_texts()))
        self._section = name
        super().next_section(name, *args, **kwargs)

    def tear_down(self) -> None:
        self.screens.append((self._section, self.on_screen_texts()))
        super().tear_down()


def align_label(label: Mobject, target: Mobject, side=RIGHT, buff=0.15) -> Mobject:
    """``label`` beside ``target`` (vertically centred on it)."""
    return label.next_to(target, side, buff=buff)


__all__ += ["align_label", "plain", "words", "MAX_WORDS", "MAX_ALL_WORDS"]


class RowBars:
    """Bar positions for the keys of one query row, grouped in K/V blocks.

    Bars stand on ``base_y`` (negative values hang below it); key ``k`` sits at
    :meth:`x`; ``unit`` is screen units per unit of value. Nothing is drawn until a
    bar or the block marks are asked for.
    """

    def __init__(self, n: int, block: int, x0: float, x1: float, base_y: float,
                 unit: float, theme, gap: float = 0.35) -> None:  # fmt: skip
        self.n, self.block, self.base_y, self.unit, self.theme = (
            n, block, base_y, unit, theme)  # fmt: skip
        n_blocks = -(-n // block)
        self.gap = gap
        self.step = (x1 - x0 - gap * (n_blocks - 1)) / n
        self.x0 = x0
        self.width = self.step * 0.72

    def x(self, k: int) -> float:
        return self.x0 + (k + 0.5) * self.step + (k // self.block) * self.gap

    def block_span(self, j: int) -> tuple[float, float]:
        a = j * self.block
        b = min(self.n, a + self.block) - 1
        return self.x(a) - self.step / 2, self.x(b) + self.step / 2

    def bar(self, k: int, value: float, color, opacity: float = 0.9,
            outline: bool = False, unit: float | None = None):  # fmt: skip
        """A rectangle for ``value`` at key ``k`` (at least a hairline tall)."""
        from manim import Rectangle

        h = value * (unit or self.unit)
        r = Rectangle(width=self.width, height=max(abs(h), 0.02))
        if outline:
            r.set_fill(opacity=0).set_stroke(color, width=3)
        else:
            r.set_fill(color, opacity=opacity).set_stroke(width=0)
        y = self.base_y + h / 2 if abs(h) >= 0.02 else self.base_y + 0.01
        r.move_to([self.x(k), y, 0])
        return r

    def baseline(self):
        from manim import Line

        a, b = self.block_span(0)[0], self.block_span(-(-self.n // self.block) - 1)[1]
        return Line([a, self.base_y, 0], [b, self.base_y, 0],
                    color=self.theme.muted, stroke_width=2)  # fmt: skip
