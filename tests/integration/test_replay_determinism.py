"""Profiles and catalog run on event time: the same history, read as a backlog at full speed or
replayed at a steady pace, gives the same lists (reproducible evaluation)."""

from __future__ import annotations

import json

import pytest

from streamrec import paths, retail
from streamrec.replay import replay
from tests.integration.conftest import consume_until, job_topics
from tests.integration.test_job_kafka import RunningJob

pytestmark = pytest.mark.integration

ROWS = 500  # ~20 invoices of real Online Retail data


def run_job_on(records, n_events, bootstrap, model_dir, workdir, *, backlog: bool, rate=None):
    """Fresh topics and a fresh job; the history either waits on the topics before the job starts
    (a backlog read at full speed) or is replayed at ``rate`` while the job runs."""
    t = job_topics(bootstrap, "det")
    if backlog:
        replay(records, bootstrap, t["events"], t["items"], progress=False)
    workdir.mkdir()
    job = RunningJob(bootstrap, t, model_dir, workdir / "job.log")
    try:
        if not backlog:
            replay(records, bootstrap, t["events"], t["items"], rate=rate, progress=False)
        recs = consume_until(bootstrap, t["recs"], n_events, timeout=300, on_poll=job.check_alive)
    finally:
        job.stop()
    return {json.loads(r.value)["trigger_event_id"]: json.loads(r.value)["items"] for r in recs}


def test_two_replay_speeds_give_identical_lists(kafka_bootstrap, tiny_model_dir, tmp_path):
    data = paths.sample_data_file()
    records = list(retail.to_contract_records(retail.iter_retail_rows(data, limit=ROWS)))
    n_events = sum(1 for kind, _, _ in records if kind == "events")
    assert n_events > 100

    args = (records, n_events, kafka_bootstrap, tiny_model_dir)
    a = run_job_on(*args, tmp_path / "backlog", backlog=True)
    b = run_job_on(*args, tmp_path / "paced", backlog=False, rate=150)
    assert len(a) == len(b) == n_events
    # every list names catalog items, but the first minute's: an item is recommended from
    # events after its own time, and before the first minute there was nothing
    first = min(v["ts"] for kind, _, v in records if kind == "events")
    n_first = sum(1 for kind, _, v in records if kind == "events" and v["ts"] == first)
    assert sum(1 for v in a.values() if v) == n_events - n_first
    for event_id, items in a.items():
        other = b[event_id]
        assert [i["item_id"] for i in items] == [i["item_id"] for i in other], (
            event_id,
            items,
            other,
        )
        assert [i["score"] for i in items] == pytest.approx([i["score"] for i in other], abs=1e-5)
