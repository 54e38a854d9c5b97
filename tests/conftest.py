"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Flink's Python workers and the job subprocesses resolve `python` from PATH when no interpreter is
# configured (and PyFlink drops python.executable for a second environment in one JVM): make it
# this interpreter, as `./dev` does by putting .venv/bin first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised BERT (built locally), exported to ONNX and validated, as the
    job loads it: folder with model.onnx, manifest.json and the tokenizer."""
    from models.export import export_model
    from models.testing import make_tiny_bert

    root = tmp_path_factory.mktemp("tiny-model")
    checkpoint = make_tiny_bert(root / "checkpoint")
    out = root / "tiny-bert-fp32"
    export_model(checkpoint, out, variant="fp32", name="tiny-bert")
    return out


@pytest.fixture(scope="session")
def tiny_finetuned_model_dir(tmp_path_factory):
    """The tiny BERT fine-tuned for a few steps on a small sample (streamrec train-encoder) and
    exported (streamrec export-model), as CI runs the job with a fine-tuned model."""
    from models.testing import make_tiny_finetuned

    return make_tiny_finetuned(tmp_path_factory.mktemp("tiny-ft"))
