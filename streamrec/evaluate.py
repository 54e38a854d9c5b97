"""`streamrec evaluate`: replay real history through the real job, score what it emitted.

    streamrec evaluate [--csv FILE] [--sample | --weeks W | --max-events N] [--start D] [--end D]
                       [--score-from DATE] [--bootstrap-servers B] [--model M] [--out DIR]
                       [--parallelism 1] [--timeout S] [--settle S] [--rate R]
                       [--job-args FLAGS] [--ablations] [--variant NAME=FLAGS ...]
                       [--baselines-only]

1. Reads the Online Retail file (``streamrec.retail``) as contract records: items on first
   appearance, one ``purchase`` event per valid line, in event-time order.
2. Creates fresh, uniquely named topics (on ``--bootstrap-servers``, or on a private broker
   started for the run on a free port under the runtime dir and stopped afterwards).
3. Starts the job (``python -m jobs.recommend``, earliest offsets, plus ``--job-args``), replays
   the records (as fast as possible, or ``--rate`` events/s) while consuming ``recommendations``
   (and the DLQ). No sleeps: it fails after ``--timeout`` seconds, or as soon as the job exits,
   with the job's log tail. **When it stops waiting**:

   a. every accepted event has its per-event list (a record with that ``trigger_event_id`` and
      ``"trigger": "event"`` or no ``trigger``; dead-lettered events are subtracted), and then
   b. the ``recommendations`` topic has been quiet for ``--settle`` seconds (default 5, plus the
      checkpoint interval with ``--delivery exactly-once``, where lists appear at checkpoints).

   Why this is enough: a ``session_end`` list can only be in force for a purchase that comes
   after its trigger in the user's event order, i.e. for a user who has a later event. The job
   emits a user's records in that user's event order, keyed by user, so on one partition the
   session-end list of a session comes before the per-event list of the user's next event: (a)
   has them all. Session-end lists that arrive after (a) are those of sessions still open when
   the input ended; they replace lists that no purchase is scored against, and (b) only
   collects them for the list statistics. Sessions that never close in event time (the
   watermark stops at the last event) need no list. ``n_records_out_of_user_order`` in the
   report counts records that broke the per-user order (redeliveries after a restart, or a job
   that emits session ends late): when it is not 0 the order argument does not hold for that
   run and the quiet period is what collected them.
4. Stops the job (SIGTERM to its process group, then SIGKILL), deletes the topics.
5. With ``--ablations`` (and per ``--variant NAME=FLAGS``) runs the job once more per variant on
   the same records and broker (``--ablate content``, ``collaborative``, ``repeat``,
   ``trending``; ``--job-args`` go to every run), and scores each beside the full job.
6. Scores the job's lists with the contract's prequential protocol
   (``streamrec.evaluation``), runs the baselines (``streamrec.baselines``) on the same event
   stream through the same scorer, and writes ``report.json``, ``report.md`` and PNG plots into
   ``--out``: both levels side by side, the event level split by whether the list in force came
   from the same order, segments (history length, items first seen in the last 7 days, repeat
   vs new-to-user items) at both levels, the best baseline per column (none is picked by one
   level), the job's flags (alignment, ablation, ranking config and its sha256, model).
   ``--score-from DATE`` warms everything up on the events before DATE and scores only the
   purchases from DATE on.

Latency: the produce time of an event is the Kafka ``CreateTime`` the producer stamped when
``produce()`` was called (read back from the events topic); the consume time of a list is the
wall clock when this command's consumer received it. ``latency_ms`` is their difference, i.e.
end to end from produce. With the default maximum-speed replay the events are produced in bulk
while the job starts and works through the backlog, so these numbers mostly measure queueing
(backlog / throughput), not per-event processing; use ``--rate`` below the job's throughput to
measure steady-state latency. ``job_latency_ms`` uses the job's own ``emitted_at`` instead of
the consume time. With ``--delivery exactly-once`` lists become visible at checkpoints, which
adds up to one checkpoint interval. Only per-event lists count in latency.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from datetime import datetime, timezone
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


def duplicate_event_ids(events: Iterable[dict]) -> list[str]:
    """Event ids that occur more than once (ids are matched as strings, never assumed to be
    contiguous or ordered)."""
    seen: set[str] = set()
    dup: list[str] = []
    for e in events:
        eid = str(e.get("event_id"))
        if eid in seen:
            dup.append(eid)
        seen.add(eid)
    return dup


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


# plumbing flags of a run: not what decides the lists
_RUN_FLAGS = frozenset(
    {
        "bootstrap_servers",
        "events_topic",
        "items_topic",
        "output_topic",
        "dlq_topic",
        "group_id",
        "start_from",
        "checkpoint_dir",
        "kafka_properties",
        "jars",
        "python_executable",
        "job_name",
    }
)


def _flag_values(args: list[str]) -> dict[str, Any]:
    """``--a-b V`` / ``--a-b=V`` / ``--flag`` -> ``{"a_b": "V", "flag": True}`` (last one wins)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("--"):
            continue
        name, eq, value = tok[2:].partition("=")
        if not eq:
            if i < len(args) and not args[i].startswith("--"):
                value = args[i]
                i += 1
            else:
                value = True
        out[name.replace("-", "_")] = value
    return out


def _file_digest(path: str) -> str | None:
    p = Path(path)
    if not p.is_absolute():
        p = paths.PROJECT_ROOT / p  # the job runs in the project root
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def job_flags(cmd: list[str]) -> dict[str, Any]:
    """What decides the job's lists, read back from its command line (as in ``job.cmd``).

    ``align``, ``model``, ``ablate`` (None: nothing ablated), ``ranking_config`` (path) and its
    ``ranking_config_sha256`` (prefix; None if the file cannot be read here), ``parallelism``,
    ``top_k``, ``delivery``, ``checkpoint_interval_ms``, and ``other``: every other flag that is
    not plumbing (topics, broker, group) and differs from the job's default.
    """
    from jobs.config import parser as job_parser

    args = cmd[3:] if cmd[1:3] == ["-m", "jobs.recommend"] else cmd[1:]
    p = job_parser()
    p.exit_on_error = False
    try:
        ns, unknown = p.parse_known_args(args)
        parsed = vars(ns)
    except (argparse.ArgumentError, SystemExit):
        parsed, unknown = {}, args
    defaults = vars(p.parse_known_args([])[0])
    values = {**parsed, **_flag_values(unknown)}  # flags the job's parser does not know (yet)
    ablate = values.get("ablate")
    if isinstance(ablate, list | tuple | set):
        ablate = ",".join(str(a) for a in ablate)
    ranking = values.get("ranking_config")
    main_keys = (
        "align",
        "model",
        "parallelism",
        "top_k",
        "delivery",
        "checkpoint_interval_ms",
    )
    flags: dict[str, Any] = {key: values.get(key, defaults.get(key)) for key in main_keys}
    flags["ablate"] = ablate or None
    flags["ranking_config"] = str(ranking) if ranking else None
    flags["ranking_config_sha256"] = _file_digest(str(ranking)) if ranking else None
    skip = set(main_keys) | _RUN_FLAGS | {"ablate", "ranking_config"}
    flags["other"] = {
        key: (str(v) if isinstance(v, Path) else v)
        for key, v in values.items()
        if key not in skip and (key not in defaults or v != defaults[key])
    }
    return flags


def default_settle(job_args: list[str], base: float = 5.0) -> float:
    """Quiet seconds to wait after the last per-event list: ``base``, plus the checkpoint
    interval when lists only become visible at checkpoints (``--delivery exactly-once``)."""
    flags = job_flags(["python", "-m", "jobs.recommend", *job_args])
    if flags.get("delivery") == "exactly-once":
        return base + float(flags.get("checkpoint_interval_ms") or 0) / 1000.0
    return base


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
    settle: float | None = None,
) -> dict[str, Any]:
    """Replay ``records`` through the job; return its lists and timings.

    Waits for every accepted event's per-event list, then until the output has been quiet for
    ``settle`` seconds (default :func:`default_settle`); see the module doc for why.

    Returns ``{"records": [(user_id, trigger_event_id, trigger, (item_id, ...)), ...]`` (every
    list in arrival order, redeliveries included), ``"consumed_ms"``, ``"emitted_ms"`` (per-event
    lists: trigger_event_id -> first arrival), ``"produced_ms"``, ``"dlq"``, ``"duplicates"``,
    ``"session_end_lists"``, ``"bad_records"``, ``"reasons"`` (``{"items", "with_reason"}``),
    ``"model"``, ``"replay"``, ``"topics"``, ``"seconds"``, ``"settle"``, ``"job_log"``,
    ``"cmd"``}``.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from tqdm import tqdm

    from streamrec import replay as replay_mod
    from streamrec import topics as topics_mod
    from streamrec.evaluation import list_key

    job_args = list(job_args or [])
    if settle is None:
        settle = default_settle(job_args)
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
        str(v["event_id"])
        for kind, _, v in records
        if kind == "events" and v is not None and v.get("type") in LIST_EVENT_TYPES
    }
    remaining = set(expected)
    got: list[tuple[str, str, str, tuple[str, ...]]] = []
    keys: set[tuple[str, str]] = set()
    consumed_ms: dict[str, float] = {}
    emitted_ms: dict[str, float] = {}
    produced_ms: dict[str, float] = {}
    intern: dict[str, str] = {}
    model_name = None
    n_dlq = n_dup = n_session_end = n_bad = n_items = n_reason = 0
    seconds: dict[str, float] = {}
    log_path = out / "job.log"
    out.mkdir(parents=True, exist_ok=True)

    cmd = job_command(bootstrap, names, f"{run_id}-job", model, parallelism, k, job_args)
    (out / "job.cmd").write_text(shlex.join(cmd) + "\n")
    t0 = time.monotonic()
    last_list = t0
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

    def handle_list(raw: bytes, now: float) -> None:
        nonlocal model_name, n_dup, n_session_end, n_bad, n_items, n_reason, last_list
        last_list = time.monotonic()
        try:
            rec = json.loads(raw)
            tid, trigger, _ = key = list_key(rec)
            items = rec.get("items") or ()
            ids = tuple(intern.setdefault(it["item_id"], it["item_id"]) for it in items)
            n_reason += sum(1 for it in items if it.get("reason"))
        except (ValueError, KeyError, TypeError, AttributeError):
            n_bad += 1
            return
        n_items += len(ids)
        if key in keys:  # a refreshed list is a new one (its key holds the refresh number)
            n_dup += 1
        keys.add(key)
        got.append((str(rec.get("user_id")), tid, trigger, ids))
        model_name = rec.get("model", model_name)
        if trigger != "event":
            n_session_end += 1
            return
        if tid not in consumed_ms:
            consumed_ms[tid] = now
            if rec.get("emitted_at") is not None:
                emitted_ms[tid] = float(rec["emitted_at"])
        if tid in remaining:
            remaining.discard(tid)
            bar.update(1)

    def handle(msg, now: float) -> None:
        nonlocal n_dlq
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return
            raise EvaluationError(f"consumer error: {msg.error()}")
        topic = msg.topic()
        raw = msg.value()
        if topic == names["recs"]:
            if raw is not None:
                handle_list(raw, now)
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

    def poll() -> None:
        msgs = consumer.consume(1000, 0.5)
        now = time.time() * 1000.0
        for msg in msgs:
            handle(msg, now)

    replayer = threading.Thread(target=_replay, name="evaluate-replay", daemon=True)
    settle_info: dict[str, Any] = {"quiet_s": settle, "cut_by_timeout": False}
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
        while remaining:  # (a) every accepted event's per-event list
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
            poll()
        bar.close()
        seconds["lists"] = round(time.monotonic() - t0, 3)
        n_before_settle = len(got)
        replayer.join(60)
        # (b) the output quiet for `settle` s; also read the rest of the events topic for
        # produce times (the lists may all be in first)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(names["events"], p), timeout=10)[1]
            for p in range(partitions)
        }
        drain_deadline = time.monotonic() + 120
        while True:
            now_m = time.monotonic()
            drained = now_m > drain_deadline or all(events_pos[p] + 1 >= ends[p] for p in ends)
            if drained and now_m - last_list >= settle:
                break
            if now_m > deadline:
                settle_info["cut_by_timeout"] = True
                break
            poll()
        settle_info["lists_after_per_event_lists"] = len(got) - n_before_settle
        seconds["settle"] = round(time.monotonic() - t0 - seconds["lists"], 3)
    finally:
        consumer.close()
        stop_process(job)
        log.close()
        seconds["total"] = round(time.monotonic() - t0, 3)
        if not keep_topics:
            with contextlib.suppress(Exception):
                topics_mod.delete_topics(bootstrap, list(names.values()))
    return {
        "records": got,
        "consumed_ms": consumed_ms,
        "emitted_ms": emitted_ms,
        "produced_ms": produced_ms,
        "dlq": n_dlq,
        "duplicates": n_dup,
        "session_end_lists": n_session_end,
        "bad_records": n_bad,
        "reasons": {"items": n_items, "with_reason": n_reason},
        "model": model_name,
        "replay": replay_result,
        "topics": names,
        "seconds": seconds,
        "settle": settle_info,
        "job_log": str(log_path),
        "cmd": cmd,
    }


def score_run(
    res: dict[str, Any],
    events: list[dict],
    first_seen: dict[str, int],
    k: int = K,
    score_from: int | None = None,
) -> dict[str, Any]:
    """Score one job run's lists (:func:`run_job`'s result) with the prequential protocol."""
    from streamrec import evaluation as ev

    return ev.score_records(
        events,
        (
            {"user_id": u, "trigger_event_id": t, "trigger": trig, "items": ids}
            for u, t, trig, ids in res["records"]
        ),
        items=first_seen,
        k=k,
        score_from=score_from,
    )


# ---- report ---------------------------------------------------------------------------------
METRICS = ("hr", "ndcg", "mrr")
LEVELS = ("event", "basket")
ABLATIONS = ("content", "collaborative", "repeat", "trending")
SEGMENT_LABELS = {
    ("history", "1st"): "1st order",
    ("history", "2-5"): "2-5",
    ("history", "6+"): "6+",
    ("item_age", "first_seen_7d"): "item first seen < 7 d",
    ("item_age", "older"): "older item",
    ("repeat", "repeat"): "repeat item",
    ("repeat", "new_to_user"): "new to user",
}


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    return {
        key: r[key]
        for key in (
            "event",
            "basket",
            "event_split",
            "segments",
            "by_history",
            "coverage",
            "fresh_share",
            "weekly",
            "recommended_items",
            "catalog_size",
            "n_lists",
            "n_session_end_lists",
            "n_empty_lists",
            "n_purchases_without_list",
            "n_purchases_without_basket_list",
            "n_purchases_warmup",
            "n_records",
            "n_records_duplicate",
            "n_records_refreshed",
            "n_records_unmatched",
            "n_records_out_of_user_order",
        )
        if key in r
    }


def best_baselines(baselines: dict[str, dict[str, Any]], k: int = K) -> dict[str, dict[str, str]]:
    """The best baseline per column: ``{level: {"ndcg@10": name, ...}}`` (ties: first listed).

    There is no single best baseline: event and basket level are picked separately."""
    if not baselines:
        return {}
    return {
        level: {
            f"{m}@{k}": max(baselines, key=lambda n, c=f"{m}@{k}": baselines[n][level][c])
            for m in METRICS
        }
        for level in LEVELS
    }


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(label, result, is_baseline) for the job, its variants that ran, and every baseline."""
    rows: list[tuple[str, dict[str, Any], bool]] = []
    if report.get("job"):
        rows.append(("**job**", report["job"], False))
    for name, v in (report.get("variants") or {}).items():
        if v.get("event"):
            rows.append((f"job {name}", v, False))
    rows += [(name, r, True) for name, r in report["baselines"].items()]
    return rows


def _best_value(report: dict[str, Any], get) -> float | None:
    vals = [get(r) for r in report["baselines"].values()]
    return max(vals) if vals else None


def _cell(value: float, best: float | None, is_baseline: bool, fmt: str = ".4f") -> str:
    text = format(value, fmt)
    if is_baseline and best is not None and best > 0 and value == best:
        return f"**{text}**"
    return text


def _flags_text(flags: dict[str, Any] | None) -> str:
    if not flags:
        return "(unknown)"
    parts = [f"align `{flags.get('align')}`", f"ablate `{flags.get('ablate') or 'nothing'}`"]
    rc = flags.get("ranking_config")
    if rc:
        sha = flags.get("ranking_config_sha256")
        parts.append(f"ranking config `{rc}` (sha256 {sha or 'unreadable'})")
    else:
        parts.append("ranking config: the job's built-in")
    parts.append(f"model flag `{flags.get('model')}`")
    parts.append(f"parallelism {flags.get('parallelism')}")
    parts.append(f"delivery {flags.get('delivery')}")
    if flags.get("other"):
        parts.append("other: `" + json.dumps(flags["other"], sort_keys=True) + "`")
    return "; ".join(parts)


def _fmt_day(ms: int | None) -> str:
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def write_markdown(report: dict[str, Any], path: Path, k: int = K) -> None:
    run = report["run"]
    rows = _rows(report)
    best = report.get("best_baselines") or {}
    nd = f"ndcg@{k}"
    lines = [
        "# streamrec evaluation",
        "",
        f"Data: `{run['csv']}` ({run['events']} purchase events, {run['items']} items"
        + (f", first {run['weeks']} weeks" if run.get("weeks") else "")
        + (f", first {run['max_events']} events" if run.get("max_events") else "")
        + (f", from {run['start']}" if run.get("start") else "")
        + (f", before {run['end']}" if run.get("end") else "")
        + f"). K = {k}. Prequential protocol of CONTRACT.md, both levels from the same lists.",
        "",
    ]
    if run.get("score_from") is not None:
        lines += [
            f"Scored: purchases from {_fmt_day(run['score_from'])} UTC on; the "
            f"{run.get('purchases_warmup', 0)} purchases before only warm up (lists, history, "
            "first-seen times).",
            "",
        ]
    if report.get("job"):
        lines += [
            f"Job: model `{run.get('model')}`; {_flags_text(run.get('job_flags'))}. "
            f"Command: `job.cmd`. Lists: {report['job']['n_lists']} "
            f"({report['job'].get('n_session_end_lists', 0)} at session end"
            + (", from the scored period" if run.get("score_from") is not None else "")
            + f"); items with a reason: {run.get('reason_share', 0):.1%}.",
            "",
        ]
    else:
        lines += ["Job: not run (`--baselines-only`).", ""]

    # -- both levels
    lines += [
        "## Both levels",
        "",
        f"| recommender | event HR@{k} | event NDCG@{k} | event MRR@{k} | basket HR@{k} | "
        f"basket NDCG@{k} | basket MRR@{k} | n | coverage | fresh share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r, is_bl in rows:
        cells = []
        for level in LEVELS:
            for m in METRICS:
                col = f"{m}@{k}"
                b = _best_value(report, lambda x, lv=level, c=col: x[lv][c])
                cells.append(_cell(r[level][col], b, is_bl))
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {r['event']['n']} | "
            f"{r['coverage']:.3f} | {r['fresh_share']:.3f} |"
        )
    if best:
        note = (
            "Bold: the best baseline of each column, picked per column (NDCG@"
            f"{k}: event level {best['event'][nd]}, basket level {best['basket'][nd]})."
        )
        job = report.get("job")
        if job:
            ratios = []
            for lv in LEVELS:
                ref = report["baselines"][best[lv][nd]][lv][nd]
                if ref > 0:
                    ratios.append(f"{lv} level {job[lv][nd] / ref:.2f}x ({best[lv][nd]})")
            note += f" Job / best baseline, NDCG@{k}: " + ", ".join(ratios) + "."
        lines += ["", note]
    lines += [
        "",
        "- event level: each purchase line against the user's latest list before it; basket "
        "level: every line of an order against the list in force before its first line; a "
        "session-end list replaces the per-event list of its trigger; a purchase with no "
        "earlier list is a miss.",
        "- coverage: distinct items in emitted lists / items in the catalog; fresh share: lists "
        "holding an item first seen in the 24 h (event time) before the trigger event.",
    ]

    # -- event level split
    lines += [
        "",
        f"## Event level by where the list in force came from (NDCG@{k} / HR@{k} (n))",
        "",
        "| recommender | same order | before the order |",
        "|---|---|---|",
    ]
    for name, r, is_bl in rows:
        cells = []
        for split in ("same_order", "before_order"):
            m = r["event_split"][split]
            b = _best_value(report, lambda x, s=split: x["event_split"][s][nd])
            cells.append(f"{_cell(m[nd], b, is_bl)} / {m[f'hr@{k}']:.4f} ({m['n']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Same order: the list in force was triggered by an earlier line of the purchase's own "
        "order (the next item in the basket); before the order: by an event before the order "
        "began, or there was none (the first line of an order).",
    ]

    # -- segments
    segs = list(SEGMENT_LABELS)
    lines += [
        "",
        f"## Segments (NDCG@{k}: event level / basket level)",
        "",
        "| recommender | " + " | ".join(SEGMENT_LABELS[s] for s in segs) + " |",
        "|---|" + "---|" * len(segs),
    ]
    if rows:
        first = rows[0][1]["segments"]
        lines.append(
            "| n (purchases) | "
            + " | ".join(str(first[f][s]["event"]["n"]) for f, s in segs)
            + " |"
        )
    for name, r, is_bl in rows:
        cells = []
        for fam, seg in segs:
            parts = []
            for level in LEVELS:
                v = r["segments"][fam][seg][level][nd]
                b = _best_value(
                    report, lambda x, f=fam, s=seg, lv=level: x["segments"][f][s][lv][nd]
                )
                parts.append(_cell(v, b, is_bl))
            cells.append(" / ".join(parts))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "History: orders of the user before this one (1st, 2-5, 6+). Item first seen < 7 d: the "
        "purchased item was first seen (catalog or first event) less than 7 days of event time "
        "before the purchase. Repeat item: the user bought it in an earlier order.",
        "",
        "Hits (event level / basket level) on repeat items and on items new to the user:",
        "",
        "| recommender | hits on repeat items | hits on new-to-user items | share of hits on repeats |",
        "|---|---|---|---|",
    ]
    for name, r, _ in rows:
        rep = r["segments"]["repeat"]
        hits = {
            (seg, lv): round(rep[seg][lv][f"hr@{k}"] * rep[seg][lv]["n"])
            for seg in ("repeat", "new_to_user")
            for lv in LEVELS
        }
        share = []
        for lv in LEVELS:
            tot = hits["repeat", lv] + hits["new_to_user", lv]
            share.append(f"{hits['repeat', lv] / tot:.2f}" if tot else "-")
        lines.append(
            f"| {name} | {hits['repeat', 'event']} / {hits['repeat', 'basket']} | "
            f"{hits['new_to_user', 'event']} / {hits['new_to_user', 'basket']} | "
            + " / ".join(share)
            + " |"
        )

    # -- variants (ablations)
    variants = report.get("variants") or {}
    if variants:
        job = report.get("job")
        age = ("item_age", "first_seen_7d")
        lines += [
            "",
            f"## Job variants (ablations), NDCG@{k} and change vs the full job",
            "",
            "| variant | flags | event | basket | item first seen < 7 d: event | basket |",
            "|---|---|---|---|---|---|",
        ]

        def delta(v: float, ref: float | None) -> str:
            return f"{v:.4f} ({v - ref:+.4f})" if ref is not None else f"{v:.4f}"

        for name, v in variants.items():
            flags = f"`{v.get('flags', '')}`"
            if not v.get("event"):
                lines.append(f"| {name} | {flags} | failed: {v.get('error', '?')[:200]} | | | |")
                continue
            cells = [delta(v[lv][nd], job[lv][nd] if job else None) for lv in LEVELS] + [
                delta(
                    v["segments"][age[0]][age[1]][lv][nd],
                    job["segments"][age[0]][age[1]][lv][nd] if job else None,
                )
                for lv in LEVELS
            ]
            lines.append(f"| {name} | {flags} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Flags: the variant's own, after `--job-args` "
            + (f"(`{run['job_args']}`)" if run.get("job_args") else "(none)")
            + ". Every variant is also a row of the tables above (all segments).",
        ]

    # -- latency, timings, plots
    lat = report.get("latency_ms")
    if lat and lat.get("n"):
        jl = report.get("job_latency_ms") or {}
        lines += [
            "",
            "## Latency (ms): event produced -> its list (full job)",
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
    best = report.get("best_baselines") or {}
    keys = {"event": f"ndcg@{k}", "basket": f"basket_ndcg@{k}"}
    panels = []
    for level in LEVELS:
        series = []
        if report.get("job"):
            series.append(("job", report["job"]["weekly"]))
        name = best.get(level, {}).get(f"ndcg@{k}")
        if name:
            series.append((f"{name} (best baseline, {level})", report["baselines"][name]["weekly"]))
        if series:
            panels.append((level, series))
    if panels:
        fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.5 * len(panels)), squeeze=False)
        for ax, (level, series) in zip(axes[:, 0], panels, strict=True):
            for name, weekly in series:
                weeks = list(weekly)
                ax.plot(
                    weeks, [weekly[w][keys[level]] for w in weeks], marker="o", ms=3, label=name
                )
            ax.set_ylabel(f"NDCG@{k} ({level} level)")
            ax.legend()
            ax.tick_params(axis="x", labelrotation=70, labelsize=7)
        axes[-1, 0].set_xlabel("ISO week of the purchase")
        axes[0, 0].set_title(f"NDCG@{k} per week")
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
def parse_date(text: str) -> int:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM[:SS]`` (UTC) -> epoch milliseconds."""
    from streamrec import retail

    text = text.strip()
    try:
        return retail.parse_ts(text if " " in text else text + " 00:00:00")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date: {text!r} (expected YYYY-MM-DD or 'YYYY-MM-DD HH:MM')"
        ) from None


def parse_variant(text: str) -> tuple[str, str]:
    name, sep, flags = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"variant {text!r} is not NAME='FLAGS'")
    return name.strip(), flags


def job_variants(ablations: bool, variants: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """Extra job runs: ``--ablations`` (one per signal) then each ``--variant``."""
    out = [(f"no-{s}", f"--ablate {s}") for s in ABLATIONS] if ablations else []
    out += list(variants or [])
    names = [n for n, _ in out]
    dup = {n for n in names if names.count(n) > 1} | ({"job"} & set(names))
    if dup:
        raise ValueError(f"job variant names must be unique and not 'job': {sorted(dup)}")
    return out


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
        "--score-from",
        type=parse_date,
        default=None,
        metavar="DATE",
        help="warm up on the events before DATE (YYYY-MM-DD, UTC), score purchases from DATE on",
    )
    p.add_argument(
        "--bootstrap-servers",
        default=None,
        help="use this broker (default: start a private one on a free port for the run)",
    )
    p.add_argument("--model", default=None, help="encoder for the job (default: the job's)")
    p.add_argument("--out", type=Path, default=None, help="default reports/eval-<timestamp>")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--partitions", type=int, default=1, help="partitions of events/recs topics")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for one job run's lists")
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="after the last per-event list, wait until the output is quiet this long "
        "(default 5 s, plus the checkpoint interval with --delivery exactly-once)",
    )
    p.add_argument("--rate", type=float, default=None, help="replay events/s (default: max)")
    p.add_argument("--top-k", type=int, default=K)
    p.add_argument("--half-life-days", type=float, default=7.0, help="recent popularity")
    p.add_argument(
        "--job-args", default="", help="extra flags for every job run, one shell-quoted string"
    )
    p.add_argument(
        "--ablations",
        action="store_true",
        help="also run the job once per ablation (--ablate " + ", ".join(ABLATIONS) + ")",
    )
    p.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=None,
        metavar="NAME='FLAGS'",
        help="also run the job with these extra flags (after --job-args); repeatable",
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
    if not Path(args.csv).exists():
        print(f"streamrec evaluate: no such file {args.csv}", file=sys.stderr)
        return 2
    try:
        variants = job_variants(args.ablations, args.variant)
        base_args = shlex.split(args.job_args)
        variant_args = {name: shlex.split(flags) for name, flags in variants}
    except ValueError as e:
        print(f"streamrec evaluate: {e}", file=sys.stderr)
        return 2
    if args.baselines_only and variants:
        print("streamrec evaluate: --ablations/--variant need the job", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    records = load_records(args.csv, weeks, args.max_events, args.start, args.end)
    events = events_of(records)
    first_seen = item_first_seen(records)
    dup = duplicate_event_ids(events)
    if dup:
        print(
            f"streamrec evaluate: {len(dup)} event ids occur more than once in {args.csv} "
            f"(e.g. {dup[:3]}); lists could not be matched to their trigger event",
            file=sys.stderr,
        )
        return 2
    n_purchases = sum(1 for e in events if e.get("type") == "purchase")
    n_warmup = sum(
        1
        for e in events
        if e.get("type") == "purchase"
        and args.score_from is not None
        and e.get("ts") is not None
        and e["ts"] < args.score_from
    )
    print(
        f"evaluate: {len(events)} events ({n_purchases} purchases"
        + (f", {n_warmup} before --score-from only warm up" if args.score_from else "")
        + f"), {len(first_seen)} items from {args.csv}",
        file=sys.stderr,
    )
    seconds = {"read": round(time.monotonic() - t0, 3)}
    run_info: dict[str, Any] = {
        "csv": str(args.csv),
        "weeks": weeks,
        "max_events": args.max_events,
        "start": args.start,
        "end": args.end,
        "score_from": args.score_from,
        "purchases_warmup": n_warmup,
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
    report: dict[str, Any] = {"job": None, "variants": {}, "baselines": {}, "latency_ms": None}
    latencies = None
    failed = False

    if not args.baselines_only:
        from streamrec import kafka_broker, ports

        stack = contextlib.ExitStack()
        with stack:
            bootstrap = args.bootstrap_servers
            if bootstrap is None:
                data_dir = paths.runtime_dir() / f"evaluate-{os.getpid()}-{int(time.time())}"
                stack.callback(shutil.rmtree, data_dir, True)  # runs after the broker stops
                bootstrap = stack.enter_context(
                    kafka_broker.running_broker(ports.free_port(), data_dir)
                )
            run_info["bootstrap"] = bootstrap

            def run(name: str, extra: list[str]) -> dict[str, Any]:
                job_args = base_args + extra
                if name != "job":
                    print(f"evaluate: job variant {name}: {shlex.join(job_args)}", file=sys.stderr)
                return run_job(
                    records,
                    bootstrap,
                    out if name == "job" else out / name,
                    model=args.model,
                    parallelism=args.parallelism,
                    partitions=args.partitions,
                    k=k,
                    timeout=args.timeout,
                    rate=args.rate,
                    job_args=job_args,
                    keep_topics=args.keep_topics,
                    progress=not args.no_progress,
                    settle=args.settle,
                )

            try:
                res = run("job", [])
            except EvaluationError as e:
                print(f"streamrec evaluate: {e}", file=sys.stderr)
                return 1
            seconds.update({f"job_{n}": s for n, s in res["seconds"].items()})
            t1 = time.monotonic()
            report["job"] = _slim(score_run(res, events, first_seen, k, args.score_from))
            latencies = ev.latencies_ms(res["produced_ms"], res["consumed_ms"])
            report["latency_ms"] = ev.latency_stats(latencies)
            report["job_latency_ms"] = ev.latency_stats(
                ev.latencies_ms(res["produced_ms"], res["emitted_ms"])
            )
            seconds["score_job"] = round(time.monotonic() - t1, 3)
            reasons = res["reasons"]
            run_info.update(
                model=res["model"],
                job_cmd=shlex.join(res["cmd"]),
                job_flags=job_flags(res["cmd"]),
                job_args=args.job_args,
                topics=res["topics"],
                replay=res["replay"],
                dlq=res["dlq"],
                duplicate_lists=res["duplicates"],
                session_end_lists=res["session_end_lists"],
                bad_records=res["bad_records"],
                settle=res["settle"],
                reason_share=reasons["with_reason"] / reasons["items"] if reasons["items"] else 0.0,
                job_log=res["job_log"],
            )
            for name, extra in variant_args.items():
                job_args = shlex.join(base_args + extra)
                try:
                    vres = run(name, extra)
                except EvaluationError as e:
                    print(f"streamrec evaluate: variant {name}: {e}", file=sys.stderr)
                    report["variants"][name] = {
                        "flags": shlex.join(extra),
                        "job_args": job_args,
                        "error": str(e)[:2000],
                    }
                    failed = True
                    continue
                seconds[f"variant_{name}"] = vres["seconds"].get("total")
                scored = _slim(score_run(vres, events, first_seen, k, args.score_from))
                scored.update(
                    flags=shlex.join(extra),
                    job_args=job_args,
                    job_flags=job_flags(vres["cmd"]),
                    model=vres["model"],
                    settle=vres["settle"],
                    job_log=vres["job_log"],
                )
                report["variants"][name] = scored

    t1 = time.monotonic()
    base = bl.run_baselines(
        records,
        bl.default_baselines(k, half_life_days=args.half_life_days),
        k=k,
        progress=not args.no_progress,
        total=len(records),
        score_from=args.score_from,
    )
    seconds["baselines"] = round(time.monotonic() - t1, 3)
    report["baselines"] = {name: _slim(r) for name, r in base.items()}
    report["best_baselines"] = best_baselines(report["baselines"], k)
    if report["job"]:
        report["coverage"] = report["job"]["coverage"]
        report["fresh_share"] = report["job"]["fresh_share"]
        report["by_history"] = report["job"]["by_history"]
    run_info["seconds"] = seconds
    report["run"] = run_info
    report["plots"] = write_plots(report, out, latencies, k)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "report.md", k)
    print((out / "report.md").read_text())
    print(f"evaluate: report in {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
