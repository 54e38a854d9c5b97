"""deploy/docker and deploy/k8s stay in step with the code: the job arguments in the
FlinkDeployment are ones the job accepts, and every Flink version and path they name matches the
installed PyFlink and the image's layout. (Building the image and applying the manifest need a
registry and a Kubernetes cluster, which CI does not have.)"""

from __future__ import annotations

import re
from importlib.metadata import version

import yaml

from jobs.config import DEFAULT_MODEL, parse_args
from streamrec import paths

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
    assert f"--out /out/models/{DEFAULT_MODEL}" in dockerfile
