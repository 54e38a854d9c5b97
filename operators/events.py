"""Parsing Kafka records into contract events and catalog items, or dead letters.

Pure functions (no Flink): every input record becomes exactly one of
``Event`` / ``Item`` / ``ItemRemoved`` / ``DeadLetter``. Nothing is dropped silently.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass

MAX_VALUE_BYTES = 64 * 1024

ITEM_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase"})
EVENT_TYPES = ITEM_EVENT_TYPES | {"search", "forget_user"}
# types that get a recommendations record after they are applied
SCORED_TYPES = ITEM_EVENT_TYPES | {"search"}


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    user_id: str
    type: str
    ts: int
    item_id: str | None = None
    query: str | None = None
    quantity: int | None = None
    price: float | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    description: str | None = None
    category: str | None = None
    price: float | None = None
    available: bool = True
    ts: int | None = None

    def text(self) -> str:
        """What the encoder embeds: title + category + description."""
        return " . ".join(p for p in (self.title, self.category, self.description) if p)


@dataclass(frozen=True, slots=True)
class ItemRemoved:
    """A catalog tombstone (null value on the items topic)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    error: str
    source_topic: str
    partition: int | None
    offset: int | None
    raw: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "error": self.error,
                "source_topic": self.source_topic,
                "partition": self.partition,
                "offset": self.offset,
                "raw": self.raw,
            },
            ensure_ascii=False,
        ).encode("utf-8")


class InvalidRecord(ValueError):
    pass


def raw_text(value: bytes | None) -> str:
    """The original bytes as text (or base64 when not UTF-8), cut at 64 KiB."""
    if value is None:
        return ""
    cut = bytes(value[:MAX_VALUE_BYTES])
    try:
        return cut.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(cut).decode("ascii")


def _dead(error: str, value, topic: str, partition, offset) -> DeadLetter:
    return DeadLetter(error, topic, partition, offset, raw_text(value))


def _load_object(value: bytes | None) -> dict:
    if value is None:
        raise InvalidRecord("null value")
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidRecord(f"value of {len(value)} bytes is over the {MAX_VALUE_BYTES} byte limit")
    try:
        obj = json.loads(bytes(value).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InvalidRecord(f"value is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidRecord(f"bad JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord(f"value is a JSON {type(obj).__name__}, not an object")
    return obj


def _string(obj: dict, name: str, *, required: bool) -> str | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise InvalidRecord(f"missing field {name!r}")
        return None
    if not isinstance(v, str):
        raise InvalidRecord(f"field {name!r} must be a string, got {type(v).__name__}")
    if required and not v.strip():
        raise InvalidRecord(f"field {name!r} is empty")
    return v


def _int(obj: dict, name: str, *, required: bool) -> int | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise InvalidRecord(f"missing field {name!r}")
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        # an integral float (e.g. 3.0) is accepted; anything else is mistyped
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            return int(v)
        raise InvalidRecord(f"field {name!r} must be an integer, got {type(v).__name__}")
    return v


def _number(obj: dict, name: str) -> float | None:
    v = obj.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InvalidRecord(f"field {name!r} must be a finite number")
    return float(v)


def _bool(obj: dict, name: str, default: bool) -> bool:
    v = obj.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidRecord(f"field {name!r} must be a boolean")
    return v


def event_from_dict(obj: dict) -> Event:
    etype = _string(obj, "type", required=True)
    if etype not in EVENT_TYPES:
        raise InvalidRecord(f"unknown event type {etype!r}")
    ts = _int(obj, "ts", required=True)
    if ts < 0:
        raise InvalidRecord("field 'ts' must be >= 0")
    return Event(
        event_id=_string(obj, "event_id", required=True),
        user_id=_string(obj, "user_id", required=True),
        type=etype,
        ts=ts,
        item_id=_string(obj, "item_id", required=etype in ITEM_EVENT_TYPES),
        query=_string(obj, "query", required=etype == "search"),
        quantity=_int(obj, "quantity", required=False),
        price=_number(obj, "price"),
        session_id=_string(obj, "session_id", required=False),
    )


def parse_event(
    value: bytes | None, *, topic: str, partition: int | None = None, offset: int | None = None
) -> Event | DeadLetter:
    """One record of the events topic -> an Event, or a DeadLetter saying what is wrong."""
    try:
        return event_from_dict(_load_object(value))
    except InvalidRecord as e:
        return _dead(str(e), value, topic, partition, offset)


def item_from_dict(obj: dict, key: str | None = None) -> Item:
    item_id = _string(obj, "item_id", required=False) or key
    if not item_id:
        raise InvalidRecord("missing field 'item_id'")
    return Item(
        item_id=item_id,
        title=_string(obj, "title", required=True),
        description=_string(obj, "description", required=False),
        category=_string(obj, "category", required=False),
        price=_number(obj, "price"),
        available=_bool(obj, "available", True),
        ts=_int(obj, "ts", required=False),
    )


def parse_item(
    key: bytes | None,
    value: bytes | None,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
) -> Item | ItemRemoved | DeadLetter:
    """One record of the (compacted) items topic. A null value removes the item named by the key."""
    try:
        key_text = bytes(key).decode("utf-8") if key is not None else None
    except UnicodeDecodeError:
        key_text = None
    if value is None:
        if key_text:
            return ItemRemoved(key_text)
        return _dead("tombstone without a UTF-8 item_id key", value, topic, partition, offset)
    try:
        return item_from_dict(_load_object(value), key_text)
    except InvalidRecord as e:
        return _dead(str(e), value, topic, partition, offset)
