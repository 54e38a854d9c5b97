"""deploy/ stays in step with the code: the job arguments in the FlinkDeployment are ones the job
accepts, and every Flink version and path they name matches the installed PyFlink and the image's
layout (building the image and applying the manifest need a registry and a Kubernetes cluster,
which CI does not have); the pom resolves the Prometheus reporter of the installed Flink; the
Grafana dashboard and the Prometheus alert rules are well formed and name only series that
operators/metrics.py defines (promtool and Grafana are not in CI)."""

from __future__ import annotations

import json
import re
from importlib.metadata import version

import yaml

from jobs.config import DEFAULT_MODEL, parse_args
from operators import metrics
from streamrec import flink_cluster, paths

DEPLOY = paths.PROJECT_ROOT / "deploy"


def manifests() -> dict[str, dict]:
    docs = yaml.safe_load_all((DEPLOY / "k8s" / "flink-deployment.yaml").read_text())
    return {d["kind"]: d for d in docs}


def test_flink_deployment_runs_the_job_with_valid_flags():
    spec = manifests()["FlinkDeployment"]["spec"]
    job = spec["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    assert args[:2] == ["-pym", "jobs.recommend"]
    cfg = parse_args(args[2:])  # raises SystemExit on a flag the job does not know
    assert cfg.parallelism == job["parallelism"]
    assert cfg.checkpoint_dir == spec["flinkConfiguration"]["execution.checkpointing.dir"]
    mount = spec["podTemplate"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
    assert cfg.checkpoint_dir.startswith(f"file://{mount}/")


def test_versions_and_paths_match_pyflink_and_the_image():
    flink = version("apache-flink")
    spec = manifests()["FlinkDeployment"]["spec"]
    assert spec["job"]["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink}.jar"
    major, minor = flink.split(".")[:2]
    assert spec["flinkVersion"] == f"v{major}_{minor}"
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^ARG FLINK_IMAGE=flink:{re.escape(flink)}-java17$", dockerfile, re.M)
    venv = re.search(r"python3 -m venv (\S+)", dockerfile)[1]
    conf = spec["flinkConfiguration"]
    assert conf["python.executable"] == conf["python.client.executable"] == f"{venv}/bin/python"
    # the job finds its jars and the default model under STREAMREC_CACHE
    cache = re.search(r"STREAMREC_CACHE=(\S+)", dockerfile)[1]
    assert f"COPY --from=jars /out/jars/flink {cache}/jars/flink" in dockerfile
    assert f"COPY --from=model /out/models {cache}/models" in dockerfile
    plugin = "/out/jars/plugins/metrics-prometheus /opt/flink/plugins/metrics-prometheus"
    assert f"COPY --from=jars {plugin}" in dockerfile
    assert f"--out /out/models/{DEFAULT_MODEL}" in dockerfile


# --- observability: reporter jar, Grafana dashboard, Prometheus alert rules ----------------------

SERIES_RE = re.compile(r"\bflink_[A-Za-z0-9_:]+")


def known_series() -> set[str]:
    return set(metrics.project_series().values()) | set(metrics.FLINK_SERIES)


def test_pom_resolves_the_prometheus_reporter_of_the_installed_flink():
    pom = (DEPLOY / "pom.xml").read_text()
    assert f"<flink.version>{version('apache-flink')}</flink.version>" in pom
    block = pom[pom.index("<id>flink-metrics-prometheus</id>") :]
    block = block[: block.index("</execution>")]
    assert "<artifactId>flink-metrics-prometheus</artifactId>" in block
    assert "<version>${flink.version}</version>" in block
    # a plugin folder under the plugins root that streamrec.paths names
    folder = re.search(r"<outputDirectory>\$\{streamrec.jar.dir\}/(\S+)</outputDirectory>", block)
    assert paths.jar_dir() / folder[1] == paths.flink_plugins_dir() / "metrics-prometheus"


def test_flink_deployment_exports_metrics_as_the_local_cluster_does():
    spec = manifests()["FlinkDeployment"]["spec"]
    conf = spec["flinkConfiguration"]
    port = int(conf["metrics.reporter.prom.port"])
    local = flink_cluster.metrics_settings(port)
    assert (
        conf["metrics.reporter.prom.factory.class"] == local["metrics.reporter.prom.factory.class"]
    )
    pod = spec["podTemplate"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    ports = pod["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": port} in ports


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "streamrec-dashboard.json").read_text())


def panel_exprs(dash: dict) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_is_importable_and_uses_a_prometheus_datasource_variable():
    dash = dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"][
            "w"
        ] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["refId"]
            assert balanced(t["expr"]), t["expr"]
            assert 'job_name=~"$job"' in t["expr"], t["expr"]


def test_dashboard_names_only_known_series_and_covers_every_project_metric():
    exprs = panel_exprs(dashboard())
    used = {m for e in exprs for m in SERIES_RE.findall(e)}
    assert used <= known_series(), used - known_series()
    # every metric of the job is on the dashboard, and so is each Flink health signal
    assert set(metrics.project_series().values()) <= used
    for flink in ("numRestarts", "lastCheckpointDuration", "numberOfFailedCheckpoints"):
        assert f"flink_jobmanager_job_{flink}" in used
    for flink in ("backPressuredTimeMsPerSecond", "busyTimeMsPerSecond"):
        assert f"flink_taskmanager_job_task_{flink}" in used
    assert "flink_taskmanager_job_task_operator_pendingRecords" in used
    # histograms are read as histograms: quantiles over the "le" buckets
    for name in metrics.HISTOGRAMS:
        buckets = metrics.project_series()[name]
        assert any(e.startswith("histogram_quantile(0.95,") and buckets in e for e in exprs)


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "streamrec-alerts.yml").read_text())
    assert set(doc) == {"groups"}
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        rules += group["rules"]
    return rules


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def test_alert_rules_are_well_formed():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, r
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", r["alert"])
        assert isinstance(r["expr"], str) and balanced(r["expr"]), r["alert"]
        assert "for" not in r or DURATION.match(r["for"]), r["alert"]
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        for text in r["annotations"].values():  # Go templates: every {{ is closed
            assert text.count("{{") == text.count("}}"), r["alert"]


def test_alert_rules_name_only_known_series_and_cover_the_issue():
    rules = alert_rules()
    used_by = {r["alert"]: set(SERIES_RE.findall(r["expr"])) for r in rules}
    for alert, used in used_by.items():
        assert used and used <= known_series(), (alert, used - known_series())
    used = set().union(*used_by.values())
    assert metrics.project_series()[metrics.DEAD_LETTERS] in used  # DLQ rate
    assert "flink_jobmanager_job_numRestarts" in used  # restart count
    assert "flink_taskmanager_job_task_operator_pendingRecords" in used  # lag growth
    assert "flink_jobmanager_job_numberOfFailedCheckpoints" in used  # checkpoint failures
    lag = [r["expr"] for r in rules if "pendingRecords" in r["expr"]]
    assert any("deriv(" in e for e in lag), "lag alert should look at growth, not only level"


def balanced(expr: str) -> bool:
    """Brackets and quotes pair up (PromQL strings here hold no escaped quotes)."""
    stack, pairs, in_str = [], {")": "(", "]": "[", "}": "{"}, False
    for c in expr:
        if c == '"':
            in_str = not in_str
        elif in_str:
            continue
        elif c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack and not in_str
