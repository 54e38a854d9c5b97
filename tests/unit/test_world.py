"""The world: updates applied in event-time order, as of event time, exact snapshots, erasure."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from operators.config import RankingConfig, WorldConfig
from operators.events import ItemRemoved
from operators.recommender import Recommender
from operators.world import World
from streamrec.simulate import parse_item
from tests.unit.streams import DIM, T0, buy, embedder, entry, ev, random_records, unit


def world_of(updates, config=None) -> World:
    w = World(DIM, config)
    for u in updates:
        w.add(u)
    return w


def updates_of(records, embed):
    """The world's updates for contract records (events as Event objects)."""
    from operators.events import event_from_dict

    out = []
    for kind, key, value in records:
        out.append(parse_item(key, value, embed) if kind == "items" else event_from_dict(value))
    return out


def test_an_item_counts_from_events_strictly_after_its_time():
    w = world_of([entry("a", unit(1), ts=T0 + 100), entry("b", unit(0, 1), ts=None)])
    w.advance_to(T0 + 100)
    a, b = w.items.index.get("a"), w.items.index.get("b")
    assert a is None  # not applied yet: its time has not passed
    assert w.items.visible[b]  # without ts: from the start
    w.advance_to(T0 + 101)
    assert w.items.visible[w.items.index["a"]]


def test_another_users_purchase_counts_only_after_its_time():
    rec = Recommender(DIM, "m", top_k=5)
    for it, v in [("x", unit(1)), ("y", unit(0, 1)), ("z", unit(0, 0, 1))]:
        rec.world.add(entry(it, v, ts=T0))
    rec.world.add(buy("a1", "alice", "x", T0 + 1000, "o1"))
    rec.world.add(buy("a2", "alice", "y", T0 + 1000, "o1"))

    def list_after_viewing_x(ts):
        rec.world.advance_to(ts)
        _, value = rec.on_event(None, ev(f"b{ts}", "bob", "view", ts, "x"))
        return {i["item_id"]: i["reason"] for i in json.loads(value)["items"]}

    before = list_after_viewing_x(T0 + 1000)  # alice's order has the same ts: invisible
    assert "bought with x" not in before.values() and "y" not in before
    w = rec.world
    assert w.together.neighbours(w.items.index["x"])[0].size == 0
    after = list_after_viewing_x(T0 + 1001)
    assert after.get("y") == "bought with x"


def test_equal_updates_in_any_arrival_order_give_the_same_world():
    records, texts = random_records(seed=3)
    # (a tombstone has no time: it applies on arrival, so it has no place in a shuffle)
    ups = [u for u in updates_of(records, embedder(texts)) if not isinstance(u, ItemRemoved)]
    shuffled = ups[:]
    random.Random(1).shuffle(shuffled)  # arrival order no longer follows time at all
    a, b = world_of(ups), world_of(shuffled)
    a.advance_to(T0 + 10**12)
    b.advance_to(T0 + 10**12)
    state_a, state_b = pickle.loads(a.snapshot()), pickle.loads(b.snapshot())
    del state_a["arrivals"], state_b["arrivals"]  # arrival counters are equal, but say so
    assert pickle.dumps(state_a) == pickle.dumps(state_b)


def restored_midway(seed: int = 5):
    """A world fed every update (``full``), one fed the first half (``first``), and one restored
    from ``first``'s snapshot then fed the rest (``restored``)."""
    records, texts = random_records(seed=seed)
    ups = updates_of(records, embedder(texts))
    times = sorted({u.ts for u in ups if getattr(u, "ts", None) is not None})

    def run(world, updates, steps):
        for u in updates:
            world.add(u)
        for t in steps:
            world.advance_to(t)
        return world

    half, third, end = len(ups) // 2, len(times) // 3, [times[-1] + 1]
    full = run(run(World(DIM), ups[:half], times[:third]), ups[half:], times[third:] + end)
    first = run(World(DIM), ups[:half], times[:third])
    snap = first.snapshot()
    restored = World.restore(snap)
    assert restored.snapshot() == snap
    assert restored.pending > 0  # updates not applied yet travel in the snapshot
    run(restored, ups[half:], times[third:] + end)
    return full, first, restored


def test_snapshot_and_restore_continue_bit_identically():
    full, _, restored = restored_midway()
    assert restored.snapshot() == full.snapshot()


def test_forget_user_erases_the_users_context():
    w = world_of([entry("x", unit(1), ts=T0), entry("y", unit(0, 1), ts=T0)])
    w.add(buy("e1", "secret-user", "x", T0 + 10, "o1"))
    w.add(buy("e2", "secret-user", "y", T0 + 10, "o1"))
    w.advance_to(T0 + 11)
    assert "secret-user" in w.users
    w.add(ev("f", "secret-user", "forget_user", T0 + 20))
    w.advance_to(T0 + 21)
    assert "secret-user" not in w.users
    assert b"secret-user" not in w.snapshot()


def test_tombstone_voids_pending_versions_and_removes_the_item():
    w = world_of([entry("x", unit(1), ts=T0), entry("x", unit(0, 1), ts=T0 + 50)])
    w.advance_to(T0 + 1)
    x = w.items.index["x"]
    assert w.items.visible[x]
    w.add(ItemRemoved("x"))  # arrives after the version at T0 + 50 (still pending)
    w.advance_to(T0 + 100)
    assert not w.items.visible[x] and x not in w.index


def test_advance_is_monotone_and_late_updates_apply_at_the_next_call():
    w = World(DIM)
    w.advance_to(T0 + 200)
    w.add(entry("late", unit(1), ts=T0 + 150))
    assert w.items.index.get("late") is None
    assert w.advance_to(T0 + 100) == 1  # below the bound: the bound stays, the late one applies
    assert w.bound == T0 + 200 and w.items.visible[w.items.index["late"]]


def test_a_new_text_replaces_the_vector_and_the_text_neighbours():
    w = world_of(
        [entry("a", unit(1, 0), ts=T0), entry("b", unit(1, 0.1), ts=T0), entry("c", unit(0, 1))]
    )
    w.advance_to(T0 + 1)
    a, b, c = (w.items.index[i] for i in "abc")
    assert w.text.neighbours(a)[0][0] == b
    w.add(entry("a", unit(0.1, 1), ts=T0 + 5, title="NEW"))
    w.advance_to(T0 + 5)  # the new text counts from events after its own time
    assert w.items.titles[a] == "TITLE a"
    np.testing.assert_allclose(w.items.vector(a), unit(1, 0))
    w.advance_to(T0 + 6)
    assert w.text.neighbours(a)[0][0] == c
    assert w.items.titles[a] == "NEW"
    np.testing.assert_allclose(w.items.vector(a), unit(0.1, 1), atol=4e-3)  # bfloat16


def test_memory_is_bounded_per_item_and_per_user():
    cfg = RankingConfig(
        world=WorldConfig(co_row_cap=8, trending_size=5, text_neighbours=3, user_ttl_days=1)
    )
    rng = np.random.default_rng(0)
    w = World(DIM, cfg)
    for k in range(60):
        w.add(entry(f"i{k}", unit(*rng.standard_normal(DIM)), ts=T0))
    n = 0
    for o in range(200):
        user = f"u{o % 30}"
        for item in rng.choice(60, size=6, replace=False):
            n += 1
            w.add(buy(f"e{n}", user, f"i{item}", T0 + o * 60_000, f"o{o}"))
    w.advance_to(T0 + 200 * 60_000)
    assert max(len(r) for r in w.together.rows.values()) <= 8 + 8 // 4
    assert max(k.size for k, _ in w.together.nb.values()) <= cfg.world.co_neighbours
    assert len(w.trending.top) <= 5
    assert max(k.size for k, _ in w.text.lists.values()) <= 3
    w.advance_to(T0 + 3 * 24 * 3600 * 1000)  # every user idle for longer than the ttl
    w.add(buy("last", "new", "i1", T0 + 3 * 24 * 3600 * 1000 + 1))
    w.advance_to(T0 + 4 * 24 * 3600 * 1000)
    assert list(w.users) == ["new"]


def test_world_rejects_what_it_cannot_apply():
    w = World(DIM)
    with pytest.raises(TypeError):
        w.add({"item_id": "x"})
    with pytest.raises(ValueError, match="embedding of 9 values"):
        w.add(entry("bad", np.ones(DIM + 1, dtype=np.float32), ts=T0))
    assert w.pending == 0


def test_a_recommender_restores_a_world_of_its_own_settings_only():
    rec = Recommender(DIM, "m", config=RankingConfig())
    rec.world.add(entry("x", unit(1), ts=T0))
    rec.world.advance_to(T0 + 1)
    snap = rec.world.snapshot()
    other = Recommender(DIM, "m", config=RankingConfig().without("content"))
    other.restore_world(snap)  # ranking settings may differ
    assert other.world.items.index["x"] == 0 and other.ranker.world is other.world
    changed = RankingConfig(world=WorldConfig(co_alpha=0.9))
    with pytest.raises(ValueError, match="other world settings"):
        Recommender(DIM, "m", config=changed).restore_world(snap)


def test_events_naming_unlisted_items_do_not_grow_the_world():
    w = world_of([entry("x", unit(1), ts=T0)])
    for n in range(50):
        w.add(buy(f"e{n}", f"u{n % 3}", f"ghost{n}", T0 + 10, f"o{n % 3}"))
    w.add(buy("ex", "u0", "x", T0 + 10, "o0"))
    w.advance_to(T0 + 11)
    assert len(w.items) == 1 and w.together.rows == {}
    assert w.trending.top == [w.items.index["x"]]


def test_user_contexts_are_capped():
    w = World(DIM, RankingConfig(world=WorldConfig(user_max=5)))
    w.add(entry("x", unit(1), ts=T0))
    for n in range(20):
        w.add(buy(f"e{n}", f"u{n}", "x", T0 + n + 1))
    w.advance_to(T0 + 100)
    assert list(w.users) == [f"u{n}" for n in range(15, 20)]
