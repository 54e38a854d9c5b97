"""streamrec train-encoder --from-topics: the events and items topics give the same orders as the
file they were replayed from, plus query -> purchase pairs from search events."""

from __future__ import annotations

import json

import pytest

from models.testing import TINY_BERT_NAME, make_tiny_bert
from streamrec import paths, retail
from streamrec import train_encoder as te

pytestmark = pytest.mark.integration

RANGE = ("2010-12-01", "2010-12-03")
FAST = ["--steps", "4", "--batch-size", "8", "--max-length", "16", "-q"]


def test_train_from_topics_matches_the_file(kafka_bootstrap, topic_factory, produce, tmp_path):
    base = make_tiny_bert(tmp_path / TINY_BERT_NAME)
    rows = list(retail.iter_retail_rows(paths.sample_data_file(), start=RANGE[0], end=RANGE[1]))
    records = list(retail.to_contract_records(rows))
    items = topic_factory("items", partitions=2, compacted=True)
    events = topic_factory("events", partitions=2)
    produce(kafka_bootstrap, items, [(k, v) for t, k, v in records if t == "items"])
    purchases = [v for t, _, v in records if t == "events"]
    first = purchases[0]  # a search just before the first order, in its session
    search = {
        "event_id": "search-1",
        "user_id": first["user_id"],
        "type": "search",
        "query": "Lantern",
        "ts": first["ts"] - 1000,
        "session_id": first["session_id"],
    }
    produce(kafka_bootstrap, events, [(v["user_id"], v) for v in [search, *purchases]])

    out_csv, out_topics = tmp_path / "csv", tmp_path / "topics"
    common = ["--start", RANGE[0], "--end", RANGE[1], "--base", str(base), *FAST]
    csv = ["--csv", str(paths.sample_data_file())]
    assert te.main([*csv, "--out", str(out_csv), *common]) == 0
    topics = ["--from-topics", "--bootstrap-servers", kafka_bootstrap]
    topics += ["--events-topic", events, "--items-topic", items]
    assert te.main([*topics, "--out", str(out_topics), *common]) == 0

    from_csv = json.loads((out_csv / "run.json").read_text())["data"]
    from_topics = json.loads((out_topics / "run.json").read_text())["data"]
    for key in ("orders_train", "orders_validation", "items_with_text", "validation_from"):
        assert from_topics[key] == from_csv[key], key
    assert from_topics["searches"] == 1 and from_topics["pair_stats"]["pairs_query"] >= 1
    stats_csv, stats_topics = from_csv["pair_stats"], from_topics["pair_stats"]
    assert stats_topics["pairs_same-order"] == stats_csv["pairs_same-order"]
    lineage = json.loads((out_topics / "checkpoint" / "lineage.json").read_text())
    assert lineage["data"] == {
        "source": "topics",
        "bootstrap_servers": kafka_bootstrap,
        "events_topic": events,
        "items_topic": items,
    }
