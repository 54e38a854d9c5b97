"""What the recommend operator keeps per user in keyed state, versioned, with an upgrade path.

Two keyed states (RocksDB, pickled by PyFlink):

- ``profile`` (ValueState): the user's :class:`UserState`: the Profile (operators.user_profile)
  and the operator's own bookkeeping of the user (the event-time timer that expires them);
- ``held`` (ListState): events waiting for event time to pass them, with the Kafka record's
  timestamp (``created``, for latency figures).

Both are stored as plain dicts of builtins tagged with a schema version, never as pickled
classes: a pickled dataclass restores its fields by position, so a field added to Profile or
Event would shift (or drop) the values of state written before. A dict restores by name; fields
a newer class adds get their defaults, and :data:`PROFILE_UPGRADES` / :data:`HELD_UPGRADES`
turn state of an older version into the current one, step by step. State of a newer version
than this code is refused (:class:`StateVersionError`). When a change to Profile or Event needs
more than a default for a new field (a renamed field, a new meaning), bump the version here and
add the step.

Version 0 is what the job wrote before this module: bare pickled objects. Version 2 of
``profile`` records the encoder (``model``: its model id) the profile's query vectors come
from; a profile of another model (or of version 1, which did not record it: unknown) has its
queries embedded again before it is scored (operators.model_switch). Version 3 records whether
the list for the end of the user's current session has been emitted (``closed``), so that a
session end is emitted exactly once whatever order its timer and the user's next event come in
(state of version 2: unknown, and the watermark decides as it did then).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from operators.events import Event
from operators.user_profile import Profile
from operators.world_store import StateVersionError

PROFILE_VERSION = 3
HELD_VERSION = 1

_PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(Profile))
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))


@dataclass
class UserState:
    """The ``profile`` keyed state: the user's profile and the operator's timers for them."""

    profile: Profile
    ttl_timer: int | None = None  # the event-time timer that expires the profile, if set
    model: str | None = None  # the model id of the profile's query vectors (None: unknown)
    # the session-end list of the profile's current session has been emitted (None: unknown)
    closed: bool | None = False

    def session_end_pending(self, end: int, watermark: int) -> bool:
        """Whether the list for the current session's end (at ``end``) is still to be emitted.

        Its timer normally emits it. The user's next event emits it first when the event comes
        before the timer: released early (``--max-wait``, ``--align none``), or, in process
        mode, when timers registered while timers fire take effect only at the next watermark
        (PyFlink sends them to the JVM asynchronously), so a later timer can fire first. Known
        from ``closed``; for state of version 2 (unknown), from the watermark: the timer has
        fired once event time has passed ``end``."""
        if self.closed is None:
            return watermark < end
        return not self.closed


def _profile_v0(stored: Profile) -> dict:
    """Version 0 (a pickled Profile) -> version 1."""
    return {
        "v": 1,
        "profile": {k: getattr(stored, k) for k in _PROFILE_FIELDS if hasattr(stored, k)},
        "ttl_timer": None,
    }


def _profile_v1(stored: dict) -> dict:
    """Version 1 -> version 2: the model of the query vectors was not recorded."""
    return {**stored, "v": 2, "model": None}


def _held_v0(stored: tuple) -> dict:
    """Version 0 (a pickled (Event, created) tuple) -> version 1."""
    event, created = stored
    return {
        "v": 1,
        "event": {k: getattr(event, k) for k in _EVENT_FIELDS if hasattr(event, k)},
        "created": created,
    }


def _profile_v2(stored: dict) -> dict:
    """Version 2 -> version 3: whether the session's end was emitted was not recorded."""
    return {**stored, "v": 3, "closed": None}


# version -> the step to the next version (applied until the current one)
PROFILE_UPGRADES: dict[int, Callable[[Any], dict]] = {
    0: _profile_v0,
    1: _profile_v1,
    2: _profile_v2,
}
HELD_UPGRADES: dict[int, Callable[[Any], dict]] = {0: _held_v0}


def _upgraded(stored: Any, current: int, steps: dict, what: str) -> dict:
    version = stored.get("v", 0) if isinstance(stored, dict) else 0
    if version > current:
        raise StateVersionError(
            f"{what} state has schema version {version}; this job reads up to {current} "
            "(resume with the job version that wrote it)"
        )
    while version < current:
        stored = steps[version](stored)
        version = stored["v"]
    return stored


def _build(cls, fields: tuple[str, ...], values: dict):
    return cls(**{k: v for k, v in values.items() if k in fields})


def pack_user(state: UserState) -> dict:
    p = state.profile
    return {
        "v": PROFILE_VERSION,
        "profile": {k: getattr(p, k) for k in _PROFILE_FIELDS},
        "ttl_timer": state.ttl_timer,
        "model": state.model,
        "closed": state.closed,
    }


def unpack_user(stored: Any) -> UserState | None:
    """The UserState of a stored value of any version up to the current one (None: none)."""
    if stored is None:
        return None
    doc = _upgraded(stored, PROFILE_VERSION, PROFILE_UPGRADES, "profile")
    profile = _build(Profile, _PROFILE_FIELDS, doc["profile"])
    return UserState(profile, doc.get("ttl_timer"), doc.get("model"), doc.get("closed"))


def pack_held(event: Event, created: int | None) -> dict:
    return {
        "v": HELD_VERSION,
        "event": {k: getattr(event, k) for k in _EVENT_FIELDS},
        "created": created,
    }


def unpack_held(stored: Any) -> tuple[Event, int | None]:
    doc = _upgraded(stored, HELD_VERSION, HELD_UPGRADES, "held event")
    return _build(Event, _EVENT_FIELDS, doc["event"]), doc.get("created")
