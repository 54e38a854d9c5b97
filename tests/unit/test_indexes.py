"""Incrementally maintained structures agree with brute force: trending top list, co-occurrence
neighbours, text neighbours, content search."""

from __future__ import annotations

import random

import numpy as np

from operators.content import ContentIndex, TextNeighbours, best_first
from operators.cooccurrence import CoOccurrence
from operators.trending import Trending
from tests.unit.streams import DIM

DAY = 24 * 3600 * 1000


def test_trending_top_list_is_exact():
    rng = random.Random(0)
    t = Trending(7 * DAY, size=10)
    for n in range(2000):
        t.add(rng.randrange(60), n * 3_600_000, rng.choice([1.0, 0.5]))
        if n % 97 == 0:
            want = sorted(t.score, key=lambda i: (-t.score[i], i))[:10]
            assert t.top == want
    visible = np.ones(60, dtype=bool)
    visible[t.top[0]] = False
    idx, _ = t.top_items(visible, 3)
    assert idx.tolist() == t.top[1:4]
    assert t.relative(np.array([t.top[0]]))[0] == 1.0


def test_cooccurrence_neighbours_are_the_best_by_asymmetric_cosine():
    rng = random.Random(1)
    co = CoOccurrence(30 * DAY, row_cap=1000, neighbours=5, alpha=0.7, refresh=0.0, shrink=1.0)
    pairs: dict[tuple[int, int], float] = {}
    count: dict[int, float] = {}
    for n in range(300):
        ts = n * 3_600_000
        w = co.weight(ts)
        order = rng.sample(range(30), 4)
        for k, i in enumerate(order):
            co.add_item(i, w)
            count[i] = count.get(i, 0.0) + w
            co.add_pairs(i, [(j, w) for j in order[:k]])
            for j in order[:k]:
                pairs[i, j] = pairs.get((i, j), 0.0) + w
                pairs[j, i] = pairs.get((j, i), 0.0) + w
    co.refresh(ts)
    f = co.decay.value_at(1.0, ts)
    for i in range(30):
        sims = {
            j: c / (count[i] ** 0.7 * count[j] ** 0.3) * (c * f / (c * f + 1.0))
            for (a, j), c in pairs.items()
            if a == i
        }
        want = sorted(sims, key=lambda j: (-sims[j], j))[:5]
        got, got_sims = co.neighbours(i)
        assert got.tolist() == want
        np.testing.assert_allclose(got_sims, [sims[j] for j in want], rtol=1e-6)


def test_text_neighbours_follow_arrivals_and_removals_exactly_with_a_full_probe():
    rng = np.random.default_rng(2)
    index = ContentIndex(DIM, capacity=4)
    text = TextNeighbours(m=4, probe=100)
    vecs = {}
    alive: set[int] = set()
    for step in range(120):
        if alive and rng.random() < 0.2:
            k = int(rng.choice(sorted(alive)))
            alive.discard(k)
            index.remove(k)
            text.remove(k, index)
        else:
            k = int(rng.integers(0, 40))
            v = rng.standard_normal(DIM).astype(np.float32)
            vecs[k] = v / np.linalg.norm(v)
            if k in alive:
                index.remove(k)
                text.remove(k, index)
            index.add(k, vecs[k])
            text.add(k, index)
            alive.add(k)
        for a in alive:
            others = np.array(sorted(alive - {a}), dtype=np.int64)
            if others.size == 0:
                continue
            sims = np.array([vecs[a] @ vecs[b] for b in others], dtype=np.float32)
            want, _ = best_first(others, sims, 4)
            assert text.neighbours(a)[0].tolist() == want.tolist(), (step, a)
        assert set(text.lists) == alive


def test_content_search_is_exact_and_breaks_ties_by_key():
    index = ContentIndex(DIM, capacity=2)
    e = np.eye(DIM, dtype=np.float32)
    for k in (5, 1, 3):
        index.add(k, e[0])
    index.add(2, e[1])
    keys, sims = index.search(e[0], 2)
    assert keys.tolist() == [1, 3] and sims.tolist() == [1.0, 1.0]
    assert index.search(e[1], 1, exclude=2)[0].tolist() == [1]
    index.remove(1)
    assert index.search(e[0], 5)[0].tolist() == [3, 5, 2]
