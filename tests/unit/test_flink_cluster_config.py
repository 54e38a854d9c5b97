"""streamrec.flink_cluster writes the standalone cluster's config.yaml (no JVM started here):
the Prometheus reporter is on with --metrics-port, for both processes of the one host, and the
daemons load plugins from the jar cache when setup has put the reporter there."""

from __future__ import annotations

import json

import yaml

from streamrec import flink_cluster, paths


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_metrics_port_turns_the_reporter_on_for_jobmanager_and_taskmanager(tmp_path):
    conf = flink_cluster.write_config(tmp_path, rest_port=18081, metrics_port=19300)
    cfg = flat(yaml.safe_load((conf / "config.yaml").read_text()))
    assert cfg["metrics.reporter.prom.factory.class"] == flink_cluster.PROMETHEUS_FACTORY
    assert cfg["metrics.reporter.prom.port"] == "19300-19301"  # one port per process
    assert json.loads((tmp_path / "cluster.json").read_text())["metrics_ports"] == [19300, 19301]


def test_no_reporter_by_default(tmp_path):
    conf = flink_cluster.write_config(tmp_path, rest_port=18081)
    assert not any(
        k.startswith("metrics.reporter")
        for k in flat(yaml.safe_load((conf / "config.yaml").read_text()))
    )


def test_plugins_come_from_the_jar_cache_when_setup_fetched_them(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_CACHE", str(tmp_path))
    monkeypatch.delenv("FLINK_PLUGINS_DIR", raising=False)
    assert "FLINK_PLUGINS_DIR" not in flink_cluster.cluster_env(tmp_path / "c")  # the wheel's
    jar = paths.flink_plugins_dir() / "metrics-prometheus" / "flink-metrics-prometheus-2.2.1.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    assert paths.prometheus_reporter_jars() == [jar]
    env = flink_cluster.cluster_env(tmp_path / "c")
    assert env["FLINK_PLUGINS_DIR"] == str(tmp_path / "jars" / "plugins")
