"""`--delivery exactly-once`: Flink's transactional KafkaSink with streamrec's record serialiser;
lists become visible to read_committed consumers when checkpoints complete."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import consume_until, job_topics, produce
from tests.integration.test_job_kafka import TS0, RunningJob, event, item

pytestmark = pytest.mark.integration


def test_exactly_once_delivery(kafka_bootstrap, tiny_model_dir, tmp_path):
    t = job_topics(kafka_bootstrap, "eo")
    produce(
        kafka_bootstrap,
        t["items"],
        [item("22633", "HAND WARMER UNION JACK", ts=0), item("71053", "WHITE METAL LANTERN", ts=0)],
    )
    evs = [
        event(f"eo-{n}", f"user-{n % 3}", "click", TS0 + n * 1000, item_id="71053")
        for n in range(9)
    ]
    produce(kafka_bootstrap, t["events"], evs)
    job = RunningJob(
        kafka_bootstrap,
        t,
        tiny_model_dir,
        tmp_path / "job.log",
        extra=["--delivery", "exactly-once", "--checkpoint-interval", "1000"],
    )
    try:
        recs = consume_until(
            kafka_bootstrap,
            t["recs"],
            len(evs),
            timeout=240,
            on_poll=job.check_alive,
            config={"isolation.level": "read_committed"},
        )
    finally:
        job.stop()
    got = sorted(json.loads(r.value)["trigger_event_id"] for r in recs)
    assert got == sorted(e["event_id"] for _, e in evs)  # each exactly once, all committed
