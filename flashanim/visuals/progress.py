"""Loop indices and progress: ``i = start_m / BLOCK_M`` of ``T_r``,
``j = start_n / BLOCK_N`` of ``T_c``, and "step k of n" with a bar."""

from __future__ import annotations

from manim import (
    LEFT,
    RIGHT,
    Animation,
    AnimationGroup,
    Rectangle,
    Text,
    Transform,
    VGroup,
)

from ..engine.text import cached_text
from .theme import DARK, Theme

__all__ = ["ProgressPanel"]


class ProgressPanel(VGroup):
    """One line of loop state plus a progress bar.

    Parameters
    ----------
    t_r, t_c
        Number of Q blocks and K/V blocks.
    n_steps
        Total number of events.
    width
        Width of the bar.
    theme
        Colours and fonts.

    Examples
    --------
    .. code-block:: python

        from manim import Scene
        from flashanim.visuals import ProgressPanel

        class Progress(Scene):
            def construct(self):
                p = ProgressPanel(4, 4, 180)
                self.add(p)
                self.play(p.make_update_animation(10, i=0, j=1))
    """

    def __init__(
        self,
        t_r: int,
        t_c: int,
        n_steps: int,
        *,
        width: float = 6.0,
        theme: Theme = DARK,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.t_r, self.t_c, self.n_steps = t_r, t_c, n_steps
        self.theme = theme
        self.bar_width = width
        parts = [
            ("i = start_m / BLOCK_M = ", "–", f" of T_r = {t_r}"),
            ("j = start_n / BLOCK_N = ", "–", f" of T_c = {t_c}"),
            ("step ", "0", f" of {n_steps}"),
        ]
        self.fields: list[Text] = []
        line = VGroup()
        for pre, val, post in parts:
            a = self._t(pre, theme.muted)
            b = self._t(val, theme.foreground)
            c = self._t(post, theme.muted)
            b.next_to(a, RIGHT, buff=0.14)
            c.next_to(a, RIGHT, buff=0.14 + 0.6)
            line.add(VGroup(a, b, c))
            self.fields.append(b)
        line.arrange(RIGHT, buff=0.6)
        for grp in line:
            grp[1].align_to(grp[1], LEFT)
        self.line = line
        self.track = Rectangle(width=width, height=0.07, stroke_width=0)
        self.track.set_fill(theme.panel_stroke, opacity=0.5)
        self.bar = Rectangle(width=width, height=0.07, stroke_width=0)
        self.bar.set_fill(theme.highlight, opacity=1)
        self.track.next_to(line, direction=[0, -1, 0], buff=0.1)
        self.track.align_to(line, LEFT)
        self._set_bar(self.bar, 0)
        self.add(line, self.track, self.bar)

    def _t(self, s: str, color) -> Text:
        t = cached_text(s, self.theme.mono_font, self.theme.body_size, color)
        return t

    def _set_bar(self, bar: Rectangle, k: int) -> None:
        frac = max(min(k / max(self.n_steps, 1), 1.0), 1e-3)
        bar.stretch_to_fit_width(self.bar_width * frac)
        bar.move_to(self.track.get_left(), aligned_edge=LEFT)

    def make_update_animation(
        self, step: int, i: int | None = None, j: int | None = None
    ) -> Animation:
        """Show step ``step`` (1-based) with loop indices ``i`` and ``j``."""
        anims = []
        for field, val in zip(self.fields, (i, j, step), strict=True):
            new = self._t("–" if val is None else str(val), self.theme.foreground)
            new.move_to(field.get_center()).align_to(field, LEFT)
            anims.append(Transform(field, new))
        new_bar = self.bar.copy()
        self._set_bar(new_bar, step)
        return AnimationGroup(*anims, Transform(self.bar, new_bar))
