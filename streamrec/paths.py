"""Where streamrec keeps its caches and finds its data.

Everything environment-specific is resolved here (or from flags / environment variables), never
in ``jobs/`` or ``operators/``.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Root of the ignored cache folder (jars, exported models). ``STREAMREC_CACHE`` overrides."""
    return Path(os.environ.get("STREAMREC_CACHE", PROJECT_ROOT / ".cache")).resolve()


def runtime_dir() -> Path:
    """Scratch space for local services (broker data, cluster logs, checkpoints)."""
    return Path(os.environ.get("STREAMREC_RUNTIME", PROJECT_ROOT / ".runtime")).resolve()


def jar_dir() -> Path:
    return cache_dir() / "jars"


def kafka_jar_dir() -> Path:
    """Apache Kafka broker jars and their dependencies (resolved by deploy/pom.xml)."""
    return jar_dir() / "kafka"


def flink_jar_dir() -> Path:
    """Jars the Flink job needs: the Kafka SQL connector and streamrec's record (de)serialisers."""
    return jar_dir() / "flink"


def flink_jars() -> list[Path]:
    d = flink_jar_dir()
    return sorted(d.glob("*.jar")) if d.is_dir() else []


def flink_plugins_dir() -> Path:
    """A Flink plugins root (``FLINK_PLUGINS_DIR``) with ``metrics-prometheus/``: Flink's Prometheus
    metrics reporter, resolved by deploy/pom.xml. A standalone cluster loads reporters from here;
    the local mini-cluster does not load plugins (see :func:`prometheus_reporter_jars`)."""
    return jar_dir() / "plugins"


def prometheus_reporter_jars() -> list[Path]:
    """The Prometheus reporter jar(s). The PyFlink mini-cluster finds reporters only on the
    gateway JVM's classpath, so a local job adds these to it (not to ``pipeline.jars``)."""
    d = flink_plugins_dir() / "metrics-prometheus"
    return sorted(d.glob("flink-metrics-prometheus-*.jar")) if d.is_dir() else []


def model_dir() -> Path:
    """Exported ONNX encoders, one folder each."""
    return cache_dir() / "models"


def default_bootstrap_servers() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")


def shared_data_file() -> Path:
    """The full Online Retail file from ../shared (tests and benchmarks read it from there)."""
    return (
        PROJECT_ROOT.parent
        / "shared"
        / "data"
        / "online-retail"
        / "online_retail_2010-12_to_2011-09.csv.xz"
    )


def sample_data_file() -> Path:
    """A small committed sample of Online Retail (see data/README.md), for machines without ../shared."""
    return PROJECT_ROOT / "data" / "online_retail_sample.csv.xz"


def default_data_file() -> Path:
    full = shared_data_file()
    return full if full.exists() else sample_data_file()


@cache
def worker_python_path(python: str) -> str:
    """PYTHONPATH for Flink's Python workers running ``python``: its site-packages (PyFlink's
    thread mode embeds the interpreter in the TaskManager JVM, which does not find a venv's
    packages by itself) and this project."""
    out = subprocess.run(
        [python, "-c", "import site; print(*site.getsitepackages(), sep=chr(10))"],
        capture_output=True,
        text=True,
        check=True,
    )
    parts = [p for p in out.stdout.splitlines() if p] + [str(PROJECT_ROOT)]
    return os.pathsep.join(dict.fromkeys(parts))
