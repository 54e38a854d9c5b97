"""The world in broadcast state: log, snapshot, restore (operators.world_store), against a dict
standing for Flink's broadcast MapState."""

from __future__ import annotations

import json

import pytest

from operators.world_store import (
    META,
    SCHEMA_VERSION,
    SNAPSHOT,
    StateVersionError,
    WorldStore,
)


def decode(kind: str, payload: bytes):
    value = json.loads(payload)
    return None if value.get("bad") else (kind, value["n"])


def put_all(state: dict, store: WorldStore, n0: int, n1: int) -> None:
    for n in range(n0, n1):
        key, entry = store.log_entry(f"t/0/{n}", "event", json.dumps({"n": n}).encode())
        state[key] = entry


def test_log_then_restore_gives_every_update_back():
    state: dict = {}
    store = WorldStore(compact_every=100)
    put_all(state, store, 0, 5)
    state["log/t/0/99"] = ("event", b'{"bad": true}')  # an update the world would not take
    snapshot, updates = WorldStore().restore(state.items(), decode)
    assert snapshot is None
    assert sorted(updates) == [("event", n) for n in range(5)]


def test_compaction_folds_the_whole_log_into_the_snapshot():
    state: dict = {}
    store = WorldStore(compact_every=3)
    put_all(state, store, 0, 2)
    assert not store.due()
    put_all(state, store, 2, 3)
    assert store.due()
    puts, removes = store.compaction(b"world@3", bound=1234.0)
    for k, v in puts:
        state[k] = v
    for k in removes:
        del state[k]
    assert set(state) == {SNAPSHOT, META}
    assert state[META] == {"version": SCHEMA_VERSION, "bound": 1234.0, "folded": 3}
    assert not store.due()
    put_all(state, store, 3, 5)  # arrive after the snapshot: logged again

    again = WorldStore(compact_every=3)
    snapshot, updates = again.restore(state.items(), decode)
    assert snapshot == b"world@3"
    assert sorted(updates) == [("event", 3), ("event", 4)]
    assert again.logged == {"t/0/3", "t/0/4"}  # bookkeeping rebuilt: the next fold removes them


def test_state_of_a_newer_schema_is_refused_with_a_clear_error():
    state = {SNAPSHOT: b"x", META: {"version": SCHEMA_VERSION + 1, "bound": 0, "folded": 0}}
    with pytest.raises(StateVersionError, match="schema version"):
        WorldStore().restore(state.items(), decode)
