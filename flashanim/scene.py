"""The base of every flashanim scene: settings, trace, theme, captions.

A scene of the package is a :class:`TraceScene` with a ``construct`` and a player
(an :class:`~flashanim.visuals.EventPlayer`). Before ``construct`` runs,
:meth:`TraceScene.setup` has

* read and validated the settings (:meth:`TraceScene.settings`, by default
  :meth:`SceneConfig.from_env <flashanim.config.SceneConfig.from_env>`) and the
  hardware preset (``FLASHANIM_GPU``, :func:`~flashanim.hardware.preset_from_env`),
  so bad input stops the render before anything is drawn;
* loaded the saved trace (``FLASHANIM_TRACE``) or recorded one with the kernel the
  scene plays (:attr:`TraceScene.kernel`), refusing a trace of another kernel in
  one line;
* applied the theme (background, :attr:`TraceScene.theme`) and made the scene's
  one caption line (:attr:`TraceScene.captions`, placed by
  :attr:`TraceScene.caption_style`).

It then offers the helpers every scene uses: :meth:`~TraceScene.text`,
:meth:`~TraceScene.caption`, :meth:`~TraceScene.hold`,
:meth:`~TraceScene.section` and :meth:`~TraceScene.record_like` (a second trace of
the same run, e.g. without the mask, for a comparison).

Renders go through the speed engine (:class:`flashanim.engine.FastRenderScene`):
the same frames as Manim's, drawn faster; see ``ARCHITECTURE.md``.

Examples
--------
.. code-block:: python

    from flashanim.scene import TraceScene
    from flashanim.visuals import ForwardLayout, TracePlayer

    class Tiles(TraceScene):
        kernel = "fa2-fwd"

        def construct(self):
            lay = ForwardLayout.from_trace(self.trace, theme=self.theme)
            self.add(lay.static_group())
            self.section("all events")
            TracePlayer(lay, len(self.trace)).play(self, self.trace.events)
            self.caption(f"{len(self.trace)} events")
            self.hold()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flashanim.config import ConfigError, SceneConfig, fail
from flashanim.engine import FastRenderScene
from flashanim.engine.text import themed_text
from flashanim.hardware import preset_from_env
from flashanim.visuals.caption import Caption
from flashanim.visuals.theme import get_theme

if TYPE_CHECKING:
    from collections.abc import Mapping

    from manim import Text

    from flashanim.hardware import GpuPreset
    from flashanim.trace import Trace

__all__ = ["TraceScene"]


class TraceScene(FastRenderScene):
    """A scene that plays a recorded kernel trace (see the module's docstring).

    Class attributes
    ----------------
    kernel
        The kernel whose trace the scene plays (``"fa2-fwd"``, ``"fa2-bwd"``,
        ``"fa1-fwd"``, ``"standard"``); ``None``: the scene loads none from the
        settings (it reads its own data).
    caption_style
        Keyword arguments of the scene's :class:`~flashanim.visuals.Caption`.
    hold_seconds
        How long :meth:`hold` holds a section's closing frame.
    text_width
        Widest a text of :meth:`text` may be (scaled down to it; ``None``: as made).

    Attributes
    ----------
    cfg
        The validated settings.
    gpu
        The hardware preset (``FLASHANIM_GPU``).
    trace
        The trace played (when :attr:`kernel` is set).
    theme
        Colours, fonts and sizes.
    captions
        The scene's caption line.
    """

    kernel: ClassVar[str | None] = "fa2-fwd"
    caption_style: ClassVar[Mapping[str, object]] = {}
    hold_seconds: ClassVar[float] = 1.2
    text_width: ClassVar[float | None] = None

    cfg: SceneConfig
    gpu: GpuPreset
    trace: Trace

    def setup(self) -> None:
        """Settings, hardware, trace, theme and caption, in that order."""
        self.cfg = self.settings()
        self.gpu = preset_from_env()
        if self.kernel is not None:
            self.trace = self.load_trace(self.kernel)
        self.theme = get_theme(self.cfg.theme)
        self.camera.background_color = self.theme.background
        self.captions = Caption(self.theme, **self.caption_style)

    def render(self, preview: bool = False):
        """Render; a bad setting or trace found on the way (a
        :class:`~flashanim.config.ConfigError` or
        :class:`~flashanim.trace.TraceFormatError`, from the set-up or from the
        scene's own checks) is reported in one line by
        :func:`flashanim.config.fail`, never as a traceback from inside Manim."""
        from flashanim.trace._protocol import TraceFormatError

        try:
            return super().render(preview)
        except (ConfigError, TraceFormatError) as exc:
            fail(exc, type(self).__name__)

    # -- what a scene may override ------------------------------------------------------
    def settings(self) -> SceneConfig:
        """The validated settings (override to check scene-specific ones first)."""
        return SceneConfig.from_env()

    # -- traces ---------------------------------------------------------------------------
    def load_trace(self, kernel: str) -> Trace:
        """The saved trace (``FLASHANIM_TRACE``) or one recorded with the settings;
        a saved trace of another kernel is refused."""
        from flashanim.trace.check import require_kernel

        return require_kernel(self.cfg.load_or_record(kernel), type(self).__name__,
                              kernel)  # fmt: skip

    def record_like(self, trace: Trace, kernel: str, **changes) -> Trace:
        """A trace of ``kernel`` recorded with ``trace``'s shapes, dtype and seed
        (and ``changes``), e.g. the same run without the mask, for a comparison."""
        import flashanim.kernels  # noqa: F401  (chooses the device before Triton)
        from flashanim.trace import record

        m = trace.meta
        kw = dict(seq_len=m.seq_len_q, seq_len_k=m.seq_len_k, head_dim=m.head_dim,
                  block_m=m.block_m, block_n=m.block_n, batch=m.batch,
                  heads=m.heads, causal=m.causal, dtype=m.dtype,
                  softmax_scale=m.softmax_scale, seed=m.seed or 0)  # fmt: skip
        kw.update(changes)
        return record(kernel, **kw)

    # -- helpers --------------------------------------------------------------------------
    def text(self, s: str, size: float | None = None, color=None, *,
             mono: bool = False, **kwargs) -> Text:  # fmt: skip
        """``s`` in the theme's font (``mono``: its monospace font), at ``size``
        (default the body size), in ``color`` (a colour or a tensor name; default
        the foreground) as :meth:`Theme.ink <flashanim.visuals.theme.Theme.ink>`
        makes it read on the background (K's orange deepens on the light theme);
        at most :attr:`text_width` wide."""
        color = self.theme.ink(color) if color is not None else None
        t = themed_text(self.theme, s, size, color, mono=mono, **kwargs)
        if self.text_width is not None and t.width > self.text_width:
            t.scale_to_fit_width(self.text_width)
        return t

    def caption(self, s: str) -> None:
        """Replace the caption (what the section's closing frame says)."""
        self.play(self.captions.make_animation(s))

    def hold(self, factor: float = 1.0) -> None:
        """Hold the frame :attr:`hold_seconds` (times ``factor``)."""
        self.wait(self.hold_seconds * factor)

    def section(self, name: str) -> None:
        """Start the section ``name`` (a chapter of the video, a slide)."""
        self.next_section(name)
