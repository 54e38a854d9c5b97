"""`streamrec evaluate` end to end on a small slice: real broker, the real job (tiny model),
replay, every event's list consumed, report.json / report.md / plots written."""

from __future__ import annotations

import json

import pytest

from streamrec import evaluate, paths

pytestmark = pytest.mark.integration

MAX_EVENTS = 300


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
        ]
    )
    assert rc == 0, (out / "job.log").read_text(errors="replace")[-4000:]

    records = evaluate.load_records(csv, max_events=MAX_EVENTS)
    n_purchases = sum(1 for e in evaluate.events_of(records) if e["type"] == "purchase")
    assert n_purchases == MAX_EVENTS

    report = json.loads((out / "report.json").read_text())
    for level in ("event", "basket"):
        m = report["job"][level]
        assert set(m) >= {"hr@10", "ndcg@10", "mrr@10", "n"}
        assert m["n"] == n_purchases
        assert 0.0 <= m["ndcg@10"] <= m["hr@10"] <= 1.0
    # every event got its list, each matched to its trigger
    assert report["job"]["n_lists"] == MAX_EVENTS
    assert report["job"]["n_records_unmatched"] == 0
    assert report["run"]["model"].startswith("tiny-bert")
    names = {"popularity", "recent_popularity", "repeat_history", "item_knn", "blend"}
    assert set(report["baselines"]) == names
    for r in report["baselines"].values():
        assert r["event"]["n"] == r["basket"]["n"] == n_purchases
    lat = report["latency_ms"]
    assert lat["n"] == MAX_EVENTS
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert set(report["by_history"]) == {"1st", "2-5", "6+"}
    assert 0.0 <= report["coverage"] <= 1.0 and 0.0 <= report["fresh_share"] <= 1.0
    md = (out / "report.md").read_text()
    assert "| **job** |" in md and "| repeat_history |" in md
    assert (out / "ndcg_per_week.png").stat().st_size > 0
    assert (out / "latency_cdf.png").stat().st_size > 0


def test_job_benchmark_reports_each_variant(kafka_bootstrap, tiny_model_dir, tmp_path, capsys):
    """`streamrec bench job`: the real job from a real broker, two variants side by side."""
    import json

    from benchmarks import job as bench_job

    out = tmp_path / "job.json"
    rc = bench_job.main(
        [
            "--events", "600", "--bootstrap-servers", kafka_bootstrap,
            "--model", str(tiny_model_dir), "--json", str(out),
            "--variant", "event-time=", "--variant", "align-none=--align none",
        ]
    )  # fmt: skip
    assert rc == 0
    table = capsys.readouterr().out
    assert "lists/s" in table and "align-none" in table
    report = json.loads(out.read_text())
    assert report["events"] == 600
    rows = {r["variant"]: r for r in report["variants"]}
    assert set(rows) == {"event-time", "align-none"}
    for r in rows.values():
        assert r["lists"] > 500 and r["lists_per_s"] > 0 and r["startup_s"] > 0
    assert rows["event-time"]["ratio_vs_first"] == 1.0


def test_job_benchmark_variant_flags():
    import math

    from benchmarks import job as bench_job

    assert bench_job.split_parallelism("--parallelism 2 --align none") == (2, ["--align", "none"])
    assert bench_job.split_parallelism("--parallelism=3") == (3, [])
    assert bench_job.split_parallelism("") == (1, [])
    t = bench_job.throughput({"a": 1000.0, "b": 2000.0, "c": 3000.0}, started_ms=0.0)
    assert t == {"lists": 3, "lists_per_s": 1.0, "startup_s": 1.0, "steady_s": 2.0}
    assert math.isnan(bench_job.throughput({"a": 5.0, "b": 5.0}, 0.0)["lists_per_s"])
