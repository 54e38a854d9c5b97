"""The approximate index of large catalogs (operators.ann): results that depend on the catalog
alone (replicas, other orders of the same updates, restores), close to exact search, and a world
that switches to it at its threshold and still continues bit-identically after a restore."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

import operators.ann as ann
import operators.world as world_mod
from operators.ann import IVFIndex
from operators.content import ContentIndex, TextNeighbours, best_first
from operators.events import ItemRemoved
from operators.world import World, _decode, _encode
from tests.unit.streams import DIM, T0, embedder, random_records
from tests.unit.test_world import restored_midway, updates_of


def clustered(n: int, dim: int = 16, centres: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, dim))
    x[n // 2 : n // 2 + 5] = x[n // 2]  # duplicates: exact ties
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def searches(index: IVFIndex, rows: np.ndarray, queries) -> list:
    return [
        (k.tolist(), s.tolist()) for k, s in (index.search(rows[q], 12, rows, q) for q in queries)
    ]


def test_results_depend_on_the_updates_alone_and_survive_a_restore(monkeypatch):
    monkeypatch.setattr(ann, "MAX_CELL", 40)  # cells split as keys arrive
    rows = clustered(900)
    a = IVFIndex.build(np.arange(300), rows, lists=8, probe=4)
    assert a.n_cells > 8  # the build split oversized cells
    b = IVFIndex.build(np.arange(300), rows, lists=8, probe=4)  # a replica

    def updates(index, ks):
        for k in ks:
            if k % 7 == 3 and k > 300:
                index.remove(k - 100)
            index.add(k, rows[k], rows)

    updates(a, range(300, 600))
    updates(b, range(300, 600))
    c = IVFIndex.from_state(a.state())  # a restore, mid-way
    for index in (a, b, c):
        updates(index, range(600, 900))
    assert a.n_cells >= 30  # split while growing
    queries = list(range(0, 900, 7))
    assert searches(a, rows, queries) == searches(b, rows, queries) == searches(c, rows, queries)
    for x in (b, c):
        assert x.centroids.tobytes() == a.centroids.tobytes()
        assert x.cell_of.tobytes() == a.cell_of.tobytes()
    assert max(cell.size for cell in a.cells) <= 40
    assert sorted(np.concatenate(a.cells).tolist()) == np.flatnonzero(a.cell_of >= 0).tolist()


def test_identical_vectors_do_not_split_forever(monkeypatch):
    monkeypatch.setattr(ann, "MAX_CELL", 10)
    rows = np.tile(clustered(1), (200, 1))  # 200 copies of one vector
    index = IVFIndex.build(np.arange(50), rows, lists=2, probe=2)
    for k in range(50, 200):
        index.add(k, rows[k], rows)
    assert sum(cell.size for cell in index.cells) == 200
    assert index.search(rows[0], 5, rows)[0].tolist() == [0, 1, 2, 3, 4]  # ties by key


def test_building_twice_from_the_same_keys_gives_the_same_index():
    rows = clustered(800, seed=1)
    keys = np.arange(0, 800, 2)
    a, b = IVFIndex.build(keys, rows, 32, 6), IVFIndex.build(keys, rows, 32, 6)
    assert a.centroids.tobytes() == b.centroids.tobytes()
    assert a.cell_of.tobytes() == b.cell_of.tobytes()


def test_search_is_close_to_exact_and_exact_on_what_it_returns():
    rows = clustered(3000, dim=24, centres=60, seed=2)
    keys = np.arange(3000)
    index = IVFIndex.build(keys, rows, lists=64, probe=8)
    hits = 0
    for q in range(0, 3000, 30):
        got_k, got_s = index.search(rows[q], 10, rows, exclude=q)
        sims = rows @ rows[q]
        np.testing.assert_array_equal(got_s, sims[got_k])  # scores are exact cosines
        assert q not in got_k.tolist()
        want, _ = best_first(np.delete(keys, q), np.delete(sims, q), 10)
        hits += len(set(got_k.tolist()) & set(want.tolist()))
    assert hits / (100 * 10) >= 0.9


def test_the_content_index_switches_to_the_ann_at_its_threshold_over_shared_rows():
    rows = clustered(300, seed=3)
    index = ContentIndex(16, rows=lambda: rows, ann_min=200)
    text = TextNeighbours(m=5, probe=10)
    for k in range(300):
        index.add(k, rows[k])
        text.add(k, index)
        assert (index.ann is not None) == (k >= 199)
    assert len(index) == 300 and np.array_equal(index.vector(7), rows[7])
    index.remove(7)
    assert 7 not in index.search(rows[7], 20)[0].tolist()
    assert index.ann.cell_of[7] == -1


@pytest.fixture
def small_ann(monkeypatch):
    """Worlds that go approximate from 12 present items on, with 4 cells, 2 probed."""
    monkeypatch.setattr(world_mod, "ANN_MIN_KEYS", 12)
    monkeypatch.setattr(ann, "LISTS", 4)
    monkeypatch.setattr(ann, "PROBE", 2)


def test_a_world_with_the_ann_restores_and_continues_bit_identically(small_ann):
    full, first, restored = restored_midway()
    assert full.index.ann is not None
    assert first.index.ann is not None  # the restore carried the cells
    assert restored.snapshot() == full.snapshot()


def test_equal_updates_in_any_arrival_order_give_the_same_approximate_world(small_ann):
    records, texts = random_records(seed=3)
    ups = [u for u in updates_of(records, embedder(texts)) if not isinstance(u, ItemRemoved)]
    shuffled = ups[:]
    random.Random(1).shuffle(shuffled)
    a, b = World(DIM), World(DIM)
    for u in ups:
        a.add(u)
    for u in shuffled:
        b.add(u)
    a.advance_to(T0 + 10**12)
    b.advance_to(T0 + 10**12)
    assert a.index.ann is not None
    state_a, state_b = pickle.loads(a.snapshot()), pickle.loads(b.snapshot())
    del state_a["arrivals"], state_b["arrivals"]
    assert pickle.dumps(state_a) == pickle.dumps(state_b)


def test_a_snapshot_without_cells_builds_them_from_the_present_items(small_ann):
    records, texts = random_records(seed=6)
    w = World(DIM)
    for u in updates_of(records, embedder(texts)):
        w.add(u)
    w.advance_to(T0 + 10**12)

    s = _decode(pickle.loads(w.snapshot()))
    del s["index"]  # as an older version wrote it
    restored = World.restore(pickle.dumps(_encode(s)))
    assert restored.index.ann is not None and len(restored.index) == len(w.index)
