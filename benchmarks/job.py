"""Job throughput: the real job on the local mini-cluster, fed a backlog through a real broker.

    python -m benchmarks.job [--events 20000] [--variant NAME='FLAGS' ...] [--json FILE]
    streamrec bench job ...

Every variant gets the same Online Retail records (each item before the first event naming it),
replayed as fast as the broker takes them into fresh topics, and the job (``jobs.config.
job_command`` plus the variant's flags) reads them from the beginning, exactly as
``streamrec evaluate`` runs it. Figures per variant: steady-state throughput (lists / seconds
between the first and the last list consumed, so start-up is left out), start-up (job process
start -> first list) and wall time; variants run one after another in one invocation and are
compared as ratios to the first. A variant's ``--parallelism N`` also gives its events and
output topics N partitions.

Default variants: ``event-time`` (the job's defaults), ``align-none`` (``--align none``) and
``parallelism-2`` (``--parallelism 2``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_VARIANTS = [
    ("event-time", ""),
    ("align-none", "--align none"),
    ("parallelism-2", "--parallelism 2"),
]


def parse_variant(text: str) -> tuple[str, str]:
    name, sep, flags = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"variant {text!r} is not NAME='FLAGS'")
    return name.strip(), flags


def split_parallelism(flags: str) -> tuple[int, list[str]]:
    """``--parallelism N`` out of a variant's flags (it also sets the topics' partitions)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--parallelism", type=int, default=1)
    ns, rest = p.parse_known_args(shlex.split(flags))
    return ns.parallelism, rest


def throughput(consumed_ms: dict[str, float], started_ms: float) -> dict[str, float]:
    """Steady-state lists/s between the first and last list consumed, and start-up seconds."""
    times = sorted(consumed_ms.values())
    if not times:
        return {"lists": 0, "lists_per_s": 0.0, "startup_s": float("nan"), "steady_s": 0.0}
    steady = (times[-1] - times[0]) / 1000.0
    return {
        "lists": len(times),
        # lists consumed in one poll share a timestamp: too short a run has no steady state
        "lists_per_s": (len(times) - 1) / steady if steady > 0 else float("nan"),
        "startup_s": (times[0] - started_ms) / 1000.0,
        "steady_s": steady,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamrec bench job", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events replayed per variant")
    p.add_argument("--csv", type=Path, default=None, help="Online Retail CSV (.csv or .csv.xz)")
    p.add_argument("--model", default=None, help="exported encoder (default: the job's)")
    p.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=None,
        metavar="NAME='FLAGS'",
        help="job flags of one variant (repeatable; default: event-time, align-none, "
        "parallelism-2)",
    )
    p.add_argument("--bootstrap-servers", default=None, help="default: a private broker")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per variant")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from streamrec import evaluate, kafka_broker, paths

    variants = args.variant or DEFAULT_VARIANTS
    csv = args.csv or paths.default_data_file()
    records = evaluate.load_records(csv, max_events=args.events)
    n_events = sum(1 for kind, _, _ in records if kind == "events")
    print(
        f"job benchmark: {n_events:,} events from {csv.name} as a backlog, per variant; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            data_dir = Path(tempfile.mkdtemp(prefix="bench-job-broker-", dir=paths.runtime_dir()))
            stack.callback(shutil.rmtree, data_dir, True)  # after the broker has stopped
            bootstrap = stack.enter_context(
                kafka_broker.running_broker(kafka_broker.free_port(), data_dir)
            )
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-job-")))
        for name, flags in variants:
            parallelism, job_args = split_parallelism(flags)
            print(f"[{name}] flags: {flags or '(defaults)'}", flush=True)
            started_ms = time.time() * 1000.0
            try:
                res = evaluate.run_job(
                    records,
                    bootstrap,
                    out / name,
                    model=args.model,
                    parallelism=parallelism,
                    partitions=parallelism,
                    timeout=args.timeout,
                    job_args=job_args,
                    progress=False,
                )
            except evaluate.EvaluationError as e:
                print(f"streamrec bench job: variant {name}: {e}", file=sys.stderr)
                return 1
            row = {"variant": name, "flags": flags, "parallelism": parallelism}
            row.update(throughput(res["consumed_ms"], started_ms))
            row["wall_s"] = res["seconds"].get("lists", float("nan"))
            results.append(row)
            print(
                f"[{name}] {row['lists']:,} lists, {row['lists_per_s']:,.0f} lists/s steady, "
                f"first list after {row['startup_s']:.1f}s",
                flush=True,
            )

    base = results[0]["lists_per_s"]
    hdr = f"{'variant':<16} {'par':>3} {'lists':>7} {'lists/s':>9} {'x first':>8} {'startup s':>10} {'wall s':>8}"  # noqa: E501
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in results:
        r["ratio_vs_first"] = r["lists_per_s"] / base if base > 0 else float("nan")
        print(
            f"{r['variant']:<16} {r['parallelism']:>3} {r['lists']:>7,} {r['lists_per_s']:>9,.0f} "
            f"{r['ratio_vs_first']:>7.2f}x {r['startup_s']:>10.1f} {r['wall_s']:>8.1f}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"events": n_events, "variants": results}, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
