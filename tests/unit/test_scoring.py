import json

import numpy as np

from operators.catalog import CatalogEntry, CatalogIndex
from operators.events import Event
from operators.recommender import Recommender
from operators.scoring import ScoringParams, recommend, top_k
from operators.user_profile import DAY_MS, Profile, ProfileParams, apply_event, decay


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def entry(item_id, vec, available=True):
    return CatalogEntry(item_id, unit(*vec).astype("<f4").tobytes(), f"title {item_id}", available)


def catalog():
    c = CatalogIndex(dim=3, capacity=2)  # small capacity: exercises growth
    c.upsert(entry("a", (1, 0, 0)))
    c.upsert(entry("a2", (0.9, 0.1, 0)))
    c.upsert(entry("b", (0, 1, 0)))
    c.upsert(entry("c", (0, 0, 1)))
    return c


def e(item, ts, etype="view", eid="e"):
    return Event(eid, "u", etype, ts, item_id=item)


def test_decay_is_event_time_and_never_grows():
    assert decay(0, 10) == 1.0
    assert abs(decay(10, 10) - 0.5) < 1e-12
    assert decay(-5, 10) == 1.0


def test_similar_items_rank_first():
    c = catalog()
    p = apply_event(Profile(), e("a", 0), c.vector, ProfileParams())
    ranked = [i for i, _ in recommend(p, c, 4)]
    assert ranked[:2] == ["a", "a2"]
    assert set(ranked) == {"a", "a2", "b", "c"}


def test_unavailable_and_removed_items_are_never_recommended():
    c = catalog()
    c.upsert(entry("a2", (0.9, 0.1, 0), available=False))
    c.remove("b")
    p = apply_event(Profile(), e("a", 0), c.vector, ProfileParams())
    ids = [i for i, _ in recommend(p, c, 10)]
    assert "a2" not in ids and "b" not in ids
    assert ids[0] == "a"
    c.upsert(entry("d", (0, 1, 0)))  # reuses the freed row
    assert "d" in [i for i, _ in recommend(p, c, 10)]


def test_repeat_purchases_are_boosted_not_excluded():
    c = catalog()
    pp = ProfileParams()
    p = Profile()
    for n in range(3):
        apply_event(p, e("c", n, "purchase"), c.vector, pp)
    apply_event(p, e("a", 10 * DAY_MS, "view"), c.vector, pp)
    assert p.purchases["c"][0] == 3
    with_repeat = [i for i, _ in recommend(p, c, 4, pp, ScoringParams(w_repeat=2.0))]
    assert with_repeat[0] == "c"


def test_window_slides_on_event_time():
    c = catalog()
    pp = ProfileParams(window_ms=DAY_MS)
    p = Profile()
    apply_event(p, e("a", 0), c.vector, pp)
    apply_event(p, e("b", 2 * DAY_MS), c.vector, pp)
    assert [r[1] for r in p.recent] == ["b"]


def test_unknown_item_is_kept_and_filled_in_when_it_arrives():
    c = catalog()
    pp = ProfileParams()
    p = apply_event(Profile(), e("new", 0, "purchase"), c.vector, pp)
    assert p.pending == [(0, "new", pp.type_weights["purchase"])]
    assert p.long_vec is None
    c.upsert(entry("new", (0, 1, 0)))
    apply_event(p, e("a", 1000), c.vector, pp)
    assert p.pending == []
    ranked = [i for i, _ in recommend(p, c, 5)]
    assert ranked[0] == "new"  # bought (repeat boost) and now embedded


def test_query_vectors_steer_the_list():
    c = catalog()
    p = Profile()
    apply_event(
        p, Event("q", "u", "search", 0, query="blue"), c.vector, ProfileParams(), unit(0, 0, 1)
    )
    assert recommend(p, c, 1)[0][0] == "c"


def test_top_k_ties_break_by_item_id():
    c = CatalogIndex(dim=2)
    for name in ["z", "m", "a", "q"]:
        c.upsert(entry(name, (1, 0)))
    scores = np.zeros(len(c), dtype=np.float32)
    assert [i for i, _ in top_k(scores, c, 2)] == ["a", "m"]


def test_recommender_record_and_forget():
    r = Recommender(dim=3, model_id="m@1234", top_k=2)
    for it in ["a", "b", "c"]:
        r.upsert_item(entry(it, {"a": (1, 0, 0), "b": (0, 1, 0), "c": (0, 0, 1)}[it]))
    prof, out = r.on_event(None, Event("e9", "u1", "click", 5, item_id="b"))
    rec = json.loads(out)
    assert rec["user_id"] == "u1" and rec["trigger_event_id"] == "e9" and rec["event_ts"] == 5
    assert rec["model"] == "m@1234" and isinstance(rec["emitted_at"], int)
    assert [i["item_id"] for i in rec["items"]][0] == "b" and len(rec["items"]) == 2
    assert r.on_event(prof, Event("f", "u1", "forget_user", 6)) == (None, None)
