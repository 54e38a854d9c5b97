import json

from operators.alignment import release
from operators.events import Event
from operators.recommender import Recommender
from tests.unit.test_scoring import entry


def test_release_in_arrival_order_up_to_the_watermark():
    held = [(10, "a"), (5, "b"), (20, "c"), (15, "d")]
    assert release(held, 4) == ([], held)
    # 'b' (ts 5) must wait behind 'a' (ts 10): a user's events leave in the order they came
    assert release(held, 10) == (["a", "b"], [(20, "c"), (15, "d")])
    assert release(held, 100) == (["a", "b", "c", "d"], [])
    assert release(held, None) == (["a", "b", "c", "d"], [])
    assert release([], 7) == ([], [])


def test_items_from_the_future_are_not_recommended():
    r = Recommender(dim=3, model_id="m@1", top_k=5)
    for item_id, vec, ts in [("a", (1, 0, 0), 100), ("b", (0, 1, 0), 300), ("c", (0, 0, 1), None)]:
        e = entry(item_id, vec)
        r.upsert_item(type(e)(e.item_id, e.embedding, e.title, True, None, ts))
    _, out = r.on_event(None, Event("e1", "u", "view", 300, item_id="a"))
    ids = {i["item_id"] for i in json.loads(out)["items"]}
    assert ids == {"a", "c"}  # 'b' enters the catalog at ts 300; 'c' has no ts: always there
    _, out = r.on_event(None, Event("e2", "u", "view", 301, item_id="a"))
    assert {i["item_id"] for i in json.loads(out)["items"]} == {"a", "b", "c"}
    r.as_of_event_time = False
    _, out = r.on_event(None, Event("e3", "u", "view", 0, item_id="a"))
    assert {i["item_id"] for i in json.loads(out)["items"]} == {"a", "b", "c"}


def test_lookups_as_of_an_event_time_see_the_version_then():
    r = Recommender(dim=3, model_id="m@1", top_k=5)
    first, second = entry("x", (1, 0, 0)), entry("x", (0, 1, 0))
    r.upsert_item(type(first)(first.item_id, first.embedding, "old title", True, None, 100))
    r.upsert_item(type(second)(second.item_id, second.embedding, "new title", True, None, 500))
    cat = r.catalog
    assert cat.vector("x", 50) is None
    assert cat.vector("x", 200).tolist() == [1, 0, 0]
    assert cat.vector("x", 501).tolist() == [0, 1, 0]
    assert cat.vector("x").tolist() == [0, 1, 0]
    rows = cat.earlier_versions(200)
    assert [(row, v.tolist()) for row, v in rows] == [(cat.row("x"), [1.0, 0.0, 0.0])]
    assert cat.earlier_versions(600) == []
    # at the new version's own ts it is not yet in force (strictly before)
    assert [v.tolist() for _, v in cat.earlier_versions(500)] == [[1.0, 0.0, 0.0]]
