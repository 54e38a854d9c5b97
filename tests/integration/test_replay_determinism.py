"""Profiles and catalog run on event time: the same history, read as a backlog at full speed or
replayed at a steady pace, gives the same lists (reproducible evaluation)."""

from __future__ import annotations

import json
import time

import pytest

from streamrec import paths, retail
from streamrec.evaluation import list_key
from streamrec.replay import replay
from tests.integration.conftest import consume_until, job_topics
from tests.integration.test_job_kafka import RunningJob

pytestmark = pytest.mark.integration

ROWS = 500  # ~20 invoices of real Online Retail data


def run_job_on(
    records, n_events, bootstrap, model_dir, workdir, *, backlog: bool, rate=None, extra=()
):
    """Fresh topics and a fresh job; the history either waits on the topics before the job starts
    (a backlog read at full speed) or is replayed at ``rate`` while the job runs."""
    t = job_topics(bootstrap, "det")
    if backlog:
        replay(records, bootstrap, t["events"], t["items"], progress=False)
    workdir.mkdir()
    job = RunningJob(bootstrap, t, model_dir, workdir / "job.log", extra=extra)
    try:
        if not backlog:
            replay(records, bootstrap, t["events"], t["items"], rate=rate, progress=False)
        event_lists = lambda rs: sum(b'"trigger":"event"' in r.value for r in rs)  # noqa: E731
        recs = consume_until(
            bootstrap, t["recs"], lambda rs: event_lists(rs) >= n_events, timeout=300,
            on_poll=job.check_alive,
        )  # fmt: skip
        # and the session-end lists that event time has closed by then: the output goes quiet
        recs = consume_until(
            bootstrap, t["recs"], quiet_for(5.0), timeout=120, on_poll=job.check_alive
        )
    finally:
        job.stop()
    out = {}
    for r in recs:
        value = json.loads(r.value)
        out[list_key(value)] = value["items"]
    return out


def quiet_for(seconds: float):
    """A consume_until predicate: true once no record has arrived for ``seconds``."""
    state = {"n": -1, "since": 0.0}

    def done(records) -> bool:
        now = time.monotonic()
        if len(records) != state["n"]:
            state["n"], state["since"] = len(records), now
        return now - state["since"] >= seconds

    return done


def sample_records():
    data = paths.sample_data_file()
    records = list(retail.to_contract_records(retail.iter_retail_rows(data, limit=ROWS)))
    n_events = sum(1 for kind, _, _ in records if kind == "events")
    assert n_events > 100
    return records, n_events


def ten_customers():
    """The first ten customers of the sample file: 545 purchases in 56 orders over 19 days
    (sessions close, and the lists of users away are refreshed)."""
    rows = retail.iter_retail_rows(paths.sample_data_file())
    records = list(retail.to_contract_records(retail.first_users(rows, 10)))
    return records, sum(1 for kind, _, _ in records if kind == "events")


def assert_same_lists(a: dict, b: dict, abs_tol: float = 1e-5) -> None:
    assert set(a) == set(b)
    for key, items in a.items():
        other = b[key]
        assert [(i["item_id"], i["reason"]) for i in items] == [
            (i["item_id"], i["reason"]) for i in other
        ], (key, items, other)
        assert [i["score"] for i in items] == pytest.approx(
            [i["score"] for i in other], abs=abs_tol
        )


def test_two_replay_speeds_give_identical_lists(kafka_bootstrap, tiny_model_dir, tmp_path):
    records, n_events = sample_records()

    args = (records, n_events, kafka_bootstrap, tiny_model_dir)
    a = run_job_on(*args, tmp_path / "backlog", backlog=True)
    b = run_job_on(*args, tmp_path / "paced", backlog=False, rate=150)
    assert sum(trigger == "event" for _, trigger, _ in a) == n_events
    # the same lists, and the same sessions closed by the time the input ended
    assert set(a) == set(b)
    assert sum(trigger == "session_end" for _, trigger, _ in a) > 0
    # every list names catalog items, but the first minute's: an item is recommended from
    # events after its own time, and before the first minute there was nothing
    first = min(v["ts"] for kind, _, v in records if kind == "events")
    n_first = sum(1 for kind, _, v in records if kind == "events" and v["ts"] == first)
    assert sum(1 for (_, t, _), v in a.items() if v and t == "event") == n_events - n_first
    assert_same_lists(a, b)


def test_process_mode_gives_thread_modes_lists(kafka_bootstrap, tiny_model_dir, tmp_path):
    """A backlog: event time jumps far past session ends at once. In process mode the timers a
    Python function registers reach the JVM late; the session ends still come in event-time
    order, once each, against the same world. (Refreshes there may come a watermark late, against
    a later world: see Recommend._schedule_refresh.)"""
    records, n_events = ten_customers()
    args = (records, n_events, kafka_bootstrap, tiny_model_dir)
    thread = run_job_on(*args, tmp_path / "thread", backlog=True)
    process = run_job_on(
        *args, tmp_path / "process", backlog=True, extra=["--execution-mode", "process"]
    )
    assert sum(refresh > 0 for _, _, refresh in thread) > 0

    def not_refreshed(lists):
        return {key: items for key, items in lists.items() if key[2] == 0}

    assert_same_lists(not_refreshed(thread), not_refreshed(process))


def test_the_job_emits_the_offline_drivers_lists_refreshes_included(
    kafka_bootstrap, tiny_model_dir, tmp_path
):
    """Ten customers over 19 days: sessions close and, while their users stay away, the lists
    for the next visit are scored again (RankingConfig.refresh_days). The job on Flink emits the
    lists streamrec.simulate (the job's semantics in one process) emits, as far as event time
    has gone."""
    from models.encoder import Encoder
    from operators.config import RankingConfig
    from streamrec.simulate import simulate

    records, n_events = ten_customers()
    job = run_job_on(
        records, n_events, kafka_bootstrap, tiny_model_dir, tmp_path / "job", backlog=True
    )
    encoder = Encoder(tiny_model_dir)
    expected = {}
    for _, value in simulate(records, lambda t: encoder.encode([t])[0], RankingConfig(), top_k=5):
        v = json.loads(value)
        expected[list_key(v)] = v["items"]
    refreshed = [key for key in job if key[2] > 0]
    assert len(refreshed) > 10
    assert sum(trigger == "event" for _, trigger, _ in job) == n_events
    assert set(job) <= set(expected)
    # the item vectors: the job's encoder embeds in batches, this one text by text
    assert_same_lists(job, {key: expected[key] for key in job}, abs_tol=1e-4)
