"""Every player implements the one protocol (EventPlayer): what it cannot draw it
refuses in one line; speed and the one-frame floor are the base's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flashanim.visuals import (
    BackwardPlayer,
    CausalPlayer,
    EventPlayer,
    RoundTripPlayer,
    RowPlayer,
    TracePlayer,
)
from flashanim.visuals.eventplayer import MIN_RUN_TIME

PLAYERS = [TracePlayer, BackwardPlayer, RoundTripPlayer, CausalPlayer, RowPlayer]


@pytest.mark.parametrize("cls", PLAYERS)
def test_every_player_is_an_event_player(cls):
    assert issubclass(cls, EventPlayer)
    # a player writes what one event looks like, nothing of the play loop
    for name in ("animation", "play", "run_time", "check", "play_groups"):
        assert name not in vars(cls) or name == "play_groups", (cls, name)


@pytest.mark.parametrize("cls", [TracePlayer, BackwardPlayer, CausalPlayer, RowPlayer])
def test_unknown_op_is_refused_in_one_line(cls):
    player = object.__new__(cls)  # (the check needs no layout)
    with pytest.raises(ValueError) as err:
        player.check(SimpleNamespace(op="warp", index=7))
    msg = str(err.value)
    assert msg.startswith(f"{cls.__name__} cannot draw op 'warp' (event 7); known: ")
    assert "\n" not in msg


def test_speed_and_one_frame_floor():
    player = EventPlayer({"load": 1.2})
    assert player.run_time("load") == 1.2
    assert player.run_time("load", speed=2) == 0.6
    assert player.run_time("load", speed=1000) == MIN_RUN_TIME
    rt = object.__new__(RoundTripPlayer)
    rt.durations = {}
    assert rt.run_time("any op") == RoundTripPlayer.default_duration  # drawn as compute
