"""forget_user audited where the job keeps things: after the forget, no checkpoint holds the user
(their id, their search text, their query vector): not the profile or held events (keyed state),
not the world's context or its log of raw events (broadcast state), not a timer. A job restored
from such a checkpoint treats the user as someone new. `streamrec topics create` makes the
output topic compacted with time retention, so the tombstone removes the user's earlier lists."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from models.encoder import Encoder
from streamrec import topics
from tests.integration.conftest import consume_until, job_topics, produce, wait_for_catalog
from tests.integration.test_job_kafka import CATALOG, TS0, RunningJob, event, item

pytestmark = pytest.mark.integration

HOUR = 3600_000


def test_topics_create_makes_recommendations_compacted_with_retention(kafka_bootstrap):
    tag = uuid.uuid4().hex[:6]
    names = {f: f"{f}-{tag}" for f in ("events", "items", "recs", "dlq")}
    rc = topics.main(["create", "--bootstrap-servers", kafka_bootstrap, "--events-topic",
                      names["events"], "--items-topic", names["items"], "--output-topic",
                      names["recs"], "--dlq-topic", names["dlq"],
                      "--recommendations-retention-ms", "86400000"])  # fmt: skip
    try:
        assert rc == 0
        recs = topics.topic_config(kafka_bootstrap, names["recs"])
        assert recs["cleanup.policy"] == "compact,delete"
        assert recs["retention.ms"] == "86400000"
        assert topics.topic_config(kafka_bootstrap, names["items"])["cleanup.policy"] == "compact"
        assert topics.topic_config(kafka_bootstrap, names["events"])["cleanup.policy"] == "delete"
    finally:
        topics.delete_topics(kafka_bootstrap, list(names.values()))


def latest_checkpoint(ckpt: Path) -> Path | None:
    done = [p for p in ckpt.glob("*/chk-*") if (p / "_metadata").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def checkpoint_after(ckpt: Path, job: RunningJob, since: float, timeout: float = 120) -> Path:
    """The first checkpoint completed after ``since`` (time.time()); a copy, so that Flink's
    cleanup of older ones cannot take it away."""
    deadline = time.monotonic() + timeout
    while True:
        job.check_alive()
        chk = latest_checkpoint(ckpt)
        if chk is not None and (chk / "_metadata").stat().st_mtime > since:
            return chk
        assert time.monotonic() < deadline, f"no checkpoint after {since}:\n{job.tail()}"
        time.sleep(0.5)


def holding(folder: Path, needles: dict[str, bytes]) -> set[str]:
    """Which needles occur in any file under ``folder`` (a job's checkpoints: every one that
    is there; one that Flink removes meanwhile has been subsumed by a later one)."""
    found = set()
    for f in folder.rglob("*"):
        try:
            data = f.read_bytes() if f.is_file() else b""
        except FileNotFoundError:
            continue
        found |= {name for name, b in needles.items() if b in data}
    return found


def lists(records, user):
    return [json.loads(r.value) if r.value else None for r in records if r.key == user.encode()]


def test_forget_user_leaves_nothing_in_checkpoints_and_restores(
    kafka_bootstrap, tiny_model_dir, tmp_path
):
    t = job_topics(kafka_bootstrap, "erase")
    produce(kafka_bootstrap, t["items"], [item(k, v, ts=0) for k, v in CATALOG.items()])
    ckpt = tmp_path / "run" / "ckpt"
    (tmp_path / "run").mkdir()
    flags = ["--checkpoint-interval", "1000", "--state-ttl-days", "30"]
    job = RunningJob(kafka_bootstrap, t, tiny_model_dir, tmp_path / "run" / "job.log",
                     extra=flags)  # fmt: skip
    secret = f"zz-secret-{uuid.uuid4().hex[:8]}"
    query = f"quilted zebra lantern {uuid.uuid4().hex[:6]}"
    enc = Encoder(tiny_model_dir, provider="cpu", batch_size=1, intra_op_threads=1)  # as the job
    qvec = enc.encode([query])[0].astype("<f4").tobytes()
    needles = {"user id": secret.encode(), "query text": query.encode(), "query vector": qvec}
    others = [f"other-{n}-{uuid.uuid4().hex[:4]}" for n in range(12)]

    def round_of(ts: int, tag: str):
        """An event of every other user (both recommend tasks get some): event time moves on."""
        evs = [event(f"{u}-{tag}", u, "view", ts, item_id="71053") for u in others]
        produce(kafka_bootstrap, t["events"], evs)
        consume_until(kafka_bootstrap, t["recs"],
                      lambda rs: all(lists(rs, u) and any(x and x["trigger_event_id"] == f"{u}-{tag}"
                                                          for x in lists(rs, u)) for u in others),
                      timeout=180, on_poll=job.check_alive)  # fmt: skip

    try:
        wait_for_catalog(kafka_bootstrap, t["events"], t["recs"], "71053", on_poll=job.check_alive)
        produce(kafka_bootstrap, t["events"], [
            event(f"{secret}-0", secret, "purchase", TS0 + 6 * HOUR, item_id="22752",
                  session_id="o1"),
            event(f"{secret}-1", secret, "purchase", TS0 + 6 * HOUR, item_id="84406B",
                  session_id="o1"),
            event(f"{secret}-2", secret, "search", TS0 + 6 * HOUR + 1000, query=query),
        ])  # fmt: skip
        round_of(TS0 + 7 * HOUR, "a")  # event time passes the secret user's events
        consume_until(kafka_bootstrap, t["recs"], lambda rs: len(lists(rs, secret)) >= 3,
                      timeout=120, on_poll=job.check_alive)  # fmt: skip
        before = checkpoint_after(ckpt, job, time.time())
        # the control: a checkpoint of the user's time holds all three (so the audit can fail)
        assert holding(before.parent, needles) == set(needles)

        produce(kafka_bootstrap, t["events"],
                [event(f"{secret}-f", secret, "forget_user", TS0 + 6 * HOUR + 2000)])  # fmt: skip
        round_of(TS0 + 8 * HOUR, "b")  # event time passes the forget: the worlds apply it
        round_of(TS0 + 9 * HOUR, "c")  # broadcast updates after that: the world logs fold
        recs = consume_until(kafka_bootstrap, t["recs"], lambda rs: None in lists(rs, secret),
                             timeout=60, on_poll=job.check_alive)  # fmt: skip
        assert lists(recs, secret)[-1] is None  # the tombstone
        time.sleep(12)  # the user's last processing-time timer (--max-wait 10 s) has fired
        checkpoint_after(ckpt, job, time.time())
    finally:
        job.proc.kill()  # a crash: the checkpoints stay as they are
        job.proc.wait()
        job.log.close()
    after = latest_checkpoint(ckpt)
    # a checkpoint after the forget: no search text, no query vector, no user id in Python's
    # values (world snapshot and log, profiles, held events). RocksDB's checkpoints are its SST
    # files: an entry superseded by the forget's deletion (and the deletion, keyed by the user)
    # stays in them until RocksDB compacts it away; the live state holds nothing (below).
    pickled = b"\x8c" + bytes([len(secret)]) + secret.encode()  # how pickle writes the id
    assert holding(after.parent, {**needles, "user id": pickled}) == set(), after

    # restored from it, stopped with a savepoint (its live state, canonical): nothing at all
    (tmp_path / "restored").mkdir()
    job = RunningJob(kafka_bootstrap, t, tiny_model_dir, tmp_path / "restored" / "job.log",
                     extra=flags + ["--from-savepoint", str(after)])  # fmt: skip
    try:
        round_of(TS0 + 10 * HOUR, "d")
    finally:
        job.proc.terminate()
        rc = job.proc.wait(240)
        job.log.close()
    log = (tmp_path / "restored" / "job.log").read_text(errors="replace")
    found = re.search(r"^savepoint: (\S+)$", log, re.M)
    assert rc == 0 and found, log[-3000:]
    savepoint = Path(found.group(1).removeprefix("file:"))
    assert holding(savepoint, needles) == set(), savepoint

    # and resumed, the user is someone new: the same event, the same list as a user never seen
    (tmp_path / "resumed").mkdir()
    fresh = f"fresh-{uuid.uuid4().hex[:6]}"
    job = RunningJob(kafka_bootstrap, t, tiny_model_dir, tmp_path / "resumed" / "job.log",
                     extra=flags + ["--from-savepoint", str(savepoint)])  # fmt: skip
    try:
        ts = TS0 + 12 * HOUR
        produce(kafka_bootstrap, t["events"], [
            event(f"{secret}-back", secret, "view", ts, item_id="21730"),
            event(f"{fresh}-0", fresh, "view", ts, item_id="21730"),
        ])  # fmt: skip
        round_of(ts + HOUR, "e")
        recs = consume_until(
            kafka_bootstrap, t["recs"],
            lambda rs: any(x and x["trigger_event_id"] == f"{secret}-back" for x in lists(rs, secret))
            and lists(rs, fresh), timeout=240, on_poll=job.check_alive,
        )  # fmt: skip
    finally:
        job.stop()
    back = next(x for x in lists(recs, secret) if x and x["trigger_event_id"] == f"{secret}-back")
    (new,) = [x for x in lists(recs, fresh) if x.get("trigger") == "event"]
    assert back["items"] == new["items"]
