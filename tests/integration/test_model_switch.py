"""Switching a running job to a new encoder, the documented way: run with model A on the first
half of a stream, stop with a savepoint, `streamrec encode-catalog` with model B (a tiny
fine-tuned export, as CI ships one) into the embedding store, resume from the savepoint with
`--model B` while the second half comes in.

Every list names one model; the lists before the switch name A, those after it name B, and
each list after the switch is exactly the list of a job that only ever ran B (the same input,
the same embedding store): no list after the switch scored anything with A's vectors, neither
the catalog's nor the users' search queries (the input has searches before the switch)."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from confluent_kafka import Consumer

from benchmarks.faults import CLOSER, END_USER, LIST_TYPES, Inputs, write_inputs
from jobs.config import JobConfig
from models.manifest import read_manifest
from streamrec import encode_catalog, evaluate, paths, replay, topics
from tests.integration.test_savepoint import Job, all_out, outputs, watch

pytestmark = pytest.mark.integration

EVENTS = 250


def with_searches(records: list) -> tuple[list, int]:
    """The records with a search (a catalog title as the query) by the user of each new
    invoice, a second before it: users' profiles hold query vectors when the model switches."""
    titles = [v["title"] for kind, _, v in records if kind == "items" and v]
    out, last_ts, n = [], None, 0
    for kind, key, value in records:
        if (
            kind == "events"
            and value
            and value["ts"] != last_ts
            and value["ts"] - 1000 > (last_ts or 0)
        ):
            n += 1
            search = {"event_id": f"q{n}", "user_id": value["user_id"], "type": "search",
                      "query": titles[(7 * n) % len(titles)].lower(), "ts": value["ts"] - 1000,
                      "session_id": value.get("session_id")}  # fmt: skip
            out.append(("events", key, search))
        if kind == "events" and value:
            last_ts = value["ts"]
        out.append((kind, key, value))
    return out, n


def lists(bootstrap: str, out: dict) -> tuple[dict, int]:
    """{(trigger_event_id, trigger): [(partition, offset, record), ...]} of the run's committed
    output (markers left out), and the number of dead letters."""
    got: dict = {}
    dead = 0
    for topic in (out["recs"], out["dlq"]):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
        try:
            for msg in topics.read_to_end(consumer, topic, timeout=120):
                if topic == out["dlq"]:
                    dead += 1
                    continue
                if msg.value() is None:
                    continue
                rec = json.loads(msg.value())
                if rec["user_id"].startswith((END_USER, CLOSER)):
                    continue
                key = (rec["trigger_event_id"], rec["trigger"])
                got.setdefault(key, []).append((msg.partition(), msg.offset(), rec))
        finally:
            consumer.close()
    return got, dead


def comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "emitted_at"}


def test_switch_to_a_fine_tuned_model_mid_stream(
    kafka_bootstrap, tiny_model_dir, tiny_finetuned_model_dir, tmp_path
):
    model_a, model_b = tiny_model_dir, tiny_finetuned_model_dir
    id_a, id_b = (read_manifest(m)["model_id"] for m in (model_a, model_b))
    assert id_a != id_b and id_b.startswith("tiny-bert-ft-onnx-fp32@")
    records, searches = with_searches(
        evaluate.load_records(paths.sample_data_file(), max_events=EVENTS)
    )
    assert searches >= 5
    # the first half of the stream (cut before an event), then the rest with end markers
    events = [n for n, (kind, _, v) in enumerate(records) if kind == "events" and v]
    cut = events[len(events) // 2]
    first = [v for kind, _, v in records[:cut] if kind == "events" and v]
    tag = f"switch-{uuid.uuid4().hex[:6]}"
    names = {"events": f"{tag}-events", "items": f"{tag}-items"}
    topics.ensure_topics(kafka_bootstrap, {names["events"]: 2, names["items"]: 1},
                         compacted={names["items"]})  # fmt: skip
    replay.replay(records[:cut], kafka_bootstrap, names["events"], names["items"], progress=False)
    ids = {e["event_id"] for e in first if e["type"] in LIST_TYPES}
    part1 = Inputs(kafka_bootstrap, names["events"], names["items"], ids, cut)

    # A on the first half, stopped with a savepoint once its lists have come out (those of
    # events still held for event time, and the session ends, come after the switch)
    out = outputs(f"{tag}-run", kafka_bootstrap)
    (tmp_path / "run").mkdir()
    job = Job(kafka_bootstrap, part1, out, model_a, tmp_path / "run" / "a.log")
    try:
        watch(kafka_bootstrap, out,
              lambda seen, m, last: len(seen) >= len(ids) // 2 and time.monotonic() - last > 8,
              job)  # fmt: skip
    finally:
        rc = job.terminate()
    log = job.text()
    found = re.search(r"^savepoint: (\S+)$", log, re.M)
    assert rc == 0 and found, log[-3000:]

    # the stream goes on while the job is stopped
    inputs = write_inputs(records[cut:], kafka_bootstrap, JobConfig().session_gap_ms, tag)

    # the catalog embedded offline with B, from the items topic
    store = tmp_path / "embeddings"
    assert encode_catalog.main(["--from-topic", "--bootstrap-servers", kafka_bootstrap,
                                "--items-topic", inputs.items, "--store", str(store),
                                "--model", str(model_b), "--device", "cpu"]) == 0  # fmt: skip
    with_store = ["--embedding-store", str(store)]

    # resumed with B: the driver says it switches, the tasks re-embed before they score
    job = Job(kafka_bootstrap, inputs, out, model_b, tmp_path / "run" / "b.log",
              ["--from-savepoint", found.group(1), *with_store])  # fmt: skip
    try:
        watch(kafka_bootstrap, out, all_out, job)
    finally:
        job.terminate()
    log = job.text()
    assert "Traceback" not in log
    assert re.search(rf"^switching models: .* built with {re.escape(id_a)} .* runs "
                     rf"{re.escape(id_b)} .* vectors of the new model", log, re.M), log[-3000:]  # fmt: skip

    # the reference: a job that only ever ran B, on the whole stream
    ref_out = outputs(f"{tag}-ref", kafka_bootstrap)
    (tmp_path / "ref").mkdir()
    job = Job(kafka_bootstrap, inputs, ref_out, model_b, tmp_path / "ref" / "job.log", with_store)
    try:
        watch(kafka_bootstrap, ref_out, all_out, job)
    finally:
        job.terminate()
    reference, dead = lists(kafka_bootstrap, ref_out)
    assert reference and dead == 0

    got, dead = lists(kafka_bootstrap, out)
    assert dead == 0
    assert got.keys() == reference.keys()  # every list once, none lost
    assert all(len(v) == 1 for v in got.values())
    before = {k: v[0] for k, v in got.items() if v[0][2]["model"] == id_a}
    after = {k: v[0] for k, v in got.items() if v[0][2]["model"] == id_b}
    assert len(before) + len(after) == len(got)  # each list names A or B, nothing else
    assert before and after
    # on every partition, the lists of A come first, then those of B
    for p in {p for p, _, _ in got_values(got)}:
        last_a = max((o for q, o, _ in before.values() if q == p), default=-1)
        first_b = min((o for q, o, _ in after.values() if q == p), default=1 << 62)
        assert last_a < first_b, p
    # after the switch: exactly the lists of a job that only ever ran B
    changed = [k for k, (_, _, rec) in after.items()
               if comparable(rec) != comparable(reference[k][0][2])]  # fmt: skip
    assert not changed, (len(changed), len(after), changed[:5])
    # the switch came after some searches, and users searched before it were scored after it
    searched = {r[2]["user_id"] for k, r in before.items() if k[0].startswith("q")}
    assert searched & {r[2]["user_id"] for r in after.values()}


def got_values(got: dict) -> list:
    return [v for vs in got.values() for v in vs]
