"""The real job graph (jobs.recommend.pipeline: parse, encode, broadcast world, keyed profile
and ranking, dead letters) on the local Flink mini-cluster, fed from bounded collections of raw
Kafka rows that go through the same JVM keying and timing as the Kafka source's records."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from pyflink.common import Row
from pyflink.datastream import StreamExecutionEnvironment

from jobs.config import JobConfig
from jobs.recommend import RAW_ROW, environment, keyed_records, pipeline

pytestmark = pytest.mark.pipeline

ITEMS = {
    "85123A": "WHITE HANGING HEART T-LIGHT HOLDER",
    "71053": "WHITE METAL LANTERN",
    "84406B": "CREAM CUPID HEARTS COAT HANGER",
    "22752": "SET 7 BABUSHKA NESTING BOXES",
    "21730": "GLASS STAR FROSTED T-LIGHT HOLDER",
    "22633": "HAND WARMER UNION JACK",
}


def raw(topic, offset, key, value):
    data = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
    return Row(topic, 0, offset, 0, key.encode() if key else None, data)


def item_rows():
    rows = [
        raw("items", i, k, {"item_id": k, "title": t, "price": 1.0, "ts": 0})
        for i, (k, t) in enumerate(ITEMS.items())
    ]
    rows.append(raw("items", 100, "bad", b"{broken json"))
    return rows


def bare_cfg(model_dir, tmp_path, parallelism: int = 1, **kw) -> JobConfig:
    """A config for a partial graph: no checkpoints, no restarts."""
    return JobConfig(
        model=str(model_dir),
        parallelism=parallelism,
        checkpoint_interval_ms=0,
        restart_attempts=0,
        checkpoint_dir=str(tmp_path / "ckpt"),
        **kw,
    )


def timed_items(env, cfg, rows):
    """Raw item rows -> parsed (id, item) pairs with event time, as the job's catalog branch
    starts."""
    from pyflink.common.typeinfo import Types

    from operators.functions import ParseItems

    keyed = keyed_records(env.from_collection(rows, type_info=RAW_ROW), cfg, "items")
    return keyed.process(ParseItems(cfg.max_future_ms), output_type=Types.PICKLED_BYTE_ARRAY())


def _entry(row):
    """(item_id, embedding bytes) of an encoder output row (kind "item", id, pickled entry)."""
    from operators.world_store import decode_item_update

    _model, entry = decode_item_update(row[2])
    return entry.item_id, entry.embedding


def event_rows():
    rows, n = [], 0
    users = ["17850", "13047", "12583"]
    for step in range(4):
        for u in users:
            item = list(ITEMS)[(step + len(u)) % len(ITEMS)]
            etype = ["view", "click", "add_to_cart", "purchase"][step]
            rows.append(
                raw(
                    "events",
                    n,
                    u,
                    {
                        "event_id": f"{u}-{step}",
                        "user_id": u,
                        "type": etype,
                        "item_id": item,
                        "ts": 1_291_000_000_000 + step * 60_000,
                    },
                )
            )
            n += 1
    rows.append(
        raw(
            "events",
            n,
            "17850",
            {
                "event_id": "17850-q",
                "user_id": "17850",
                "type": "search",
                "query": "lantern",
                "ts": 1_291_000_400_000,
            },
        )
    )
    rows.append(raw("events", n + 1, None, b"not json at all"))
    rows.append(
        raw(
            "events",
            n + 2,
            "13047",
            {"event_id": "x", "user_id": "13047", "type": "levitate", "ts": 1},
        )
    )
    rows.append(
        raw(
            "events",
            n + 3,
            "12583",
            {
                "event_id": "12583-f",
                "user_id": "12583",
                "type": "forget_user",
                "ts": 1_291_000_500_000,
            },
        )
    )
    return rows


@pytest.mark.parametrize(
    "parallelism,mode", [(1, "thread"), (2, "thread"), (1, "process")], ids=lambda v: str(v)
)
def test_job_graph_on_minicluster(tiny_model_dir, tmp_path, parallelism, mode):
    cfg = JobConfig(
        model=str(tiny_model_dir),
        parallelism=parallelism,
        execution_mode=mode,
        top_k=4,
        checkpoint_dir=str(tmp_path / "ckpt"),
        checkpoint_interval_ms=1000,
        restart_attempts=0,
    )
    env: StreamExecutionEnvironment = environment(cfg)
    items = keyed_records(env.from_collection(item_rows(), type_info=RAW_ROW), cfg, "items")
    events = keyed_records(env.from_collection(event_rows(), type_info=RAW_ROW), cfg, "events")
    recs, dead = pipeline(items, events, cfg)
    # collected as pickled Python tuples (PyFlink's Row collection cannot carry a null byte[])
    collected = recs.union(dead).map(lambda r: (r[0], r[1]))
    with collected.execute_and_collect() as results:
        out = list(results)

    records = [json.loads(v) for k, v in out if k is not None and v is not None]
    lists = [r for r in records if r["trigger"] == "event"]
    session_ends = [r for r in records if r["trigger"] == "session_end"]
    tombstones = [k.decode() for k, v in out if k is not None and v is None]
    dead_letters = [json.loads(v) for k, v in out if k is None]

    valid = [json.loads(r[5]) for r in event_rows()[:13]]
    scored = [e for e in valid if e["type"] != "forget_user"]
    # one list per accepted scored event, nothing for invalid ones
    assert sorted(r["trigger_event_id"] for r in lists) == sorted(e["event_id"] for e in scored)
    # the contract's fields; only catalog items, best first, at most K
    for r in records:
        assert {"user_id", "trigger_event_id", "event_ts", "emitted_at", "model", "items"} <= set(r)
        assert r["model"].startswith("tiny-bert-onnx-fp32@")
        assert len(r["items"]) <= 4
        assert {i["item_id"] for i in r["items"]} <= set(ITEMS)
        assert all(i["reason"] for i in r["items"])
        scores = [i["score"] for i in r["items"]]
        assert scores == sorted(scores, reverse=True)
    # the end of the input closes every remaining session: one list for the next visit per user
    # still known (the forgotten user has none), triggered by their last event; no refreshes
    # (event time ends with the input)
    assert not [r for r in session_ends if "refresh" in r]
    last = {e["user_id"]: e["event_id"] for e in valid if e["type"] != "forget_user"}
    del last["12583"]
    assert sorted((r["user_id"], r["trigger_event_id"]) for r in session_ends) == sorted(
        last.items()
    )
    # forget_user -> tombstone keyed by the user
    assert tombstones == ["12583"]
    # dead letters: bad JSON and unknown type on events, broken item; with source coordinates
    assert sorted((d["source_topic"], d["offset"]) for d in dead_letters) == [
        ("events", 13),
        ("events", 14),
        ("items", 100),
    ]
    assert all(d["error"] for d in dead_letters)
    if parallelism == 1:
        # a single ordered source: per-user order of lists follows the user's events
        by_user = defaultdict(list)
        for r in lists:
            by_user[r["user_id"]].append(r["trigger_event_id"])
        for u, ids in by_user.items():
            assert ids == [e["event_id"] for e in scored if e["user_id"] == u]


def test_catalog_is_embedded_in_batches(tiny_model_dir, tmp_path):
    """A few thousand real catalog items go through the encoder operator in batches (the sizes it
    used are also logged and published as the encoderBatchSize metric)."""
    from itertools import islice

    from operators.batching import batch_size_summary, bucket_of
    from operators.functions import EncodeItems
    from streamrec import paths, retail

    class EncodeItemsWithBatchSize(EncodeItems):
        def _row(self, value, vector):
            return value[1].item_id, self.last_batch_size

    items = {}
    for kind, key, value in retail.to_contract_records(
        retail.iter_retail_rows(paths.sample_data_file())
    ):
        if kind == "items" and key not in items:
            items[key] = value
    chosen = dict(islice(items.items(), 2000))
    rows = [raw("items", n, k, v) for n, (k, v) in enumerate(chosen.items())]
    cfg = bare_cfg(tiny_model_dir, tmp_path)
    env = environment(cfg)
    encoded = (
        timed_items(env, cfg, rows)
        .key_by(lambda v: bucket_of(v[1].item_id, 4))
        .process(EncodeItemsWithBatchSize(str(tiny_model_dir), "cpu", 64, 50))
    )
    with encoded.execute_and_collect() as results:
        got = list(results)
    assert sorted(i for i, _ in got) == sorted(chosen)
    sizes = [n for _, n in got]
    summary = batch_size_summary(sizes)
    print("batch size each item was encoded in:", summary)
    assert max(sizes) > 1  # records that were waiting went to the model together
    assert sum(1 for n in sizes if n >= 16) > len(sizes) / 2  # most items in sizeable batches


def test_catalog_bootstraps_from_the_embedding_store(tiny_model_dir, tmp_path):
    """With --embedding-store, items whose text the store holds for this model get the stored
    vector (the encoder is not asked), the others are encoded; two tasks read the store at once."""
    import numpy as np

    from models.embedding_store import EmbeddingStore
    from models.encoder import Encoder
    from operators.batching import bucket_of
    from operators.events import Item
    from operators.functions import EncodeItems

    enc = Encoder(tiny_model_dir, provider="cpu")
    texts = {k: Item(k, t).text() for k, t in ITEMS.items()}
    stored = list(ITEMS)[:3]
    sentinels = np.eye(len(stored), enc.dim, dtype=np.float32)  # nothing the model would say
    with EmbeddingStore(tmp_path / "store", enc.model_id, enc.dim, read_only=False) as s:
        s.put_many([texts[k] for k in stored], sentinels)

    cfg = bare_cfg(tiny_model_dir, tmp_path, 2, embedding_store=str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit, match="no RocksDB store there"):
        pipeline(None, None, cfg)  # checked on the client, before anything is submitted

    env = environment(cfg)
    valid = [r for r in item_rows() if r[4] != b"bad"]  # dead letters are the job's business
    timed = timed_items(env, cfg, valid)
    encoded = (
        timed.key_by(lambda v: bucket_of(v[1].item_id, 8))
        .process(
            EncodeItems(str(tiny_model_dir), "cpu", 64, 50, store_path=str(tmp_path / "store"))
        )
        .map(lambda row: _entry(row))
    )
    with encoded.execute_and_collect() as results:
        got = {k: np.frombuffer(v, dtype="<f4") for k, v in results}
    assert set(got) == set(ITEMS)
    for k, vec in zip(stored, sentinels, strict=True):
        np.testing.assert_array_equal(got[k], vec)
    fresh = [k for k in ITEMS if k not in stored]
    for k, vec in zip(fresh, enc.encode([texts[k] for k in fresh]), strict=True):
        np.testing.assert_allclose(got[k], vec, atol=1e-5)
