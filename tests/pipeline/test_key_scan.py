"""The JVM's key/ts scan (io.streamrec.flink.KeyedRecords.keyed, which routes and times every
record at the source) agrees with the Python parsers (operators.events) on every record they
accept: a record is keyed by the user_id (item_id) the parser reads and timed by its ts. A
disagreement would send a valid event to the dead-letter topic ("bad_key") or time it wrong.

Property-based (hypothesis) over valid records written in every way JSON allows (escapes, key
order, whitespace, integral floats, extra fields nested up to the depth limit, long numbers),
called through the py4j gateway after the job's environment has added its jars."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from jobs.config import JobConfig
from jobs.recommend import environment
from operators.events import DEFAULT_MAX_FUTURE_MS, MAX_DEPTH, Event, Item, parse_event, parse_item
from tests.unit.test_events_fuzz import NOW, json_values, mutated, valid_events, valid_items

pytestmark = pytest.mark.pipeline

SCAN = settings(
    max_examples=int(os.environ.get("STREAMREC_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)  # fmt: skip


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """(value, key bytes, topic kind) -> (JVM key, JVM ts) through the gateway."""
    from pyflink.java_gateway import get_gateway

    cfg = JobConfig(
        checkpoint_interval_ms=0,
        restart_attempts=0,
        metrics_port=0,
        checkpoint_dir=str(tmp_path_factory.mktemp("ckpt")),
    )
    environment(cfg)  # adds the job's jars to the gateway's class loader
    keyed = get_gateway().jvm.io.streamrec.flink.KeyedRecords.keyed
    fields = {"events": ("user_id", False), "items": ("item_id", True)}

    def call(value: bytes | None, kafka_key: bytes | None, kind: str):
        field, fallback = fields[kind]
        row = keyed(kind, 0, 0, 0, kafka_key, value, field, fallback, DEFAULT_MAX_FUTURE_MS, NOW)
        return row.getField(0), row.getField(1).getField(3)

    return call


# ---- valid records, written in every way JSON allows --------------------------------------
class Literal(str):
    """JSON text written as it is (not as a JSON string)."""


def _nested(depth: int, kind: str) -> Literal:
    if kind == "array":
        return Literal("[" * depth + "]" * depth)
    return Literal('{"a":' * depth + "1" + "}" * depth)


@st.composite
def written(draw, valid) -> bytes:
    """A valid record (a dict from ``valid``) as JSON text, formatted at random."""
    obj = dict(draw(valid))
    extra = draw(
        st.lists(
            st.one_of(
                json_values,
                # nested to the limit (the record itself is one level)
                st.builds(_nested, st.integers(1, MAX_DEPTH - 1), st.sampled_from(["array", "object"])),
                st.integers(-(2**63), 2**63 - 1),
                st.integers(2**63, 10**40),  # extra fields: any integer json reads
                st.from_regex(r"-?[1-9][0-9]{30,120}(\.[0-9]{1,80})?([eE][-+]?[0-9]{1,2})?",
                              fullmatch=True).map(Literal),  # long number literals
            ),
            max_size=3,
        )
    )  # fmt: skip
    pairs = list(obj.items()) + [(f"x{n}", v) for n, v in enumerate(extra)]
    pairs = draw(st.permutations(pairs))
    ascii_only = draw(st.booleans())
    space = draw(st.sampled_from(["", " ", "\n\t "]))

    def name(k: str) -> str:
        if draw(st.booleans()):  # a field name spelled with escapes
            return '"' + "".join(f"\\u{ord(c):04x}" for c in k) + '"'
        return json.dumps(k)

    def text(k: str, v) -> str:
        if isinstance(v, Literal):
            return v  # JSON text drawn above (nesting, long numbers)
        if k == "ts" and type(v) is int and v < 2**53 and draw(st.booleans()):
            return draw(st.sampled_from([f"{v}.0", f"{v:.15e}", f"{float(v)!r}"]))
        out = json.dumps(v, ensure_ascii=ascii_only)
        try:
            out.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: valid JSON only as a \u escape
            out = json.dumps(v, ensure_ascii=True)
        return out

    body = ("," + space).join(f"{name(k)}{space}:{space}{text(k, v)}" for k, v in pairs)
    return ("{" + space + body + space + "}").encode("utf-8")


def _check_event(scan, value: bytes) -> bool:
    parsed = parse_event(value, topic="events", now_ms=NOW)
    key, ts = scan(value, None, "events")
    if not isinstance(parsed, Event):
        return False
    assert (key, ts) == (parsed.user_id, parsed.ts), value[:300]
    return True


@SCAN
@given(written(valid_events()))
@example(b'{"event_id":"e","user_id":"u","type":"view","item_id":"i","ts":1.7e12}')
@example(b'{"user_id":"u","event_id":"e","type":"view","item_id":"i","ts":0,"x":' + b"[" * 63
         + b"]" * 63 + b"}")  # fmt: skip
@example(b'{"event_id":"e","user_id":"u","type":"view","item_id":"i","ts":5,"x":1' + b"0" * 100
         + b"}")  # fmt: skip
def test_the_jvm_keys_and_times_every_accepted_event_as_the_parser_reads_it(scan, value):
    assume(_check_event(scan, value))


@SCAN
@given(st.one_of(mutated(valid_events()), st.binary(max_size=200), json_values.map(
    lambda v: json.dumps(v).encode())))  # fmt: skip
@example(b'{"user_id":"\\ud800","ts":1}')
@example(b'{"user_id":"a\\udc00","ts":1}')
def test_any_bytes_the_parser_accepts_get_its_key_and_ts(scan, value):
    _check_event(scan, value)  # and the scan returns for anything (no exception reaches here)
    key, _ = scan(value, None, "events")
    key.encode("utf-8")  # always text (py4j would hide a lone surrogate; PEMJA failed on one)


@SCAN
@given(written(valid_items()), st.booleans())
def test_the_jvm_keys_and_times_every_accepted_item_as_the_parser_reads_it(scan, value, keyed):
    doc = json.loads(value)
    kafka_key = doc["item_id"].encode("utf-8") if keyed else None
    parsed = parse_item(kafka_key, value, topic="items", now_ms=NOW)
    assume(isinstance(parsed, Item))
    key, ts = scan(value, kafka_key, "items")
    assert (key, ts) == (parsed.item_id, parsed.ts), value[:300]
