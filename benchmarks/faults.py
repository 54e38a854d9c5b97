"""Faults with figures: kill the job's processes at random points, count what comes out.

    python -m benchmarks.faults [--events 3000] [--kills 3] [--worker-kills 3] [--feed-s 120]
                                [--json FILE]
    streamrec bench faults ...

A real slice of Online Retail with its catalog updates (``streamrec.evaluate.load_records``) is
read by the job on a local standalone cluster (``streamrec.flink_cluster``: one JobManager, one
TaskManager of 2 slots, a fresh cluster per run), submitted as on any cluster: ``flink run -py
jobs/recommend.py --parallelism 2 --delivery exactly-once``. Each run gets topics of its own
(events on 2 partitions, catalog on 1); the slice is written into them once every task of the
job runs, paced over ``--feed-s`` seconds, so that the job is busy when a kill comes. Runs:

1. ``reference``: uninterrupted;
2. ``taskmanager``: the TaskManager JVM is killed (``kill -9``) ``--kills`` times, at random
   points of the feed (each after the job has recovered from the one before), and a new
   TaskManager is started each time;
3. ``reference-process``: uninterrupted, ``--execution-mode process``; compared with the
   reference, it shows what the execution mode changes (nothing: see the README);
4. ``python-worker`` (``--execution-mode process``): the busiest Python worker process of the
   TaskManager (one per slot runs the job's Python operators) is killed ``--worker-kills``
   times, the same way, and compared with ``reference-process``. (In thread mode, the default,
   Python runs inside the TaskManager JVM: run 2 kills it.)

A kill counts once the job noticed it (a new failure in its exception history within 30 s):
a Python worker killed while idle would only be missed at its next record, and would prove
nothing. A ``read_committed`` consumer reads each run's output to its end. Figures per run,
against the uninterrupted run of its execution mode (column ``against``), per list
(``streamrec.evaluation.list_key``): triggers expected, lists delivered, lost (expected and missing),
duplicated (delivered more than once), changed (differ apart from ``emitted_at``); and kills
noticed and survived, restarts (Flink's count, or its exception history's), the time from each
kill to the job's failure and to the next committed list.

Where an interrupted run may legitimately differ, the input leaves no room for it:

- ``--max-wait`` (a processing-time bound on how long an event waits for event time) would
  release events by the wall clock, which a restart moves; every run gets a max-wait longer
  than the run, so every list is released by event time alone, as the design promises;
- at the end of the input event time stands still, and which sessions had closed and which
  events had been released would depend on when the run was looked at; after the slice, two
  events per partition at a time past every session end (users ``~end-*``), and one more a
  minute later, move event time beyond all of them: every per-event and session-end list of
  the slice is due in every run, and the markers' own lists say so (they are not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

END_USER = "~end-"  # markers after the slice (their lists say "everything is out")
CLOSER = "~~close-"  # after the markers (held until --max-wait: never in a run)
MARKERS = 4
LIST_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "search"})
# the cluster notices a dead TaskManager within seconds, not the default 50 s
FAST_FAILOVER = {"heartbeat.interval": 1000, "heartbeat.timeout": 8000}


@dataclass
class Inputs:
    bootstrap: str
    events: str
    items: str
    event_ids: set[str]  # events of the slice that get a per-event list
    n_records: int


@dataclass
class Run:
    name: str
    lists: dict[tuple[str, str], list[dict]] = field(default_factory=dict)  # all deliveries
    dead_letters: int = 0
    kills: list[dict] = field(default_factory=list)
    restarts: int | None = None
    failures: list[str] = field(default_factory=list)  # causes, from the exception history
    state: str | None = None
    seconds: float = 0.0


# ---- input ------------------------------------------------------------------------------------
def create_inputs(records, bootstrap: str, tag: str) -> Inputs:
    """Fresh input topics for the slice (nothing written yet: see :func:`feed`)."""
    from streamrec import topics

    names = {"events": f"{tag}-events", "items": f"{tag}-items"}
    topics.ensure_topics(bootstrap, {names["events"]: 2, names["items"]: 1},
                         compacted={names["items"]})  # fmt: skip
    events = [v for kind, _, v in records if kind == "events" and v is not None]
    ids = {str(e["event_id"]) for e in events if e.get("type") in LIST_TYPES}
    return Inputs(bootstrap, names["events"], names["items"], ids, len(records))


def feed(inputs: Inputs, records, session_gap_ms: int, rate: float | None = None) -> None:
    """The slice (events paced at ``rate`` per second; None: at once), then the end-of-input
    events (see the module doc)."""
    from confluent_kafka import Producer

    from streamrec import replay

    replay.replay(records, inputs.bootstrap, inputs.events, inputs.items, rate=rate,
                  progress=False)  # fmt: skip
    events = [v for kind, _, v in records if kind == "events" and v is not None]
    end_ts = max(e["ts"] for e in events) + session_gap_ms + 60_000
    item = next(v["item_id"] for kind, _, v in records if kind == "items" and v)
    producer = Producer({"bootstrap.servers": inputs.bootstrap, "enable.idempotence": True})
    for p in range(2):
        # two markers per partition (likely on both recommend tasks): their lists come once
        # event time has passed every list of the slice; a later event moves event time there
        for n, ts in enumerate([end_ts, end_ts, end_ts + 60_000]):
            user = f"{END_USER}{p}-{n}" if n < 2 else f"{CLOSER}{p}"
            value = {"event_id": f"{user}-e", "user_id": user, "type": "view", "item_id": item,
                     "ts": ts}  # fmt: skip
            producer.produce(inputs.events, key=user.encode(), value=json.dumps(value).encode(),
                             partition=p)  # fmt: skip
    producer.flush(30)


def write_inputs(records, bootstrap: str, session_gap_ms: int, tag: str) -> Inputs:
    """The slice into fresh topics at once, then the end-of-input events."""
    inputs = create_inputs(records, bootstrap, tag)
    feed(inputs, records, session_gap_ms)
    return inputs


# ---- the cluster and the job ----------------------------------------------------------------
def submit(cluster: dict, inputs: Inputs, out: dict, model: str | None, extra: list[str]) -> str:
    """``flink run -d -py jobs/recommend.py ...``; returns the job id."""
    from streamrec import flink_cluster, paths

    cmd = [
        str(flink_cluster.flink_bin()), "run", "-m", cluster["rest"], "-d",
        "-py", "jobs/recommend.py",
        "--bootstrap-servers", inputs.bootstrap,
        "--events-topic", inputs.events, "--items-topic", inputs.items,
        "--output-topic", out["recs"], "--dlq-topic", out["dlq"],
        "--group-id", out["group"], "--parallelism", "2",
        "--delivery", "exactly-once", "--checkpoint-interval", str(cluster["checkpoint_ms"]),
        "--checkpoint-dir", str(cluster["base"] / "checkpoints"),
        "--max-wait", str(24 * 3600_000),
    ]  # fmt: skip
    if model:
        cmd += ["--model", model]
    cmd += extra
    sub = subprocess.run(cmd, cwd=paths.PROJECT_ROOT, env=cluster["env"], capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    found = re.search(r"JobID ([0-9a-f]{32})", sub.stdout + sub.stderr)
    if sub.returncode != 0 or not found:
        raise RuntimeError(f"flink run failed:\n{sub.stdout[-3000:]}\n{sub.stderr[-3000:]}")
    return found.group(1)


def rest(cluster: dict, path: str, method: str = "GET") -> Any:
    from streamrec.flink_cluster import rest_call

    return rest_call(cluster["rest"], path, method)


def job_restarts(cluster: dict, job_id: str, wait_s: float = 20) -> int | None:
    """How often the job restarted: the larger of Flink's numRestarts (REST: the job's metrics;
    the JobManager's metric fetcher answers [] until its first update and then refreshes every
    10 s, so it can lag) and the number of failures in the job's exception history (each one
    restarted it; the history is current)."""
    failures = len(job_failures(cluster, job_id))
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
            got = rest(cluster, f"/jobs/{job_id}/metrics?get=numRestarts")
            restarts = int(float(got[0]["value"]))
            return max(restarts, failures)
        if time.monotonic() > deadline:
            return failures
        time.sleep(1)


def job_failures(cluster: dict, job_id: str) -> list[str]:
    """The causes of the job's failures (its exception history, oldest first)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        entries = rest(cluster, f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return [
            f"{e.get('exceptionName')}: {(str(e.get('stacktrace', '')).splitlines() or [''])[0][:160]}"
            for e in reversed(entries)
        ]
    return []


def noticed(cluster: dict, job_id: str, failures_before: int, at: float, wait_s: float = 30):
    """Seconds from a kill at ``at`` until the job's exception history has a new failure
    (None: not within ``wait_s``)."""
    while time.time() - at < wait_s:
        if len(job_failures(cluster, job_id)) > failures_before:
            return round(time.time() - at, 1)
        time.sleep(0.2)
    return None


def wait_running(cluster: dict, job_id: str, timeout: float) -> None:
    """Until the job and every task of it run."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            job = rest(cluster, f"/jobs/{job_id}")
            if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
                return
            if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
                raise RuntimeError(f"job {job_id} is {job['state']} before its input")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id}: its tasks did not all run within {timeout:.0f}s")
        time.sleep(0.5)


def job_state(cluster: dict, job_id: str) -> str | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        return rest(cluster, f"/jobs/{job_id}")["state"]
    return None


def cancel(cluster: dict, job_id: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        rest(cluster, f"/jobs/{job_id}?mode=cancel", method="PATCH")
    deadline = time.monotonic() + 60
    while job_state(cluster, job_id) not in ("CANCELED", "FAILED", "FINISHED", None):
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)


WORKER_MODULE = b"pyflink.fn_execution.beam.beam_boot"  # runs the SDK harness in its process


def python_workers(tm_pid: int) -> list[int]:
    """The Python worker processes under a TaskManager (process mode): each is started as
    ``bash pyflink-udf-runner.sh`` -> ``python -m pyflink.fn_execution.beam.beam_boot | tee
    LOG``; only the Python process does the work (killing the runner or ``tee`` leaves it
    running, and the job notices nothing)."""
    from benchmarks.memory import descendants, process_table

    found = []
    for pid in sorted(descendants(process_table(), [tm_pid]) - {tm_pid}):
        with contextlib.suppress(OSError):
            if WORKER_MODULE in (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0"):
                found.append(pid)
    return found


def kill(cluster: dict, target: str, rng: random.Random) -> dict:
    """kill -9 the TaskManager (and start a new one) or one Python worker; what was killed."""
    from streamrec import flink_cluster

    tms = flink_cluster.running_pids(cluster["base"])["taskexecutor"]
    if not tms:
        raise RuntimeError("no TaskManager is running")
    if target == "taskmanager":
        pid = tms[-1]
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        flink_cluster.add_taskmanager(cluster["base"])
        return {"target": target, "pid": pid, "at": t, "new_taskmanager_s": time.time() - t}
    workers = [w for tm in tms for w in python_workers(tm)]
    if not workers:
        raise RuntimeError("no Python worker process found (is the job in process mode?)")
    # one worker per slot runs the job's Python operators; after a restart the workers of the
    # failed attempt may linger a while: only the newest (this attempt's) count. Kill the one
    # that works hardest (an idle one would only be missed at its next record)
    workers = sorted(workers, key=_start_time)[-cluster.get("slots", 2) :]
    pid = busiest(workers, rng)
    os.kill(pid, signal.SIGKILL)
    return {"target": target, "pid": pid, "at": time.time(), "workers": len(workers)}


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (field 3 on), None if gone."""
    with contextlib.suppress(OSError, IndexError):
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return None


def _start_time(pid: int) -> int:
    """When the process started (clock ticks after boot; 0 if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def _cpu_ticks(pid: int) -> int:
    """CPU time used (user + system clock ticks; -1 if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else -1


def busiest(pids: list[int], rng: random.Random, sample_s: float = 0.5) -> int:
    """The process that used the most CPU over ``sample_s`` (ties: a random one of them)."""
    before = {p: _cpu_ticks(p) for p in pids}
    time.sleep(sample_s)
    used = {p: _cpu_ticks(p) - before[p] for p in pids if before[p] >= 0}
    top = max(used.values(), default=0)
    return rng.choice(sorted(p for p, u in used.items() if u == top) or pids)


# ---- one run ----------------------------------------------------------------------------------
def run_job(
    name: str,
    cluster: dict,
    inputs: Inputs,
    *,
    model: str | None,
    extra: list[str],
    kill_target: str | None,
    kills: int,
    rng: random.Random,
    timeout: float,
    quiet_s: float,
    feeder: Callable[[], None] | None = None,
    feed_s: float = 0.0,
) -> Run:
    """Submit, kill at random points, wait for every list, cancel, read the output to its end.

    ``feeder`` writes the input once every task of the job runs (None: it is there already),
    in a thread of its own, over ``feed_s`` seconds: the kills come at random points of that
    time, while the job is busy. (Kills timed by the output would come late: a read_committed
    consumer sees lists a checkpoint after they were made, and event time releases them in
    bursts, so the job may be done with its input and idle, and a Python worker killed then is
    never missed.) With ``feed_s`` 0 the kills come after random shares of the lists."""
    from confluent_kafka import Consumer, TopicPartition

    from streamrec import topics

    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    out = {"recs": f"{tag}-recs", "dlq": f"{tag}-dlq", "group": f"{tag}-job"}
    topics.ensure_topics(inputs.bootstrap, {out["recs"]: 2, out["dlq"]: 1})
    expected = len(inputs.event_ids)
    # kill at these shares of the feed's time (without a feeder: of the per-event lists), in
    # order, each after the job recovered from the one before
    marks = sorted(rng.uniform(0.1, 0.85) for _ in range(kills))
    fed_at = None  # when the feeder started
    res = Run(name)
    t0 = time.monotonic()
    job_id = submit(cluster, inputs, out, model, extra)
    print(f"[{name}] job {job_id} submitted; {kills} kill(s) of the {kill_target or '-'}",
          flush=True)  # fmt: skip
    feeding: dict[str, Any] = {}
    if feeder is not None:
        wait_running(cluster, job_id, timeout)

        def run_feeder():
            try:
                feeder()
            except BaseException as e:  # noqa: BLE001 (reported by the main loop)
                feeding["error"] = e

        feeding["thread"] = threading.Thread(target=run_feeder, daemon=True)
        feeding["thread"].start()
        fed_at = time.monotonic()
    consumer = Consumer({
        "bootstrap.servers": inputs.bootstrap, "group.id": f"{tag}-watch",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    })  # fmt: skip
    consumer.assign([TopicPartition(out["recs"], p, -2) for p in range(2)])
    seen: set[str] = set()
    ends: set[str] = set()
    last_new = time.monotonic()
    pending_kill: dict | None = None
    try:
        while True:
            now = time.monotonic()
            if "error" in feeding:
                raise RuntimeError(f"[{name}] writing the input failed") from feeding["error"]
            if now - t0 > timeout:
                raise TimeoutError(
                    f"[{name}] {len(seen)} of {expected} lists after {timeout:.0f}s "
                    f"(job {job_state(cluster, job_id)})"
                )
            for msg in consumer.consume(500, 0.5):
                if msg.error() or msg.value() is None:
                    continue
                rec = json.loads(msg.value())
                last_new = time.monotonic()
                if rec["user_id"].startswith(END_USER):
                    ends.add(rec["user_id"])
                elif rec["user_id"].startswith(CLOSER):
                    continue
                elif rec.get("trigger", "event") == "event":
                    if pending_kill is not None:  # the first list after a kill: recovered
                        pending_kill["first_list_after_s"] = round(
                            time.time() - pending_kill["at"], 1
                        )  # noqa: E501
                        pending_kill = None
                    seen.add(str(rec["trigger_event_id"]))
            if feed_s and fed_at is not None:
                due = marks and time.monotonic() - fed_at >= marks[0] * feed_s
            else:
                due = marks and len(seen) >= marks[0] * expected
            if due and pending_kill is None:
                marks.pop(0)
                failures_before = len(job_failures(cluster, job_id))
                pending_kill = kill(cluster, kill_target, rng)
                pending_kill["after_lists"] = len(seen)
                if fed_at is not None:
                    pending_kill["into_feed_s"] = round(time.monotonic() - fed_at, 1)
                    pending_kill["during_feed"] = feeding["thread"].is_alive()
                res.kills.append(pending_kill)
                print(f"[{name}] kill {len(res.kills)}: {kill_target} (pid {pending_kill['pid']}) "
                      f"after {len(seen)} of {expected} lists", flush=True)  # fmt: skip
                # the job must notice: a kill it never noticed would prove nothing
                pending_kill["noticed_s"] = noticed(cluster, job_id, failures_before,
                                                    pending_kill["at"])  # fmt: skip
                seen_after = pending_kill["noticed_s"]
                print(f"[{name}] the job noticed the kill after {seen_after}s" if seen_after
                      is not None else f"[{name}] the job did not notice the kill within 30s",
                      flush=True)  # fmt: skip
            all_in = len(seen) >= expected and len(ends) == MARKERS
            if all_in and not marks and time.monotonic() - last_new >= quiet_s:
                break
        res.restarts = job_restarts(cluster, job_id)
        res.state = job_state(cluster, job_id)
        res.failures = job_failures(cluster, job_id)
        if res.failures:
            print(f"[{name}] failures: {res.failures}", flush=True)
    finally:
        consumer.close()
        cancel(cluster, job_id)
    res.seconds = round(time.monotonic() - t0, 1)
    read_output(res, inputs.bootstrap, out)
    with contextlib.suppress(Exception):
        topics.delete_topics(inputs.bootstrap, [out["recs"], out["dlq"]])
    return res


def read_output(res: Run, bootstrap: str, out: dict) -> None:
    """Every committed record of the run's output and dead-letter topics, to their end."""
    from confluent_kafka import Consumer

    from streamrec import topics
    from streamrec.evaluation import list_key

    for topic in (out["recs"], out["dlq"]):
        consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": False,
        })  # fmt: skip
        try:
            for msg in topics.read_to_end(consumer, topic, timeout=120):
                if topic == out["dlq"]:
                    res.dead_letters += 1
                elif msg.value() is not None:
                    rec = json.loads(msg.value())
                    if not rec["user_id"].startswith((END_USER, CLOSER)):
                        res.lists.setdefault(list_key(rec), []).append(rec)
        finally:
            consumer.close()


# ---- figures ----------------------------------------------------------------------------------
def _comparable(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "emitted_at"}


def figures(run: Run, reference: Run, event_ids: set[str]) -> dict[str, Any]:
    expected = set(reference.lists)
    got = set(run.lists)
    lost = expected - got
    changed = [
        k for k in expected & got
        if any(_comparable(r) != _comparable(reference.lists[k][0]) for r in run.lists[k])
    ]  # fmt: skip
    per_event = {k for k in got if k[1] == "event"}
    noticed_kills = sum(k.get("noticed_s") is not None for k in run.kills)
    return {
        "run": run.name,
        "kills": len(run.kills),
        # a kill counts once the job noticed it (a failure in its exception history)
        "kills_noticed": noticed_kills,
        "kills_survived": noticed_kills if run.state == "RUNNING" and not lost else 0,
        "triggers_expected": len(expected),
        "lists_delivered": sum(len(v) for v in run.lists.values()),
        "lists_lost": len(lost),
        "lists_duplicated": sum(len(v) - 1 for v in run.lists.values()),
        "lists_changed": len(changed),
        "unexpected_lists": len(got - expected),
        "events_without_list": len(event_ids - {k[0] for k in per_event}),
        "dead_letters": run.dead_letters,
        "restarts": run.restarts,
        "failures": run.failures,
        "state_at_end": run.state,
        "seconds": run.seconds,
        "kill_points": [k.get("after_lists") for k in run.kills],  # lists out at each kill
        "kills_into_feed_s": [k.get("into_feed_s") for k in run.kills],
        "kills_during_feed": [k.get("during_feed") for k in run.kills],
        "noticed_s": [k.get("noticed_s") for k in run.kills],
        "recovery_s": [k.get("first_list_after_s") for k in run.kills],
        "examples": {"lost": sorted(lost)[:5], "changed": sorted(changed)[:5]},
    }


def print_table(rows: list[dict]) -> None:
    cols = ["run", "against", "kills", "kills_noticed", "kills_survived", "triggers_expected", "lists_delivered",
            "lists_lost", "lists_duplicated", "lists_changed", "restarts", "seconds"]  # fmt: skip
    head = ["run", "against", "kills", "noticed", "survived", "expected", "delivered", "lost", "duplicated",
            "changed", "restarts", "s"]  # fmt: skip
    widths = [
        max(len(h), *(len(str(r.get(c))) for r in rows)) for h, c in zip(head, cols, strict=True)
    ]  # noqa: E501
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c)).rjust(w) for c, w in zip(cols, widths, strict=True)))


# ---- main -------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamrec bench faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=3000, help="events of the slice")
    p.add_argument("--csv", type=Path, default=None, help="Online Retail CSV (.csv or .csv.xz)")
    p.add_argument("--model", default=None, help="exported encoder (default: the job's)")
    p.add_argument("--kills", type=int, default=3, help="TaskManager kills (0: no such run)")
    p.add_argument("--worker-kills", type=int, default=3,
                   help="Python worker kills, --execution-mode process (0: no such run)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None, help="of the kill points (default: random)")
    p.add_argument("--feed-s", type=float, default=120,
                   help="seconds over which the slice is written while the job runs; the kills "
                        "come in this time (0: all at once, kills after shares of the lists)")  # fmt: skip
    p.add_argument("--checkpoint-interval", type=int, default=2000, metavar="MS")
    p.add_argument("--bootstrap-servers", default=None, help="default: a private broker")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--quiet", type=float, default=None,
                   help="seconds without output that end a run (default: 2 checkpoints + 5)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from jobs.config import JobConfig
    from streamrec import evaluate, flink_cluster, kafka_broker, paths, ports

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    csv = args.csv or paths.default_data_file()
    records = evaluate.load_records(csv, max_events=args.events)
    quiet = args.quiet if args.quiet is not None else 2 * args.checkpoint_interval / 1000 + 5
    print(f"faults: {args.events} events of {csv.name}, {args.kills} TaskManager kill(s), "
          f"{args.worker_kills} Python worker kill(s), seed {seed}", flush=True)  # fmt: skip
    results: list[dict] = []
    with contextlib.ExitStack() as stack:
        base = Path(tempfile.mkdtemp(prefix="bench-faults-", dir=paths.runtime_dir()))
        stack.callback(shutil.rmtree, base, True)
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            bootstrap = stack.enter_context(
                kafka_broker.running_broker(ports.free_port(), base / "kafka")
            )

        def fresh_cluster(name: str) -> dict:
            # a cluster of its own per run: in thread mode a TaskManager that ran one Python job
            # fails the next one (PEMJA: NoSuchFieldException loadedLibraryNames)
            flink_base = base / f"flink-{name}"
            rest_addr = flink_cluster.start(ports.free_port(), slots=2, base_dir=flink_base,
                                            taskmanagers=1, extra=FAST_FAILOVER, timeout=300)  # fmt: skip
            stack.callback(flink_cluster.stop, flink_base)
            return {
                "rest": rest_addr, "base": flink_base, "env": flink_cluster.cluster_env(flink_base),
                "checkpoint_ms": args.checkpoint_interval,
            }  # fmt: skip

        common = {"model": args.model, "rng": rng, "timeout": args.timeout, "quiet_s": quiet}
        gap = JobConfig().session_gap_ms
        n_events = sum(1 for kind, _, _ in records if kind == "events")
        rate = n_events / args.feed_s if args.feed_s > 0 else None
        # (name, job flags, what is killed, kills, the run it is compared with)
        runs = [("reference", [], None, 0, None)]
        if args.kills:
            runs.append(("taskmanager", [], "taskmanager", args.kills, "reference"))
        if args.worker_kills:
            # process mode's own uninterrupted run, itself compared with the reference (what the
            # execution mode changes), then the kills compared with it
            process = ["--execution-mode", "process"]
            runs.append(("reference-process", process, None, 0, "reference"))
            runs.append(("python-worker", process, "python", args.worker_kills,
                         "reference-process"))  # fmt: skip
        done: dict[str, Run] = {}
        cluster = None
        for name, extra, target, kills, against in runs:
            if cluster is not None:
                flink_cluster.stop(cluster["base"])
            cluster = fresh_cluster(name)
            # the same slice into topics of the run's own, written while its job runs
            inputs = create_inputs(records, bootstrap, f"faults-{name}-{uuid.uuid4().hex[:6]}")

            def feeder(inputs=inputs):
                feed(inputs, records, gap, rate)

            run = run_job(name, cluster, inputs, extra=extra, kill_target=target, kills=kills,
                          feeder=feeder, feed_s=args.feed_s, **common)  # fmt: skip
            done[name] = run
            if against is None:
                print(f"[{name}] {len(run.lists)} lists "
                      f"({sum(k[1] == 'session_end' for k in run.lists)} session-end) in "
                      f"{run.seconds}s", flush=True)  # fmt: skip
            results.append(
                figures(run, done[against or name], inputs.event_ids) | {"against": against or "-"}
            )
    print()
    print_table(results)
    # a faulty run must match its uninterrupted run exactly; the mode row is for information
    faulty = [r for r in results if r["kills"]]
    bad = [
        r for r in faulty
        if r["lists_lost"] or r["lists_duplicated"] or r["lists_changed"]
        or r["kills_noticed"] < r["kills"]
    ]  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"events": args.events, "seed": seed, "checkpoint_interval_ms": args.checkpoint_interval,
               "runs": results}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
