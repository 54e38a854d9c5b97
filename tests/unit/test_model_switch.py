"""Switching a world and its users to another encoder (operators.model_switch), as a task does
when it is resumed with another --model: the lists after the switch are those of a world that
always ran the new model, the behaviour model is kept, nothing of the old model is left, and a
failed re-embedding leaves the old world whole."""

from __future__ import annotations

import copy
import hashlib
import pickle

import numpy as np
import pytest

from operators.catalog import CHUNK_ROWS, CatalogEntry, ItemTable
from operators.events import Event
from operators.half_vectors import pack, unpack
from operators.keyed_state import PROFILE_VERSION, UserState, pack_user, unpack_user
from operators.model_switch import reembed_queries, reembed_world
from operators.recommender import Recommender
from operators.user_profile import Profile
from operators.world import World
from operators.world_store import CATALOG, LOG, META, SNAPSHOT, WorldStore, advance, decode_update
from streamrec.simulate import Simulation
from tests.unit.streams import DIM, T0, embedder, entry, random_records, unit

OLD, NEW = "old@1111", "new@2222"


def stored(vec: np.ndarray) -> np.ndarray:
    """``vec`` as a world's table holds it (bfloat16)."""
    return unpack(pack(vec))


def hashed(dim: int, salt: str):
    """Another model: text -> a deterministic unit vector of ``dim`` from the text's hash."""

    def embed(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256((salt + text).encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        return v / np.linalg.norm(v)

    embed.dim = dim
    return embed


def batch(embed_one, calls: list | None = None):
    """texts -> [n, dim], as the job's encoder (behind the embedding store) gives them."""

    def embed(texts):
        if calls is not None:
            calls.append(list(texts))
        return np.stack([embed_one(t) for t in texts]) if texts else np.zeros((0, embed_one.dim))

    return embed


def feed(sim: Simulation, records, embed) -> list:
    """The simulation's outputs for ``records`` (session ends still open stay open)."""
    out = []
    for ends, _, own in sim.steps(records, embed, finish=False):
        out += [o.value for o in ends] + ([own.value] if own is not None else [])
    return out


def switched_run(records, cut: int, old, new) -> tuple[list, Simulation]:
    """``records[:cut]`` scored with ``old``, then the switch, then the rest with ``new``."""
    sim = Simulation(Recommender(old.dim, OLD, top_k=5, clock=lambda: 0))
    feed(sim, records[:cut], old)
    world, stats = reembed_world(sim.world, batch(new), new.dim)
    assert stats.items == int(sum(world.items.is_present(i) for i in range(len(world.items))))
    sim.rec = Recommender(new.dim, NEW, top_k=5, clock=lambda: 0, world=world)
    for profile in sim.profiles.values():
        profile.queries = reembed_queries(profile.queries, new)
    return feed(sim, records[cut:], new) + [o.value for o in sim.finish()], sim


def new_only_run(records, cut: int, new) -> tuple[list, Simulation]:
    sim = Simulation(Recommender(new.dim, NEW, top_k=5, clock=lambda: 0))
    feed(sim, records[:cut], new)
    return feed(sim, records[cut:], new) + [o.value for o in sim.finish()], sim


def same_world(a: World, b: World) -> bool:
    """The same state, but for the order in which the text-neighbour lists were made (an item
    re-titled while the world grew is listed again at the end) and the last bit of their
    similarities (a dot product over an index of another size rounds differently)."""
    la, lb = a.text.lists, b.text.lists
    if la.keys() != lb.keys() or any(
        not np.array_equal(la[k][0], lb[k][0]) or not np.allclose(la[k][1], lb[k][1], atol=1e-6)
        for k in la
    ):
        return False
    a_copy, b_copy = copy.copy(a), copy.copy(b)
    a_copy.text = b_copy.text = a.text
    return a_copy.snapshot() == b_copy.snapshot()


@pytest.mark.parametrize("new_dim", [DIM, 12])
@pytest.mark.parametrize("seed", [1, 4])
def test_after_a_switch_the_lists_are_those_of_the_new_model_alone(seed, new_dim):
    records, texts = random_records(seed=seed, n_orders=120)
    old, new = embedder(texts), hashed(new_dim, "new")
    for cut in (len(records) // 3, 2 * len(records) // 3):
        got, sim = switched_run(records, cut, old, new)
        want, ref = new_only_run(records, cut, new)
        assert got and got == want, cut
        assert all(b'"model":"new@2222"' in v for v in got if v is not None)
        advance(sim.world, T0 + 10**12)
        advance(ref.world, T0 + 10**12)
        assert same_world(sim.world, ref.world), cut


def test_the_behaviour_model_is_kept_and_waiting_updates_are_re_embedded():
    records, texts = random_records(seed=2, n_orders=80)
    old, new = embedder(texts), hashed(16, "n")
    sim = Simulation(Recommender(DIM, OLD, clock=lambda: 0))
    feed(sim, records, old)
    world = sim.world
    world.add(entry("later", unit(1, 2), ts=T0 + 10**12, title="A LATER ITEM"))
    together, trending = pickle.dumps(world.together.state()), pickle.dumps(world.trending.state())
    users = pickle.dumps({u: c.state() for u, c in world.users.items()})

    new_world, stats = reembed_world(world, batch(new), 16)
    assert stats.pending == sum(isinstance(b[4], CatalogEntry) for b in world._buffer) >= 1
    assert new_world.dim == 16 and new_world.items.vectors.shape[1] == 16
    assert pickle.dumps(new_world.together.state()) == together
    assert pickle.dumps(new_world.trending.state()) == trending
    assert pickle.dumps({u: c.state() for u, c in new_world.users.items()}) == users
    assert (new_world.bound, new_world.applied) == (world.bound, world.applied)
    for i in range(len(new_world.items)):
        text = new_world.items.text(i)
        if text is None:
            assert not new_world.items.vectors[i].any()
        else:
            assert np.array_equal(new_world.items.vector(i), stored(new(text)))
            assert np.array_equal(new_world.index.vector(i), stored(new(text)))
    for b in new_world._buffer:
        if isinstance(b[4], CatalogEntry):
            assert np.array_equal(b[4].vector(), new(b[4].embedded_text))
    advance(new_world, T0 + 10**13)
    i = new_world.items.index["later"]
    assert np.array_equal(new_world.items.vector(i), stored(new("A LATER ITEM")))


def test_the_embedded_text_is_what_is_embedded_again():
    """An item's vector is of title + category + description; the switch embeds that text."""
    from operators.events import Item
    from operators.recommender import catalog_entry

    item = Item("x", "LANTERN", description="white metal", category="lights")
    e = catalog_entry(item, unit(1))
    assert e.text == item.text() != item.title and e.embedded_text == item.text()
    assert catalog_entry(Item("y", "LANTERN"), unit(1)).text is None  # the title alone
    world = World(DIM)
    world.add(e)
    world.advance_to(1)
    calls: list = []
    new_world, _ = reembed_world(world, batch(hashed(DIM, "n"), calls), DIM)
    assert calls == [[item.text()]]
    assert np.array_equal(new_world.items.vector(0), stored(hashed(DIM, "n")(item.text())))


def test_a_failed_re_embedding_leaves_the_old_world_whole():
    records, texts = random_records(seed=3, n_orders=40)
    sim = Simulation(Recommender(DIM, OLD, clock=lambda: 0))
    feed(sim, records, embedder(texts))
    before = sim.world.snapshot()

    def broken(texts):
        raise RuntimeError("model file gone")

    with pytest.raises(RuntimeError):
        reembed_world(sim.world, broken, DIM)
    with pytest.raises(ValueError, match="shape"):
        reembed_world(sim.world, lambda ts: np.zeros((len(ts), DIM + 1), np.float32), DIM)
    assert sim.world.snapshot() == before


def test_queries_are_embedded_again_one_at_a_time():
    new = hashed(12, "q")
    queries = [(T0, "red lantern", b"\0" * 4 * DIM), (T0 + 1, "paper chain", b"\1" * 4 * DIM)]
    again = reembed_queries(queries, new)
    assert [(ts, q) for ts, q, _ in again] == [(ts, q) for ts, q, _ in queries]
    for _, q, raw in again:
        assert np.array_equal(np.frombuffer(raw, "<f4"), new(q))


def test_profiles_record_their_model_and_older_ones_are_unknown():
    p = Profile(user_id="u", last_ts=T0, queries=[(T0, "lamp", b"\0" * 4 * DIM)])
    stored = pack_user(UserState(p, 5, NEW))
    assert stored["v"] == PROFILE_VERSION and stored["model"] == NEW
    assert unpack_user(stored).model == NEW
    v1 = {k: v for k, v in stored.items() if k not in ("model", "closed")} | {"v": 1}
    user = unpack_user(v1)
    assert user.model is None and user.ttl_timer == 5 and user.profile.queries == p.queries


def test_catalog_entries_and_tables_of_older_state_read_as_titles():
    new = CatalogEntry("x", unit(1).tobytes(), "LAMP", True, 2.5, T0, text="LAMP . lights")
    assert pickle.loads(pickle.dumps(new)) == new
    old = copy.copy(new)
    state = old.__getstate__()[:6]  # what the job pickled before the field was added
    restored = CatalogEntry.__new__(CatalogEntry)
    restored.__setstate__(state)
    assert restored.text is None and restored.embedded_text == "LAMP" and restored.ts == T0

    table = ItemTable(DIM)
    table.upsert(new)
    s = table.state()
    del s["texts"]
    assert ItemTable.from_state(s).text(0) == "LAMP"
    assert table.text(0) == "LAMP . lights"


def test_the_world_store_switches_then_folds_the_old_model_away():
    """Restored with another model: the store names the old one; after the switch, the next
    update folds every logged update of the old model into a snapshot of the new world, so a
    restore from then on finds the new model only."""
    records, texts = random_records(seed=5, n_orders=30)
    old = embedder(texts)
    state: dict = {}
    store = WorldStore(compact_every=10_000, model_id=OLD, dim=DIM)
    world = World(DIM)
    from operators.world_store import encode_item_update
    from streamrec.simulate import parse_item

    for n, (kind, key, value) in enumerate(records):
        if kind != "items":
            continue
        update = parse_item(key, value, old)
        world.add(update)
        for k, v in store.log_entry(f"items/0/{n}", "item", encode_item_update(update, OLD)):
            state[k] = v
    assert state[META]["model_id"] == OLD and SNAPSHOT not in state

    same = WorldStore(model_id=OLD, dim=DIM)
    same.restore(state.items(), decode_update)
    assert same.switch_from() is None
    for model, dim in ((NEW, DIM), (OLD, 12)):
        other = WorldStore(model_id=model, dim=dim)
        other.restore(state.items(), decode_update)
        assert other.switch_from() == f"{OLD} (dim {DIM})"

    task = WorldStore(compact_every=10_000, model_id=NEW, dim=12)
    _, _, updates = task.restore(state.items(), decode_update)
    restored = World(DIM)
    for _, u in updates:
        restored.add(u)
    new_world, _ = reembed_world(restored, batch(hashed(12, "n")), 12)
    task.switched()
    assert task.due()  # the next update folds
    ev = Event("e", "u", "view", T0, item_id="i000")
    new_world.add(ev)
    for k, v in task.log_entry("events/0/0", "world_event", b"{}"):
        state[k] = v
    puts, removes = task.fold(new_world)  # as the job folds: every chunk, all re-embedded
    written = sorted(int(k[len(CATALOG) :]) for k, _ in puts if k.startswith(CATALOG))
    assert written == list(range(-(-len(new_world.items) // CHUNK_ROWS)))
    state.update(puts)
    for k in removes:
        del state[k]
    assert not [k for k in state if k.startswith(LOG)] and not task.due()
    assert state[META]["model_id"] == NEW and state[META]["dim"] == 12
    again = WorldStore(model_id=NEW, dim=12)
    snapshot, chunks, updates = again.restore(state.items(), decode_update)
    assert again.switch_from() is None and updates == []
    assert World.restore(snapshot, chunks).snapshot() == new_world.snapshot()
