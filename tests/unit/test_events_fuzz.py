"""Property-based fuzzing of the record parsers (hypothesis).

Invariants, for any input: ``parse_event`` / ``parse_item`` return (never raise) exactly one of
their result types; a dead letter has a known reason (never ``internal``: that would be a parser
bug caught by the last-resort guard), and its DLQ record is UTF-8 JSON with the contract's fields
and ``raw`` = the input cut at 64 KiB (base64 when not UTF-8); an accepted event or item obeys
the rules of ``operators.events`` and round-trips its fields; every valid record is accepted.

Example counts are bounded for CI (``STREAMREC_FUZZ_EXAMPLES`` raises them for a longer run);
``deadline=None`` because a shared CI machine is noisy.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from operators.events import (
    DEFAULT_MAX_FUTURE_MS,
    EVENT_TYPES,
    INT64_MAX,
    INT64_MIN,
    ITEM_EVENT_TYPES,
    MAX_DEPTH,
    MAX_VALUE_BYTES,
    REASONS,
    DeadLetter,
    Event,
    Item,
    ItemRemoved,
    parse_event,
    parse_item,
)

NOW = 1_700_000_000_000
FUZZ = settings(
    max_examples=int(os.environ.get("STREAMREC_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def parse_ev(value):
    return parse_event(value, topic="events", partition=2, offset=7, now_ms=NOW)


def parse_it(key, value):
    return parse_item(key, value, topic="items", partition=1, offset=9, now_ms=NOW)


def check_dead_letter(d: DeadLetter, value, topic: str, partition: int, offset: int) -> None:
    assert d.reason in REASONS and d.reason != "internal", d
    assert d.error
    out = d.to_json()
    doc = json.loads(out.decode("utf-8"))  # strict UTF-8, valid JSON
    assert set(doc) == {"error", "source_topic", "partition", "offset", "raw"}
    assert (doc["source_topic"], doc["partition"], doc["offset"]) == (topic, partition, offset)
    assert doc["error"] == d.error and doc["raw"] == d.raw
    if value is None:
        assert d.raw == ""
        return
    cut = bytes(value[:MAX_VALUE_BYTES])
    try:
        assert d.raw == cut.decode("utf-8")
    except UnicodeDecodeError:
        text = d.raw.encode("utf-8")
        split_char = len(value) > MAX_VALUE_BYTES and cut.startswith(text)
        assert (split_char and len(cut) - len(text) <= 3) or base64.b64decode(d.raw) == cut


def is_id(s) -> bool:
    return (
        type(s) is str
        and bool(s.strip())
        and not any(
            ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in s
        )
    )


def utf8_ok(s) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_event(e: Event, value: bytes) -> None:
    """An accepted event obeys the rules, and its fields are the record's."""
    obj = json.loads(value)
    assert e.type in EVENT_TYPES and e.type == obj["type"]
    assert is_id(e.event_id) and is_id(e.user_id)
    assert type(e.ts) is int and 0 <= e.ts <= NOW + DEFAULT_MAX_FUTURE_MS and e.ts == obj["ts"]
    if e.type in ITEM_EVENT_TYPES:
        assert is_id(e.item_id)
    if e.type == "search":
        assert type(e.query) is str and e.query.strip() and utf8_ok(e.query)
    assert e.quantity is None or (type(e.quantity) is int and INT64_MIN <= e.quantity <= INT64_MAX)
    assert e.price is None or (type(e.price) is float and math.isfinite(e.price))
    for f in ("event_id", "user_id", "item_id", "query", "quantity", "session_id"):
        assert getattr(e, f) == obj.get(f)
    assert e.price == (None if obj.get("price") is None else float(obj["price"]))


def check_event_result(r, value) -> None:
    assert type(r) in (Event, DeadLetter)
    if type(r) is DeadLetter:
        check_dead_letter(r, value, "events", 2, 7)
    else:
        check_event(r, value)


def check_item_result(r, key, value) -> None:
    assert type(r) in (Item, ItemRemoved, DeadLetter)
    if type(r) is DeadLetter:
        check_dead_letter(r, value, "items", 1, 9)
    elif type(r) is ItemRemoved:
        assert value is None and is_id(r.item_id) and r.item_id == key.decode("utf-8")
    else:
        obj = json.loads(value)
        assert is_id(r.item_id)
        assert key is None or r.item_id == key.decode("utf-8")
        assert obj.get("item_id") in (None, r.item_id)
        assert type(r.title) is str and r.title.strip() and utf8_ok(r.title)
        assert r.ts is None or 0 <= r.ts <= NOW + DEFAULT_MAX_FUTURE_MS
        assert type(r.available) is bool
        assert r.price is None or math.isfinite(r.price)
        assert utf8_ok(r.text())


# --- strategies ------------------------------------------------------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_char = st.one_of(st.characters(), surrogates)  # every code point, surrogates too
text = st.text(any_char, max_size=20)
huge_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**70),
    st.integers(max_value=-(2**62), min_value=-(2**70)),
    st.floats(),  # nan, +-inf, 1e300
    st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, 10**400, 1e300, -0.0, 1.5]),
)
json_scalars = st.one_of(st.none(), st.booleans(), huge_numbers, text)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(text, kids, max_size=4)),
    max_leaves=20,
)


def dumps(obj) -> bytes:
    """JSON as a careless producer might write it: NaN/Infinity literals, \\ud800 escapes."""
    return json.dumps(obj, allow_nan=True).encode("utf-8")


ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1).filter(
    lambda s: s.strip()
)
free_text = st.text(st.characters(codec="utf-8"), max_size=40)


@st.composite
def valid_events(draw) -> dict:
    etype = draw(st.sampled_from(sorted(EVENT_TYPES)))
    obj = {
        "event_id": draw(ids),
        "user_id": draw(ids),
        "type": etype,
        "ts": draw(st.integers(0, NOW + DEFAULT_MAX_FUTURE_MS)),
    }
    if etype in ITEM_EVENT_TYPES:
        obj["item_id"] = draw(ids)
    if etype == "search":
        obj["query"] = draw(free_text.filter(lambda s: s.strip()))
    optional = {
        "quantity": st.integers(INT64_MIN, INT64_MAX),
        "price": st.floats(allow_nan=False, allow_infinity=False),
        "session_id": ids,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            obj[name] = draw(strategy)
    return obj


@st.composite
def valid_items(draw) -> dict:
    obj = {"item_id": draw(ids), "title": draw(free_text.filter(lambda s: s.strip()))}
    optional = {
        "description": free_text,
        "category": free_text,
        "price": st.floats(allow_nan=False, allow_infinity=False),
        "available": st.booleans(),
        "ts": st.integers(0, NOW + DEFAULT_MAX_FUTURE_MS),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            obj[name] = draw(strategy)
    return obj


@st.composite
def mutated(draw, valid) -> bytes:
    """A valid record with one field changed, dropped, duplicated, or its bytes damaged."""
    obj = draw(valid)
    name = draw(st.sampled_from([*obj, "type", "ts", "price", "quantity", "title", "extra"]))
    how = draw(st.sampled_from(["value", "drop", "duplicate", "bytes"]))
    if how == "value":
        obj[name] = draw(json_values)
    elif how == "drop":
        obj.pop(name, None)
    raw = dumps(obj)
    if how == "duplicate":
        raw = raw[:-1] + b", " + json.dumps(name).encode() + b": " + dumps(draw(json_values)) + b"}"
    elif how == "bytes":
        pos = draw(st.integers(0, len(raw)))
        cut = draw(st.integers(0, 4))
        raw = raw[:pos] + draw(st.binary(max_size=4)) + raw[pos + cut :]
    return raw


def nest(depth: int, inner: bytes, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


# --- properties ------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=300)))
@example(b"[" * 5000 + b"]" * 5000)
@example(b"\xed\xa0\x80")  # a UTF-8-encoded surrogate: not UTF-8
@example(b'{"ts": 1' + b"0" * 5000 + b"}")  # an integer over Python's 4300-digit limit
def test_any_bytes_give_one_result(value):
    check_event_result(parse_ev(value), value)


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=40)), st.one_of(st.none(), st.binary(max_size=200)))
def test_any_item_bytes_give_one_result(key, value):
    check_item_result(parse_it(key, value), key, value)


@FUZZ
@given(json_values)
def test_any_json_value_gives_one_result(obj):
    value = dumps(obj)
    check_event_result(parse_ev(value), value)
    check_item_result(parse_it(b"k", value), b"k", value)


@FUZZ
@given(mutated(valid_events()))
def test_mutated_events(value):
    check_event_result(parse_ev(value), value)


@FUZZ
@given(mutated(valid_items()), st.one_of(st.none(), ids.map(str.encode), st.binary(max_size=8)))
def test_mutated_items(value, key):
    check_item_result(parse_it(key, value), key, value)


@FUZZ
@given(valid_events())
def test_valid_events_are_accepted_and_round_trip(obj):
    value = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    e = parse_ev(value)
    assert type(e) is Event, e
    check_event(e, value)
    # the fields written back as a record parse to the same event
    fields = {f.name: getattr(e, f.name) for f in dataclasses.fields(Event)}
    again = parse_ev(json.dumps({k: v for k, v in fields.items() if v is not None}).encode())
    assert again == e


@FUZZ
@given(valid_items(), st.booleans())
def test_valid_items_are_accepted(obj, keyed):
    key = obj["item_id"].encode("utf-8") if keyed else None
    value = json.dumps(obj).encode()  # ensure_ascii: non-ASCII as \u escapes, pairs included
    it = parse_it(key, value)
    assert type(it) is Item, it
    check_item_result(it, key, value)
    assert (it.title, it.description, it.category) == tuple(
        obj.get(f) for f in ("title", "description", "category")
    )


@FUZZ
@given(valid_events(), st.integers(1, 1500), st.sampled_from(["array", "object"]))
def test_deep_nesting_is_dead_beyond_max_depth(obj, depth, kind):
    value = dumps(obj)[:-1] + b', "extra": ' + nest(depth, b"1", kind) + b"}"
    r = parse_ev(value)
    check_event_result(r, value)
    # the event object is level 1, so extra's value may nest MAX_DEPTH - 1 levels
    assert (type(r) is DeadLetter) == (depth >= MAX_DEPTH)
    if depth >= MAX_DEPTH:
        assert r.reason == "too_deep"


@FUZZ
@given(valid_events(), st.sampled_from(["ts", "quantity", "price"]), huge_numbers)
def test_numbers_out_of_range(obj, name, number):
    obj[name] = number
    value = dumps(obj)
    r = parse_ev(value)
    check_event_result(r, value)
    if type(number) is float and not math.isfinite(number):
        assert type(r) is DeadLetter and r.reason == "bad_json"  # NaN / Infinity literals
    elif name == "ts" and not 0 <= number <= NOW + DEFAULT_MAX_FUTURE_MS:
        assert type(r) is DeadLetter and r.reason in ("ts_out_of_range", "wrong_type")


@FUZZ
@given(
    valid_events(),
    st.sampled_from(["event_id", "user_id", "item_id", "query", "session_id", "extra"]),
    st.text(any_char, max_size=5),
    surrogates,
)
def test_lone_surrogates_anywhere_are_dead(obj, name, around, surrogate):
    obj[name] = around + surrogate + around
    value = dumps(obj)  # ensure_ascii writes the lone surrogate as a \udXXX escape
    r = parse_ev(value)
    check_event_result(r, value)
    assert type(r) is DeadLetter


@FUZZ
@given(st.text(any_char, max_size=30), st.text(any_char, max_size=30), st.binary(max_size=30))
def test_dead_letter_json_always_serialises(error, raw, topic_bytes):
    topic = topic_bytes.decode("utf-8", "surrogateescape")  # lone surrogates in the topic too
    out = DeadLetter(error, topic, None, 3, raw).to_json()
    doc = json.loads(out.decode("utf-8"))
    assert set(doc) == {"error", "source_topic", "partition", "offset", "raw"}
    assert doc["offset"] == 3 and doc["partition"] is None
    assert all(utf8_ok(v) for v in (doc["error"], doc["source_topic"], doc["raw"]))
