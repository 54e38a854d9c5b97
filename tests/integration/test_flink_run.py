"""`flink run -py jobs/recommend.py` against a local standalone Flink cluster (one JobManager, one
TaskManager, started from the PyFlink wheel's scripts), reading and writing a real broker."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from streamrec import paths
from tests.integration.conftest import consume_until, job_topics, produce, wait_for_catalog

pytestmark = pytest.mark.integration

TS0 = 1_291_190_000_000


def test_flink_run_on_standalone_cluster(
    kafka_bootstrap, flink_standalone, tiny_model_dir, tmp_path
):
    t = job_topics(kafka_bootstrap, "fr")
    produce(
        kafka_bootstrap,
        t["items"],
        [
            ("22633", {"item_id": "22633", "title": "HAND WARMER UNION JACK"}),
            ("22632", {"item_id": "22632", "title": "HAND WARMER RED POLKA DOT"}),
            ("71053", {"item_id": "71053", "title": "WHITE METAL LANTERN"}),
        ],
    )
    users = ["17850", "13047", "12583"]
    events = [
        (
            u,
            {
                "event_id": f"{u}-{n}",
                "user_id": u,
                "type": "view",
                "item_id": item,
                "ts": TS0 + n * 1000,
            },
        )
        for n, item in enumerate(["22633", "71053"])
        for u in users
    ]
    cmd = [
        flink_standalone["flink"],
        "run",
        "-m",
        flink_standalone["rest"],
        "-d",
        "-py",
        "jobs/recommend.py",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--events-topic",
        t["events"],
        "--items-topic",
        t["items"],
        "--output-topic",
        t["recs"],
        "--dlq-topic",
        t["dlq"],
        "--group-id",
        f"group-{t['events']}",
        "--parallelism",
        "2",
        "--model",
        str(tiny_model_dir),
        "--restart-attempts",
        "0",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    sub = subprocess.run(
        cmd,
        cwd=paths.PROJECT_ROOT,
        env=flink_standalone["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
    job_id = re.search(r"JobID ([0-9a-f]{32})", sub.stdout + sub.stderr)
    assert job_id, sub.stdout[-2000:]
    try:
        wait_for_catalog(kafka_bootstrap, t["events"], t["recs"], "22633")
        produce(kafka_bootstrap, t["events"], events)
        want = sorted(e["event_id"] for _, e in events)
        recs = consume_until(
            kafka_bootstrap,
            t["recs"],
            lambda rs: sum(r.key != b"probe" for r in rs) >= len(events),
            timeout=240,
        )
        got = [json.loads(r.value) for r in recs if r.key != b"probe"]
        assert sorted(r["trigger_event_id"] for r in got) == want
        for r in got:
            assert r["items"] and {i["item_id"] for i in r["items"]} <= {"22633", "22632", "71053"}
    finally:
        subprocess.run(
            [flink_standalone["flink"], "cancel", "-m", flink_standalone["rest"], job_id.group(1)],
            env=flink_standalone["env"],
            capture_output=True,
            timeout=120,
        )
