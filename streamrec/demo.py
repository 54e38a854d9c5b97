"""`streamrec demo`: the whole path on one machine, in the foreground.

Starts a local Apache Kafka broker (KRaft), resets the demo topics, runs the recommend job on the
local Flink mini-cluster, replays Online Retail purchases (the committed sample by default) and
prints rolling recommendations for real customers as they arrive. Ctrl-C stops the replay, the
job and the broker cleanly.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from jobs.config import job_command
from streamrec import kafka_broker, paths, topics, watch
from streamrec.evaluate import stop_process


def _stop(proc: subprocess.Popen | None, name: str) -> None:
    if proc is not None and proc.poll() is None:
        print(f"demo: stopping {name}", file=sys.stderr)
        stop_process(proc)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamrec demo", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9092, help="local broker port")
    p.add_argument("--csv", type=Path, default=paths.sample_data_file())
    p.add_argument("--rate", type=float, default=20.0, help="replayed events per second (0: max)")
    p.add_argument("--users", type=int, default=None, help="only the first N customers")
    p.add_argument("--user", default=None, help="show only this customer's lists")
    p.add_argument("--model", default=None, help="encoder (default: the job's default)")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--partitions", type=int, default=2, help="partitions of the events topic")
    p.add_argument("--max-lists", type=int, default=None, help="stop after printing N lists")
    args = p.parse_args(argv)

    run = paths.runtime_dir() / "demo"
    data_dir = run / "kafka"
    started_broker = False
    job = replayer = None
    try:
        if kafka_broker.status(data_dir).get("running"):
            bootstrap = kafka_broker.status(data_dir)["bootstrap"]
        else:
            print(f"demo: starting Kafka on port {args.port} ({data_dir})", file=sys.stderr)
            bootstrap = kafka_broker.start(args.port, data_dir)
            started_broker = True
        names = {
            "events": topics.EVENTS_TOPIC,
            "items": topics.ITEMS_TOPIC,
            "recs": topics.RECOMMENDATIONS_TOPIC,
            "dlq": topics.DLQ_TOPIC,
        }
        topics.delete_topics(bootstrap, list(names.values()))
        topics.ensure_topics(
            bootstrap,
            {
                names["events"]: args.partitions,
                names["items"]: 1,
                names["recs"]: args.partitions,
                names["dlq"]: 1,
            },
        )
        group = f"streamrec-demo-{int(time.time())}"
        job_cmd = job_command(
            bootstrap_servers=bootstrap,
            group_id=group,
            parallelism=args.parallelism,
            checkpoint_dir=run / "checkpoints",
            start_from="earliest",
            model=args.model,
        )
        job_log = run / "job.log"
        print(
            f"demo: starting the job on the local Flink mini-cluster (log: {job_log})",
            file=sys.stderr,
        )
        job = _spawn(job_cmd, job_log)

        replay_cmd = [
            sys.executable,
            "-m",
            "streamrec.cli",
            "replay",
            "--csv",
            str(args.csv),
            "--bootstrap-servers",
            bootstrap,
            "--no-progress",
        ]
        if args.rate:
            replay_cmd += ["--rate", str(args.rate)]
        if args.users:
            replay_cmd += ["--users", str(args.users)]
        print(f"demo: replaying {args.csv.name} at {args.rate or 'max'} events/s", file=sys.stderr)
        replayer = _spawn(replay_cmd, run / "replay.log")

        print("demo: waiting for the first recommendations (Ctrl-C stops) ...", file=sys.stderr)
        watch.watch(
            bootstrap,
            from_beginning=True,
            user=args.user,
            max_records=args.max_lists,
            stop_when=lambda: job.poll() is not None,
        )
        if job.poll() is not None:
            print(f"demo: the job exited with {job.returncode}; see {job_log}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        print("\ndemo: interrupted", file=sys.stderr)
        return 0
    finally:
        _stop(replayer, "replay")
        _stop(job, "job")
        if started_broker:
            print("demo: stopping Kafka", file=sys.stderr)
            kafka_broker.stop(data_dir)
