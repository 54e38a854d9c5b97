"""The real broker fixture, topic creation, replay and watch against it."""

from __future__ import annotations

import io
import json
import socket
import time

import numpy as np
import pytest

from streamrec import kafka_broker, paths, ports, replay, retail, topics, watch

pytestmark = pytest.mark.integration


def test_round_trip_keeps_per_key_order(kafka_bootstrap, topic_factory, produce, consume_until):
    topic = topic_factory("roundtrip", partitions=3)
    sent = [(f"u{i % 4}", {"n": i}) for i in range(40)] + [("u0", None), ("u1", b"\xff raw")]
    produce(kafka_bootstrap, topic, sent)
    got = consume_until(kafka_bootstrap, topic, len(sent), timeout=30)
    assert len(got) == len(sent)
    for user in ("u0", "u1", "u2", "u3"):
        mine = [r.value for r in got if r.key_str == user]
        assert mine == [
            v
            if v is None or isinstance(v, bytes)
            else json.dumps(v, separators=(",", ":")).encode()
            for k, v in sent
            if k == user
        ]
    # partitions are read in no fixed order, so take u0's first record, not got[0]
    key, value = next(r for r in got if r.key_str == "u0")  # unpacks as raw (key, value)
    assert (key, json.loads(value)) == (b"u0", {"n": 0})
    assert {r.partition for r in got} <= {0, 1, 2}


def test_compacted_topic(kafka_bootstrap, topic_factory):
    compacted = topic_factory("items", compacted=True)
    plain = topic_factory("events", partitions=2)
    assert topics.topic_config(kafka_bootstrap, compacted)["cleanup.policy"] == "compact"
    assert topics.topic_config(kafka_bootstrap, plain)["cleanup.policy"] == "delete"
    # idempotent: a second call creates nothing and leaves the partitions as they are
    assert topics.ensure_topics(kafka_bootstrap, {plain: 5, compacted: 1}) == []


def test_replay_then_watch(kafka_bootstrap, topic_factory, consume_until, produce):
    events, items, recs = (topic_factory(n, partitions=2) for n in ("ev", "it", "rec"))
    rows = retail.iter_retail_rows(paths.sample_data_file(), end="2010-12-02")
    records = list(retail.to_contract_records(retail.first_users(rows, 3)))
    counts = replay.replay(records, kafka_bootstrap, events, items, progress=False)
    n_events = sum(1 for r in records if r[0] == "events")
    assert counts["errors"] == 0 and counts["events"] == n_events > 0
    got = consume_until(kafka_bootstrap, events, n_events, timeout=30)
    assert {r.json["type"] for r in got} == {"purchase"}
    assert all(r.key_str == r.json["user_id"] for r in got)
    # per user, events keep their order
    for user in {r.key_str for r in got}:
        ids = [r.json["event_id"] for r in got if r.key_str == user]
        assert ids == [v["event_id"] for k, u, v in records if k == "events" and u == user]

    first = next(r for r in records if r[0] == "items")[2]
    rec = {
        "user_id": "17850",
        "trigger_event_id": "536365-1",
        "event_ts": first["ts"],
        "emitted_at": first["ts"] + 5,
        "model": "test@0",
        "items": [{"item_id": first["item_id"], "score": 0.9}],
    }
    produce(kafka_bootstrap, recs, [("17850", rec), ("17850", None)])
    out = io.StringIO()
    n = watch.watch(kafka_bootstrap, recs, items, from_beginning=True, max_records=2, out=out)
    text = out.getvalue()
    assert n == 2
    assert first["title"] in text and "0.900" in text and "forgotten" in text


def test_start_stop_restart_cleanly(tmp_path):
    """A second broker in its own data dir: start, restart on the same storage, clean stop."""
    port = ports.free_port()
    t0 = time.monotonic()
    bootstrap = kafka_broker.start(port, tmp_path, timeout=120)
    started = time.monotonic() - t0
    try:
        assert kafka_broker.status(tmp_path)["answering"]
        assert kafka_broker.start(port, tmp_path) == bootstrap  # idempotent
        with pytest.raises(kafka_broker.BrokerError, match="already runs"):
            kafka_broker.start(ports.free_port(), tmp_path)
        topics.ensure_topics(bootstrap, {"kept": 1})
    finally:
        assert kafka_broker.stop(tmp_path) is True
    assert not kafka_broker.status(tmp_path)["running"]
    assert kafka_broker.stop(tmp_path) is False  # idempotent
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    log = (tmp_path / "broker.log").read_text()
    assert "shut down completely" in log
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:5]

    # same storage, formatted once: it comes back with its topics
    kafka_broker.start(port, tmp_path, timeout=120)
    try:
        admin = topics.admin_client(bootstrap)
        assert "kept" in admin.list_topics(timeout=10).topics
        del admin
    finally:
        kafka_broker.stop(tmp_path)
    print(f"broker start: {started:.1f}s")


def test_start_refuses_a_busy_port(tmp_path):
    port = ports.free_port()
    with socket.socket() as blocker:  # the port is taken: start refuses with a clear error
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(kafka_broker.BrokerError, match="in use"):
            kafka_broker.start(port, tmp_path)


def test_encode_catalog_from_topic(
    kafka_bootstrap, topic_factory, produce, tiny_model_dir, tmp_path
):
    """The offline catalog encoder reads every item version from the topic (2 partitions) to its
    end, skips tombstones and invalid records, and stores one vector per distinct text."""
    from models.embedding_store import EmbeddingStore
    from models.encoder import Encoder
    from streamrec import encode_catalog

    items = topic_factory("items", partitions=2, compacted=True)
    produce(
        kafka_bootstrap,
        items,
        [
            ("1", {"title": "WHITE METAL LANTERN"}),
            ("2", {"title": "RED MUG", "category": "kitchen"}),
            ("1", {"title": "WHITE METAL LANTERN, LARGE"}),  # a new version: its text too
            ("3", None),  # removed: nothing to embed
            ("4", b"{not json"),
        ],
    )
    store = tmp_path / "store"
    args = ["--from-topic", "--items-topic", items, "--bootstrap-servers", kafka_bootstrap]
    args += ["--store", str(store), "--model", str(tiny_model_dir), "--device", "cpu"]
    assert encode_catalog.main(args) == 0
    texts = ["WHITE METAL LANTERN", "RED MUG . kitchen", "WHITE METAL LANTERN, LARGE"]
    enc = Encoder(tiny_model_dir, provider="cpu")
    with EmbeddingStore(store, enc.model_id, enc.dim) as s:
        assert len(s) == 3
        got = s.get_many(texts)
    for g, e in zip(got, enc.encode(texts), strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)


def test_read_to_end_passes_a_commit_marker(kafka_bootstrap, topic_factory):
    """A transactional producer's last offset is a control record no consumer receives;
    reading to the end must still finish (the position passes it)."""
    import uuid

    from confluent_kafka import Consumer, Producer

    topic = topic_factory("tx", partitions=2)
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(6):
        producer.produce(topic, key=f"k{i}", value=f"v{i}")
    producer.commit_transaction(30)
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"}
    )
    try:
        t0 = time.monotonic()
        got = sorted(m.value() for m in topics.read_to_end(consumer, topic, timeout=30))
        assert got == [f"v{i}".encode() for i in range(6)]
        assert time.monotonic() - t0 < 20
    finally:
        consumer.close()
