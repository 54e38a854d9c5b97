import base64
import json
import time

import pytest

from operators.events import (
    MAX_VALUE_BYTES,
    REASONS,
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


NOW = 1_700_000_000_000
DAY = 86_400_000


def deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


@pytest.mark.parametrize(
    "value, reason, error",
    [
        (deep(5000), "too_deep", "nested deeper than 64"),  # was RecursionError
        (ev(x=json.loads(deep(64))), "too_deep", "nested deeper than 64"),
        (ev(ts=1e300), "ts_out_of_range", "ahead of the clock"),  # was accepted
        (ev(ts=2**63), "ts_out_of_range", "ahead of the clock"),  # was accepted
        (ev(ts=NOW + DAY + 1), "ts_out_of_range", "ahead of the clock"),
        (ev(ts=-1), "ts_out_of_range", ">= 0"),
        (ev(ts=1.5), "wrong_type", "'ts' must be an integer"),
        (ev()[:-1] + b', "ts": 1' + b"0" * 5000 + b"}", "bad_json", "4300 digits"),  # ValueError
        (ev(price=10**400), "bad_value", "'price' must be a finite number"),  # was OverflowError
        (ev(quantity=2**63), "bad_value", "64-bit"),
        (ev()[:-1] + b', "ts": NaN}', "bad_json", "NaN is not a JSON number"),
        (ev()[:-1] + b', "extra": -Infinity}', "bad_json", "-Infinity is not a JSON number"),
        (ev(user_id="\ud800"), "bad_json", "lone UTF-16 surrogate"),  # was accepted
        (ev(extra=["ok", "\udfff"]), "bad_json", "lone UTF-16 surrogate"),
        (ev(user_id="u\x00"), "bad_value", "'user_id' holds a control character"),
        (ev(item_id="a\x85b"), "bad_value", "'item_id' holds a control character"),
        (ev(event_id=" "), "bad_value", "'event_id' is empty"),
        (ev(type="search", query="q", item_id=""), "bad_value", "'item_id' is empty"),
        (ev(type="search", item_id=None, query="  "), "bad_value", "'query' is empty"),
        (ev(session_id=""), "bad_value", "'session_id' is empty"),
        (ev()[:-1] + b', "ts": 5}', "duplicate_key", "'ts' appears twice"),
        (ev(x={"a": 1})[:-2] + b', "a": 2}}', "duplicate_key", "'a' appears twice"),
        (ev(type=["view"]), "wrong_type", "'type' must be a string, got array"),
        (ev(type="x" * 1000), "unknown_type", "(1002 chars)"),  # user text is cut short
        (b"\xef\xbb\xbf" + ev(), "bad_json", "bad JSON"),  # a byte order mark
        (b"\xed\xa0\x80", "not_utf8", "not UTF-8"),  # a UTF-8-encoded surrogate
        (b'"just a string"', "not_object", "JSON string, not an object"),
        (5, "internal", "TypeError"),  # not bytes at all: the last-resort guard
    ],
)
def test_hostile_events_are_dead_letters_with_a_reason(value, reason, error):
    d = parse_event(value, topic="events", partition=0, offset=5, now_ms=NOW)
    assert isinstance(d, DeadLetter), d
    assert (d.reason, error in d.error) == (reason, True), d.error
    assert d.reason in REASONS
    out = json.loads(d.to_json().decode("utf-8"))
    assert set(out) == {"error", "source_topic", "partition", "offset", "raw"}


def test_edges_that_are_accepted():
    def parse(value, **kw):
        return parse_event(value, topic="events", now_ms=NOW, **kw)

    assert parse(ev(ts=NOW + DAY)).ts == NOW + DAY  # the bound itself
    assert parse(ev(ts=NOW + 2 * DAY), max_future_ms=2 * DAY).ts == NOW + 2 * DAY
    assert parse(ev(ts=0)).ts == 0 and parse(ev(ts=1000.0)).ts == 1000  # integral float
    assert parse(ev(x=json.loads(deep(63)))).user_id == "u1"  # 64 levels with the event
    assert parse(ev(price=2**70)).price == float(2**70)
    s = parse(ev(type="search", item_id=None, query="[[[[" * 100 + "\ud83d\ude00 \x07"))
    assert s.query.startswith("[[[[") and s.query.endswith("😀 \x07")  # free text is free
    assert parse(ev(user_id="Zoë 🦊")).user_id == "Zoë 🦊"
    assert parse(bytearray(ev())).event_id == "e1" and parse(memoryview(ev())).event_id == "e1"
    # the wall clock is the default "now": today's events pass, next week's do not
    assert isinstance(parse_event(ev(ts=NOW), topic="events"), Event)
    far = int(time.time() * 1000) + 7 * DAY
    assert parse_event(ev(ts=far), topic="events").reason == "ts_out_of_range"


def item(**kw) -> bytes:
    return json.dumps({"item_id": "i1", "title": "Mug", **kw}).encode()


@pytest.mark.parametrize(
    "key, value, reason, error",
    [
        (b"\xff", item(), "bad_key", "key is not UTF-8"),  # was accepted (key ignored)
        (b"\xff", None, "bad_key", "key is not UTF-8"),
        (None, None, "bad_key", "tombstone (null value) without a key"),
        (b" ", None, "bad_key", "key is empty"),
        (b"a\nb", None, "bad_key", "key holds a control character"),
        (b"other", item(), "bad_key", "differs from the record key"),
        (None, item(item_id=None), "missing_field", "'item_id'"),
        (b"i1", item(title=""), "bad_value", "'title' is empty"),
        (b"i1", item(title="\udc00"), "bad_json", "lone UTF-16 surrogate"),
        (b"i1", item(ts=1e300), "ts_out_of_range", "ahead of the clock"),
        (b"i1", item(ts=-5), "ts_out_of_range", ">= 0"),
        (b"i1", item(price=float("inf")), "bad_json", "Infinity"),
        (b"i1", item(description=7), "wrong_type", "'description' must be a string"),
        (b"i1", b'{"a":' * 3000 + b"1" + b"}" * 3000, "too_deep", "nested"),  # RecursionError
        (b"i1", b"x" * (MAX_VALUE_BYTES + 1), "too_large", "over the"),
    ],
)
def test_hostile_items_are_dead_letters(key, value, reason, error):
    d = parse_item(key, value, topic="items", partition=1, offset=2, now_ms=NOW)
    assert isinstance(d, DeadLetter), d
    assert (d.reason, error in d.error) == (reason, True), d.error
    json.loads(d.to_json().decode("utf-8"))


def test_item_key_and_value_agree():
    assert parse_item(b"i1", item(), topic="items").item_id == "i1"
    assert parse_item(None, item(), topic="items").item_id == "i1"
    assert parse_item(b"k", item(item_id=None), topic="items").item_id == "k"
    assert parse_item("ké".encode(), None, topic="items") == ItemRemoved("ké")


def test_raw_keeps_text_when_the_cut_splits_a_character():
    value = ("é" * MAX_VALUE_BYTES).encode()  # 2 bytes each
    d = parse_event(value[1:], topic="events")  # starts mid-character: not UTF-8, base64
    assert d.reason == "too_large" and base64.b64decode(d.raw) == value[1 : MAX_VALUE_BYTES + 1]
    d = parse_event(b"x" + value, topic="events")  # valid, but the cut falls mid-character
    assert d.reason == "too_large" and d.raw == "x" + "é" * (MAX_VALUE_BYTES // 2 - 1)


def test_dead_letter_json_survives_text_that_is_not_unicode():
    d = DeadLetter("bad \ud800", "topic\udcff", 0, 1, "raw \udfff text")
    out = d.to_json()
    doc = json.loads(out.decode("utf-8"))
    assert doc == {
        "error": "bad \ufffd",
        "source_topic": "topic\ufffd",
        "partition": 0,
        "offset": 1,
        "raw": "raw \ufffd text",
    }
