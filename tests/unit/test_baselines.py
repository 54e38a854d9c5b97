"""Baselines on tiny streams with known answers."""

from __future__ import annotations

import pytest

from streamrec.baselines import (
    Blend,
    ItemKNN,
    Popularity,
    RecentPopularity,
    RepeatHistory,
    TopCounter,
    default_baselines,
    run_baselines,
)

TS = 1_291_190_000_000
DAY = 24 * 3600 * 1000
_n = 0


def buy(user, item, ts=TS, session=None):
    global _n
    _n += 1
    ev = {"event_id": f"e{_n}", "user_id": user, "type": "purchase", "item_id": item, "ts": ts}
    if session is not None:
        ev["session_id"] = session
    return ev


def feed(rec, events):
    out = None
    for ev in events:
        out = rec.update(ev)
    return out


def test_topcounter_exact_with_ties_by_first_seen():
    t = TopCounter(size=2)
    for it in ["a", "b", "c", "c", "b", "d", "d", "d"]:
        t.add(it)
    assert t.top(2) == ("d", "b")  # d 3, b 2 (seen before c), c 2
    t.add("a")
    assert t.top(2) == ("d", "a")  # a reaches 2 and enters: seen before b
    t.add("a")
    assert t.top(2) == ("a", "d")  # a reaches 3, seen before d -> first
    assert t.top(5) == ("a", "d")  # only ``size`` kept


def test_popularity_counts_purchases_so_far_and_includes_the_event():
    p = Popularity(k=3)
    assert p.update(buy("u", "a")) == ("a",)
    feed(p, [buy("u", "b"), buy("v", "b"), buy("w", "c")])
    # the list after the event includes it: c reaches 2 and, first seen after b, ranks after b
    assert p.update(buy("w", "c")) == ("b", "c", "a")
    views = {"event_id": "x", "user_id": "u", "type": "view", "item_id": "a", "ts": TS}
    assert p.update(views) == ("b", "c", "a")  # views do not count


def test_recent_popularity_prefers_recent_purchases():
    r = RecentPopularity(k=2, half_life_days=7)
    feed(r, [buy("u", "old", TS)] * 3)
    # 3 purchases 28 days (4 half-lives) ago weigh 3/16 < 1 purchase now
    assert r.update(buy("v", "new", TS + 28 * DAY)) == ("new", "old")
    p = Popularity(k=2)
    feed(p, [buy("u", "old", TS)] * 3)
    assert p.update(buy("v", "new", TS + 28 * DAY)) == ("old", "new")


def test_recent_popularity_rebases_without_overflow():
    r = RecentPopularity(k=2, half_life_days=0.001)  # 86.4 s: huge exponents over days
    r.update(buy("u", "a", TS))
    out = r.update(buy("u", "b", TS + 30 * DAY))
    assert out == ("b", "a")
    assert all(v < float("inf") for v in r.counts.score.values())


def test_repeat_history_ranks_users_most_bought_first_pads_with_popular():
    r = RepeatHistory(k=4)
    feed(r, [buy("v", "p")] * 5 + [buy("v", "q")] * 4)  # global: p 5, q 4
    feed(r, [buy("u", "x"), buy("u", "y"), buy("u", "y"), buy("u", "z")])
    out = r.recommend("u")
    # y bought twice; x and z once: tie broken by global popularity (equal) then first seen
    assert out[:3] == ("y", "x", "z")
    assert out[3] == "p"  # padded with the most popular item not already listed
    assert r.recommend("newcomer") == ("p", "q", "y", "x")


def test_repeat_history_ties_broken_by_popularity():
    r = RepeatHistory(k=2)
    feed(r, [buy("u", "a"), buy("u", "b")])
    feed(r, [buy("v", "b"), buy("v", "b")])
    assert r.recommend("u") == ("b", "a")


def test_repeat_history_many_items_threshold_path():
    r = RepeatHistory(k=3)
    evs = [buy("u", f"i{j}") for j in range(20) for _ in range(j % 4 + 1)]
    feed(r, evs)
    out = r.recommend("u")
    # counts are j % 4 + 1: 4 for j in (3, 7, 11, 15, 19) -> first three by first seen
    assert out == ("i3", "i7", "i11")


def test_forget_user_drops_history():
    r = RepeatHistory(k=2)
    feed(r, [buy("u", "a"), buy("v", "b"), buy("v", "b")])
    r.update({"event_id": "f", "user_id": "u", "type": "forget_user", "ts": TS})
    assert r.recommend("u") == ("b", "a")  # popularity only


def test_item_knn_neighbours_from_shared_baskets():
    knn = ItemKNN(k=3)
    for u, items, order in (("v", "ab", "o1"), ("w", "abc", "o2"), ("z", "dc", "o3")):
        for it in items:
            knn.observe(buy(u, it, session=order))  # state only, no lists (no cached neighbours)
    nb = dict(knn.neighbours("a"))
    assert set(nb) == {"b", "c"}
    assert nb["b"] == pytest.approx(2 / (2 * 2) ** 0.5)  # co 2, both in 2 orders
    assert nb["c"] == pytest.approx(1 / (2 * 2) ** 0.5)
    # a user who just bought "a" gets its neighbours first, best first
    out = knn.update(buy("u", "a", session="o4"))
    assert out[:2] == ("b", "c")
    # a repeated line in one order does not count twice
    knn.update(buy("u", "a", session="o4"))
    assert knn.n_orders["a"] == 3


def test_item_knn_lines_of_one_order_see_each_other():
    knn = ItemKNN(k=2)
    feed(knn, [buy("v", "a", session="o1"), buy("v", "b", session="o1")])
    assert knn.co["a"]["b"] == knn.co["b"]["a"] == 1
    out = knn.update(buy("u", "b", session="o2"))
    assert out[0] == "a"


def test_blend_combines_repeat_and_knn():
    b = Blend(k=3)
    feed(b, [buy("v", "a", session="o1"), buy("v", "b", session="o1")])
    out = b.update(buy("u", "a", session="o2"))
    assert out[0] == "a"  # the user's own item (repeat) first
    assert "b" in out  # its basket neighbour


def test_run_baselines_scores_each_list_after_its_event():
    recs = [("items", "a", {"item_id": "a", "ts": TS}), ("items", "b", {"item_id": "b", "ts": TS})]
    recs += [("events", "u", buy("u", "a", TS + n * DAY, session=f"o{n}")) for n in range(3)]
    recs += [("events", "u", buy("u", "b", TS + 5 * DAY, session="o9"))]
    res = run_baselines(recs, [Popularity(k=1), RepeatHistory(k=10)], k=10)
    # popularity@1: a, a, a -> hits for the 2nd and 3rd a; b misses
    assert res["popularity"]["event"]["n"] == 4
    assert res["popularity"]["event"]["hr@10"] == 0.5
    assert res["repeat_history"]["event"]["hr@10"] == 0.5  # b never bought before
    assert res["repeat_history"]["coverage"] == 1.0
    assert set(res) == {"popularity", "repeat_history"}


def test_default_baselines_names_and_determinism():
    names = [b.name for b in default_baselines()]
    assert names == ["popularity", "recent_popularity", "repeat_history", "item_knn", "blend"]
    stream = [
        (
            "events",
            f"u{j % 3}",
            buy(f"u{j % 3}", f"i{(j * 7) % 5}", TS + j * 3600_000, f"o{j // 2}"),
        )
        for j in range(40)
    ]
    a = run_baselines(stream)
    b = run_baselines(stream)
    assert a == b
