"""Integration fixtures: a real Apache Kafka broker (KRaft) for the whole session, per-test topics,
and produce / consume helpers that wait on conditions instead of sleeping.

- ``kafka_bootstrap`` (session): starts a broker with ``streamrec.kafka_broker.start`` on a free
  port and a temporary data dir, stops it at the end. ``STREAMREC_TEST_BOOTSTRAP=host:port``
  uses an already running broker instead.
- ``topic_factory``: ``make(prefix, partitions=1, compacted=False) -> name`` creates a uniquely
  named topic (uuid suffix) and deletes it after the test.
- ``produce`` / ``consume_until``: the helper functions below, as fixtures.
- ``flink_standalone`` (session, only started when a test asks for it): a local standalone Flink
  cluster from the PyFlink wheel; yields ``{"rest", "env", "flink"}`` for ``flink run``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from streamrec import flink_cluster, kafka_broker, ports, topics


@dataclass(frozen=True)
class Record:
    """A consumed record. Unpacks as ``key, value`` (raw bytes, None for a null key or tombstone);
    ``key_str`` and ``json`` decode them."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int

    def __iter__(self):
        return iter((self.key, self.value))

    @property
    def key_str(self) -> str | None:
        return None if self.key is None else self.key.decode(errors="replace")

    @property
    def json(self) -> Any:
        """The value parsed as JSON (None for a tombstone; ValueError if it is not JSON)."""
        return None if self.value is None else json.loads(self.value)


def _encode(value) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def produce(bootstrap: str, topic: str, records: Iterable[tuple[Any, Any]], timeout=30) -> int:
    """Produce ``(key, value)`` pairs in order (value: dict -> JSON, str, bytes or None = tombstone).

    Waits for every delivery; raises AssertionError on a delivery error. Returns the count.
    """
    errors: list[KafkaError] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    n = 0
    try:
        for key, value in records:
            producer.produce(topic, key=_encode(key), value=_encode(value), on_delivery=on_delivery)
            producer.poll(0)
            n += 1
    finally:
        left = producer.flush(timeout)
    assert not errors and not left, f"delivery failed: {errors[:3]} ({left} undelivered)"
    return n


def consume_until(
    bootstrap: str,
    topic: str,
    until: int | Callable[[list[Record]], bool],
    timeout: float = 60,
    on_poll: Callable[[], None] | None = None,
    config: dict[str, Any] | None = None,
) -> list[Record]:
    """Read ``topic`` from the beginning until ``until`` holds, then return everything read.

    ``until`` is a record count (at least that many) or a predicate on the records so far.
    ``on_poll`` runs between polls (e.g. to raise when the job under test has died). Raises
    AssertionError with what arrived when ``timeout`` seconds pass first. Waits for the topic to
    exist (a job may create it).
    """
    done = (lambda recs: len(recs) >= until) if isinstance(until, int) else until
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **(config or {}),
        }
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if on_poll is not None:
                on_poll()
            md = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if md is not None and md.error is None and md.partitions:
                break
            assert time.monotonic() < deadline, f"topic {topic!r} never appeared"
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in md.partitions])
        while not done(records):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{topic}: condition not met within {timeout:.0f}s; got {len(records)} "
                    f"records, last: {records[-3:]}"
                )
            msg = consumer.poll(min(left, 0.5))
            if on_poll is not None:
                on_poll()
            if msg is None or msg.error():
                continue
            records.append(
                Record(msg.key(), msg.value(), msg.topic(), msg.partition(), msg.offset())
            )
    finally:
        consumer.close()
    return records


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    existing = os.environ.get("STREAMREC_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    data_dir = tmp_path_factory.mktemp("kafka")
    bootstrap = kafka_broker.start(ports.free_port(), data_dir, timeout=120)
    try:
        yield bootstrap
    finally:
        kafka_broker.stop(data_dir)


@pytest.fixture
def topic_factory(kafka_bootstrap):
    created: list[str] = []

    def make(
        prefix: str = "t",
        partitions: int = 1,
        compacted: bool = False,
        config: dict[str, str] | None = None,
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        topics.ensure_topics(
            kafka_bootstrap,
            {name: partitions},
            config=config,
            compacted={name} if compacted else set(),
        )
        created.append(name)
        return name

    yield make
    if created:
        try:
            topics.delete_topics(kafka_bootstrap, created, timeout=10)
        except Exception as e:  # best effort: the broker goes away with the session anyway
            print(f"could not delete test topics {created}: {e}")


@pytest.fixture(name="produce")
def produce_fixture():
    return produce


@pytest.fixture(name="consume_until")
def consume_until_fixture():
    return consume_until


@pytest.fixture(scope="session")
def flink_standalone(tmp_path_factory):
    base = tmp_path_factory.mktemp("flink")
    rest = flink_cluster.start(ports.free_port(), slots=2, base_dir=base, timeout=180)
    try:
        yield {
            "rest": rest,
            "env": flink_cluster.cluster_env(base),
            "flink": str(flink_cluster.flink_bin()),
        }
    finally:
        flink_cluster.stop(base)


def wait_for_catalog(
    bootstrap: str,
    events_topic: str,
    recs_topic: str,
    item_id: str,
    timeout: float = 240,
    on_poll=None,
) -> None:
    """Send probe events until the running job answers one with a list that names catalog items:
    the job is up and its broadcast catalog has arrived (awaited, not slept)."""
    deadline = time.monotonic() + timeout
    step = 0
    while True:
        probe = f"probe-{uuid.uuid4().hex[:6]}-{step}"
        event = {
            "event_id": probe,
            "user_id": "probe",
            "type": "view",
            "item_id": item_id,
            "ts": step,
        }
        produce(bootstrap, events_topic, [("probe", event)])
        recs = consume_until(
            bootstrap,
            recs_topic,
            lambda rs, p=probe: any(
                r.key == b"probe" and r.value and json.loads(r.value)["trigger_event_id"] == p
                for r in rs
            ),
            timeout=max(deadline - time.monotonic(), 1),
            on_poll=on_poll,
        )
        mine = [json.loads(r.value) for r in recs if r.key == b"probe" and r.value]
        if any(m["trigger_event_id"] == probe and m["items"] for m in mine):
            return
        step += 1


def job_topics(bootstrap: str, tag: str) -> dict[str, str]:
    """Fresh, uniquely named topics for one job under test: events and recommendations with 2
    partitions, a compacted items topic, a dead-letter topic."""
    run_id = uuid.uuid4().hex[:8]
    t = {k: f"{k}-{tag}-{run_id}" for k in ("events", "items", "recs", "dlq")}
    topics.ensure_topics(
        bootstrap,
        {t["events"]: 2, t["items"]: 1, t["recs"]: 2, t["dlq"]: 1},
        compacted={t["items"]},
    )
    return t
