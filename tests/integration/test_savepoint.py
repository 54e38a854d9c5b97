"""Stop and resume: `streamrec run` (python -m jobs.recommend) stopped with SIGTERM mid-stream
writes a savepoint and prints `savepoint: PATH`; the same job resumed with `--from-savepoint PATH`
emits the rest, and together they are exactly the lists of an uninterrupted run (real Online
Retail data with catalog updates, parallelism 2 over 2 partitions)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from benchmarks.faults import CLOSER, END_USER, MARKERS, Run, figures, read_output, write_inputs
from jobs.config import JobConfig, job_command
from streamrec import evaluate, paths, topics

pytestmark = pytest.mark.integration

EVENTS = 250  # ~10 invoices of real data


class Job:
    """The job as users run it, with the flags of a run whose lists depend on event time only
    (see benchmarks.faults: --max-wait beyond the run, markers after the input)."""

    def __init__(self, bootstrap, inputs, out, model_dir, log_path, extra=()):
        cmd = job_command(
            bootstrap_servers=bootstrap,
            events_topic=inputs.events,
            items_topic=inputs.items,
            output_topic=out["recs"],
            dlq_topic=out["dlq"],
            group_id=out["group"],
            parallelism=2,
            model=model_dir,
            checkpoint_interval=2000,
            checkpoint_dir=log_path.parent / "ckpt",
            savepoint_dir=log_path.parent / "savepoints",
            max_wait=24 * 3600_000,
            restart_attempts=0,
            metrics_port=0,
        ) + list(extra)
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=paths.PROJECT_ROOT)  # fmt: skip

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def check_alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"job exited with {self.proc.returncode}:\n{self.text()[-4000:]}")

    def terminate(self, timeout: float = 240) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


def outputs(tag: str, bootstrap: str) -> dict:
    out = {"recs": f"{tag}-recs", "dlq": f"{tag}-dlq", "group": f"{tag}-job"}
    topics.ensure_topics(bootstrap, {out["recs"]: 2, out["dlq"]: 1})
    return out


def watch(bootstrap: str, out: dict, until, job: Job, timeout: float = 600) -> None:
    """Poll the output (read_committed) until ``until(per_event_ids, marker_users, last_new)``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"w-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    consumer.assign([TopicPartition(out["recs"], p, -2) for p in range(2)])
    seen, markers, last = set(), set(), time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        while not until(seen, markers, last):
            job.check_alive()
            assert time.monotonic() < deadline, f"{len(seen)} lists; log:\n{job.text()[-3000:]}"
            for msg in consumer.consume(500, 0.5):
                if msg.error() or msg.value() is None:
                    continue
                rec = json.loads(msg.value())
                last = time.monotonic()
                if rec["user_id"].startswith(END_USER):
                    markers.add(rec["user_id"])
                elif not rec["user_id"].startswith(CLOSER) and rec.get("trigger") == "event":
                    seen.add(rec["trigger_event_id"])
    finally:
        consumer.close()


def all_out(seen, markers, last) -> bool:
    return len(markers) == MARKERS and time.monotonic() - last > 10


def test_stop_with_savepoint_and_resume_give_the_lists_of_an_uninterrupted_run(
    kafka_bootstrap, tiny_model_dir, tmp_path
):
    records = evaluate.load_records(paths.sample_data_file(), max_events=EVENTS)
    tag = f"sp-{uuid.uuid4().hex[:6]}"
    inputs = write_inputs(records, kafka_bootstrap, JobConfig().session_gap_ms, tag)

    # uninterrupted
    ref_out = outputs(f"{tag}-ref", kafka_bootstrap)
    (tmp_path / "ref").mkdir()
    job = Job(kafka_bootstrap, inputs, ref_out, tiny_model_dir, tmp_path / "ref" / "job.log")
    try:
        watch(kafka_bootstrap, ref_out, all_out, job)
    finally:
        job.terminate()
    reference = Run("reference")
    read_output(reference, kafka_bootstrap, ref_out)

    # stopped with a savepoint after about half of the lists, then resumed from it
    out = outputs(f"{tag}-stop", kafka_bootstrap)
    (tmp_path / "stop").mkdir()
    job = Job(kafka_bootstrap, inputs, out, tiny_model_dir, tmp_path / "stop" / "job.log")
    try:
        watch(kafka_bootstrap, out, lambda seen, m, last: len(seen) >= len(inputs.event_ids) // 2,
              job)  # fmt: skip
    finally:
        rc = job.terminate()
    log = job.text()
    found = re.search(r"^savepoint: (\S+)$", log, re.M)
    assert rc == 0 and found, log[-3000:]
    assert "Traceback" not in log
    job = Job(kafka_bootstrap, inputs, out, tiny_model_dir, tmp_path / "stop" / "resumed.log",
              extra=["--from-savepoint", found.group(1)])  # fmt: skip
    try:
        watch(kafka_bootstrap, out, all_out, job)
    finally:
        job.terminate()
    resumed = Run("stop-resume")
    read_output(resumed, kafka_bootstrap, out)

    assert figures(reference, reference, inputs.event_ids)["events_without_list"] == 0
    got = figures(resumed, reference, inputs.event_ids)
    assert reference.lists and got["events_without_list"] == 0, got
    assert any(trigger == "session_end" for _, trigger, _ in reference.lists)
    assert (got["lists_lost"], got["lists_duplicated"], got["lists_changed"]) == (0, 0, 0), got
    assert got["unexpected_lists"] == 0 and got["dead_letters"] == 0, got
