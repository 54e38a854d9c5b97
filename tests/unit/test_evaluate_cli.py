"""`streamrec evaluate` without Kafka: job flags in the report, variants, --score-from, and the
report files from --baselines-only on the committed sample."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest

from streamrec import evaluate, paths
from streamrec.baselines import default_baselines, run_baselines
from streamrec.evaluation import score_records


def cmd(*extra):
    topics = {"events": "e", "items": "i", "recs": "r", "dlq": "d"}
    return evaluate.job_command("localhost:1", topics, "g", None, 1, 10, list(extra))


def test_job_flags_default_command():
    flags = evaluate.job_flags(cmd())
    assert flags["align"] == "event-time" and flags["parallelism"] == 1
    assert flags["ablate"] is None and flags["ranking_config"] is None
    assert flags["other"] == {}  # topics, broker and group are plumbing


def test_job_flags_ablation_ranking_config_and_other_flags(tmp_path):
    config = tmp_path / "ranking.json"
    config.write_text('{"weights": {"content": 0.2}}')
    flags = evaluate.job_flags(
        cmd("--align", "none", "--ablate", "content,repeat", f"--ranking-config={config}")
        + ["--max-wait", "500", "--model", "tiny"]
    )
    assert flags["align"] == "none" and flags["model"] == "tiny"
    assert flags["ablate"] == "content,repeat"
    assert flags["ranking_config"] == str(config)
    assert flags["ranking_config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()[:12]
    assert flags["other"] == {"max_wait_ms": 500}
    assert (
        evaluate.job_flags(cmd("--ranking-config", "no/such.json"))["ranking_config_sha256"] is None
    )


def test_settle_waits_for_a_checkpoint_with_exactly_once():
    assert evaluate.default_settle([]) == 5.0
    assert evaluate.default_settle(["--delivery", "exactly-once"]) == 5.0 + 10.0
    ex = ["--delivery", "exactly-once", "--checkpoint-interval", "2000"]
    assert evaluate.default_settle(ex, base=1.0) == 3.0


def test_variants():
    assert evaluate.job_variants(False, None) == []
    assert evaluate.job_variants(True, [("w", "--ranking-config w.json")]) == [
        ("no-content", "--ablate content"),
        ("no-collaborative", "--ablate collaborative"),
        ("no-repeat", "--ablate repeat"),
        ("no-trending", "--ablate trending"),
        ("w", "--ranking-config w.json"),
    ]
    with pytest.raises(ValueError, match="unique"):
        evaluate.job_variants(True, [("no-repeat", "")])
    with pytest.raises(argparse.ArgumentTypeError):
        evaluate.parse_variant("no-equals-sign")


def test_score_from_dates():
    assert evaluate.parse_date("2011-03-01") == 1_298_937_600_000
    assert evaluate.parse_date("2011-03-01 12:30") == 1_298_937_600_000 + 45_000_000
    with pytest.raises(argparse.ArgumentTypeError, match="not a date"):
        evaluate.parse_date("March")
    with pytest.raises(SystemExit):
        evaluate.main(["--baselines-only", "--score-from", "March"])
    assert evaluate.main(["--baselines-only", "--ablations"]) == 2


def test_baselines_only_report_on_the_sample(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["--csv", str(paths.sample_data_file()), "--max-events", "3000", "--out", str(out)]
    rc = evaluate.main([*argv, "--baselines-only", "--score-from", "2010-12-02", "--no-progress"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["job"] is None and report["run"]["score_from"] == 1_291_248_000_000
    records = evaluate.load_records(paths.sample_data_file(), max_events=3000)
    events = evaluate.events_of(records)
    late = [e for e in events if e["ts"] >= 1_291_248_000_000]
    assert 0 < len(late) < len(events) and report["run"]["purchases_warmup"] == len(events) - len(
        late
    )
    for name, r in report["baselines"].items():
        assert r["event"]["n"] == r["basket"]["n"] == len(late), name
        split = r["event_split"]
        assert split["same_order"]["n"] + split["before_order"]["n"] == len(late)
        for fam, segs in r["segments"].items():
            for level in ("event", "basket"):
                assert sum(s[level]["n"] for s in segs.values()) == len(late), (fam, level)
    best = report["best_baselines"]
    for level in ("event", "basket"):
        ndcg = {n: r[level]["ndcg@10"] for n, r in report["baselines"].items()}
        assert ndcg[best[level]["ndcg@10"]] == max(ndcg.values())
    md = (out / "report.md").read_text()
    assert md == capsys.readouterr().out.rstrip("\n") + "\n"
    for heading in ("## Both levels", "## Event level by where", "## Segments"):
        assert heading in md
    assert "Job: not run" in md and "Scored: purchases from 2010-12-02 00:00 UTC" in md
    assert "| n (purchases) |" in md and "| item_knn |" in md


def test_markdown_with_job_and_variants(tmp_path):
    """The job, a variant that ran and one that failed, beside the baselines."""
    records = evaluate.load_records(paths.sample_data_file(), max_events=1500)
    events = evaluate.events_of(records)
    results = run_baselines(records, default_baselines(10))
    knn = []
    for b in default_baselines(10):
        if b.name == "item_knn":
            knn = [
                {"user_id": e["user_id"], "trigger_event_id": e["event_id"], "items": b.update(e)}
                for e in events
            ]
    job = evaluate._slim(score_records(events, knn))
    report = {
        "job": job,
        "variants": {
            "no-content": dict(job, flags="--ablate content"),
            "no-repeat": {"flags": "--ablate repeat", "error": "the job exited with code 2"},
        },
        "baselines": {n: evaluate._slim(r) for n, r in results.items()},
        "latency_ms": None,
        "run": {
            "csv": "x.csv",
            "events": len(events),
            "items": 10,
            "model": "tiny@0",
            "job_flags": evaluate.job_flags(cmd("--ablate", "content")),
        },
    }
    report["best_baselines"] = evaluate.best_baselines(report["baselines"])
    evaluate.write_markdown(report, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "| **job** |" in md and "| job no-content |" in md
    assert "ablate `content`" in md and "model `tiny@0`" in md
    assert "Job / best baseline, NDCG@10: event level 1.00x (item_knn)" in md
    assert "| no-content | `--ablate content` | " in md and "(+0.0000)" in md
    assert "| no-repeat | `--ablate repeat` | failed: the job exited with code 2" in md


def test_event_ids_of_the_data_are_unique_and_checked(tmp_path):
    records = evaluate.load_records(paths.sample_data_file())
    assert evaluate.duplicate_event_ids(evaluate.events_of(records)) == []
    events = [{"event_id": "536365-1"}, {"event_id": "536365-7"}, {"event_id": "536365-1"}]
    assert evaluate.duplicate_event_ids(events) == ["536365-1"]
