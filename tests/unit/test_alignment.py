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
    _, out = r.on_event(None, Event("e1", "u", "view", 200, item_id="a"))
    ids = {i["item_id"] for i in json.loads(out)["items"]}
    assert ids == {"a", "c"}  # 'b' enters the catalog at ts 300; 'c' has no ts: always there
    _, out = r.on_event(None, Event("e2", "u", "view", 300, item_id="a"))
    assert {i["item_id"] for i in json.loads(out)["items"]} == {"a", "b", "c"}
    r.as_of_event_time = False
    _, out = r.on_event(None, Event("e3", "u", "view", 0, item_id="a"))
    assert {i["item_id"] for i in json.loads(out)["items"]} == {"a", "b", "c"}
