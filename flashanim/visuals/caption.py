"""The one caption of a scene: a line of text that each new caption replaces.

Each section of a scene ends on its caption, so that the closing frame can stand
alone as a slide. Every scene (and layout) keeps one :class:`Caption`; its
animations carry their text (:func:`caption_of`), so the render record writes
them into the SRT/VTT captions and the speaker notes, whatever the scene. The
same component draws a scene's other replaceable lines (a chart's title, a
source line) with ``speaks=False``, and the short title in the top-right corner
(:meth:`Caption.make_title`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from manim import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    AnimationGroup,
    FadeIn,
    FadeOut,
    Succession,
    VGroup,
    Wait,
    config,
)

from ..engine.text import themed_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from manim import Animation, Mobject

    from .theme import Theme

__all__ = ["Caption", "caption_of", "source_lines"]

_CAPTION = "flashanim_caption"


def caption_of(animation: Animation) -> str | None:
    """The caption text ``animation`` puts on screen (``None``: none)."""
    return getattr(animation, _CAPTION, None)


class Caption:
    """One line of caption text, replaced by :meth:`make_animation`.

    Parameters
    ----------
    theme
        Font, caption size and colour.
    y
        Centre the caption at this height (``None``: the top-left corner).
    width
        Widest the caption may be (``None``: the frame's width less ``margin``
        and, in the corner, less the width of :attr:`title` and 0.4 of space).
    margin
        Frame width a caption leaves free (see ``width``).
    fade_through
        Fade the old caption out, then the new one in (each half the run time);
        ``False``: both at once.
    run_time
        Seconds of a change.
    blank
        Start with a blank caption (``False``: with none).
    size, color
        Font size and colour (default: the theme's caption size, foreground).
    place
        Places a new line (default: top-left corner, or centred at ``y``).
    speaks
        Whether its text goes into the render record (the SRT/VTT captions).
    make_text
        Makes a line's mobject from its text (default: the theme's font at
        ``size`` in ``color``), e.g. one that typesets Pango markup.

    Attributes
    ----------
    mob
        The caption now shown (``None`` before the first one, without ``blank``).
    title
        A mobject in the top-right corner that a corner caption leaves room for.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import Caption, get_theme

        class Demo(Scene):
            def construct(self):
                captions = Caption(get_theme("dark"))
                self.play(captions.make_animation("what just happened"))
    """

    def __init__(self, theme: Theme, *, y: float | None = None,
                 width: float | None = None, margin: float = 0.5,
                 fade_through: bool = True, run_time: float = 0.6,
                 blank: bool = True, size: float | None = None, color=None,
                 place: Callable[[Mobject], object] | None = None,
                 speaks: bool = True,
                 make_text: Callable[[str], Mobject] | None = None) -> None:  # fmt: skip
        self.theme = theme
        self.y, self.width, self.margin = y, width, margin
        self.fade_through, self.run_time = fade_through, run_time
        self.size, self.color = size or theme.caption_size, color
        self.place, self.speaks = place, speaks
        self.make_text = make_text
        self.title: Mobject | None = None
        self.mob: Mobject | None = self.make(" ") if blank else None

    def make_title(self, text: str) -> Mobject:
        """The scene's short title, in the top-right corner (not shown); a corner
        caption leaves room for it."""
        th = self.theme
        self.title = themed_text(th, text, th.small_size + 1, th.muted)
        self.title.to_corner(UP + RIGHT, buff=0.2)
        return self.title

    def room(self) -> float:
        """How wide a caption may be."""
        if self.width is not None:
            return self.width
        room = config.frame_width - self.margin
        if self.y is None and self.title is not None:
            room -= self.title.width + 0.4
        return room

    def make(self, text: str) -> Mobject:
        """The caption ``text``, placed (not shown)."""
        if self.make_text is not None:
            t = self.make_text(text or " ")
        else:
            t = themed_text(self.theme, text or " ", self.size, self.color)
        room = self.room()
        if t.width > room:
            t.scale_to_fit_width(room)
        if self.place is not None:
            self.place(t)
        elif self.y is None:
            t.to_corner(UP + LEFT, buff=0.2)
        else:
            t.move_to([0, self.y, 0])
        return t

    def make_animation(self, text: str, run_time: float | None = None, *,
                       spoken: str | None = None) -> Animation:  # fmt: skip
        """Replace the caption with ``text`` (``spoken``: what the render record
        writes for it instead, e.g. markup without its tags)."""
        rt = self.run_time if run_time is None else run_time
        new = self.make(text)
        old, self.mob = self.mob, new
        if old is None:
            anim = FadeIn(new, run_time=rt)
        elif self.fade_through:
            anim = Succession(FadeOut(old, run_time=rt / 2),
                              FadeIn(new, run_time=rt / 2))  # fmt: skip
        else:
            anim = AnimationGroup(FadeOut(old), FadeIn(new), run_time=rt)
        if self.speaks:
            setattr(anim, _CAPTION, str(text if spoken is None else spoken))
        return anim

    def make_clear_animation(self) -> Animation:
        """Take the line away (nothing shown until the next one)."""
        old, self.mob = self.mob, None
        return FadeOut(old) if old is not None else Wait(0)


def source_lines(theme: Theme, text: str, width: float, *,
                 align: str = "center") -> VGroup:  # fmt: skip
    """A source line or footer: ``text`` at the theme's :attr:`footer_size
    <flashanim.visuals.theme.Theme.footer_size>` in its muted colour, wrapped
    (at its newlines, then between `` · `` parts, then between words) onto as
    many lines as it takes to stay ``width`` wide; never scaled down, so it stays
    readable at 480p. ``align``: ``"center"`` or ``"left"``.
    """
    th = theme

    def line(s: str):
        return themed_text(th, s, th.footer_size, th.muted)

    one_line = 1.5 * line("Hg").height

    def fits(s: str) -> bool:  # (Pango itself wraps a line wider than the frame)
        t = line(s)
        return t.width <= width and t.height <= one_line

    def fill(parts: list[str], sep: str) -> list[str]:
        out: list[str] = []
        for part in parts:
            if out and fits(out[-1] + sep + part):
                out[-1] += sep + part
            elif fits(part) or " " not in part.strip():
                out.append(part)
            else:
                out.extend(fill(part.split(" "), " "))
        return out

    rows = [r for para in text.split("\n") for r in fill(para.split(" · "), " · ")]
    group = VGroup(*(line(r) for r in rows))
    edge = LEFT if align == "left" else None
    if edge is None:
        group.arrange(DOWN, buff=0.07)
    else:
        group.arrange(DOWN, buff=0.07, aligned_edge=edge)
    return group
