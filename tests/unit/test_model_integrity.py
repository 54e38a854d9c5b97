"""Model integrity at submit: the driver verifies the model file before anything starts, and
says how it switches models when resuming state built with another one, and refuses state of
a newer job (jobs.recommend); one-line errors, no JVM."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jobs.recommend import STATE_INFO, check_restore_path, resolve_model, state_info
from streamrec import paths


@pytest.fixture
def corrupted_model(tiny_model_dir, tmp_path):
    folder = tmp_path / "corrupted"
    shutil.copytree(tiny_model_dir, folder)
    onnx = folder / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit: a damaged copy
    onnx.write_bytes(bytes(data))
    return folder


def test_a_corrupted_model_is_refused_before_the_job_starts(corrupted_model):
    with pytest.raises(SystemExit) as e:
        resolve_model(str(corrupted_model))
    msg = str(e.value)
    assert "sha256 mismatch" in msg and "\n" not in msg


def test_the_job_command_fails_in_one_line_without_starting_flink(corrupted_model):
    run = subprocess.run(
        [sys.executable, "-m", "jobs.recommend", "--model", str(corrupted_model),
         "--bootstrap-servers", "localhost:1", "--metrics-port", "0"],
        cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256 mismatch" in lines[0], run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_resuming_state_of_another_model_switches_and_a_newer_job_is_refused(
    tiny_model_dir, tmp_path
):
    _, manifest = resolve_model(str(tiny_model_dir))
    job = tmp_path / "ckpt" / "0123abcd"
    (job / "chk-7").mkdir(parents=True)
    (job / "chk-7" / "_metadata").write_bytes(b"")
    info = state_info(manifest)
    (job / STATE_INFO).write_text(json.dumps(info))
    assert check_restore_path(str(job / "chk-7"), manifest) is None  # the same model
    assert check_restore_path((job / "chk-7" / "_metadata").as_uri(), manifest) is None

    # another model (and dimension): the job switches, and says how
    (job / STATE_INFO).write_text(json.dumps({**info, "model_id": "minilm@deadbeef", "dim": 384}))
    switch = check_restore_path(str(job / "chk-7"), manifest)
    assert switch.startswith("switching models:") and "\n" not in switch
    assert "built with minilm@deadbeef (dim 384)" in switch
    assert f"runs {manifest['model_id']} (dim {manifest['dim']})" in switch
    assert "no --embedding-store" in switch
    from models.embedding_store import EmbeddingStore

    store = tmp_path / "store"
    with EmbeddingStore(store, manifest["model_id"], manifest["dim"], read_only=False) as s:
        s.put_many(["a", "b"], np.eye(2, manifest["dim"], dtype=np.float32))
    switch = check_restore_path(str(job / "chk-7"), manifest, str(store))
    assert f"2 vectors of the new model in the embedding store {store}" in switch
    switch = check_restore_path(str(job / "chk-7"), manifest, str(tmp_path / "nowhere"))
    assert "embedding store is unusable" in switch

    (job / STATE_INFO).write_text(json.dumps({**info, "world_schema": info["world_schema"] + 1}))
    with pytest.raises(SystemExit, match="newer job"):
        check_restore_path(str(job / "chk-7"), manifest)
    with pytest.raises(SystemExit, match="no such"):
        check_restore_path(str(tmp_path / "missing"), manifest)
