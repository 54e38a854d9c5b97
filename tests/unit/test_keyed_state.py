"""Keyed state of the recommend operator: versioned, restored by field name, upgraded from what
earlier versions wrote, refused when a newer job wrote it (operators.keyed_state)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from operators.config import ProfileConfig
from operators.events import Event
from operators.keyed_state import (
    HELD_VERSION,
    PROFILE_VERSION,
    UserState,
    pack_held,
    pack_user,
    unpack_held,
    unpack_user,
)
from operators.user_profile import Profile, apply_event
from operators.world_store import StateVersionError
from tests.unit.streams import T0


def a_profile() -> Profile:
    p = Profile()
    cfg = ProfileConfig()
    for n, (etype, item) in enumerate([("view", "a"), ("purchase", "b"), ("purchase", "a")]):
        apply_event(p, Event(f"e{n}", "u1", etype, T0 + n, item_id=item, session_id="o1"), cfg,
                    1_800_000)  # fmt: skip
    vec = np.arange(4, dtype=np.float32)
    apply_event(p, Event("q", "u1", "search", T0 + 9, query="red lamp"), cfg, 1_800_000, vec)
    return p


def through_flink(value):
    """What PyFlink's PICKLED_BYTE_ARRAY state does to a value: pickle, store, unpickle."""
    return pickle.loads(pickle.dumps(value))


def test_user_state_round_trips_as_plain_data():
    state = UserState(a_profile(), ttl_timer=T0 + 99)
    stored = through_flink(pack_user(state))
    assert stored["v"] == PROFILE_VERSION
    # builtins only: no class of ours is pickled, so changing a class cannot corrupt old state
    assert b"operators" not in pickle.dumps(stored)
    assert unpack_user(stored) == state
    assert unpack_user(None) is None


def test_held_events_round_trip():
    ev = Event("e1", "u1", "search", T0, query="q", quantity=2, price=1.5, session_id="s")
    stored = through_flink(pack_held(ev, 12345))
    assert stored["v"] == HELD_VERSION and b"operators" not in pickle.dumps(stored)
    assert unpack_held(stored) == (ev, 12345)


def test_state_written_before_versioning_is_upgraded():
    profile = a_profile()
    # versions 0 to 2 recorded neither the model nor whether the session's end was emitted
    assert unpack_user(through_flink(profile)) == UserState(profile, None, None, None)
    ev = Event("e1", "u1", "view", T0, item_id="x")
    assert unpack_held(through_flink((ev, None))) == (ev, None)


def test_fields_are_restored_by_name():
    stored = through_flink(pack_user(UserState(a_profile())))
    del stored["profile"]["freq"]  # written before a field existed: it gets its default
    stored["profile"] = dict(reversed(stored["profile"].items()))  # order does not matter
    user = unpack_user(stored)
    assert user.profile.freq == {} and user.profile.last_event_id == "q"


def test_state_of_a_newer_version_is_refused():
    stored = pack_user(UserState(a_profile()))
    stored["v"] = PROFILE_VERSION + 1
    with pytest.raises(StateVersionError, match="schema version"):
        unpack_user(stored)
    held = pack_held(Event("e1", "u1", "view", T0, item_id="x"), None)
    held["v"] = HELD_VERSION + 1
    with pytest.raises(StateVersionError, match="schema version"):
        unpack_held(held)


def test_version_2_state_leaves_the_session_end_to_the_watermark():
    stored = through_flink(pack_user(UserState(a_profile(), T0 + 99, "m@1")))
    stored = {k: v for k, v in stored.items() if k != "closed"} | {"v": 2}
    user = unpack_user(stored)
    assert user == UserState(a_profile(), T0 + 99, "m@1", None)
    end = T0 + 1800_000
    assert user.session_end_pending(end, watermark=end - 1)  # its timer has not fired
    assert not user.session_end_pending(end, watermark=end)  # it has


def test_a_recorded_session_end_decides_whatever_the_watermark():
    end = T0 + 1800_000
    for watermark in (end - 1, end, end + 1):
        assert UserState(a_profile(), closed=False).session_end_pending(end, watermark)
        assert not UserState(a_profile(), closed=True).session_end_pending(end, watermark)
