"""The job's health in Prometheus: Flink's Prometheus reporter on the local mini-cluster
(--metrics-port), scraped while the job runs; every metric of the project's own
(operators.metrics) is there with a sensible value, beside Flink's restart count."""

from __future__ import annotations

import json
import time

import pytest

from operators import metrics as m
from streamrec import ports, prometheus
from tests.integration.conftest import job_topics, produce, wait_for_catalog
from tests.integration.test_job_kafka import CATALOG, TS0, RunningJob, event, item

pytestmark = pytest.mark.integration


def values(samples, series: str, **labels) -> list[float]:
    return [
        s.value
        for s in samples
        if s.name == series and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def test_reporter_exports_the_jobs_metrics(kafka_bootstrap, tiny_model_dir, tmp_path):
    t = job_topics(kafka_bootstrap, "metrics")
    produce(kafka_bootstrap, t["items"], [item(k, v) for k, v in CATALOG.items()])
    port = ports.free_port(span=10)  # the reporters take port .. port + 9
    job = RunningJob(
        kafka_bootstrap,
        t,
        tiny_model_dir,
        tmp_path / "job.log",
        parallelism=1,
        extra=["--metrics-port", str(port)],
    )
    try:
        wait_for_catalog(kafka_bootstrap, t["events"], t["recs"], "71053", on_poll=job.check_alive)
        hour = 3600_000
        produce(
            kafka_bootstrap,
            t["events"],
            [
                event("m-0", "alice", "purchase", TS0, item_id="22633"),
                ("alice", b"{not json"),  # a dead letter
                # an hour later in event time: alice's session has closed (a session-end list)
                event("m-1", "bob", "view", TS0 + hour, item_id="71053"),
            ],
        )
        p = m.project_series()
        deadline = time.monotonic() + 180
        while True:
            job.check_alive()
            try:
                samples = prometheus.scrape(f"localhost:{port}")
            except OSError:
                samples = []
            got = {
                "event lists": sum(values(samples, p[m.LISTS_EMITTED], trigger="event")),
                "session-end lists": sum(
                    values(samples, p[m.LISTS_EMITTED], trigger="session_end")
                ),
                "bad JSON": sum(values(samples, p[m.DEAD_LETTERS], reason="bad_json")),
                "latencies": sum(values(samples, p[m.LIST_LATENCY_MS], le=m.INF)),
                "event-time lags": sum(values(samples, p[m.EVENT_TIME_LAG_MS], le=m.INF)),
                "encoder batches": sum(values(samples, p[m.ENCODER_BATCH_SIZE], le=m.INF)),
                "encoder latencies": sum(values(samples, p[m.ENCODER_LATENCY_MS], le=m.INF)),
                "catalog": max(values(samples, p[m.CATALOG_SIZE]), default=0),
            }
            # the probe's list, alice's and bob's; alice's session end
            if all(got.values()) and got["event lists"] >= 3:
                break
            assert time.monotonic() < deadline, f"metrics missing: {json.dumps(got)}"
            time.sleep(1)
        assert got["catalog"] == len(CATALOG)
        # the other series exist with plausible values
        assert values(samples, p[m.HELD_EVENTS]) and min(values(samples, p[m.HELD_EVENTS])) >= 0
        assert values(samples, p[m.ENCODER_CACHE_HITS])
        assert values(samples, p[m.EMBEDDING_STORE_HITS]) == [0.0]  # no store given
        assert sum(values(samples, p[m.LIST_LATENCY_MS + m.SUM_SUFFIX])) > 0
        # buckets are cumulative: each bound counts at least what the one below it counts
        by_bound = {s.labels["le"]: s.value for s in samples if s.name == p[m.LIST_LATENCY_MS]}
        counts = [by_bound[str(b)] for b in m.BUCKETS[m.LIST_LATENCY_MS]] + [by_bound[m.INF]]
        assert counts == sorted(counts)
        # and Flink's own: the job has not restarted
        assert values(samples, "flink_jobmanager_job_numRestarts") == [0.0]
    finally:
        job.stop()
