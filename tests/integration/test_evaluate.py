"""`streamrec evaluate` end to end on a small slice: real broker, the real job (tiny model) and
one job variant, replay, every event's list consumed, warm-up before --score-from,
report.json / report.md / plots written."""

from __future__ import annotations

import json

import pytest

from streamrec import evaluate, paths

pytestmark = pytest.mark.integration

MAX_EVENTS = 300
SCORE_FROM = "2010-12-01 10:00"  # about the last third of the first 300 events


def test_evaluate_end_to_end_on_a_small_slice(kafka_bootstrap, tiny_model_dir, tmp_path):
    csv = paths.default_data_file()
    if not csv.exists():
        pytest.skip(f"no data file at {csv}")
    out = tmp_path / "report"
    rc = evaluate.main(
        [
            "--csv",
            str(csv),
            "--max-events",
            str(MAX_EVENTS),
            "--bootstrap-servers",
            kafka_bootstrap,
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--timeout",
            "600",
            "--no-progress",
            "--job-args",
            f"--checkpoint-interval 2000 --checkpoint-dir {tmp_path / 'ckpt'}",
            "--variant",
            "align-none=--align none",
            "--score-from",
            SCORE_FROM,
        ]
    )
    assert rc == 0, (out / "job.log").read_text(errors="replace")[-4000:]

    records = evaluate.load_records(csv, max_events=MAX_EVENTS)
    events = evaluate.events_of(records)
    assert sum(1 for e in events if e["type"] == "purchase") == MAX_EVENTS
    score_from = evaluate.parse_date(SCORE_FROM)
    n_scored = sum(1 for e in events if e["ts"] >= score_from)
    assert 0 < n_scored < MAX_EVENTS

    report = json.loads((out / "report.json").read_text())
    runs = {"job": report["job"], "align-none": report["variants"]["align-none"]}
    for name, run in runs.items():
        for level in ("event", "basket"):
            m = run[level]
            assert set(m) >= {"hr@10", "ndcg@10", "mrr@10", "n"}
            assert m["n"] == n_scored, name
            assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= 1.0
        split = run["event_split"]
        assert split["same_order"]["n"] + split["before_order"]["n"] == n_scored
        for segs in run["segments"].values():
            assert sum(s["basket"]["n"] for s in segs.values()) == n_scored
        # every event got its list, each matched to its trigger, in per-user order
        assert run["n_records"] >= MAX_EVENTS
        assert run["n_records_unmatched"] == 0
        assert run["n_records_out_of_user_order"] == 0
        assert run["n_purchases_warmup"] == MAX_EVENTS - n_scored
    assert report["run"]["model"].startswith("tiny-bert")
    assert report["run"]["job_flags"]["align"] == "event-time"
    assert report["variants"]["align-none"]["job_flags"]["align"] == "none"
    assert report["variants"]["align-none"]["flags"] == "--align none"
    assert report["variants"]["align-none"]["job_args"].endswith("--align none")
    assert report["run"]["settle"]["cut_by_timeout"] is False
    names = {"popularity", "recent_popularity", "repeat_history", "item_knn", "blend"}
    assert set(report["baselines"]) == names
    for r in report["baselines"].values():
        assert r["event"]["n"] == r["basket"]["n"] == n_scored
    assert set(report["best_baselines"]) == {"event", "basket"}
    lat = report["latency_ms"]
    assert lat["n"] == MAX_EVENTS
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert set(report["by_history"]) == {"1st", "2-5", "6+"}
    assert 0.0 <= report["coverage"] <= 1.0 and 0.0 <= report["fresh_share"] <= 1.0
    md = (out / "report.md").read_text()
    assert "| **job** |" in md and "| repeat_history |" in md and "| job align-none |" in md
    assert "## Job variants" in md and "align `event-time`" in md
    assert (out / "ndcg_per_week.png").stat().st_size > 0
    assert (out / "latency_cdf.png").stat().st_size > 0
