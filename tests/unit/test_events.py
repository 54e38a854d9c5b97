import base64
import json

import pytest

from operators.events import (
    MAX_VALUE_BYTES,
    DeadLetter,
    Event,
    Item,
    ItemRemoved,
    parse_event,
    parse_item,
)


def ev(**kw):
    base = {"event_id": "e1", "user_id": "u1", "type": "view", "item_id": "i1", "ts": 1000}
    base.update(kw)
    return json.dumps(base).encode()


def test_valid_event_types():
    e = parse_event(ev(quantity=2, price=1.5, session_id="s"), topic="events")
    assert e == Event("e1", "u1", "view", 1000, "i1", None, 2, 1.5, "s")
    s = parse_event(ev(type="search", item_id=None, query="red mug"), topic="events")
    assert isinstance(s, Event) and s.query == "red mug" and s.item_id is None
    f = parse_event(ev(type="forget_user", item_id=None), topic="events")
    assert isinstance(f, Event) and f.type == "forget_user"


@pytest.mark.parametrize(
    "value, error",
    [
        (b"{not json", "bad JSON"),
        (b"[1, 2]", "not an object"),
        (ev(type="teleport"), "unknown event type"),
        (ev(item_id=None), "missing field 'item_id'"),
        (ev(type="search", item_id=None), "missing field 'query'"),
        (ev(ts="yesterday"), "'ts' must be an integer"),
        (ev(ts=True), "'ts' must be an integer"),
        (ev(user_id=7), "'user_id' must be a string"),
        (ev(price="cheap"), "'price' must be a finite number"),
        (json.dumps({"type": "view"}).encode(), "missing field"),
        (None, "null value"),
    ],
)
def test_invalid_events_become_dead_letters(value, error):
    d = parse_event(value, topic="events", partition=3, offset=42)
    assert isinstance(d, DeadLetter)
    assert error in d.error
    assert (d.source_topic, d.partition, d.offset) == ("events", 3, 42)
    out = json.loads(d.to_json())
    assert set(out) == {"error", "source_topic", "partition", "offset", "raw"}


def test_oversized_value_is_dead_and_raw_is_cut():
    big = ev(query="x" * (MAX_VALUE_BYTES + 10), type="search", item_id=None)
    d = parse_event(big, topic="events", partition=0, offset=1)
    assert isinstance(d, DeadLetter) and "over" in d.error
    assert len(d.raw.encode()) == MAX_VALUE_BYTES


def test_non_utf8_raw_is_base64():
    raw = b"\xff\xfe\x00garbage"
    d = parse_event(raw, topic="events")
    assert isinstance(d, DeadLetter)
    assert base64.b64decode(d.raw) == raw


def test_items_and_tombstones():
    it = parse_item(
        b"85123A", json.dumps({"title": "WHITE MUG", "price": 2.5}).encode(), topic="items"
    )
    assert it == Item("85123A", "WHITE MUG", price=2.5)
    assert it.available is True and it.text() == "WHITE MUG"
    full = Item("x", "Mug", description="big", category="kitchen")
    assert full.text() == "Mug . kitchen . big"
    assert parse_item(b"85123A", None, topic="items") == ItemRemoved("85123A")
    assert isinstance(parse_item(None, None, topic="items"), DeadLetter)
    bad = parse_item(
        b"k", json.dumps({"item_id": "k", "available": "yes", "title": "t"}).encode(), topic="items"
    )
    assert isinstance(bad, DeadLetter) and "available" in bad.error
