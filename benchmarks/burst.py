"""Load: a burst of 10x the job's maximum rate; memory stays bounded and the lag recovers.

    python -m benchmarks.burst [--burst-factor 10] [--burst-s 5] [--steady-share 0.3] [--json F]
    streamrec bench burst ...

The job runs as users run it (``python -m jobs.recommend`` on the local mini-cluster, 2 Kafka
partitions, ``--parallelism 2``) on Online Retail events from a private broker:

1. calibration: ``--calibration-events`` events as a backlog; the rate of lists over the second
   half of them is the job's maximum rate here (the first half warms the job's state up: on a
   cold start, with little state, the job runs faster than it can keep up with later);
2. steady: events at ``--steady-share`` of that rate for ``--steady-s`` seconds;
3. burst: ``--burst-factor`` times the maximum rate for ``--burst-s`` seconds;
4. recovery: the steady rate again, until the lag is back where it was before the burst.

Every second: the resident memory (RSS) of the job's processes (the driver, its JVM, Python
workers) and the lag (events produced that have no list yet). Printed: the maximum rate, RSS
before/peak/after the burst, the peak lag, seconds from the burst's end until the lag had
recovered, and list latency (produce -> list) before and after the burst. Kafka absorbs a burst: the job reads what it can process (back-pressure),
so its memory must not grow with the burst.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

LIST_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "search"})


def process_tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def segments(records, sizes: list[int]) -> list[list]:
    """Consecutive slices of ``records`` holding ``sizes`` events each (items stay with the
    first event naming them); the last slice takes the rest."""
    out, cur, n = [], [], 0
    it = iter(sizes)
    want = next(it, None)
    for rec in records:
        cur.append(rec)
        if rec[0] == "events":
            n += 1
            if want is not None and n >= want:
                out.append(cur)
                cur, n = [], 0
                want = next(it, None)
    out.append(cur)
    return out


class Watch:
    """Consumes the events topic (produce times) and the output (lists) in a thread."""

    def __init__(self, bootstrap: str, events: str, recs: str, partitions: int):
        from confluent_kafka import Consumer, TopicPartition

        self.produced: dict[str, float] = {}  # event id -> produce time (s, wall)
        self.listed: dict[str, float] = {}  # event id -> first list (s, wall)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                                  "enable.auto.commit": False})  # fmt: skip
        self.consumer.assign(
            [TopicPartition(events, p, -2) for p in range(partitions)]
            + [TopicPartition(recs, p, -2) for p in range(partitions)]
        )
        self.events = events
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for msg in self.consumer.consume(2000, 0.2):
                if msg.error() or msg.value() is None:
                    continue
                now = time.time()
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    v = json.loads(msg.value())
                    with self.lock:
                        if msg.topic() == self.events:
                            if v.get("type") in LIST_TYPES:
                                self.produced[str(v["event_id"])] = msg.timestamp()[1] / 1000
                        elif v.get("trigger", "event") == "event":
                            self.listed.setdefault(str(v["trigger_event_id"]), now)
        self.consumer.close()

    def lag(self) -> int:
        with self.lock:
            return sum(1 for e in self.produced if e not in self.listed)

    def latencies(self, since: float, until: float) -> list[float]:
        with self.lock:
            return [t - self.produced[e] for e, t in self.listed.items()
                    if e in self.produced and since <= t < until]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamrec bench burst", description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", type=Path, default=None, help="Online Retail CSV (.csv or .csv.xz)")
    p.add_argument("--model", default=None, help="exported encoder (default: the job's)")
    p.add_argument("--parallelism", type=int, default=2)
    p.add_argument("--calibration-events", type=int, default=6000)
    p.add_argument("--steady-share", type=float, default=0.3, help="of the maximum rate")
    p.add_argument("--steady-s", type=float, default=20)
    p.add_argument("--burst-factor", type=float, default=10, help="times the maximum rate")
    p.add_argument("--burst-s", type=float, default=5)
    p.add_argument("--recovery-timeout", type=float, default=600)
    p.add_argument("--job-args", default="", help="more job flags (one string)")
    p.add_argument("--bootstrap-servers", default=None, help="default: a private broker")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import shlex

    from streamrec import evaluate, kafka_broker, paths, ports, replay, topics

    csv = args.csv or paths.default_data_file()
    with contextlib.ExitStack() as stack:
        base = Path(tempfile.mkdtemp(prefix="bench-burst-", dir=paths.runtime_dir()))
        stack.callback(shutil.rmtree, base, True)
        bootstrap = args.bootstrap_servers or stack.enter_context(
            kafka_broker.running_broker(ports.free_port(), base / "kafka")
        )
        tag = f"burst-{uuid.uuid4().hex[:6]}"
        names = {k: f"{tag}-{k}" for k in ("events", "items", "recs", "dlq")}
        n = args.parallelism
        topics.ensure_topics(bootstrap, {names["events"]: n, names["items"]: 1,
                                         names["recs"]: n, names["dlq"]: 1},
                             compacted={names["items"]})  # fmt: skip
        watch = Watch(bootstrap, names["events"], names["recs"], n)
        stack.callback(watch.stop.set)
        cmd = evaluate.job_command(bootstrap, names, f"{tag}-job", args.model, n, 10,
                                   ["--metrics-port", "0", *shlex.split(args.job_args)])  # fmt: skip
        log = (base / "job.log").open("wb")
        job = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=paths.PROJECT_ROOT,
                               start_new_session=True)  # fmt: skip
        stack.callback(log.close)
        stack.callback(evaluate.stop_process, job)

        def alive():
            if job.poll() is not None:
                raise SystemExit(f"the job exited ({job.returncode}); log {base / 'job.log'}")

        # 1. calibration
        records = evaluate.load_records(csv, max_events=args.calibration_events)
        t0 = time.time()
        replay.replay(records, bootstrap, names["events"], names["items"], progress=False)
        n_cal = sum(1 for k, _, v in records if k == "events" and v.get("type") in LIST_TYPES)
        while len(watch.listed) < n_cal:
            alive()
            time.sleep(0.5)
        times = sorted(watch.listed.values())
        steady_from = times[len(times) // 2]  # leave start-up and cold state out
        max_rate = (len(times) - len(times) // 2) / max(times[-1] - steady_from, 1e-3)
        rss_idle = process_tree_rss(job.pid)
        print(f"maximum rate: {max_rate:.0f} lists/s (calibration: {n_cal} events, first list "
              f"after {times[0] - t0:.0f}s); job RSS {rss_idle / 2**20:.0f} MiB", flush=True)  # fmt: skip

        # 2-4. steady, burst, steady again, paced from the rest of the file
        steady = args.steady_share * max_rate
        burst = args.burst_factor * max_rate
        recovery_events = int(steady * args.recovery_timeout) + 1
        sizes = [int(steady * args.steady_s) + 1, int(burst * args.burst_s) + 1, recovery_events]
        all_records = evaluate.load_records(csv, max_events=args.calibration_events + sum(sizes))
        rest = all_records[len(records) :]
        phases = segments(rest, sizes)
        marks: dict[str, float] = {}
        samples: list[dict[str, Any]] = []

        def produce_phases():
            for name, recs, rate in zip(("steady", "burst", "recovery"), phases,
                                        (steady, burst, steady), strict=False):  # fmt: skip
                marks[name] = time.time()
                replay.replay(recs, bootstrap, names["events"], names["items"], rate=rate,
                              progress=False)  # fmt: skip
                marks[name + "_end"] = time.time()

        producer = threading.Thread(target=produce_phases, daemon=True)
        producer.start()
        lag_before = None
        recovered_at = None
        while True:
            alive()
            now = time.time()
            sample = {"t": round(now - t0, 1), "rss": process_tree_rss(job.pid), "lag": watch.lag()}
            samples.append(sample)
            if "burst" not in marks and "steady" in marks:
                lag_before = sample["lag"]
            # recovered: the lag is back to what the steady rate leaves (2 s of events, or twice
            # the lag before the burst)
            if "burst_end" in marks and sample["lag"] <= max(2 * (lag_before or 0), 2 * steady):
                recovered_at = now
                break
            if "burst_end" in marks and now - marks["burst_end"] > args.recovery_timeout:
                break
            time.sleep(1)
        end = time.time()  # (the rest of the recovery phase is not needed)

        def phase(name):
            return [s for s in samples if marks.get(name, 1e18) - t0 <= s["t"] <= (
                marks.get(name + "_end", end) - t0)]  # fmt: skip

        burst_and_after = [s for s in samples if s["t"] >= marks["burst"] - t0]
        pre = phase("steady")
        lat_pre = watch.latencies(marks["steady"], marks["burst"])
        lat_after = watch.latencies(marks["burst"], end)
        figures = {
            "max_rate_lists_per_s": round(max_rate, 1),
            "steady_rate": round(steady, 1),
            "burst_rate": round(burst, 1),
            "burst_s": args.burst_s,
            "events_in_burst": sizes[1],
            "rss_mib_before_burst": round(max(s["rss"] for s in pre) / 2**20),
            "rss_mib_peak": round(max(s["rss"] for s in burst_and_after) / 2**20),
            "rss_mib_end": round(samples[-1]["rss"] / 2**20),
            "lag_before_burst": lag_before,
            "lag_peak": max(s["lag"] for s in burst_and_after),
            "recovered_s_after_burst": (
                round(recovered_at - marks["burst_end"], 1) if recovered_at else None
            ),
            "latency_s_p50_before": round(statistics.median(lat_pre), 2) if lat_pre else None,
            "latency_s_max_after": round(max(lat_after), 2) if lat_after else None,
            "job_alive": job.poll() is None,
            "samples": samples,
        }
    for k, v in figures.items():
        if k != "samples":
            print(f"{k:>26}: {v}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if figures["recovered_s_after_burst"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
