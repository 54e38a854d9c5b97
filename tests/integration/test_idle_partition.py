"""An idle partition of the events topic does not hold lists back: with events on one partition
only, event time follows that partition once the other has been silent for --idleness, and each
event's list comes when the next event passes it, not after --max-wait."""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.integration.conftest import job_topics, produce
from tests.integration.test_job_kafka import CATALOG, TS0, RunningJob, item

pytestmark = pytest.mark.integration

MAX_WAIT_MS = 120_000  # what a held-back list would wait
IDLENESS_MS = 2_000


def test_lists_arrive_within_idleness_not_max_wait(kafka_bootstrap, tiny_model_dir, tmp_path):
    t = job_topics(kafka_bootstrap, "idle")  # events and recommendations: 2 partitions
    produce(kafka_bootstrap, t["items"], [item(k, v, ts=0) for k, v in CATALOG.items()])
    job = RunningJob(
        kafka_bootstrap,
        t,
        tiny_model_dir,
        tmp_path / "job.log",
        parallelism=2,
        extra=["--max-wait", str(MAX_WAIT_MS), "--idleness", str(IDLENESS_MS)],
    )
    sent: dict[str, float] = {}
    stop = threading.Event()

    def feed():
        """One event every 0.5 s, 2 s of event time apart, all on partition 0."""
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        n = 0
        while not stop.is_set():
            user = f"u{n % 5}-{uuid.uuid4().hex[:4]}"
            ev = {"event_id": f"e{n}", "user_id": user, "type": "view",
                  "item_id": list(CATALOG)[n % len(CATALOG)], "ts": TS0 + n * 2000}  # fmt: skip
            producer.produce(t["events"], key=user.encode(), value=json.dumps(ev).encode(),
                             partition=0)  # fmt: skip
            producer.flush(10)
            sent[ev["event_id"]] = time.monotonic()
            n += 1
            stop.wait(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(t["recs"], p, -2) for p in range(2)])
    latency: dict[str, float] = {}
    first = None
    try:
        feeder.start()
        deadline = time.monotonic() + 400
        # the job starts (minutes on a busy machine); then 30 s of steady input
        while first is None or time.monotonic() < first + 30:
            job.check_alive()
            assert time.monotonic() < deadline, f"no lists in time:\n{job.tail()}"
            for msg in consumer.consume(100, 0.5):
                if msg.error() or msg.value() is None:
                    continue
                eid = json.loads(msg.value())["trigger_event_id"]
                if eid in sent and eid not in latency:
                    latency[eid] = time.monotonic() - sent[eid]
                    first = first or time.monotonic()
    finally:
        stop.set()
        consumer.close()
        job.stop()
    # events sent after the first list came out: the job was up when they were sent
    steady = [v for k, v in latency.items() if sent[k] > first]
    assert len(steady) >= 20, latency
    # each list waits for the next event (0.5 s) and a bundle, not for --max-wait (120 s)
    assert max(steady) < 15, sorted(steady)
    assert statistics.median(steady) < 5, sorted(steady)
