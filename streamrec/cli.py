"""The ``streamrec`` console script: one sub-command per module, each owning its own flags."""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, one-line help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "setup": (
        "streamrec.setup",
        "fetch jars (Maven), build the record serde jar, export the encoder",
    ),
    "kafka": (
        "streamrec.kafka_broker",
        "start/stop a local single-node Apache Kafka broker (KRaft)",
    ),
    "cluster": ("streamrec.flink_cluster", "start/stop a local standalone Flink cluster"),
    "topics": ("streamrec.topics", "create the job's topics (AdminClient)"),
    "export-model": ("models.export", "export a BERT checkpoint to ONNX and validate it"),
    "train-encoder": (
        "streamrec.train_encoder",
        "fine-tune the encoder on co-purchases, validated on a held-out time slice",
    ),
    "encode-catalog": (
        "streamrec.encode_catalog",
        "embed the catalog offline into the embedding store the job bootstraps from",
    ),
    "run": ("jobs.recommend", "run the recommendation job on the local mini-cluster"),
    "replay": ("streamrec.replay", "replay Online Retail CSV rows as contract events"),
    "watch": ("streamrec.watch", "tail the recommendations topic readably"),
    "evaluate": ("streamrec.evaluate", "prequential evaluation of the job and baselines"),
    "demo": ("streamrec.demo", "broker + replay + job + watch, stops cleanly on Ctrl-C"),
    "bench": ("benchmarks.cli", "benchmarks (encoder, job, parse, quality)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: streamrec COMMAND [flags]   (streamrec COMMAND --help for its flags)", ""]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"streamrec: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
