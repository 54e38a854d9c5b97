"""Parsing Kafka records into contract events and catalog items, or dead letters.

Pure functions (no Flink): every input record becomes exactly one of
``Event`` / ``Item`` / ``ItemRemoved`` / ``DeadLetter``. Nothing is dropped silently, and no
input, however hostile, makes :func:`parse_event` or :func:`parse_item` raise: a record the job
cannot use is a dead letter with a readable ``error`` and a short ``reason`` class (one of
:data:`REASONS`, the label of the dead-letter metric).

What is accepted (stricter than Python's ``json`` module, which the parsers run on):

- a value of at most 64 KiB of UTF-8 holding one JSON object, nested at most :data:`MAX_DEPTH`
  levels; no ``NaN`` / ``Infinity`` literals (not JSON); no key twice in one object (parsers
  disagree on which copy wins, so the record is ambiguous: ``duplicate_key``);
- no string anywhere with a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON syntax but not
  text: it could never be written back as UTF-8);
- ids (``event_id``, ``user_id``, ``item_id``, ``session_id``, an item's key) are strings that
  are not blank and hold no control characters (they become state and Kafka keys and log
  fields); free text (``query``, ``title``, ``category``, ``description``) may hold any
  character but a lone surrogate; ``query`` and ``title`` are not blank;
- integers are 64-bit (an integral float such as ``3.0`` counts as an integer); ``ts`` is
  epoch milliseconds in ``[0, now + max_future_ms]`` (``now``: the wall clock unless given);
  ``price`` is a finite number; ``available`` a boolean; ``null`` means absent;
- an item's ``item_id`` and its record key, where both are given, are the same (the key is
  what log compaction and tombstones go by); a key must be UTF-8 text and a valid id.

Unknown fields are ignored (after the checks above).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from dataclasses import dataclass

MAX_VALUE_BYTES = 64 * 1024
MAX_DEPTH = 64  # JSON nesting levels; the contract's records are flat objects
DEFAULT_MAX_FUTURE_MS = 86_400_000  # a `ts` may be at most one day ahead of the wall clock
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

ITEM_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase"})
EVENT_TYPES = ITEM_EVENT_TYPES | {"search", "forget_user"}
# types that get a recommendations record after they are applied
SCORED_TYPES = ITEM_EVENT_TYPES | {"search"}

# DeadLetter.reason: short, fixed classes (a metric label), the details are in DeadLetter.error
REASONS = (
    "null_value",  # an events record with a null value
    "too_large",  # value over MAX_VALUE_BYTES
    "not_utf8",  # value bytes are not UTF-8
    "too_deep",  # JSON nested deeper than MAX_DEPTH
    "bad_json",  # not JSON, NaN/Infinity, an integer too long to parse, a lone surrogate
    "duplicate_key",  # a key twice in one JSON object
    "not_object",  # JSON, but not an object
    "missing_field",  # a required field is absent or null
    "wrong_type",  # a field of the wrong JSON type
    "bad_value",  # right type, unusable value: blank id, control character, out of range
    "unknown_type",  # an event type the contract does not define
    "ts_out_of_range",  # ts < 0 or further ahead than max_future_ms
    "bad_key",  # items: key not UTF-8 / not a valid id / differs from item_id
    "internal",  # a bug in the parser, caught so that the job keeps running
    "model_mismatch",  # not scored: the job's model is not the catalog's (or cannot be loaded)
    "other",  # a DeadLetter made outside the parsers without a reason
)


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


_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8_safe(s) -> str:
    """``s`` as text that encodes to UTF-8: lone surrogates become U+FFFD."""
    if not isinstance(s, str):
        s = str(s)
    return s if s.isascii() else _SURROGATE.sub("\ufffd", s)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    error: str
    source_topic: str
    partition: int | None
    offset: int | None
    raw: str
    reason: str = "other"  # one of REASONS; not in the DLQ record (that is the contract's)

    def to_json(self) -> bytes:
        """The DLQ record: UTF-8 JSON ``{error, source_topic, partition, offset, raw}``.

        Never raises: text that cannot be UTF-8 (lone surrogates) is written with U+FFFD."""
        return json.dumps(
            {
                "error": _utf8_safe(self.error),
                "source_topic": _utf8_safe(self.source_topic),
                "partition": self.partition if type(self.partition) is int else None,
                "offset": self.offset if type(self.offset) is int else None,
                "raw": _utf8_safe(self.raw),
            },
            ensure_ascii=False,
        ).encode("utf-8")


class InvalidRecord(ValueError):
    """Why a record is not a valid event or item; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _shown(v) -> str:
    """A value as it appears in an error message: repr (escapes controls), cut short."""
    try:
        return _clip(repr(v))
    except ValueError:  # an int of more than 4300 digits
        return f"<{type(v).__name__} too long to show>"


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(v) -> str:
    return _JSON_TYPES.get(type(v)) or ("array" if isinstance(v, list) else "object")


def _bytes_of(value) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):  # not what Kafka gives, but keep what was there for the DLQ
        return value.encode("utf-8", "surrogatepass")
    raise TypeError(f"a record value must be bytes, got {type(value).__name__}")


def raw_text(value) -> str:
    """The original bytes as text (or base64 when not UTF-8), cut at 64 KiB.

    A character split by the cut is left out rather than turning the text into base64.
    Never raises (a value that is not bytes at all is shown as its repr)."""
    if value is None:
        return ""
    try:
        data = _bytes_of(value)
    except TypeError:
        return _utf8_safe(_clip(repr(value), MAX_VALUE_BYTES // 8))
    cut = data[:MAX_VALUE_BYTES]
    try:
        return cut.decode("utf-8")
    except UnicodeDecodeError as e:
        split = len(data) > len(cut) and e.reason == "unexpected end of data"
        if split and e.start >= len(cut) - 3:
            return cut[: e.start].decode("utf-8")
        return base64.b64encode(cut).decode("ascii")


def _dead(e: InvalidRecord, value, topic, partition, offset) -> DeadLetter:
    return DeadLetter(str(e), topic, partition, offset, raw_text(value), e.reason)


def _internal(e: Exception, value, topic, partition, offset) -> DeadLetter:
    """Last resort: an unexpected error in the parser becomes a dead letter, not a crash loop."""
    try:
        detail = _clip(str(e), 200)
    except Exception:  # an exception whose __str__ fails
        detail = "?"
    msg = f"internal error while parsing: {type(e).__name__}: {detail}"
    return DeadLetter(msg, str(topic), partition, offset, raw_text(value), "internal")


# --- JSON ------------------------------------------------------------------------------------

# a \uD800-\uDFFF escape; a cheap pre-check before looking for lone surrogates in the result
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _deeper_than(data: bytes, limit: int) -> bool:
    """Whether valid JSON text nests arrays/objects more than ``limit`` levels.

    Strings out, brackets only, then each pass deletes the innermost ``[]`` pairs (one level):
    linear C-speed passes, no recursion. Only for text that ``json`` has accepted (so that
    every quote opens or closes a string)."""
    s = _JSON_STRING.sub(b"", data).translate(_BRACKETS_ONLY, _NOT_BRACKETS)
    for _ in range(limit):
        s = s.replace(b"[]", b"")
        if not s:
            return False
    return True


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise InvalidRecord("duplicate_key", f"key {_shown(dup)} appears twice in one object")
    return obj


def _no_constant(name: str):
    raise InvalidRecord("bad_json", f"bad JSON: {name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def load_object(value) -> dict:
    """Record value bytes -> the JSON object it holds, or :class:`InvalidRecord`."""
    if value is None:
        raise InvalidRecord("null_value", "null value")
    data = value if type(value) is bytes else _bytes_of(value)
    if len(data) > MAX_VALUE_BYTES:
        raise InvalidRecord(
            "too_large", f"value of {len(data)} bytes is over the {MAX_VALUE_BYTES} byte limit"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRecord("not_utf8", f"value is not UTF-8: {e}") from None
    try:
        obj = _DECODER.decode(text)
    except InvalidRecord:
        raise
    except RecursionError:  # json's C parser recurses once per level (~1000 deep)
        raise InvalidRecord("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, or an integer literal over 4300 digits
        raise InvalidRecord("bad_json", f"bad JSON: {_clip(str(e), 200)}") from None
    if type(obj) is not dict:
        raise InvalidRecord("not_object", f"value is a JSON {_json_type(obj)}, not an object")
    # the bracket count bounds the depth: only a record with many brackets is measured
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise InvalidRecord("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels")
    if b"\\u" in data and _SURROGATE_ESCAPE.search(data) is not None:
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRecord(
                "bad_json", "a string holds a lone UTF-16 surrogate (not valid Unicode)"
            ) from None
    return obj


# --- fields ----------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _missing(name: str) -> InvalidRecord:
    return InvalidRecord("missing_field", f"missing field {name!r}")


def _mistyped(name: str, want: str, v) -> InvalidRecord:
    return InvalidRecord("wrong_type", f"field {name!r} must be {want}, got {_json_type(v)}")


def _check_id(v: str, name: str | None) -> str:
    """``v`` if it is a usable id: not blank, no control character, no lone surrogate.
    ``name``: the field, or None for the record key."""
    if v.isprintable() and v.strip():  # fast path: most ids
        return v
    what = f"field {name!r}" if name else "key"
    if _CONTROL.search(v):
        raise InvalidRecord("bad_value", f"{what} holds a control character")
    if _SURROGATE.search(v):
        raise InvalidRecord("bad_value", f"{what} holds a lone surrogate")
    if not v.strip():
        raise InvalidRecord("bad_value", f"{what} is empty")
    return v


def _id(obj: dict, name: str, required: bool) -> str | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise _missing(name)
        return None
    if type(v) is not str:
        raise _mistyped(name, "a string", v)
    return _check_id(v, name)


def _text(obj: dict, name: str, required: bool) -> str | None:
    v = obj.get(name)
    if v is None:
        if required:
            raise _missing(name)
        return None
    if type(v) is not str:
        raise _mistyped(name, "a string", v)
    if not v.isascii() and _SURROGATE.search(v):
        raise InvalidRecord("bad_value", f"field {name!r} holds a lone surrogate")
    if required and not v.strip():
        raise InvalidRecord("bad_value", f"field {name!r} is empty")
    return v


def _integer(obj: dict, name: str, required: bool) -> int | None:
    """An integer of any size (range checks are the caller's)."""
    v = obj.get(name)
    if v is None:
        if required:
            raise _missing(name)
        return None
    if type(v) is not int:
        # an integral float (e.g. 3.0) is accepted; anything else is mistyped
        if type(v) is not float or not v.is_integer():
            raise _mistyped(name, "an integer", v)
        v = int(v)
    return v


def _int(obj: dict, name: str, required: bool) -> int | None:
    v = _integer(obj, name, required)
    if v is not None and not INT64_MIN <= v <= INT64_MAX:
        raise InvalidRecord("bad_value", f"field {name!r} is out of the 64-bit integer range")
    return v


def _number(obj: dict, name: str) -> float | None:
    v = obj.get(name)
    if v is None:
        return None
    if type(v) is float:
        if math.isfinite(v):
            return v
    elif type(v) is int:
        try:
            return float(v)
        except OverflowError:  # an integer beyond the float range (~1.8e308)
            pass
    else:
        raise _mistyped(name, "a finite number", v)
    raise InvalidRecord("bad_value", f"field {name!r} must be a finite number")


def _bool(obj: dict, name: str, default: bool) -> bool:
    v = obj.get(name)
    if v is None:
        return default
    if type(v) is not bool:
        raise _mistyped(name, "a boolean", v)
    return v


def _ts(obj: dict, required: bool, now_ms: int | None, max_future_ms: int) -> int | None:
    """Event time in epoch ms, in ``[0, now_ms + max_future_ms]``."""
    ts = _integer(obj, "ts", required)
    if ts is None:
        return None
    if ts < 0:
        raise InvalidRecord("ts_out_of_range", f"field 'ts' must be >= 0, got {_shown(ts)}")
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    if ts > now_ms + max_future_ms:
        raise InvalidRecord(
            "ts_out_of_range",
            f"field 'ts' = {_shown(ts)} is more than {max_future_ms} ms ahead of the clock "
            f"({now_ms})",
        )
    return ts


# --- records ---------------------------------------------------------------------------------


def event_from_dict(
    obj: dict, *, now_ms: int | None = None, max_future_ms: int = DEFAULT_MAX_FUTURE_MS
) -> Event:
    """A contract event from its JSON object, or :class:`InvalidRecord`."""
    etype = obj.get("type")
    if type(etype) is not str or etype not in EVENT_TYPES:
        if etype is None:
            raise _missing("type")
        if type(etype) is not str:
            raise _mistyped("type", "a string", etype)
        raise InvalidRecord("unknown_type", f"unknown event type {_shown(etype)}")
    return Event(
        event_id=_id(obj, "event_id", True),
        user_id=_id(obj, "user_id", True),
        type=etype,
        ts=_ts(obj, True, now_ms, max_future_ms),
        item_id=_id(obj, "item_id", etype in ITEM_EVENT_TYPES),
        query=_text(obj, "query", etype == "search"),
        quantity=_int(obj, "quantity", False),
        price=_number(obj, "price"),
        session_id=_id(obj, "session_id", False),
    )


def parse_event(
    value: bytes | None,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> Event | DeadLetter:
    """One record of the events topic -> an Event, or a DeadLetter saying what is wrong.

    Never raises. ``now_ms`` (default: the wall clock) and ``max_future_ms`` bound ``ts``."""
    try:
        return event_from_dict(load_object(value), now_ms=now_ms, max_future_ms=max_future_ms)
    except InvalidRecord as e:
        return _dead(e, value, topic, partition, offset)
    except Exception as e:  # a parser bug must not become a crash loop of the job
        return _internal(e, value, topic, partition, offset)


def _key_text(key) -> str | None:
    if key is None:
        return None
    data = _bytes_of(key)
    if len(data) > MAX_VALUE_BYTES:
        raise InvalidRecord("bad_key", f"key of {len(data)} bytes is over the byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidRecord("bad_key", f"key is not UTF-8: {e}") from None
    try:
        return _check_id(text, None)
    except InvalidRecord as e:
        raise InvalidRecord("bad_key", str(e)) from None


def item_from_dict(
    obj: dict,
    key: str | None = None,
    *,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> Item:
    """A catalog item from its JSON object (``key``: the record key, as text), or
    :class:`InvalidRecord`."""
    item_id = _id(obj, "item_id", key is None)
    if item_id is None:
        item_id = key
    elif key is not None and item_id != key:
        raise InvalidRecord(
            "bad_key", f"item_id {_shown(item_id)} differs from the record key {_shown(key)}"
        )
    return Item(
        item_id=item_id,
        title=_text(obj, "title", True),
        description=_text(obj, "description", False),
        category=_text(obj, "category", False),
        price=_number(obj, "price"),
        available=_bool(obj, "available", True),
        ts=_ts(obj, False, now_ms, max_future_ms),
    )


def parse_item(
    key: bytes | None,
    value: bytes | None,
    *,
    topic: str,
    partition: int | None = None,
    offset: int | None = None,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> Item | ItemRemoved | DeadLetter:
    """One record of the (compacted) items topic. A null value removes the item named by the key.

    Never raises; the same rules as :func:`parse_event` for the value, and the key must be a
    valid id in UTF-8 (or absent, when the value names the item)."""
    try:
        key_text = _key_text(key)
        if value is None:
            if key_text is None:
                raise InvalidRecord("bad_key", "tombstone (null value) without a key")
            return ItemRemoved(key_text)
        return item_from_dict(
            load_object(value), key_text, now_ms=now_ms, max_future_ms=max_future_ms
        )
    except InvalidRecord as e:
        return _dead(e, value, topic, partition, offset)
    except Exception as e:  # a parser bug must not become a crash loop of the job
        return _internal(e, value, topic, partition, offset)
