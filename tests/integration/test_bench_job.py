"""`streamrec bench job` end to end on a tiny backlog: the new job and the plain-loop reference
side by side on one real broker (tiny model), every figure in the JSON."""

from __future__ import annotations

import json

import pytest

from benchmarks import job as bench_job
from streamrec import paths

pytestmark = pytest.mark.integration

EVENTS = 300
LIVE = 200
PACED = 150


def test_job_benchmark_two_variants(kafka_bootstrap, tiny_model_dir, tmp_path, capsys):
    if not paths.default_data_file().exists():
        pytest.skip("no Online Retail file")
    out = tmp_path / "bench.json"
    rc = bench_job.main(
        [
            "--events", str(EVENTS), "--live-events", str(LIVE), "--paced-events", str(PACED),
            "--only", "new,loop", "--align-modes", "none",
            "--bootstrap-servers", kafka_bootstrap, "--model", str(tiny_model_dir),
            "--embedding-store", str(tmp_path / "store"), "--out", str(tmp_path / "logs"),
            "--timeout", "300", "--json", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed[-3000:]
    assert "lists/s" in printed and "new / loop lists/s (none)" in printed
    report = json.loads(out.read_text())
    assert report["events"] == EVENTS and report["paced_events"] == PACED
    assert report["live_events"] == LIVE
    runs = {(r["variant"], r["align"]): r for r in report["runs"]}
    assert set(runs) == {("new", "none"), ("loop", "-")}
    for r in runs.values():
        assert "error" not in r, r.get("error")
        assert r["lists"] == EVENTS and r["lists_per_s"] > 0 and r["startup_s"] > 0
        assert r["rate_clock"] in ("consumed", "emitted_at")
        lat = r["latency_ms"]
        assert lat["n"] == PACED and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["paced_rate"] > 0 and r["paced_tail_events"] >= 0
        # the tail's events are spaced on the clock (so that event time moves on), not sent at
        # once
        assert r["paced_tail_s"] >= 0.09 * (r["paced_tail_events"] - 1)
        # the live probe: its events' lists came in, and the paced rate is half the lower rate
        assert r["live_events"] == LIVE and r["settle_s"] >= 2.0
        live = r["live_lists_per_s"]
        top = min(r["lists_per_s"], live) if live > 0 else r["lists_per_s"]
        assert r["paced_rate"] == pytest.approx(max(1.0, 0.5 * top), abs=0.1)
    new, loop = runs[("new", "none")], runs[("loop", "-")]
    assert new["ratio"] == 1.0  # the baseline: the first variant (no old one here)
    assert loop["ratio"] == pytest.approx(loop["lists_per_s"] / new["lists_per_s"])
    assert new["rss_jvm_mib_peak"] > 100 and new["rss_driver_mib_peak"] > 10
    assert loop["rss_loop_mib_peak"] > 10 and "rss_jvm_mib_peak" not in loop
    assert {t["name"] for t in report["targets"]} >= {"new / loop lists/s (none)"}
    assert report["catalogs"] == []


def test_job_benchmark_catalog_size(kafka_bootstrap, tiny_model_dir, tmp_path):
    """One small synthetic catalog: loaded, backlog, checkpoint, savepoint and restore."""
    if not paths.default_data_file().exists():
        pytest.skip("no Online Retail file")
    out = tmp_path / "bench.json"
    rc = bench_job.main(
        [
            "--catalog-sizes", "300", "--catalog-embeddings", "exact", "--events", "200",
            "--catalog-flags", "--checkpoint-interval 2000",
            "--bootstrap-servers", kafka_bootstrap, "--model", str(tiny_model_dir),
            "--embedding-store", str(tmp_path / "store"), "--out", str(tmp_path / "logs"),
            "--timeout", "300", "--json", str(out),
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert rc == 0, report
    assert report["runs"] == []
    (cat,) = report["catalogs"]
    assert "error" not in cat and "restore_error" not in cat, cat
    assert cat["size"] == 300 and cat["embeddings"] == "exact"
    assert cat["lists"] == 200 and cat["lists_per_s"] > 0 and cat["catalog_load_s"] > 0
    assert cat["checkpoint_mib"] > 0 and cat["savepoint_mib"] > 0
    assert cat["restore_s"] > 0 and cat["rss_jvm_mib_peak"] > 100
