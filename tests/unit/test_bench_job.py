"""The pure parts of `streamrec bench job`: figures, variant parsing and selection, record
splitting, issue 9's target checks, checkpoint sizes on disk, probes, process memory."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import figures, job_run, memory
from benchmarks import job as bench_job
from benchmarks.variants import (
    BUILTIN,
    LOOP_ALIGN,
    Variant,
    parse_aligns,
    parse_variant,
    select,
    split_parallelism,
)


# ---- figures ----------------------------------------------------------------------------------
def test_throughput_leaves_out_start_and_drain():
    # 100 lists: the first 10 slow (start-up), 80 at 100/s, the last 10 after a 10 s stall
    times = [1000.0 + 500 * i for i in range(10)]
    times += [times[-1] + 10 * (i + 1) for i in range(80)]
    times += [times[-1] + 10_000 + i for i in range(10)]
    t = figures.throughput({str(i): v for i, v in enumerate(times)}, started_ms=0.0)
    assert t["lists"] == 100
    assert t["startup_s"] == 1.0
    # steady: lists 10..89 (head 10 %, tail 10 %): 79 gaps of 10 ms
    assert t["lists_per_s"] == pytest.approx(100.0)
    assert t["steady_s"] == pytest.approx(0.79)
    assert t["lists_per_s_all"] < 10  # the stall and the start-up drag the whole-run rate down


def test_throughput_without_time_is_nan():
    assert math.isnan(figures.throughput({}, 0.0)["lists_per_s"])
    assert math.isnan(figures.throughput({"a": 5.0, "b": 5.0}, 0.0)["lists_per_s"])
    one = figures.throughput([7000.0], 1000.0)
    assert one["lists"] == 1 and one["startup_s"] == 6.0 and math.isnan(one["lists_per_s"])


def test_a_backlog_consumed_in_one_poll_is_timed_by_the_lists_emitted_at():
    ids = [str(i) for i in range(100)]
    consumed = dict.fromkeys(ids, 9000.0)  # all in one poll
    emitted = {k: 5000.0 + 2 * i for i, k in enumerate(ids)}  # one list every 2 ms
    t = figures.backlog_throughput(consumed, emitted, started_ms=1000.0)
    assert t["rate_clock"] == "emitted_at"
    assert t["lists_per_s"] == pytest.approx(500.0)
    assert t["startup_s"] == 8.0 and t["lists"] == 100  # start-up: when the first was consumed
    # consumed over time: the consumer's clock, whatever the lists say
    spread = {k: 9000.0 + 10 * i for i, k in enumerate(ids)}
    t = figures.backlog_throughput(spread, emitted, started_ms=1000.0)
    assert t["rate_clock"] == "consumed" and t["lists_per_s"] == pytest.approx(100.0)
    # a list without emitted_at: no rate rather than one from part of the lists
    partial = dict(list(emitted.items())[:50])
    t = figures.backlog_throughput(consumed, partial, started_ms=1000.0)
    assert t["rate_clock"] == "consumed" and math.isnan(t["lists_per_s"])


def test_percentiles_match_numpy():
    rng = np.random.default_rng(3)
    values = rng.exponential(100.0, size=997)
    stats = figures.latency_stats(values)
    for q in (50, 95, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(values, q))
    assert stats["n"] == 997 and stats["max"] == pytest.approx(values.max())
    assert math.isnan(figures.latency_stats([])["p99"])


def test_latencies_pair_by_event_id():
    produced = {"a": 100.0, "b": 200.0, "c": 300.0}
    consumed = {"a": 150.0, "c": 310.0, "x": 1.0}
    assert sorted(figures.latencies_ms(produced, consumed)) == [10.0, 50.0]


def test_paced_rate_is_a_share_of_the_lower_maximum():
    assert figures.paced_rate(0.5, 800.0) == 400.0  # no live rate measured
    assert figures.paced_rate(0.5, 800.0, 300.0) == 150.0  # live traffic sustains less
    assert figures.paced_rate(0.5, 800.0, 1000.0) == 400.0  # it kept up with the backlog rate
    assert figures.paced_rate(0.5, 800.0, float("nan")) == 400.0  # no rate measured live
    assert figures.paced_rate(0.5, 1.0) == 1.0  # at least one event a second


def test_ratios_are_to_the_baseline_in_the_same_alignment():
    runs = [
        {"variant": "old", "align": "event-time", "lists_per_s": 100.0},
        {"variant": "old", "align": "none", "lists_per_s": 200.0},
        {"variant": "new", "align": "event-time", "lists_per_s": 700.0},
        {"variant": "new", "align": "none", "lists_per_s": 1000.0},
        {"variant": "loop", "align": LOOP_ALIGN, "lists_per_s": 1500.0},
        {"variant": "broken", "align": "none", "error": "x"},
    ]
    figures.add_ratios(runs, "old")
    got = {(r["variant"], r["align"]): r["ratio"] for r in runs}
    assert got[("old", "event-time")] == 1.0 and got[("old", "none")] == 1.0
    assert got[("new", "event-time")] == 7.0 and got[("new", "none")] == 5.0
    assert got[("loop", LOOP_ALIGN)] == 15.0  # no baseline run in its alignment: the first one
    assert math.isnan(got[("broken", "none")])
    assert math.isnan(figures.ratio(1.0, 0.0)) and figures.ratio(3.0, 2.0) == 1.5


def test_table_aligns_columns_and_marks_missing_figures():
    rows = [{"name": "new", "x": 1234.5}, {"name": "old-job", "x": float("nan")}]
    text = figures.table(rows, [("variant", "name", ""), ("lists/s", "x", ",.0f")])
    lines = text.splitlines()
    assert lines[0].split() == ["variant", "lists/s"]
    assert lines[2].split() == ["new", "1,234"] and lines[3].split() == ["old-job", "-"]
    assert len({len(line) for line in lines}) == 1


# ---- variants -------------------------------------------------------------------------------
def test_parse_variant_with_and_without_runner():
    assert parse_variant("p2=--parallelism 2") == Variant("p2", "local", "--parallelism 2")
    assert parse_variant("old-none=old:--align none") == Variant("old-none", "old", "--align none")
    assert parse_variant("c=cluster:") == Variant("c", "cluster", "")
    assert parse_variant("defaults=") == Variant("defaults", "local", "")
    # a colon that is not after a runner name belongs to the flags
    assert parse_variant("k=--kafka-property a=b:c").flags == "--kafka-property a=b:c"
    for bad in ("no-equals", "=--align none", "a,b=--x", "q=--x 'unclosed"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_variant_parallelism_and_alignments():
    v = Variant("x", "cluster", "--parallelism 2 --execution-mode process")
    assert v.parallelism == 2 and v.job_args == ["--execution-mode", "process"]
    assert v.aligns(("event-time", "none")) == ("event-time", "none")
    assert Variant("y", "local", "--align none").aligns() == ("none",)
    assert Variant("l", "loop").aligns() == (LOOP_ALIGN,)
    assert split_parallelism("--parallelism=3") == (3, [])
    assert split_parallelism("") == (1, [])
    assert parse_aligns("none") == ("none",)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_aligns("event-time,sometimes")


def test_select_variants():
    names = [v.name for v in BUILTIN]
    assert names == ["old", "new", "process", "cluster-p1", "cluster-p2", "loop"]
    assert select(None, None) == list(BUILTIN)
    extra = [Variant("mine", "local", "--align none")]
    assert select(extra, None) == extra  # --variant alone: just those (as before)
    assert [v.name for v in select(extra, ["loop", "mine", "old"])] == ["loop", "mine", "old"]
    assert [v.name for v in select(extra, ["all"])] == names + ["mine"]
    assert select(extra, ["none"]) == []
    assert [v.name for v in select(None, ["loop", "all"])][:2] == ["loop", "old"]
    with pytest.raises(ValueError, match="unknown"):
        select(None, ["new", "nope"])
    with pytest.raises(ValueError, match="twice"):
        select([Variant("a"), Variant("a", "old")], None)
    # the built-in ones are what issue 9 asks for
    by = {v.name: v for v in BUILTIN}
    assert by["old"].runner == "old" and by["loop"].runner == "loop"
    assert by["process"].job_args == ["--execution-mode", "process"]
    assert (by["cluster-p1"].parallelism, by["cluster-p2"].parallelism) == (1, 2)


# ---- the benchmark's own pieces -------------------------------------------------------------
def test_parse_sizes():
    assert bench_job.parse_sizes("10000,100k,1M") == [10_000, 100_000, 1_000_000]
    assert bench_job.parse_sizes("none") == [] and bench_job.parse_sizes("2.5k") == [2500]
    for bad in ("ten", "-5", "1x"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench_job.parse_sizes(bad)


def _records(n_events: int) -> list:
    recs = []
    for i in range(n_events):
        if i % 3 == 0:
            recs.append(("items", f"i{i}", {"item_id": f"i{i}", "title": f"T {i}", "ts": i}))
        ev = {"event_id": f"e{i}", "user_id": f"u{i % 4}", "type": "purchase", "item_id": "i0"}
        recs.append(("events", f"u{i % 4}", {**ev, "ts": 1000 + i}))
    return recs


def test_split_records_keeps_items_with_their_events():
    recs = _records(10)
    backlog, rest = bench_job.split_records(recs, 4)
    assert [v["event_id"] for k, _, v in backlog if k == "events"] == ["e0", "e1", "e2", "e3"]
    assert backlog + rest == recs
    assert rest[0][0] == "events" and rest[0][2]["event_id"] == "e4"
    # the item before e6 goes with e6
    later, _ = bench_job.split_records(rest, 3)
    assert [k for k, _, _ in later] == ["events", "events", "items", "events"]
    assert bench_job.split_records(recs, 99) == (recs, [])


def test_list_event_ids_and_retime():
    recs = _records(3) + [("events", "u", {"event_id": "f", "user_id": "u", "type": "forget_user"})]
    assert job_run.list_event_ids(recs) == {"e0", "e1", "e2"}
    assert job_run.last_ts(recs) == 1002
    t0 = time.time() * 1000
    v = job_run.retimed({"event_id": "e", "ts": 5}, 1_000_000, t0)
    assert 1_000_000 <= v["ts"] < 1_000_000 + 5_000


def test_probe_records_move_event_time_past_the_first_probe():
    recs = _records(3)
    probes, first = job_run.probe_records(recs, 50_000)
    kinds = [k for k, _, _ in probes]
    assert kinds == ["events", "items", "events"]
    view = probes[0][2]
    assert view["event_id"] == first and view["ts"] == 50_000 and view["type"] == "view"
    assert view["user_id"] == "u0" and view["item_id"] == "i0"  # known user and item
    assert probes[1][2]["ts"] > 50_000 and probes[2][2]["ts"] > 50_000


def test_checkpoint_size_reads_the_newest_completed_checkpoint(tmp_path):
    job = tmp_path / "ckpt" / "0123abcd"
    (job / "shared").mkdir(parents=True)
    (job / "shared" / "sst").write_bytes(b"x" * 1024 * 1024)
    for n, size in ((1, 10), (2, 2 * 1024 * 1024), (3, 7)):
        (job / f"chk-{n}").mkdir()
        (job / f"chk-{n}" / "state").write_bytes(b"y" * size)
    (job / "chk-1" / "_metadata").write_bytes(b"m")
    (job / "chk-2" / "_metadata").write_bytes(b"m")  # chk-3 is still being written
    got = job_run.checkpoint_size(tmp_path / "ckpt", after=0.0, timeout=1)
    assert got["checkpoint"] == "chk-2"
    assert got["checkpoint_mib"] == pytest.approx(3.0, abs=0.01)
    assert job_run.checkpoint_size(tmp_path / "ckpt", after=time.time() + 60, timeout=0.1) == {
        "checkpoint": None
    }


def test_targets_from_the_figures_there():
    runs = [
        {"variant": "old", "align": "event-time", "lists_per_s": 100.0},
        {
            "variant": "new",
            "align": "event-time",
            "lists_per_s": 900.0,
            "latency_ms": {"p99": 900.0},
        },
        {"variant": "new", "align": "none", "lists_per_s": 1000.0, "latency_ms": {"p99": 400.0}},
        {"variant": "loop", "align": LOOP_ALIGN, "lists_per_s": 1500.0},
    ]
    cats = [
        {"size": 10_000, "lists_per_s": 800.0, "rss_jvm_mib_peak": 1000.0},
        {"size": 1_000_000, "lists_per_s": 200.0, "rss_jvm_mib_peak": 3000.0},
    ]
    got = {t["name"]: (t["value"], t["met"]) for t in bench_job.targets(runs, cats)}
    assert got["new / old lists/s (event-time, p1)"] == (9.0, True)
    assert got["new / loop lists/s (event-time)"] == (0.6, True)
    assert got["new p99 ms, --align none"] == (400.0, False)
    assert got["new p99 ms, event-time"] == (900.0, True)
    assert got["per-event cost 1,000,000 / 10,000 items"] == (4.0, False)
    assert got["memory per task MiB, 1,000,000 items"] == (3000.0, False)
    assert "thread / process lists/s" not in got  # no process run, no figure


# ---- memory ---------------------------------------------------------------------------------
def test_rss_by_role_follows_the_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for _ in range(50):  # until the child has exec'd python
            table = memory.process_table()
            if child.pid in table and table[child.pid][0].startswith("python"):
                break
            time.sleep(0.1)
        roles = memory.rss_by_role([os.getpid()], driver=os.getpid())
        assert roles["driver"] > 10 * memory.MIB
        assert roles["python_workers"] > 1 * memory.MIB  # the child, below the driver
        assert child.pid in memory.descendants(memory.process_table(), [os.getpid()])
        loop = memory.rss_by_role([child.pid], role_of_root="loop")
        assert set(loop) == {"loop"}
        hits = []
        sampler = memory.Sampler(
            lambda: ([os.getpid()], None, None), limit_bytes=1, on_limit=hits.append
        )
        sampler.sample()
        sampler.sample()
        assert len(hits) == 1 and hits[0] > 0  # called once
        assert sampler.peak_total >= hits[0]
    finally:
        child.kill()
        child.wait()
    assert memory.rss_by_role([child.pid]) == {}  # gone


def test_records_into_reads_the_reporters_labels():
    from streamrec import prometheus

    name = job_run.RECORDS_IN
    text = "\n".join(
        [
            "# TYPE x gauge",
            f'{name}{{job_name="bench_1_ab",operator_name="recommend",subtask_index="0",}} 700.0',
            f'{name}{{job_name="bench_1_ab",operator_name="recommend",subtask_index="1",}} 300.0',
            f'{name}{{job_name="bench_1_ab",operator_name="encode_items",subtask_index="0",}} 9.0',
            f'{name}{{job_name="other_job",operator_name="recommend",subtask_index="0",}} 5.0',
        ]
    )
    samples = prometheus.parse(text)
    assert job_run.prometheus_label("bench-1-ab") == "bench_1_ab"
    assert job_run.records_into(samples, "bench-1-ab") == 1000.0
    assert job_run.records_into(samples, "bench-1-ab", "encode-items") == 9.0
    assert job_run.records_into(samples, "nope") == 0.0
