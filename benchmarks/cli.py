"""``streamrec bench NAME [flags]``: dispatch to ``benchmarks.NAME.main(flags)``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS: dict[str, str] = {
    "burst": "a 10x burst over the job's maximum rate: memory (RSS) and lag recovery",
    "encoder": "PyTorch eager vs the ONNX encoder variants (CPU; GPU sweep where CUDA is usable)",
    "faults": "kill the TaskManager / Python workers at random points: lists lost, duplicated, changed",
    "job": "old/new job, process/thread, parallelism 1/2, a plain-loop reference, catalog sizes",
    "parse": "microseconds per record of the Kafka record parsers (events, items, dead letters)",
    "quality": "baseline recommendation quality on the Online Retail file (no Kafka, no job)",
    "ranking": "cost of the ranking core per event, profile and world snapshot (no Flink)",
}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    lines = ["usage: streamrec bench NAME [flags]   (streamrec bench NAME --help)", ""]
    lines += [f"  {name.ljust(width)}  {desc}" for name, desc in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"streamrec bench: unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
