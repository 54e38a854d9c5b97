"""The world in broadcast state: log, snapshot, restore (operators.world_store), against a dict
standing for Flink's broadcast MapState, driven the way the recommend operator drives it: every
update goes through the broadcast side, each task's keyed side advances the world to its own
users' event times."""

from __future__ import annotations

import copy
import json
import pickle
import random

import pytest

from operators import catalog
from operators.events import Event
from operators.half_vectors import unpack
from operators.recommender import Recommender
from operators.world import _decode, _encode
from operators.world_store import (
    CATALOG,
    LOG,
    META,
    SCHEMA_VERSION,
    SNAPSHOT,
    WORLD_EVENT,
    StateVersionError,
    WorldStore,
    advance,
    decode_update,
    encode_item_update,
    world_event_payload,
)
from streamrec.simulate import parse_item
from tests.unit.streams import DIM, T0, embedder, random_records

MODEL = "tiny@0000"


def decode(kind: str, payload: bytes):
    value = json.loads(payload)
    return None if value.get("bad") else (kind, value["n"])


def put_all(state: dict, store: WorldStore, n0: int, n1: int) -> None:
    for n in range(n0, n1):
        for key, entry in store.log_entry(f"t/0/{n}", "event", json.dumps({"n": n}).encode()):
            state[key] = entry


def test_log_then_restore_gives_every_update_back_in_arrival_order():
    state: dict = {}
    store = WorldStore(compact_every=100)
    put_all(state, store, 0, 50)
    state[LOG + "t/0/99"] = ("event", b'{"bad": true}', 50)  # one the world would not take
    shuffled = list(state.items())
    random.Random(2).shuffle(shuffled)  # Flink's map hands entries back in any order
    again = WorldStore()
    snapshot, chunks, updates = again.restore(shuffled, decode)
    assert snapshot is None and chunks == {}
    assert updates == [("event", n) for n in range(50)]  # the order they arrived in
    assert again.seq == 51  # numbering goes on after the last logged update


def test_compaction_folds_the_whole_log_into_the_snapshot():
    state: dict = {}
    store = WorldStore(compact_every=3, model_id=MODEL, dim=DIM)
    put_all(state, store, 0, 2)
    assert not store.due()
    put_all(state, store, 2, 3)
    assert store.due()
    puts, removes = store.compaction(b"world@3", bound=1234.0, chunks={0: b"v0", 2: b"v2"})
    for k, v in puts:
        state[k] = v
    for k in removes:
        del state[k]
    assert set(state) == {SNAPSHOT, META, CATALOG + "0", CATALOG + "2"}
    assert state[META] == {
        "version": SCHEMA_VERSION,
        "model_id": MODEL,
        "dim": DIM,
        "bound": 1234.0,
        "folded": 3,
        "seq": 3,
    }
    assert not store.due()
    put_all(state, store, 3, 5)  # arrive after the snapshot: logged again

    again = WorldStore(compact_every=3, model_id=MODEL, dim=DIM)
    snapshot, chunks, updates = again.restore(state.items(), decode)
    assert snapshot == b"world@3" and chunks == {0: b"v0", 2: b"v2"}
    assert updates == [("event", 3), ("event", 4)]
    assert again.logged == {"t/0/3", "t/0/4"}  # bookkeeping rebuilt: the next fold removes them
    assert again.switch_from() is None


def test_state_of_a_newer_schema_is_refused_with_a_clear_error():
    state = {SNAPSHOT: b"x", META: {"version": SCHEMA_VERSION + 1, "bound": 0, "folded": 0}}
    with pytest.raises(StateVersionError, match="schema version"):
        WorldStore().restore(state.items(), decode)


def test_schema_1_logs_are_upgraded():
    state = {LOG + f"t/0/{n}": ("event", json.dumps({"n": n}).encode()) for n in range(3)}
    state[META] = {"version": 1, "bound": 0.0, "folded": 0}
    store = WorldStore(model_id=MODEL, dim=DIM)
    _, _, updates = store.restore(state.items(), decode)
    assert sorted(updates) == [("event", n) for n in range(3)]
    assert store.seq == 0 and store.switch_from() is None  # no model recorded: no switch
    # an item logged by schema 1: a bare pickle, model unknown
    assert decode_update("item", pickle.dumps("entry")) == (None, "entry")


def test_a_world_of_another_model_is_named_for_a_switch():
    store = WorldStore(model_id=MODEL, dim=DIM)
    state = dict(store.log_entry("t/0/0", "event", b'{"n": 0}'))
    assert state[META]["model_id"] == MODEL  # recorded with the first update
    for other in (WorldStore(model_id="other@1111", dim=DIM), WorldStore(model_id=MODEL, dim=4)):
        other.restore(state.items(), decode)
        assert other.switch_from() == f"{MODEL} (dim {DIM})"  # see test_model_switch


def test_the_world_never_sees_query_text_or_extra_fields():
    raw = json.dumps(
        {
            "event_id": "e1",
            "user_id": "u",
            "type": "search",
            "query": "very private words",
            "ts": T0,
            "price": 1.5,
            "quantity": 3,
            "session_id": "s",
            "extra": "x",
        }
    ).encode()
    event = decode_update("event", raw)
    assert event == Event("e1", "u", "search", T0, session_id="s")
    payload = world_event_payload(event)
    assert b"private" not in payload and decode_update(WORLD_EVENT, payload) == event


# ---- a task, as the recommend operator runs it ----------------------------------------------
class Task:
    """One recommend task: the broadcast side keeps the world in ``state`` (a dict standing for
    Flink's broadcast state), the keyed side advances it to its users' event times."""

    def __init__(self, state: dict, compact_every: int = 7):
        self.state = state
        self.store = WorldStore(compact_every=compact_every, model_id=MODEL, dim=DIM)
        self.rec = Recommender(DIM, MODEL, top_k=5, clock=lambda: 0)
        snapshot, chunks, updates = self.store.restore(state.items(), decode_update)
        if snapshot is not None:
            self.rec.restore_world(snapshot, chunks)
        for u in updates:
            self.rec.world.add(u if isinstance(u, Event) else u[1])
        self.store.count_forgets_from(self.rec.world.applied)

    def broadcast(self, update_id: str, kind: str, payload: bytes) -> None:
        update = decode_update(kind, payload)
        world = self.rec.world
        if isinstance(update, Event):
            kind, payload = WORLD_EVENT, world_event_payload(update)
            forget = update.ts if update.type == "forget_user" else None
        else:
            update, forget = update[1], None
        applied = world.applied
        world.add(update)
        for k, v in self.store.log_entry(update_id, kind, payload, forget, applied):
            self.state[k] = v
        if self.store.due(world.bound, world.applied):
            puts, removes = self.store.fold(world)
            self.state.update(puts)
            for k in removes:
                del self.state[k]

    def score(self, event: Event) -> bytes | None:
        advance(self.rec.world, event.ts)
        return self.rec.on_event(None, event, None)[1]


def schedule(records, embed, lag: int = 5):
    """Actions in the order a task meets them: each record on the broadcast side, and each
    event on the keyed side ``lag`` records later (when event time has passed it)."""
    actions, pending = [], []
    for n, (kind, key, value) in enumerate(records):
        if kind == "items":
            update = parse_item(key, value, embed)  # embedded, as the encode step emits it
            actions.append(("b", f"items/0/{n}", "item", encode_item_update(update, MODEL)))
        else:
            actions.append(("b", f"events/0/{n}", "event", json.dumps(value).encode()))
            pending.append(decode_update("event", json.dumps(value).encode()))
        while len(pending) > lag:
            actions.append(("s", pending.pop(0)))
    actions += [("s", e) for e in pending]
    return actions


def run(task: Task, actions, mine) -> list:
    out = []
    for a in actions:
        if a[0] == "b":
            task.broadcast(*a[1:])
        elif mine(a[1].user_id):
            out.append(task.score(a[1]))
    return out


@pytest.mark.parametrize("chunk_rows", [catalog.CHUNK_ROWS, 3])
def test_replicas_and_restores_continue_exactly(chunk_rows, monkeypatch):
    """Two tasks scoring different users hold bit-identical worlds; a task restored from a copy
    of its state taken anywhere (a checkpoint) emits exactly the lists it would have emitted.
    With chunks of 3 rows, folds write a few of many vector chunks and restores read them."""
    monkeypatch.setattr(catalog, "CHUNK_ROWS", chunk_rows)
    records, texts = random_records(seed=7, n_orders=150)
    actions = schedule(records, embedder(texts))
    even = lambda u: int(u[1:]) % 2 == 0  # noqa: E731
    odd = lambda u: not even(u)  # noqa: E731
    a, b = Task({}), Task({})
    lists_a, lists_b = run(a, actions, even), run(b, actions, odd)
    assert lists_a and lists_b
    final = b"".join(x or b"" for x in lists_a)
    a_copy, b_copy = Task(copy.deepcopy(a.state)), Task(copy.deepcopy(b.state))
    end = T0 + 10**12
    for task in (a, b, a_copy, b_copy):
        advance(task.rec.world, end)
    assert a.rec.world.snapshot() == b.rec.world.snapshot() == a_copy.rec.world.snapshot()

    for cut in random.Random(3).sample(range(len(actions)), 6):
        first = Task({})
        before = run(first, actions[:cut], even)
        restored = Task(copy.deepcopy(first.state))  # the checkpoint, restored
        after = run(restored, actions[cut:], even)
        assert b"".join(x or b"" for x in before + after) == final, cut
        advance(restored.rec.world, end)
        assert restored.rec.world.snapshot() == a.rec.world.snapshot(), cut


def test_a_forget_folds_the_users_events_out_of_the_log():
    records, texts = random_records(seed=11, n_orders=40)
    secret = "zz-secret-user"
    more = [
        (
            "events",
            secret,
            {
                "event_id": f"x{n}",
                "user_id": secret,
                "type": "purchase",
                "item_id": "i000",
                "ts": T0 + 10_000 + n,
                "session_id": "o-secret",
                "query": "secret words",
            },
        )  # fmt: skip
        for n in range(3)
    ]
    forget = ("events", secret, {"event_id": "xf", "user_id": secret, "type": "forget_user",
                                 "ts": T0 + 20_000})  # fmt: skip
    later = [(k, key, v) for k, key, v in records if k == "items" or v["ts"] > T0 + 20_000]
    actions = schedule(records[:5] + more + [forget] + later, embedder(texts), lag=2)
    task = Task({}, compact_every=10**6)  # no fold for the log's length
    state_at = []
    for a in actions:
        if a[0] == "b":
            task.broadcast(*a[1:])
        else:
            task.score(a[1])
        state_at.append(pickle.dumps(task.state))
    assert any(secret.encode() in s for s in state_at)  # logged while the user was there
    applied = next(
        n for n, a in enumerate(actions) if a[0] == "s" and a[1].ts > T0 + 20_000
    )  # the first event after the forget: the world applies it
    next_broadcast = next(n for n in range(applied, len(actions)) if actions[n][0] == "b")
    assert all(secret.encode() not in s for s in state_at[next_broadcast:])
    assert all(b"secret words" not in s for s in state_at)  # never logged at all
    assert secret not in task.rec.world.users


def test_a_late_forget_folds_once_the_world_has_applied_it():
    """A forget whose time the world has passed already (it came late) is applied at the next
    advance, and the log folds after that, not when it arrives (the snapshot would still hold
    the user's context and the forget itself, and nothing would fold them away later)."""
    records, texts = random_records(seed=2, n_orders=5)
    task = Task({}, compact_every=10**6)
    for a in schedule([r for r in records if r[0] == "items"], embedder(texts)):
        task.broadcast(*a[1:])
    secret = "zz-late-secret"

    def ev(eid, user, ts, etype="purchase"):
        return {"event_id": eid, "user_id": user, "type": etype, "item_id": "i000", "ts": ts,
                "session_id": f"o-{user}"}  # fmt: skip

    def arrive(n, value):
        task.broadcast(f"events/0/{n}", "event", json.dumps(value).encode())

    arrive(1, ev("s1", secret, T0 + 10_000))
    arrive(2, ev("o1", "other", T0 + 30_000))
    task.score(decode_update("event", json.dumps(ev("o1", "other", T0 + 30_000)).encode()))
    assert secret in task.rec.world.users
    forget = {"event_id": "sf", "user_id": secret, "type": "forget_user", "ts": T0 + 20_000}
    arrive(3, forget)  # late: the world's bound is past it
    arrive(4, ev("o2", "other", T0 + 40_000))  # no advance since: nothing applied it yet
    assert secret.encode() in pickle.dumps(task.state)  # not folded while still pending
    task.score(decode_update("event", json.dumps(ev("o2", "other", T0 + 40_000)).encode()))
    assert secret not in task.rec.world.users  # applied now
    arrive(5, ev("o3", "other", T0 + 50_000))  # the next update folds the log
    assert secret.encode() not in pickle.dumps(task.state)


def test_a_schema_2_world_with_float32_vectors_is_restored_and_its_next_fold_writes_chunks():
    records, texts = random_records(seed=5, n_orders=40)
    actions = schedule(records, embedder(texts))
    task = Task({}, compact_every=10**9)
    run(task, actions, lambda u: True)
    world = task.rec.world
    # the world as schema 2 saved it: float32 vectors inside the snapshot, no chunks
    old = _decode(pickle.loads(world.snapshot()))
    old["items"]["vectors"] = unpack(old["items"]["vectors"])
    state = {
        SNAPSHOT: pickle.dumps(_encode(old)),
        META: {"version": 2, "model_id": MODEL, "dim": DIM, "bound": world.bound, "seq": 0},
    }
    restored = Task(state, compact_every=1)
    assert restored.rec.world.snapshot() == world.snapshot()
    late = {
        "event_id": "l-1",
        "user_id": "u-l",
        "type": "view",
        "item_id": "i010",
        "ts": T0 + 10**11,
    }
    restored.broadcast("events/0/late", "event", json.dumps(late).encode())  # folds (every 1)
    assert state[META]["version"] == SCHEMA_VERSION
    chunks = [k for k in state if k.startswith(CATALOG)]
    assert len(chunks) == -(-len(world.items) // catalog.CHUNK_ROWS) >= 1
    again = Task(state)
    advance(again.rec.world, T0 + 10**12)
    advance(restored.rec.world, T0 + 10**12)
    assert again.rec.world.snapshot() == restored.rec.world.snapshot()
