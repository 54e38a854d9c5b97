"""One measured run of one variant in one alignment, against a real broker.

1. Fresh topics (events and lists with as many partitions as the run's parallelism).
2. The backlog (contract records: items before the events naming them) is produced at full
   speed *before* the job starts, so the job reads a true backlog. With a synthetic ``catalog``
   (catalog sizes), the catalog goes first instead, and the backlog follows once the job's
   recommend operator has received all of it (read from the job's Prometheus reporter).
3. The job starts (a :mod:`benchmarks.launchers` launcher); every per-event list of the backlog
   is awaited (dead-lettered events are subtracted). Figures: steady lists/s and start-up
   (:func:`benchmarks.figures.throughput`), RSS by role (:mod:`benchmarks.memory`). Lists/s
   are timed as this process consumes the lists; when all of them come in one poll (a short
   backlog and a fast variant) by the ``emitted_at`` they carry (``rate_clock`` says which).
4. Paced phase (optional). It starts once no list has come for ``SETTLE_QUIET_S``: the
   backlog's last watermark still releases session-end and refresh timers after its last
   per-event list (``settle_s``, ``settle_lists``). With ``live`` records, they are first
   produced at the backlog's lists/s while the job runs; the rate their lists come at is
   ``live_lists_per_s``, what the job sustains while the producer and the broker's write path
   share the machine with it (a backlog has them idle). Once that has settled too, the paced
   records are produced at ``paced_ratio`` x the maximum (the lower of the two rates), by a
   producer that has delivered a warm-up record to a topic of its own first (its connection
   is not part of the first events' latency). Latency is producer ``produce()`` time -> this
   process consuming the event's list, for every paced event (and produce -> the list's
   ``emitted_at``, the job's clock, without the sink). With ``paced_time="wall"`` (default)
   each record's ``ts`` is rewritten to continue the backlog's event time at wall-clock speed
   from the moment it is produced, as in live traffic (event-time alignment then waits for the
   watermark, i.e. the out-of-orderness bound, as it would in production); ``"original"`` keeps
   the file's timestamps (years of event time pass in minutes). A short unmeasured tail of
   events follows each open-loop phase, so that event time moves past its last events.
   ``latency.csv`` in the run's folder has every paced event's produce, emit and consume time.
5. Catalog checks (optional, the new job): the size of the first checkpoint completed after the
   backlog (``--checkpoint-dir``), then stop with a savepoint, restart from it and measure the
   time from the restart to the list of a probe event produced at the restart.
6. The job is stopped and the topics deleted, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import figures
from benchmarks.launchers import JobHandle
from benchmarks.memory import MIB, Sampler

LIST_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "search"})
PROBE_GAP_MS = 60_000
SETTLE_QUIET_S = 2.0  # the paced phase starts once no list has come for this long ...
SETTLE_LIMIT_S = 60.0  # ... or after this long
TAIL_EVENTS = 50  # unmeasured events after each open-loop phase (see paced_replay)
TAIL_INTERVAL_S = 0.1

Record = tuple[str, str, dict | None]


class RunError(RuntimeError):
    """A run failed; ``partial`` holds the figures measured before (set by run_once)."""

    partial: dict[str, Any] | None = None


class AliveCheck:
    """Called in a wait loop: RunError when another thread set an ``abort`` reason, or (checked
    every 2 s) when the job has failed; returns the monotonic time."""

    def __init__(self, handle: JobHandle, abort: list[str]):
        self.handle, self.abort, self.last = handle, abort, 0.0

    def __call__(self, stopped: str) -> float:
        if self.abort:
            raise RunError(self.abort[0])
        now = time.monotonic()
        if now - self.last > 2:
            self.last = now
            failed = self.handle.failure()
            if failed:
                raise RunError(f"{stopped}: {failed}")
        return now


@dataclass
class RunOptions:
    bootstrap: str
    model: str | None = None
    embedding_store: str | None = None
    top_k: int = 10
    timeout: float = 1800.0
    paced_ratio: float = 0.5
    paced_time: str = "wall"
    max_rss_bytes: int | None = None
    checkpoint_timeout: float = 300.0


@dataclass(frozen=True)
class OpenLoop:
    """Records produced at a rate while the job runs (:func:`paced_replay`), then their
    unmeasured ``tail``: events 0.1 s apart until the records' lists are in, so that event time
    moves past the last of them."""

    records: list[Record]
    tail: list[Record]


def list_event_ids(records: list[Record]) -> set[str]:
    return {
        str(v["event_id"])
        for kind, _, v in records
        if kind == "events" and v is not None and v.get("type") in LIST_EVENT_TYPES
    }


def last_ts(records: list[Record]) -> int:
    return max(
        (int(v["ts"]) for _, _, v in records if v is not None and v.get("ts") is not None),
        default=0,
    )


def retimed(value: dict, base_ms: int, wall0_ms: float) -> dict:
    """``value`` with ``ts`` = ``base_ms`` + wall-clock ms since ``wall0_ms``."""
    return {**value, "ts": base_ms + int(time.time() * 1000 - wall0_ms)}


def paced_replay(
    records: list[Record],
    bootstrap: str,
    topics: dict[str, str],
    rate: float,
    produced_ms: dict[str, float],
    retime_base_ms: int | None = None,
    tail: list[Record] | None = None,
    tail_interval: float = TAIL_INTERVAL_S,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Produce ``records`` with events at ``rate``/s (items as they come, uncounted); note each
    event's produce time (wall ms) in ``produced_ms``. ``retime_base_ms``: rewrite every ``ts``
    (see :func:`retimed`). Then ``tail``: events every ``tail_interval`` s, unmeasured, until
    ``stop`` is set, so that event time moves past the last measured events (without them the
    job's event-time alignment holds those until ``--max-wait``). With a ``"warmup"`` topic,
    the producer delivers one record there before the clock starts."""
    from confluent_kafka import Producer

    errors: list[Any] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True}
    )
    if "warmup" in topics:
        # a shop's producer is long-lived: its connection and (idempotent) producer id are
        # there before the first measured event, not part of that event's latency (a new
        # producer's first records wait 0.05-1.5 s for them)
        producer.produce(topics["warmup"], value=b"warm-up")
        if producer.flush(30):
            raise RuntimeError(f"the paced producer could not reach {bootstrap}")
    t0 = time.monotonic()
    wall0 = time.time() * 1000
    n = 0

    def send(kind: str, key: str, value: dict | None) -> dict | None:
        if value is not None and retime_base_ms is not None:
            value = retimed(value, retime_base_ms, wall0)
        payload = None if value is None else json.dumps(value, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(
                    topics[kind],
                    key=key.encode(),
                    value=payload,
                    on_delivery=lambda err, _m: err is not None and errors.append(err),
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        return value

    for kind, key, value in records:
        if kind == "events":
            _serve_until(producer, t0 + n / rate)
        now = time.time() * 1000
        value = send(kind, key, value)
        if kind == "events" and value is not None:
            produced_ms[str(value["event_id"])] = now
            n += 1
    seconds = time.monotonic() - t0
    n_tail = 0
    t_tail = time.monotonic()
    for kind, key, value in tail or ():
        if stop is not None and stop.is_set():
            break
        send(kind, key, value)
        if kind == "events":
            n_tail += 1
            _serve_until(producer, time.monotonic() + tail_interval)
    left = producer.flush(30)
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "rate": n / seconds if seconds > 0 else float("nan"),
        "tail_events": n_tail,
        "tail_s": round(time.monotonic() - t_tail, 3),
        "errors": len(errors) + left,
    }


def _serve_until(producer, due: float) -> None:
    """Serve the producer's delivery reports until monotonic time ``due`` (``poll(t)`` alone
    returns as soon as it has served one: it does not wait out ``t``)."""
    while (wait := due - time.monotonic()) > 0:
        producer.poll(min(wait, 0.05))


class ListReader:
    """Consumes the lists and dead letters of one run from the beginning."""

    def __init__(self, bootstrap: str, topics: dict[str, str], partitions: int):
        from confluent_kafka import Consumer, TopicPartition

        self.topics = topics
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        self.consumer.assign(
            [TopicPartition(topics["recs"], p, -2) for p in range(partitions)]
            + [TopicPartition(topics["dlq"], 0, -2)]
        )
        self.consumed_ms: dict[str, float] = {}  # per-event lists: trigger id -> first arrival
        self.emitted_ms: dict[str, float] = {}  # ... -> the list's emitted_at (the job's clock)
        self.dead: set[str] = set()
        self.n_lists = 0
        self.n_dlq = 0  # dead letters of either topic
        self.n_session_end = 0
        self.n_bad = 0
        self.last_arrival_ms = 0.0  # any record of either topic

    def poll(self) -> None:
        # poll() returns as soon as a record is there (consume(n, t) would wait out t for n
        # records): the consume time of a list is taken when it arrives
        first = self.consumer.poll(0.2)
        if first is None:
            return
        now = self.last_arrival_ms = time.time() * 1000
        for m in [first, *self.consumer.consume(1000, 0)]:
            if m.error() or m.value() is None:
                continue
            if m.topic() == self.topics["recs"]:
                try:
                    rec = json.loads(m.value())
                    tid = str(rec["trigger_event_id"])
                    trigger = rec.get("trigger") or "event"
                except (ValueError, KeyError, TypeError):
                    self.n_bad += 1
                    continue
                self.n_lists += 1
                if trigger != "event":
                    self.n_session_end += 1
                elif tid not in self.consumed_ms:
                    self.consumed_ms[tid] = now
                    if isinstance(rec.get("emitted_at"), int | float):
                        self.emitted_ms[tid] = float(rec["emitted_at"])
            else:
                self.n_dlq += 1
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.dead.add(str(json.loads(json.loads(m.value())["raw"])["event_id"]))

    def wait_for(
        self, expected: set[str], handle: JobHandle, deadline: float, abort: list[str]
    ) -> None:
        """Until every id in ``expected`` has a list or a dead letter; RunError on timeout, job
        failure or ``abort`` (a reason set by another thread)."""
        alive = AliveCheck(handle, abort)
        while True:
            missing = expected - self.consumed_ms.keys() - self.dead
            if not missing:
                return
            now = alive(f"the job stopped ({len(missing)} lists missing)")
            if now > deadline:
                raise RunError(
                    f"timeout: {len(missing)} of {len(expected)} lists missing; "
                    f"log {handle.log_path}"
                )
            self.poll()

    def wait_quiet(
        self, quiet_s: float, limit_s: float, handle: JobHandle, deadline: float, abort: list[str]
    ) -> float:
        """Until nothing has arrived for ``quiet_s`` (at most ``limit_s``); returns the seconds
        waited. RunError on timeout, job failure or ``abort``."""
        alive = AliveCheck(handle, abort)
        t0 = time.monotonic()
        self.last_arrival_ms = max(self.last_arrival_ms, time.time() * 1000)
        while time.time() * 1000 - self.last_arrival_ms < quiet_s * 1000:
            now = alive("the job stopped while its output settled")
            if now > deadline:
                raise RunError(f"timeout while the output settled; log {handle.log_path}")
            if now - t0 > limit_s:
                break
            self.poll()
        return time.monotonic() - t0

    def close(self) -> None:
        self.consumer.close()


def checkpoint_size(ckpt_dir: Path, after: float, timeout: float) -> dict[str, Any]:
    """The first checkpoint completed (``_metadata`` written) after wall time ``after`` under a
    job's ``--checkpoint-dir``: its number, size in MiB (with ``shared/``, where incremental
    checkpoints keep files) and when it completed. Empty when none completed in ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [m.parent for m in ckpt_dir.glob("*/chk-*/_metadata") if m.stat().st_mtime >= after]
        if done:
            chk = max(done, key=lambda p: int(p.name.split("-")[1]))
            size = _du(chk) + _du(chk.parent / "shared")
            return {
                "checkpoint": chk.name,
                "checkpoint_mib": round(size / MIB, 2),
                "checkpoint_done_after_s": round((chk / "_metadata").stat().st_mtime - after, 1),
            }
        time.sleep(1.0)
    return {"checkpoint": None}


def _du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def probe_records(records: list[Record], base_ms: int) -> tuple[list[Record], str]:
    """Records that make a restored job emit one list soon after its restart: a view by a known
    user of a known item at ``base_ms``, then (a minute of event time later) a new catalog item
    and a second view, which move the watermark of both topics past the first view."""
    user = next(k for kind, k, v in records if kind == "events" and v is not None)
    item = next(v["item_id"] for kind, _, v in records if kind == "items" and v is not None)
    tag = uuid.uuid4().hex[:6]
    first = f"bench-probe-{tag}-1"
    later = base_ms + PROBE_GAP_MS

    def view(eid: str, ts: int) -> Record:
        return (
            "events",
            user,
            {"event_id": eid, "user_id": user, "type": "view", "item_id": item, "ts": ts},
        )

    probe_item = {
        "item_id": f"BENCH-PROBE-{tag}",
        "title": "BENCH PROBE",
        "price": 1.0,
        "ts": later,
    }
    return [
        view(first, base_ms),
        ("items", probe_item["item_id"], probe_item),
        view(f"bench-probe-{tag}-2", later),
    ], first


RECORDS_IN = "flink_taskmanager_job_task_operator_numRecordsIn"


def prometheus_label(text: str) -> str:
    """A label value as Flink's Prometheus reporter writes it (``-`` and others become ``_``)."""
    return re.sub(r"[^a-zA-Z0-9_:]", "_", text)


def records_into(samples, job_name: str, operator: str = "recommend") -> float:
    """Records an operator of a job has received (both inputs, every subtask), from Prometheus
    samples (streamrec.prometheus)."""
    job, op = prometheus_label(job_name), prometheus_label(operator)
    return sum(
        s.value
        for s in samples
        if s.name == RECORDS_IN
        and s.labels.get("job_name") == job
        and s.labels.get("operator_name") == op
    )


def wait_for_catalog(
    port: int, job_name: str, n: int, handle: JobHandle, deadline: float, abort: list[str]
) -> None:
    """Until the job's recommend operator has received ``n`` records (the catalog: no event
    has been produced yet), read from its reporter on ``port``..``port + 9``."""
    from streamrec import prometheus

    alive = AliveCheck(handle, abort)
    while True:
        got = 0.0
        for p in range(port, port + 10):
            try:
                got = max(got, records_into(prometheus.scrape(f"localhost:{p}", 2.0), job_name))
            except (OSError, ValueError):
                continue
        if got >= n:
            return
        now = alive("the job stopped while reading the catalog")
        if now > deadline:
            raise RunError(f"timeout: the catalog is not in after {got:,.0f} of {n:,} records")
        time.sleep(1.0)


def run_once(
    launcher,
    flags: list[str],
    partitions: int,
    backlog: list[Record],
    opts: RunOptions,
    out_dir: Path,
    catalog_checks: bool = False,
    catalog: list[Record] | None = None,
    paced: OpenLoop | None = None,
    live: OpenLoop | None = None,
) -> dict[str, Any]:
    """Run the job (``launcher`` with ``flags`` plus the topic plumbing) on ``backlog``, then
    ``live`` and ``paced`` (see the module doc); returns the run's figures. RunError when it
    fails.

    ``catalog`` (new job only): catalog records produced before the job starts; the backlog is
    produced once the recommend operator has received all of them (its ``numRecordsIn``, read
    from the job's Prometheus reporter), and its clock starts then: ``catalog_load_s`` is the
    time from the job's launch to that point."""
    from streamrec import replay as replay_mod
    from streamrec import topics as topics_mod

    run_id = f"bench-{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    names = {k: f"{run_id}-{k}" for k in ("events", "items", "recs", "dlq", "warmup")}
    topics_mod.ensure_topics(
        opts.bootstrap,
        {
            names["events"]: partitions,
            names["items"]: 1,
            names["recs"]: partitions,
            names["dlq"]: 1,
            names["warmup"]: 1,
        },
        compacted={names["items"]},
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    plumbing = [
        "--bootstrap-servers", opts.bootstrap,
        "--events-topic", names["events"],
        "--items-topic", names["items"],
        "--output-topic", names["recs"],
        "--dlq-topic", names["dlq"],
        "--group-id", f"{run_id}-job",
        "--start-from", "earliest",
        "--top-k", str(opts.top_k),
        "--checkpoint-dir", str(ckpt_dir),
        "--restart-attempts", "0",
    ]  # fmt: skip
    if opts.model:
        plumbing += ["--model", opts.model]
    if opts.embedding_store:
        plumbing += ["--embedding-store", opts.embedding_store]
    if catalog_checks:  # the new job's flag (the restore is only measured for it)
        plumbing += ["--savepoint-dir", str(out_dir / "savepoints")]
    metrics_port = None
    if catalog:  # the new job's flags: its metrics tell when the catalog is in
        from streamrec import ports

        metrics_port = ports.free_port(span=10)  # the reporter takes port .. port + 9
        plumbing += ["--metrics-port", str(metrics_port), "--job-name", run_id]
    flags = plumbing + list(flags)
    row: dict[str, Any] = {"topics": names}

    def produce(records: list[Record], what: str) -> None:
        t = time.monotonic()
        done = replay_mod.replay(
            records, opts.bootstrap, names["events"], names["items"], progress=False
        )
        if done["errors"]:
            raise RunError(f"{what} replay: {done['errors']} delivery errors")
        row[f"{what}_replay_s"] = round(time.monotonic() - t, 2)

    produce(catalog or backlog, "catalog" if catalog else "backlog")
    reader = ListReader(opts.bootstrap, names, partitions)
    abort: list[str] = []
    holder: dict[str, JobHandle | None] = {"job": None}

    def roots():
        job = holder["job"]
        return job.memory_roots() if job is not None else ([], None, None)

    def over_limit(total: int) -> None:
        abort.append(
            f"RSS of the job's processes passed {opts.max_rss_bytes / 2**30:.1f} GiB ({total / 2**30:.1f} GiB)"
        )

    sampler = Sampler(roots, limit_bytes=opts.max_rss_bytes, on_limit=over_limit)
    handle: JobHandle | None = None
    try:
        launcher.prepare()  # e.g. a fresh standalone cluster: not part of the start-up time
        with sampler:
            started_ms = time.time() * 1000
            handle = holder["job"] = launcher.start(flags, out_dir / "job.log")
            deadline = time.monotonic() + opts.timeout
            if catalog:
                n_catalog = sum(1 for k, _, _ in catalog if k == "items")
                wait_for_catalog(metrics_port, run_id, n_catalog, handle, deadline, abort)
                row["catalog_load_s"] = round(time.time() - started_ms / 1000, 1)
                now = time.time() * 1000
                produce(backlog, "backlog")
                started_ms = now
            expected = list_event_ids(backlog)
            reader.wait_for(expected, handle, deadline, abort)
            backlog_ms = {k: v for k, v in reader.consumed_ms.items() if k in expected}
            row.update(figures.backlog_throughput(backlog_ms, reader.emitted_ms, started_ms))
            row["backlog_s"] = round(
                (max(backlog_ms.values(), default=started_ms) - started_ms) / 1000, 2
            )
            row["dead_letters"] = len(reader.dead)
            now_rss = sampler.sample()
            row.update({f"rss_{k}_mib": round(v / MIB, 1) for k, v in sorted(now_rss.items())})
            if paced and paced.records and row["lists_per_s"] == row["lists_per_s"]:  # not NaN
                phases = _Phases(reader, handle, names, opts, deadline, abort)
                row.update(phases.run(last_ts(backlog), row["lists_per_s"], paced, live, out_dir))
            if catalog_checks:
                row.update(
                    _catalog_checks(
                        launcher,
                        flags,
                        handle,
                        holder,
                        reader,
                        backlog,
                        names,
                        ckpt_dir,
                        opts,
                        out_dir,
                        abort,
                    )
                )
                handle = holder["job"]
    except RunError as e:
        e.partial = row  # what was measured before it failed (RSS peaks, catalog load, ...)
        raise
    finally:
        row.update({f"{k}_peak": v for k, v in _peaks(sampler).items()})
        reader.close()
        job = holder["job"]
        if job is not None:
            job.stop()
        with contextlib.suppress(Exception):
            topics_mod.delete_topics(opts.bootstrap, list(names.values()))
        row["n_lists"] = reader.n_lists
        row["n_dead_letters"] = reader.n_dlq
        row["n_session_end_lists"] = reader.n_session_end
        row["log"] = str(out_dir / "job.log")
    return row


def _rounded(stats: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items()}


def _peaks(sampler: Sampler) -> dict[str, float]:
    return {f"rss_{k}_mib": round(v / MIB, 1) for k, v in sorted(sampler.peak.items())}


@dataclass
class _Phases:
    """The open-loop phases of a run, after its backlog (module doc, step 4)."""

    reader: ListReader
    handle: JobHandle
    names: dict[str, str]
    opts: RunOptions
    deadline: float
    abort: list[str]

    def run(
        self,
        backlog_ts: int,
        backlog_rate: float,
        paced: OpenLoop,
        live: OpenLoop | None,
        out_dir: Path,
    ) -> dict[str, Any]:
        """Settle, the live probe (if any), settle, then the paced events; the figures.
        ``backlog_ts``: the backlog's last ``ts``; ``backlog_rate``: its lists/s."""
        reader = self.reader
        # the backlog's last watermark releases its session-end and refresh timers after its
        # last per-event list: that work is the backlog's, not the load's being measured
        n0 = reader.n_lists
        out: dict[str, Any] = {"settle_s": round(self._settle(), 1)}
        out["settle_lists"] = reader.n_lists - n0
        base = backlog_ts + PROBE_GAP_MS if self.opts.paced_time == "wall" else None
        live_rate = None
        if live and live.records:
            # the backlog's rate, produced while the job runs: what it sustains when the
            # producer and the broker's write path share the machine with it (a backlog has
            # them idle)
            t0 = time.time() * 1000
            produced, result = self._open_loop(live, backlog_rate, base)
            got = figures.throughput(
                [reader.consumed_ms[k] for k in produced if k in reader.consumed_ms], t0
            )
            live_rate = got["lists_per_s"]
            out["live_events"] = len(produced)
            out["live_rate_produced"] = round(result.get("rate", float("nan")), 1)
            out["live_lists_per_s"] = live_rate
            if base is not None:
                base += int(time.time() * 1000 - t0)  # event time went on at wall-clock speed
            self._settle()
        rate = figures.paced_rate(self.opts.paced_ratio, backlog_rate, live_rate)
        produced, result = self._open_loop(paced, rate, base)
        lat = figures.latency_stats(figures.latencies_ms(produced, reader.consumed_ms))
        with (out_dir / "latency.csv").open("w") as f:  # for a look at the series
            f.write("event_id,produced_ms,emitted_ms,consumed_ms\n")
            for eid, t in sorted(produced.items(), key=lambda kv: kv[1]):
                emitted = reader.emitted_ms.get(eid, float("nan"))
                consumed = reader.consumed_ms.get(eid, float("nan"))
                f.write(f"{eid},{t:.1f},{emitted:.1f},{consumed:.1f}\n")
        return {
            **out,
            "paced_rate": round(rate, 1),
            "paced_rate_achieved": round(result.get("rate", float("nan")), 1),
            "paced_tail_events": result.get("tail_events"),
            "paced_tail_s": result.get("tail_s"),
            "paced_time": self.opts.paced_time,
            "latency_ms": _rounded(lat),
            # produce -> the job's emitted_at (its own clock): the latency without the sink and
            # the consumer
            "emit_latency_ms": _rounded(
                figures.latency_stats(figures.latencies_ms(produced, reader.emitted_ms))
            ),
        }

    def _settle(self) -> float:
        return self.reader.wait_quiet(
            SETTLE_QUIET_S, SETTLE_LIMIT_S, self.handle, self.deadline, self.abort
        )

    def _open_loop(
        self, phase: OpenLoop, rate: float, base: int | None
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """``phase`` produced at ``rate`` events/s by a thread while this one reads until every
        list is in; (produce time per event id, :func:`paced_replay`'s result)."""
        produced: dict[str, float] = {}
        result: dict[str, Any] = {}
        errors: list[BaseException] = []
        done = threading.Event()

        def _replay():
            try:
                result.update(
                    paced_replay(
                        phase.records,
                        self.opts.bootstrap,
                        self.names,
                        rate,
                        produced,
                        base,
                        tail=phase.tail,
                        stop=done,
                    )
                )
            except BaseException as e:  # noqa: BLE001 - surfaced below
                errors.append(e)

        t = threading.Thread(target=_replay, name="bench-paced-replay", daemon=True)
        t.start()
        try:
            ids = list_event_ids(phase.records)
            self.reader.wait_for(ids, self.handle, self.deadline, self.abort)
        finally:
            done.set()
            t.join(60)
        if errors:
            raise RunError(f"paced replay failed: {errors[0]!r}")
        return produced, result


def _catalog_checks(
    launcher, flags, handle, holder, reader, backlog, names, ckpt_dir, opts, out_dir, abort
) -> dict[str, Any]:
    """Checkpoint size after the backlog, then stop with a savepoint and time a restore."""
    out: dict[str, Any] = {}
    last_list = max(reader.consumed_ms.values()) / 1000.0
    out.update(checkpoint_size(ckpt_dir, last_list, opts.checkpoint_timeout))
    t = time.monotonic()
    savepoint = handle.stop(savepoint=True, timeout=opts.checkpoint_timeout)
    holder["job"] = None
    out["savepoint_s"] = round(time.monotonic() - t, 1)
    if not savepoint:
        out["restore_error"] = f"no savepoint path in {handle.log_path}"
        return out
    out["savepoint_mib"] = round(_du(Path(savepoint.removeprefix("file:"))) / MIB, 2)
    probes, first = probe_records(backlog, last_ts(backlog) + PROBE_GAP_MS)
    started = time.time() * 1000
    restarted = holder["job"] = launcher.start(
        [*flags, "--from-savepoint", savepoint], out_dir / "restore.log"
    )
    from streamrec import replay as replay_mod

    replay_mod.replay(probes, opts.bootstrap, names["events"], names["items"], progress=False)
    try:
        reader.wait_for({first}, restarted, time.monotonic() + opts.timeout, abort)
        out["restore_s"] = round((reader.consumed_ms[first] - started) / 1000.0, 2)
    except RunError as e:
        out["restore_error"] = str(e)[:2000]
    return out
