"""Flags of the recommend job (the contract's list, plus a few more) and their defaults.

Defaults that depend on the machine (broker, jars, model folder, checkpoint folder) come from
``streamrec.paths`` and environment variables, not from the job code.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from streamrec import paths

DEFAULT_MODEL = "minilm-l6-fp32"

# ranking signals that --ablate can switch off (operators.ranking)
SIGNALS = ("content", "collaborative", "repeat", "trending")


@dataclass
class JobConfig:
    bootstrap_servers: str = field(default_factory=paths.default_bootstrap_servers)
    events_topic: str = "events"
    items_topic: str = "items"
    output_topic: str = "recommendations"
    dlq_topic: str = "events-dlq"
    group_id: str = "streamrec"
    parallelism: int = 1
    model: str = DEFAULT_MODEL
    device: str = "auto"
    encoder_batch_size: int = 64
    encoder_max_delay_ms: int = 5
    embedding_store: str | None = None
    top_k: int = 10
    start_from: str = "earliest"
    checkpoint_interval_ms: int = 10_000
    buffer_timeout_ms: int = 10
    checkpoint_dir: str | None = None
    delivery: str = "at-least-once"
    out_of_orderness_ms: int = 1_000
    catalog_out_of_orderness_ms: int = 0
    idleness_ms: int = 1_000
    watermark_interval_ms: int = 50
    catalog_wait_ms: int = 30_000
    align: str = "event-time"
    max_wait_ms: int = 10_000
    max_future_ms: int = 86_400_000
    session_gap_ms: int = 1_800_000
    ranking_config: str | None = None
    ablate: list[str] = field(default_factory=list)
    blas_threads: int = 1
    state_ttl_days: float = 90.0
    execution_mode: str = "thread"
    python_path: str | None = None
    bundle_time_ms: int = 20
    bundle_size: int = 1000
    from_savepoint: str | None = None
    savepoint_dir: str | None = None
    metrics_port: int = 9249
    kafka_properties: dict[str, str] = field(default_factory=dict)
    jars: list[str] = field(default_factory=list)
    python_executable: str | None = None
    restart_attempts: int = -1
    job_name: str = "streamrec-recommend"

    def resolved_checkpoint_dir(self) -> str:
        return _uri(self.checkpoint_dir or str(paths.runtime_dir() / "checkpoints"))

    def resolved_savepoint_dir(self) -> str:
        return _uri(self.savepoint_dir or str(paths.runtime_dir() / "savepoints"))

    def resolved_jars(self) -> list[str]:
        jars = self.jars or [str(j) for j in paths.flink_jars()]
        names = " ".join(Path(j).name for j in jars)
        for need in ("flink-sql-connector-kafka", "streamrec-flink-serde"):
            if need not in names:
                raise SystemExit(
                    f"the {need} jar is missing (looked in {paths.flink_jar_dir()}); "
                    "run `streamrec setup` first, or pass --jars"
                )
        return [j if "://" in j else Path(j).resolve().as_uri() for j in jars]


def _signals(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in SIGNALS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown signal(s) {', '.join(unknown)}; choose from {', '.join(SIGNALS)}"
        )
    return names


def _uri(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


def parser() -> argparse.ArgumentParser:
    d = JobConfig()
    p = argparse.ArgumentParser(
        prog="streamrec run",
        description="Real-time recommendations: Kafka events -> PyFlink (per-user state, ONNX "
        "BERT encoder) -> rolling top-K lists on Kafka.",
    )
    a = p.add_argument

    def ms(flag: str, help: str) -> None:
        """An integer milliseconds flag ``--x-y`` stored in the field ``x_y_ms``."""
        dest = flag[2:].replace("-", "_") + "_ms"
        a(flag, type=int, default=getattr(d, dest), metavar="MS", dest=dest, help=help)

    a(
        "--bootstrap-servers",
        default=d.bootstrap_servers,
        help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS or localhost:9092)",
    )
    a("--events-topic", default=d.events_topic)
    a("--items-topic", default=d.items_topic)
    a("--output-topic", default=d.output_topic)
    a("--dlq-topic", default=d.dlq_topic)
    a("--group-id", default=d.group_id)
    a("--parallelism", type=int, default=d.parallelism)
    a(
        "--model",
        default=d.model,
        help="exported encoder: a folder, or a name under the model cache (default %(default)s)",
    )
    a(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=d.device,
        help="ONNX Runtime provider: CUDA when a GPU is visible (auto), or forced",
    )
    a(
        "--encoder-batch-size",
        type=int,
        default=d.encoder_batch_size,
        help="texts encoded together at most",
    )
    ms("--encoder-max-delay", "latency budget of an encoder batch (processing time)")
    a(
        "--embedding-store",
        default=None,
        metavar="DIR",
        help="RocksDB embedding store written by `streamrec encode-catalog`: catalog texts "
        "found there for this model are not encoded again (a path every TaskManager can read)",
    )
    a("--top-k", type=int, default=d.top_k)
    a(
        "--start-from",
        choices=["earliest", "latest"],
        default=d.start_from,
        help="where to start when the group has no committed offsets",
    )
    ms("--checkpoint-interval", "checkpoint interval in ms (0 disables)")
    ms(
        "--buffer-timeout",
        "longest a record waits in a network buffer between tasks before it is sent (ms; "
        "Flink's execution.buffer-timeout, 100 by default there: 10 is lower latency at light "
        "load, with the same throughput under a backlog)",
    )
    a("--checkpoint-dir", default=None, help="checkpoint storage (path or URI)")
    a("--delivery", choices=["exactly-once", "at-least-once"], default=d.delivery)
    ms("--out-of-orderness", "bounded out-of-orderness of event time (ms)")
    ms(
        "--catalog-out-of-orderness",
        "bounded out-of-orderness of the catalog's ts within one partition of the items topic "
        "(ms; 0: each partition is a change stream in ts order). A catalog update is late only "
        "if it is also more than --out-of-orderness behind the events; with alignment an active "
        "catalog partition holds lists back by this bound",
    )
    ms(
        "--idleness",
        "a source partition silent this long stops holding event time back (ms; keep it at or "
        "below --out-of-orderness: with alignment a quiet catalog holds lists this long)",
    )
    ms(
        "--watermark-interval",
        "how often the sources emit watermarks (ms; Flink's pipeline.auto-watermark-interval, "
        "200 by default there): with event-time alignment, part of every list's wait",
    )
    ms(
        "--catalog-wait",
        "at start, how long a catalog partition that has delivered nothing yet holds event time "
        "back before it counts as idle (ms)",
    )
    ms(
        "--max-future",
        "events (and catalog records) whose ts is further ahead of the wall clock than this go "
        "to the dead-letter topic (ms)",
    )
    ms(
        "--session-gap",
        "a user's session closes after this much event time without an event of theirs; the "
        "job then emits a list for the next visit (trigger session_end) (ms)",
    )
    a(
        "--ranking-config",
        default=None,
        metavar="FILE",
        help="JSON file of ranking weights (default: the frozen ones in operators/)",
    )
    a(
        "--ablate",
        type=_signals,
        default=[],
        metavar="SIGNAL[,SIGNAL]",
        help="rank without these signals (evaluation ablations): " + ", ".join(SIGNALS),
    )
    a(
        "--align",
        choices=["event-time", "none"],
        default=d.align,
        help="event-time: apply each user's events once the watermark (events and catalog) "
        "passes them, so lists do not depend on replay speed; none: apply at once",
    )
    ms(
        "--max-wait",
        "with --align event-time: longest an event waits (processing time) when event "
        "time stands still",
    )
    a(
        "--blas-threads",
        type=int,
        default=d.blas_threads,
        help="BLAS threads per Python worker for scoring (0: the library's default); scale "
        "with --parallelism instead",
    )
    a(
        "--state-ttl-days",
        type=float,
        default=d.state_ttl_days,
        help="drop a user's profile after this many days (event time) without an event of "
        "theirs (0: never)",
    )
    a(
        "--execution-mode",
        choices=["thread", "process"],
        default=d.execution_mode,
        help="PyFlink runs the Python operators inside the TaskManager JVM (thread, PEMJA) or "
        "in separate Python worker processes (process)",
    )
    a(
        "--python-path",
        default=None,
        metavar="PATHS",
        help="PYTHONPATH of the Python workers (thread mode: the embedded interpreter); default: "
        "the site-packages of --python-executable (or this interpreter) and the project",
    )
    ms("--bundle-time", "process mode: max time records wait in a Python bundle")
    a("--bundle-size", type=int, default=d.bundle_size, help="process mode: records per bundle")
    a(
        "--from-savepoint",
        default=None,
        metavar="PATH",
        help="resume from this savepoint or retained checkpoint (state and source offsets)",
    )
    a(
        "--savepoint-dir",
        default=None,
        metavar="DIR",
        help="where `streamrec run` writes the savepoint when stopped with SIGTERM or Ctrl-C "
        "(default .runtime/savepoints)",
    )
    a(
        "--kafka-property",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="kafka_properties",
        help="extra Kafka client setting (SASL, SSL, ...); repeatable",
    )
    a(
        "--metrics-port",
        type=int,
        default=d.metrics_port,
        metavar="PORT",
        help="local mini-cluster: Flink's Prometheus reporter on the first free port of "
        "PORT..PORT+9 (0: off). On a cluster the reporter is the cluster's configuration "
        "(streamrec cluster start --metrics-port)",
    )
    a("--jars", action="append", default=[], help="jar(s) for the job (default: the jar cache)")
    a("--python-executable", default=None, help="python for the Flink Python workers")
    a(
        "--restart-attempts",
        type=int,
        default=d.restart_attempts,
        help="on failure: -1 restarts from the last checkpoint forever (exponential backoff), "
        "0 fails the job, N restarts N times",
    )
    a("--job-name", default=d.job_name)
    return p


def parse_args(argv: list[str] | None = None) -> JobConfig:
    ns = parser().parse_args(argv)
    values = vars(ns)
    values["kafka_properties"] = dict(values["kafka_properties"])
    for key in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM"):
        if key in os.environ:
            prop = key[len("KAFKA_") :].lower().replace("_", ".")
            values["kafka_properties"].setdefault(prop, os.environ[key])
    return JobConfig(**values)


def job_command(**flags) -> list[str]:
    """``python -m jobs.recommend --flag value ...`` (flags by dest name, None left out): how
    streamrec's own tools (demo, evaluate, tests) start the job as a local process."""
    cmd = [sys.executable, "-m", "jobs.recommend"]
    for name, value in flags.items():
        if value is not None:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd
