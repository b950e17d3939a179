"""The player protocol: trace events in, animations out.

Every player of the package (:class:`~flashanim.visuals.player.TracePlayer`,
:class:`~flashanim.visuals.backward.BackwardPlayer`,
:class:`~flashanim.visuals.roundtrip.RoundTripPlayer`,
:class:`~flashanim.visuals.causal.CausalPlayer`,
:class:`~flashanim.visuals.softmax.RowPlayer`) derives from :class:`EventPlayer`,
which owns what they share:

* the operations a player can draw and their length at speed 1
  (:attr:`EventPlayer.durations`); any other operation is refused with one line;
* speed (``speed=2``: twice as fast, never under one frame at 15 fps);
* :attr:`EventPlayer.played_events`, every event turned into an animation, in order
  (tests hold it equal to the trace);
* one ``scene.play`` per trace step (:meth:`EventPlayer.play`), or one per group of
  steps (:meth:`EventPlayer.play_groups`);
* the tag that tells the render record which events an animation shows
  (:func:`events_of`): captions (SRT/VTT) and speaker notes are written from it for
  every scene, whatever its player.

A player only says what one event looks like (:meth:`EventPlayer.event_animations`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from manim import Animation, AnimationGroup

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from manim import Scene

__all__ = ["EventPlayer", "events_of", "MIN_RUN_TIME"]

#: Shortest animation of one event (one frame at 15 fps).
MIN_RUN_TIME = 1 / 15

_EVENTS = "flashanim_events"


def events_of(animation: Animation) -> tuple:
    """The trace events ``animation`` shows (empty when it shows none)."""
    return getattr(animation, _EVENTS, ())


class EventPlayer:
    """Base of the players: turns trace events into animations, one per event.

    Subclasses set :attr:`durations` (or pass their own to ``__init__``) and
    implement :meth:`event_animations`.

    Parameters
    ----------
    durations
        Seconds per operation at speed 1 (default: the class's).

    Attributes
    ----------
    played_events
        Every event turned into an animation, in order.

    Examples
    --------
    .. code-block:: python

        from manim import FadeIn, Scene, Square
        from flashanim.visuals import EventPlayer

        class Flash(EventPlayer):
            durations = {"load": 0.5, "store": 0.5}

            def __init__(self, square):
                super().__init__()
                self.square = square

            def event_animations(self, event):
                return [FadeIn(self.square.copy())]

        class Demo(Scene):
            def construct(self):
                Flash(Square()).play(self, trace.events)  # a recorded trace
    """

    #: Seconds per operation at speed 1; an operation not in it is refused.
    durations: ClassVar[Mapping[str, float]] = {}
    #: Seconds of an operation not in :attr:`durations` (``None``: refuse it).
    default_duration: ClassVar[float | None] = None

    def __init__(self, durations: Mapping[str, float] | None = None) -> None:
        if durations is not None:
            self.durations = dict(durations)
        self.played_events: list = []

    # -- what a subclass writes ---------------------------------------------------
    def event_animations(self, event) -> Sequence[Animation]:
        """The animations of one event, played together (drawing order)."""
        raise NotImplementedError

    def group_animations(self, events: Sequence) -> Sequence[Animation]:
        """The animations of consecutive ``events`` shown at once (a summary)."""
        raise NotImplementedError(f"{type(self).__name__} does not group events")

    # -- the protocol ---------------------------------------------------------------
    def run_time(self, op: str, speed: float = 1.0) -> float:
        """Seconds ``op`` takes at ``speed``."""
        seconds = self.durations.get(op, self.default_duration)
        return max(seconds / speed, MIN_RUN_TIME)

    def check(self, event) -> None:
        """Refuse an operation this player cannot draw (one line)."""
        if event.op not in self.durations and self.default_duration is None:
            raise ValueError(
                f"{type(self).__name__} cannot draw op {event.op!r} "
                f"(event {event.index}); known: {', '.join(sorted(self.durations))}"
            )

    def animation(self, event, speed: float = 1.0) -> Animation:
        """The animation of ``event`` at ``speed`` (2 = twice as fast).

        The player's state advances as if the animation were played: play them in
        the order they were made.
        """
        self.check(event)
        anims = self.event_animations(event)
        self.played_events.append(event)
        return _tagged(
            AnimationGroup(*anims, run_time=self.run_time(event.op, speed)), (event,)
        )

    def group_animation(self, events: Iterable, run_time: float = 0.8) -> Animation:
        """One animation for consecutive ``events`` (see :meth:`group_animations`)."""
        events = list(events)
        for e in events:
            self.check(e)
        anims = self.group_animations(events)
        self.played_events.extend(events)
        return _tagged(AnimationGroup(*anims, run_time=run_time), tuple(events))

    def play(self, scene: Scene, events: Iterable, speed: float = 1.0) -> None:
        """Play ``events`` on ``scene``, one ``scene.play`` per event.

        (Events are not batched into one :class:`~manim.AnimationGroup`: a group
        begins all its animations at once, and consecutive events change the same
        mobjects.)
        """
        for e in events:
            scene.play(self.animation(e, speed))

    def play_groups(self, scene: Scene, groups: Iterable[Sequence],
                    run_time: float = 0.8) -> None:  # fmt: skip
        """Play each group of events as one ``scene.play``
        (:meth:`group_animation`); empty groups are skipped."""
        for g in groups:
            if g:
                scene.play(self.group_animation(g, run_time))


def _tagged(animation: Animation, events: tuple) -> Animation:
    setattr(animation, _EVENTS, events)
    return animation
