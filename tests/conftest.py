"""Fixtures shared by every test layer."""

from __future__ import annotations

import pytest


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
