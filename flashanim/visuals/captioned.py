"""A scene mixin for the slide-like captions the scenes share.

Scenes keep a short title in the top-right corner and one caption in the top-left
one; each section ends on its caption, so the frame can stand alone as a slide.
"""

from __future__ import annotations

from manim import LEFT, UP, FadeIn, FadeOut, Mobject, Text

from .layout import FRAME_WIDTH

__all__ = ["CaptionedScene"]


class CaptionedScene:
    """Mix into a :class:`~manim.Scene` that sets ``self.theme`` and ``self.title``.

    Examples
    --------
    .. code-block:: python

        from manim import Scene, Text
        from flashanim.visuals import CaptionedScene, get_theme

        class Demo(CaptionedScene, Scene):
            def construct(self):
                self.theme = get_theme("dark")
                self.title = Text("demo").to_corner(UP + RIGHT)
                self.caption("what just happened")
    """

    caption_mob: Mobject | None = None

    def text(self, s: str, size=None, color=None, mono: bool = False) -> Text:
        """``s`` in the theme's font (or mono font), size and foreground colour."""
        th = self.theme
        return Text(s, font=th.mono_font if mono else th.font,
                    font_size=size or th.body_size,
                    color=color or th.foreground)  # fmt: skip

    def caption(self, s: str) -> None:
        """Replace the caption (what the section's closing frame says)."""
        t = self.text(s, self.theme.caption_size)
        room = FRAME_WIDTH - 0.5 - self.title.width - 0.4
        if t.width > room:
            t.scale_to_fit_width(room)
        t.to_corner(UP + LEFT, buff=0.2)
        anims = [FadeIn(t)] + ([FadeOut(self.caption_mob)] if self.caption_mob else [])
        self.caption_mob = t
        self.play(*anims, run_time=0.6)
