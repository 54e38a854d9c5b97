"""Poison pills through the real job: hostile records on both input topics, between valid events,
read by the job as users run it (2 partitions, parallelism 2). Every valid event gets exactly one
per-event list, every hostile record exactly one dead letter naming its source coordinates, and
the job never restarts (Flink's numRestarts, scraped from its Prometheus reporter)."""

from __future__ import annotations

import json
import math
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from streamrec import ports, prometheus, topics
from tests.integration.conftest import consume_until, job_topics
from tests.integration.test_job_kafka import CATALOG, TS0, RunningJob

pytestmark = pytest.mark.integration

DAY = 86_400_000


def event(eid, user, ts, **kw) -> dict:
    return {"event_id": eid, "user_id": user, "type": "view", "item_id": "71053", "ts": ts, **kw}


def hostile_events(now: int) -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, what) of records the job must send to the dead-letter topic."""
    ok = json.dumps(event("h", "mallory", TS0))[:-1]  # a valid event's fields, object left open

    def with_(extra: str) -> bytes:
        return (ok + "," + extra + "}").encode()

    deep_object = b'{"a":' * 200 + b"1" + b"}" * 200
    return [
        (b"mallory", b"[" * 5000 + b"]" * 5000, "deep array"),
        (b"mallory", with_('"x":' + deep_object.decode()), "deep object inside a valid event"),
        (b"mallory", json.dumps(event("h1", "mallory", 1e300)).encode(), "ts 1e300"),
        (b"mallory", json.dumps(event("h2", "mallory", 2**63)).encode(), "ts 2**63"),
        (b"mallory", json.dumps(event("h3", "mallory", -1)).encode(), "negative ts"),
        (b"mallory", json.dumps(event("h4", "mallory", now + 3 * DAY)).encode(), "far future"),
        (b"mallory", json.dumps(event("h5", "mallory", "1291190000000")).encode(), "ts a string"),
        (
            b"mallory",
            b'{"event_id":"h6","user_id":"\\ud800","type":"view","item_id":"71053",'
            b'"ts":1291190000000}',
            "lone surrogate in user_id",
        ),  # fmt: skip
        (
            b"mallory",
            b'{"event_id":"h7","user_id":"mallory","type":"search","query":"a\\udfffb",'
            b'"ts":1291190000000}',
            "lone surrogate in a query",
        ),  # fmt: skip
        (b"mallory", json.dumps(event("h8", 123, TS0)).encode(), "user_id a number"),
        (
            b"mallory",
            json.dumps({**event("h9", "mallory", TS0), "type": ["view"]}).encode(),
            "type an array",
        ),  # fmt: skip
        (b"\xff\xfe", b"\xff\xfe\xfd not utf-8", "non-UTF-8 key and value"),
        (b"mallory", with_('"pad":"' + "x" * 70_000 + '"'), "over 64 KiB"),
        (b"mallory", with_('"user_id":"eve"'), "user_id twice"),
        (b"mallory", with_('"price":NaN'), "NaN"),
        (b"mallory", with_('"quantity":Infinity'), "Infinity"),
        (b"mallory", None, "null value"),
        (b"mallory", b"", "empty value"),
        (
            None,
            json.dumps({**event("h10", "mallory", TS0), "type": "teleport"}).encode(),
            "unknown type, no key",
        ),  # fmt: skip
    ]


def hostile_items(now: int) -> list[tuple[bytes | None, bytes | None, str]]:
    def item(item_id="BAD1", **kw) -> bytes:
        return json.dumps({"item_id": item_id, "title": "HOSTILE THING", "ts": 0, **kw}).encode()

    return [
        (b"BAD1", b"[" * 5000 + b"]" * 5000, "deep array"),
        (b"BAD1", item(ts=1e300), "ts 1e300"),
        (b"BAD1", item(ts=2**63), "ts 2**63"),
        (b"BAD1", item(ts=-5), "negative ts"),
        (b"BAD1", item(ts=now + 3 * DAY), "far future"),
        (b"BAD1", b'{"item_id":"BAD1","title":"x\\ud800y","ts":0}', "lone surrogate in title"),
        (b"BAD1", item(title=5), "title a number"),
        (b"\xff\xfe", item(), "non-UTF-8 key"),
        (b"BAD1", b"\xc3\x28 not utf-8", "non-UTF-8 value"),
        (b"BAD1", item(description="d" * 70_000), "over 64 KiB"),
        (b"BAD1", b'{"item_id":"BAD1","title":"A","title":"B","ts":0}', "title twice"),
        (b"BAD1", b'{"item_id":"BAD1","title":"A","price":NaN,"ts":0}', "NaN price"),
        (b"OTHER", item(), "key differs from item_id"),
        (b"", item(), "empty key"),
        # (a record without a key never reaches the job: the broker refuses it on a compacted
        # topic)
    ]


def read_all(bootstrap: str, topic: str) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        return list(topics.read_to_end(consumer, topic))
    finally:
        consumer.close()


def produce_all(bootstrap: str, topic: str, records) -> list[tuple[int, int]]:
    """Produce (key, value[, partition]) in order; their (partition, offset)."""
    coords: list[tuple[int, int] | None] = [None] * len(records)
    errors = []

    def done(n):
        def cb(err, msg):
            if err is not None:
                errors.append(err)
            else:
                coords[n] = (msg.partition(), msg.offset())

        return cb

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "message.max.bytes": 1_000_000})  # fmt: skip
    for n, (key, value, *part) in enumerate(records):
        kw = {"partition": part[0]} if part else {}
        producer.produce(topic, key=key, value=value, on_delivery=done(n), **kw)
        producer.poll(0)
    producer.flush(30)
    assert not errors and all(coords), errors
    return coords


def test_hostile_records_on_both_topics_never_reach_a_list_nor_restart_the_job(
    kafka_bootstrap, tiny_model_dir, tmp_path
):
    t = job_topics(kafka_bootstrap, "poison")
    now = int(time.time() * 1000)
    bad_items = hostile_items(now)
    good_items = [(k.encode(), json.dumps({"item_id": k, "title": v, "ts": 0}).encode())
                  for k, v in CATALOG.items()]  # fmt: skip
    # the catalog with hostile records in between
    items = [r for pair in zip(good_items, bad_items, strict=False) for r in pair]
    items += good_items[len(bad_items) :] + bad_items[len(good_items) :]
    item_coords = produce_all(kafka_bootstrap, t["items"], [r[:2] for r in items])
    bad_item_at = {c for c, r in zip(item_coords, items, strict=True) if len(r) == 3}

    # valid events of several users on both partitions, a hostile record after each
    users = [f"u{n}-{uuid.uuid4().hex[:4]}" for n in range(4)]
    ids = list(CATALOG)
    bad_events = hostile_events(now)
    records, valid = [], []
    for n, bad in enumerate(bad_events * 2):
        user = users[n % len(users)]
        ev = event(f"{user}-{n}", user, TS0 + n * 60_000, item_id=ids[n % len(ids)])
        valid.append(ev["event_id"])
        records.append((user.encode(), json.dumps(ev).encode(), n % 2))
        records.append((bad[0], bad[1], (n + 1) % 2))  # on both partitions
    # one more per partition, later: event time passes every valid event
    for p in range(2):
        records.append(
            (b"closer", json.dumps(event(f"close-{p}", "closer", TS0 + DAY)).encode(), p)
        )
    coords = produce_all(kafka_bootstrap, t["events"], records)
    bad_event_at = {coords[n] for n in range(1, 2 * len(bad_events) * 2, 2)}

    port = ports.free_port(span=10)  # the reporters take port .. port + 9
    job = RunningJob(kafka_bootstrap, t, tiny_model_dir, tmp_path / "job.log", parallelism=2,
                     extra=["--metrics-port", str(port)])  # fmt: skip
    try:
        n_dead = len(bad_item_at) + len(bad_event_at)
        dead = consume_until(kafka_bootstrap, t["dlq"], n_dead, timeout=300,
                             on_poll=job.check_alive)  # fmt: skip
        recs = consume_until(
            kafka_bootstrap,
            t["recs"],
            lambda rs: (
                {json.loads(r.value)["trigger_event_id"] for r in rs if r.value} >= set(valid)
            ),
            timeout=300,
            on_poll=job.check_alive,
        )
        time.sleep(5)  # anything more (a duplicate, a list for a hostile record) would be out
        dead, recs = read_all(kafka_bootstrap, t["dlq"]), read_all(kafka_bootstrap, t["recs"])
        samples = prometheus.scrape(f"localhost:{port}")
    finally:
        job.stop()

    letters = [json.loads(r.value()) for r in dead]
    at = [(d["source_topic"], d["partition"], d["offset"]) for d in letters]
    assert len(at) == len(set(at)) == n_dead  # one each
    assert set(at) == {(t["items"], p, o) for p, o in bad_item_at} | {
        (t["events"], p, o) for p, o in bad_event_at
    }
    assert all(d["error"] and set(d) == {"error", "source_topic", "partition", "offset", "raw"}
               for d in letters)  # fmt: skip
    lists = [json.loads(r.value()) for r in recs if r.value()]
    per_event = [r["trigger_event_id"] for r in lists if r.get("trigger") == "event"]
    assert sorted(e for e in per_event if not e.startswith("close")) == sorted(valid)
    for r in lists:
        assert {i["item_id"] for i in r["items"]} <= set(CATALOG)  # nothing hostile is listed
    restarts = [s.value for s in samples if s.name == "flink_jobmanager_job_numRestarts"]
    assert restarts == [0.0], restarts
    assert not math.isnan(restarts[0])
