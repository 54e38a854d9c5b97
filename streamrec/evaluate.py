"""`streamrec evaluate`: replay real history through the real job, score what it emitted.

    streamrec evaluate [--csv FILE] [--sample | --weeks W | --max-events N]
                       [--bootstrap-servers B] [--model M] [--out DIR] [--parallelism 1]
                       [--timeout S] [--rate R] [--baselines-only]

1. Reads the Online Retail file (``streamrec.retail``) as contract records: items on first
   appearance, one ``purchase`` event per valid line, in event-time order.
2. Creates fresh, uniquely named topics (on ``--bootstrap-servers``, or on a private broker
   started for the run on a free port under the runtime dir and stopped afterwards).
3. Starts the job (``python -m jobs.recommend``, earliest offsets), replays the records (as fast
   as possible, or ``--rate`` events/s) while consuming ``recommendations`` (and the DLQ). It is
   done when every accepted event has produced its list (``trigger_event_id`` of every replayed
   event seen; dead-lettered events are subtracted). No sleeps: it fails after ``--timeout``
   seconds, or as soon as the job exits, with the job's log tail.
4. Stops the job (SIGTERM to its process group, then SIGKILL), deletes the topics.
5. Scores the job's lists with the contract's prequential protocol
   (``streamrec.evaluation``), runs the baselines (``streamrec.baselines``) on the same event
   stream, and writes ``report.json``, ``report.md`` and PNG plots into ``--out``.

Latency: the produce time of an event is the Kafka ``CreateTime`` the producer stamped when
``produce()`` was called (read back from the events topic); the consume time of a list is the
wall clock when this command's consumer received it. ``latency_ms`` is their difference, i.e.
end to end from produce. With the default maximum-speed replay the events are produced in bulk
while the job starts and works through the backlog, so these numbers mostly measure queueing
(backlog / throughput), not per-event processing; use ``--rate`` below the job's throughput to
measure steady-state latency. ``job_latency_ms`` uses the job's own ``emitted_at`` instead of
the consume time. With ``--delivery exactly-once`` lists become visible at checkpoints, which
adds up to one checkpoint interval.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streamrec import paths

K = 10
SAMPLE_WEEKS = 3.0
WEEK_MS = 7 * 24 * 3600 * 1000
LIST_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "search"})

Record = tuple[str, str, dict | None]


# ---- input ----------------------------------------------------------------------------------
def load_records(
    csv: Path,
    weeks: float | None = None,
    max_events: int | None = None,
    start: str | None = None,
    end: str | None = None,
) -> list[Record]:
    """Contract records of the file, cut after ``weeks`` of event time or ``max_events`` events.

    Items precede the first event naming them, so cutting the stream anywhere keeps it whole.
    """
    from streamrec import retail

    recs = retail.to_contract_records(retail.iter_retail_rows(csv, start=start, end=end))
    return list(cut_records(recs, weeks=weeks, max_events=max_events))


def cut_records(
    records: Iterable[Record], weeks: float | None = None, max_events: int | None = None
) -> Iterator[Record]:
    first_ts = None
    n = 0
    for rec in records:
        kind, _key, value = rec
        if kind == "events" and value is not None:
            if max_events is not None and n >= max_events:
                return
            ts = value.get("ts")
            if weeks is not None and ts is not None:
                if first_ts is None:
                    first_ts = ts
                elif ts >= first_ts + weeks * WEEK_MS:
                    return
            n += 1
        yield rec


def events_of(records: Iterable[Record]) -> list[dict]:
    return [v for k, _, v in records if k == "events" and v is not None]


def item_first_seen(records: Iterable[Record]) -> dict[str, int]:
    first: dict[str, int] = {}
    for kind, key, value in records:
        if kind == "items" and value is not None:
            first.setdefault(value.get("item_id", key), int(value.get("ts") or 0))
    return first


# ---- the job run ----------------------------------------------------------------------------
class EvaluationError(RuntimeError):
    pass


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def job_command(
    bootstrap: str,
    topics: dict[str, str],
    group: str,
    model: str | None,
    parallelism: int,
    k: int,
    extra: list[str],
) -> list[str]:
    from jobs.config import job_command as command

    return command(
        bootstrap_servers=bootstrap,
        events_topic=topics["events"],
        items_topic=topics["items"],
        output_topic=topics["recs"],
        dlq_topic=topics["dlq"],
        group_id=group,
        start_from="earliest",
        parallelism=parallelism,
        top_k=k,
        model=model or None,
    ) + list(extra)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group we started, SIGKILL it after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_job(
    records: list[Record],
    bootstrap: str,
    out: Path,
    model: str | None = None,
    parallelism: int = 1,
    partitions: int = 1,
    k: int = K,
    timeout: float = 1800,
    rate: float | None = None,
    job_args: list[str] | None = None,
    keep_topics: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Replay ``records`` through the job; return its lists and timings.

    Returns ``{"lists": {trigger_event_id: (user_id, (item_id, ...))}, "consumed_ms": {...},
    "emitted_ms": {...}, "produced_ms": {...}, "dlq": n, "model": str, "replay": {...},
    "topics": {...}, "seconds": {...}}``.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from tqdm import tqdm

    from streamrec import replay as replay_mod
    from streamrec import topics as topics_mod

    run_id = f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    names = {
        "events": f"{run_id}-events",
        "items": f"{run_id}-items",
        "recs": f"{run_id}-recommendations",
        "dlq": f"{run_id}-dlq",
    }
    parts = {"events": partitions, "items": 1, "recs": partitions, "dlq": 1}
    topics_mod.ensure_topics(
        bootstrap, {names[n]: p for n, p in parts.items()}, compacted={names["items"]}
    )
    expected = {
        v["event_id"]
        for kind, _, v in records
        if kind == "events" and v is not None and v.get("type") in LIST_EVENT_TYPES
    }
    remaining = set(expected)
    lists: dict[str, tuple[str, tuple[str, ...]]] = {}
    consumed_ms: dict[str, float] = {}
    emitted_ms: dict[str, float] = {}
    produced_ms: dict[str, float] = {}
    intern: dict[str, str] = {}
    model_name = None
    n_dlq = n_dup = 0
    seconds: dict[str, float] = {}
    log_path = out / "job.log"
    out.mkdir(parents=True, exist_ok=True)

    cmd = job_command(
        bootstrap,
        names,
        f"{run_id}-job",
        model,
        parallelism,
        k,
        list(job_args or []),
    )
    (out / "job.cmd").write_text(shlex.join(cmd) + "\n")
    t0 = time.monotonic()
    log = log_path.open("wb")
    job = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=paths.PROJECT_ROOT,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{run_id}-evaluator",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": False,
        }
    )
    replay_result: dict[str, Any] = {}
    replay_error: list[BaseException] = []

    def _replay() -> None:
        try:
            replay_result.update(
                replay_mod.replay(
                    records,
                    bootstrap,
                    names["events"],
                    names["items"],
                    rate=rate,
                    progress=False,
                )
            )
            seconds["replay"] = round(time.monotonic() - t0, 3)
        except BaseException as e:  # surfaced in the main thread
            replay_error.append(e)

    events_pos = {p: -1 for p in range(partitions)}

    def handle(msg, now: float) -> None:
        nonlocal model_name, n_dup, n_dlq
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return
            raise EvaluationError(f"consumer error: {msg.error()}")
        topic = msg.topic()
        raw = msg.value()
        if topic == names["recs"]:
            if raw is None:
                return
            rec = json.loads(raw)
            tid = str(rec.get("trigger_event_id"))
            ids = tuple(
                intern.setdefault(it["item_id"], it["item_id"]) for it in rec.get("items") or ()
            )
            if tid in lists:
                n_dup += 1
            else:
                consumed_ms[tid] = now
                if rec.get("emitted_at") is not None:
                    emitted_ms[tid] = float(rec["emitted_at"])
            lists[tid] = (str(rec.get("user_id")), ids)
            model_name = rec.get("model", model_name)
            if tid in remaining:
                remaining.discard(tid)
                bar.update(1)
        elif topic == names["events"]:
            events_pos[msg.partition()] = msg.offset()
            ts_type, ts = msg.timestamp()
            if raw is not None and ts_type == 1:  # TIMESTAMP_CREATE_TIME
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    produced_ms[str(json.loads(raw)["event_id"])] = float(ts)
        else:  # dead letters: events that will never get a list
            n_dlq += 1
            with contextlib.suppress(ValueError, KeyError, TypeError):
                eid = str(json.loads(json.loads(raw)["raw"])["event_id"])
                if eid in remaining:
                    remaining.discard(eid)
                    bar.update(1)

    replayer = threading.Thread(target=_replay, name="evaluate-replay", daemon=True)
    try:
        consumer.assign(
            [TopicPartition(names["recs"], p, -2) for p in range(partitions)]  # -2: beginning
            + [TopicPartition(names["events"], p, -2) for p in range(partitions)]
            + [TopicPartition(names["dlq"], 0, -2)]
        )
        replayer.start()
        deadline = t0 + timeout
        bar = tqdm(
            total=len(expected),
            unit="list",
            desc="job lists",
            disable=not progress,
            file=sys.stderr,
            mininterval=2.0,
        )
        while remaining:
            if replay_error:
                raise EvaluationError(f"replay failed: {replay_error[0]!r}")
            if job.poll() is not None:
                raise EvaluationError(
                    f"the job exited with code {job.returncode} before emitting every list "
                    f"({len(remaining)} of {len(expected)} missing); log {log_path}:\n"
                    f"{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise EvaluationError(
                    f"timeout after {timeout:.0f}s: {len(remaining)} of {len(expected)} events "
                    f"still without a list; log {log_path}:\n{_tail(log_path)}"
                )
            msgs = consumer.consume(1000, 0.5)
            now = time.time() * 1000.0
            for msg in msgs:
                handle(msg, now)
        bar.close()
        seconds["lists"] = round(time.monotonic() - t0, 3)
        replayer.join(60)
        # read the rest of the events topic for produce times (the lists may all be in first)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(names["events"], p), timeout=10)[1]
            for p in range(partitions)
        }
        drain_deadline = time.monotonic() + 120
        while any(events_pos[p] + 1 < ends[p] for p in ends):
            if time.monotonic() > drain_deadline:
                break
            for msg in consumer.consume(1000, 0.5):
                handle(msg, time.time() * 1000.0)
    finally:
        consumer.close()
        stop_process(job)
        log.close()
        seconds["total"] = round(time.monotonic() - t0, 3)
        if not keep_topics:
            with contextlib.suppress(Exception):
                topics_mod.delete_topics(bootstrap, list(names.values()))
    return {
        "lists": lists,
        "consumed_ms": consumed_ms,
        "emitted_ms": emitted_ms,
        "produced_ms": produced_ms,
        "dlq": n_dlq,
        "duplicates": n_dup,
        "model": model_name,
        "replay": replay_result,
        "topics": names,
        "seconds": seconds,
        "job_log": str(log_path),
    }


# ---- report ---------------------------------------------------------------------------------
def _metrics_row(name: str, r: dict[str, Any], k: int = K) -> str:
    e, b = r["event"], r["basket"]
    return (
        f"| {name} | {e[f'hr@{k}']:.4f} | {e[f'ndcg@{k}']:.4f} | {e[f'mrr@{k}']:.4f} | "
        f"{b[f'hr@{k}']:.4f} | {b[f'ndcg@{k}']:.4f} | {b[f'mrr@{k}']:.4f} | {e['n']} | "
        f"{r['coverage']:.3f} | {r['fresh_share']:.3f} |"
    )


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    return {
        key: r[key]
        for key in (
            "event",
            "basket",
            "coverage",
            "fresh_share",
            "by_history",
            "weekly",
            "recommended_items",
            "catalog_size",
            "n_lists",
            "n_empty_lists",
            "n_purchases_without_list",
            "n_records",
            "n_records_unmatched",
        )
        if key in r
    }


def best_baseline(baselines: dict[str, dict[str, Any]], k: int = K) -> str | None:
    if not baselines:
        return None
    return max(baselines, key=lambda n: baselines[n]["event"][f"ndcg@{k}"])


def write_markdown(report: dict[str, Any], path: Path, k: int = K) -> None:
    run = report["run"]
    lines = [
        "# streamrec evaluation",
        "",
        f"Data: `{run['csv']}` ({run['events']} purchase events, {run['items']} items"
        + (f", first {run['weeks']} weeks" if run.get("weeks") else "")
        + (f", first {run['max_events']} events" if run.get("max_events") else "")
        + f"). Model: `{run.get('model')}`. K = {k}. Prequential protocol of CONTRACT.md.",
        "",
        f"| recommender | event HR@{k} | event NDCG@{k} | event MRR@{k} | basket HR@{k} | "
        f"basket NDCG@{k} | basket MRR@{k} | n | coverage | fresh share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if report.get("job"):
        lines.append(_metrics_row("**job**", report["job"], k))
    for name, r in report["baselines"].items():
        lines.append(_metrics_row(name, r, k))
    lines += [
        "",
        "- event level: each purchase line against the user's latest list before it; basket "
        "level: every line of an invoice against the list in force before its first line; a "
        "purchase with no earlier list is a miss.",
        "- coverage: distinct items in emitted lists / items in the catalog; fresh share: lists "
        "holding an item first seen in the 24 h (event time) before the trigger event.",
        "",
        f"## NDCG@{k} by user history (orders before this one: 1st, 2-5, 6+)",
        "",
        "| recommender | " + " | ".join(f"{b} (n)" for b in ("1st", "2-5", "6+")) + " |",
        "|---|---|---|---|",
    ]
    rows = ([("**job**", report["job"])] if report.get("job") else []) + list(
        report["baselines"].items()
    )
    for name, r in rows:
        cells = []
        for b in ("1st", "2-5", "6+"):
            e = r["by_history"][b]["event"]
            cells.append(f"{e[f'ndcg@{k}']:.4f} ({e['n']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lat = report.get("latency_ms")
    if lat and lat.get("n"):
        jl = report.get("job_latency_ms") or {}
        lines += [
            "",
            "## Latency (ms): event produced -> its list",
            "",
            "| measure | p50 | p95 | p99 | max | n |",
            "|---|---|---|---|---|---|",
            f"| produce -> consumed by evaluator | {lat['p50']:.0f} | {lat['p95']:.0f} | "
            f"{lat['p99']:.0f} | {lat['max']:.0f} | {lat['n']} |",
        ]
        if jl.get("n"):
            lines.append(
                f"| produce -> emitted_at (job) | {jl['p50']:.0f} | {jl['p95']:.0f} | "
                f"{jl['p99']:.0f} | {jl['max']:.0f} | {jl['n']} |"
            )
        rate = run.get("rate")
        lines += [
            "",
            "Produce time = the producer's CreateTime. "
            + (
                f"Events were replayed at {rate}/s."
                if rate
                else "Events were replayed at maximum speed while the job started, so these "
                "numbers are dominated by the backlog (queueing), not per-event processing."
            ),
        ]
    if run.get("seconds"):
        lines += ["", f"Timings (s): `{json.dumps(run['seconds'])}`"]
    plots = report.get("plots") or {}
    if plots:
        lines += [""] + [f"![{n}]({p})" for n, p in plots.items()]
    path.write_text("\n".join(lines) + "\n")


def write_plots(
    report: dict[str, Any], out: Path, latencies: Any = None, k: int = K
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots: dict[str, str] = {}
    series = []
    if report.get("job"):
        series.append(("job", report["job"]["weekly"]))
    best = best_baseline(report["baselines"], k)
    if best:
        series.append((f"{best} (best baseline)", report["baselines"][best]["weekly"]))
    if series:
        fig, ax = plt.subplots(figsize=(9, 4))
        for name, weekly in series:
            weeks = list(weekly)
            ax.plot(weeks, [weekly[w][f"ndcg@{k}"] for w in weeks], marker="o", ms=3, label=name)
        ax.set_ylabel(f"NDCG@{k} (event level)")
        ax.set_xlabel("ISO week of the purchase")
        ax.set_title(f"NDCG@{k} per week")
        ax.legend()
        ax.tick_params(axis="x", labelrotation=70, labelsize=7)
        fig.tight_layout()
        fig.savefig(out / "ndcg_per_week.png", dpi=110)
        plt.close(fig)
        plots["NDCG per week"] = "ndcg_per_week.png"
    if latencies is not None and len(latencies):
        a = np.sort(np.asarray(latencies, dtype=float))
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(a, np.arange(1, a.size + 1) / a.size)
        ax.set_xscale("symlog")
        ax.set_xlabel("produce -> list consumed (ms)")
        ax.set_ylabel("share of lists")
        ax.set_title("Latency CDF")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "latency_cdf.png", dpi=110)
        plt.close(fig)
        plots["Latency CDF"] = "latency_cdf.png"
    return plots


# ---- CLI ------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrec evaluate", description=__doc__.split("\n")[0].strip("`: ")
    )
    p.add_argument("--csv", type=Path, default=paths.default_data_file())
    p.add_argument(
        "--sample", action="store_true", help=f"first {SAMPLE_WEEKS:g} weeks of the file only"
    )
    p.add_argument("--weeks", type=float, default=None, help="first W weeks of event time")
    p.add_argument("--max-events", type=int, default=None, help="first N events only")
    p.add_argument("--start", default=None, help="first InvoiceDate (YYYY-MM-DD), inclusive")
    p.add_argument("--end", default=None, help="last InvoiceDate (YYYY-MM-DD), exclusive")
    p.add_argument(
        "--bootstrap-servers",
        default=None,
        help="use this broker (default: start a private one on a free port for the run)",
    )
    p.add_argument("--model", default=None, help="encoder for the job (default: the job's)")
    p.add_argument("--out", type=Path, default=None, help="default reports/eval-<timestamp>")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--partitions", type=int, default=1, help="partitions of events/recs topics")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for the job's lists")
    p.add_argument("--rate", type=float, default=None, help="replay events/s (default: max)")
    p.add_argument("--top-k", type=int, default=K)
    p.add_argument("--half-life-days", type=float, default=7.0, help="recent popularity")
    p.add_argument(
        "--job-args", default="", help="extra flags for the job, one shell-quoted string"
    )
    p.add_argument("--keep-topics", action="store_true")
    p.add_argument("--baselines-only", action="store_true", help="no Kafka, no job")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from streamrec import baselines as bl
    from streamrec import evaluation as ev

    k = args.top_k
    weeks = SAMPLE_WEEKS if args.sample and args.weeks is None else args.weeks
    out = args.out or paths.PROJECT_ROOT / "reports" / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    if not Path(args.csv).exists():
        print(f"streamrec evaluate: no such file {args.csv}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    records = load_records(args.csv, weeks, args.max_events, args.start, args.end)
    events = events_of(records)
    first_seen = item_first_seen(records)
    n_purchases = sum(1 for e in events if e.get("type") == "purchase")
    print(
        f"evaluate: {len(events)} events ({n_purchases} purchases), {len(first_seen)} items "
        f"from {args.csv}",
        file=sys.stderr,
    )
    seconds = {"read": round(time.monotonic() - t0, 3)}
    run_info: dict[str, Any] = {
        "csv": str(args.csv),
        "weeks": weeks,
        "max_events": args.max_events,
        "events": len(events),
        "purchases": n_purchases,
        "items": len(first_seen),
        "k": k,
        "rate": args.rate,
        "parallelism": args.parallelism,
        "baselines_only": args.baselines_only,
        "history_buckets": "orders of the user before this purchase's order: 0 -> 1st, "
        "1-4 -> 2-5, 5+ -> 6+",
        "latency": "producer CreateTime of the event -> wall clock when the evaluator consumed "
        "its list (end to end from produce)",
    }
    report: dict[str, Any] = {"job": None, "baselines": {}, "latency_ms": None}
    latencies = None

    if not args.baselines_only:
        from streamrec import kafka_broker

        stack = contextlib.ExitStack()
        with stack:
            bootstrap = args.bootstrap_servers
            if bootstrap is None:
                data_dir = paths.runtime_dir() / f"evaluate-{os.getpid()}-{int(time.time())}"
                stack.callback(shutil.rmtree, data_dir, True)  # runs after the broker stops
                bootstrap = stack.enter_context(
                    kafka_broker.running_broker(kafka_broker.free_port(), data_dir)
                )
            run_info["bootstrap"] = bootstrap
            try:
                res = run_job(
                    records,
                    bootstrap,
                    out,
                    model=args.model,
                    parallelism=args.parallelism,
                    partitions=args.partitions,
                    k=k,
                    timeout=args.timeout,
                    rate=args.rate,
                    job_args=shlex.split(args.job_args),
                    keep_topics=args.keep_topics,
                    progress=not args.no_progress,
                )
            except EvaluationError as e:
                print(f"streamrec evaluate: {e}", file=sys.stderr)
                return 1
        seconds.update({f"job_{n}": s for n, s in res["seconds"].items()})
        t1 = time.monotonic()
        job = ev.score_records(
            events,
            (
                {"user_id": u, "trigger_event_id": t, "items": ids}
                for t, (u, ids) in res["lists"].items()
            ),
            items=first_seen,
            k=k,
        )
        latencies = ev.latencies_ms(res["produced_ms"], res["consumed_ms"])
        report["job"] = _slim(job)
        report["latency_ms"] = ev.latency_stats(latencies)
        report["job_latency_ms"] = ev.latency_stats(
            ev.latencies_ms(res["produced_ms"], res["emitted_ms"])
        )
        seconds["score_job"] = round(time.monotonic() - t1, 3)
        run_info.update(
            model=res["model"],
            topics=res["topics"],
            replay=res["replay"],
            dlq=res["dlq"],
            duplicate_lists=res["duplicates"],
            job_log=res["job_log"],
        )

    t1 = time.monotonic()
    base = bl.run_baselines(
        records,
        bl.default_baselines(k, half_life_days=args.half_life_days),
        k=k,
        progress=not args.no_progress,
        total=len(records),
    )
    seconds["baselines"] = round(time.monotonic() - t1, 3)
    report["baselines"] = {name: _slim(r) for name, r in base.items()}
    if report["job"]:
        report["coverage"] = report["job"]["coverage"]
        report["fresh_share"] = report["job"]["fresh_share"]
        report["by_history"] = report["job"]["by_history"]
    run_info["seconds"] = seconds
    run_info["best_baseline"] = best_baseline(report["baselines"], k)
    report["run"] = run_info
    report["plots"] = write_plots(report, out, latencies, k)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "report.md", k)
    print((out / "report.md").read_text())
    print(f"evaluate: report in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
