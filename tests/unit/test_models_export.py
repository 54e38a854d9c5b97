"""ONNX export of BERT-family checkpoints: variants, manifest, validation, atomic output."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

from models import export as ex
from models.encoder import Encoder
from models.manifest import load_valid_manifest, sha256_file
from models.testing import TINY_BERT_NAME, make_tiny_bert


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("ckpt") / TINY_BERT_NAME)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_ckpt):
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for variant in ("fp32", "int8"):
        d = root / f"{TINY_BERT_NAME}-{variant}"
        out[variant] = (d, ex.export_model(tiny_ckpt, d, variant=variant, name=TINY_BERT_NAME))
    return out


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_manifest_describes_the_export(exports, variant):
    out_dir, manifest = exports[variant]
    on_disk = json.loads((out_dir / "manifest.json").read_text())
    assert on_disk == manifest
    digest = sha256_file(out_dir / "model.onnx")
    assert manifest["sha256"] == digest
    assert manifest["model_id"] == f"{TINY_BERT_NAME}-onnx-{variant}@{digest[:8]}"
    assert re.fullmatch(r"tiny-bert-onnx-(fp32|int8)@[0-9a-f]{8}", manifest["model_id"])
    assert manifest["name"] == TINY_BERT_NAME and manifest["variant"] == variant
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["output"] == "embeddings"
    assert manifest["dynamic_axes"]["input_ids"] == {"0": "batch", "1": "sequence"}
    assert manifest["dim"] == 32 and manifest["max_length"] == 128
    assert manifest["opset"] == ex.DEFAULT_OPSET
    assert manifest["source_checkpoint"].endswith(TINY_BERT_NAME)
    assert manifest["created_at"]
    # ORT's transformer optimizer fused attention, embedding layer norm and GELU (with bias);
    # SkipLayerNormalization is kept apart on CPU, in the graph and in the session
    assert manifest["optimizer_fusions"].get("Attention") == 2
    assert manifest["optimizer_fusions"].get("EmbedLayerNormalization") == 1
    assert manifest["optimizer_fusions"].get("BiasGelu") == 2
    assert "SkipLayerNormalization" not in manifest["optimizer_fusions"]
    assert manifest["ort_disabled_optimizers"] == ["SkipLayerNormFusion"]
    assert (out_dir / "tokenizer.json").is_file()
    assert "tokenizer.json" in manifest["tokenizer_files"]
    assert sorted(p.name for p in out_dir.iterdir() if p.suffix == ".onnx") == ["model.onnx"]
    assert load_valid_manifest(out_dir) == manifest


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_validation_numbers(exports, variant):
    v = exports[variant][1]["validation"]
    assert v["status"] == "passed" and v["provider"] == "cpu"
    assert v["threshold_mean_cosine"] == ex.MIN_MEAN_COSINE[variant]
    assert v["mean_cosine"] >= ex.MIN_MEAN_COSINE[variant]
    assert v["min_cosine"] <= v["mean_cosine"]
    assert len(v["cases"]) >= 4
    shapes = {(c["batch"], c["sequence"]) for c in v["cases"]}
    assert tuple(ex.EXPORT_SHAPE) not in shapes
    assert len({b for b, _ in shapes}) > 1 and len({s for _, s in shapes}) > 1
    if variant == "fp32":
        assert v["min_cosine"] > 0.99999


def test_graph_has_dynamic_axes_and_pooling_inside(exports):
    graph = onnx.load(str(exports["fp32"][0] / "model.onnx")).graph
    for inp in graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], inp.name
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    (out,) = graph.output
    assert out.name == "embeddings"
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert any(n.op_type == "ReduceL2" for n in graph.node)


def test_int8_is_quantised_and_smaller(exports):
    fp32_dir, _ = exports["fp32"]
    int8_dir, manifest = exports["int8"]
    assert manifest["quantization"]["weight_type"] == "int8"
    ops = {n.op_type for n in onnx.load(str(int8_dir / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}
    assert (int8_dir / "model.onnx").stat().st_size < (fp32_dir / "model.onnx").stat().st_size


def test_fp16_export(tmp_path, tiny_ckpt):
    manifest = ex.export_model(tiny_ckpt, tmp_path / "fp16", variant="fp16", name=TINY_BERT_NAME)
    assert manifest["optimizer_fusions"].get("SkipLayerNormalization") == 4  # GPU: all fused
    assert manifest["ort_disabled_optimizers"] == []
    graph = onnx.load(str(tmp_path / "fp16" / "model.onnx")).graph
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer), (
        "no fp16 weights"
    )
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    v = manifest["validation"]
    # validated wherever ONNX Runtime can run it (CUDA, or CPU when its kernels allow)
    assert v["status"] == "passed" or v["status"].startswith("skipped: no CUDA")
    if v["status"] == "passed":
        assert v["mean_cosine"] >= ex.MIN_MEAN_COSINE["fp16"]


def test_failed_validation_raises_one_error_and_leaves_nothing(tmp_path, tiny_ckpt, monkeypatch):
    monkeypatch.setitem(ex.MIN_MEAN_COSINE, "fp32", 1.5)
    monkeypatch.setitem(ex.MAX_NORM_ERROR, "fp32", -1.0)
    out = tmp_path / "models" / "broken"
    with pytest.raises(ex.ValidationError) as info:
        ex.export_model(tiny_ckpt, out, variant="fp32", name=TINY_BERT_NAME)
    err = info.value
    # every norm check failed (one per case) plus the mean cosine: all in one error
    assert len(err.failures) == len(err.results["cases"]) + 1
    assert all(f in str(err) for f in err.failures)
    assert "mean cosine" in str(err) and "< 1.5" in str(err)
    assert not out.exists()
    assert list((tmp_path / "models").iterdir()) == []  # no temp folder left either


def test_failed_reexport_keeps_previous_model(tmp_path, tiny_ckpt, exports, monkeypatch):
    import shutil

    out = tmp_path / "kept"
    shutil.copytree(exports["fp32"][0], out)
    before = sha256_file(out / "model.onnx")
    monkeypatch.setitem(ex.MIN_MEAN_COSINE, "fp32", 1.5)
    with pytest.raises(ex.ValidationError):
        ex.export_model(tiny_ckpt, out, variant="fp32", name=TINY_BERT_NAME)
    assert sha256_file(out / "model.onnx") == before
    assert load_valid_manifest(out) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_cli_reuses_a_valid_export(exports, tiny_ckpt, capsys):
    out_dir, manifest = exports["fp32"]
    mtime = (out_dir / "model.onnx").stat().st_mtime_ns
    rc = ex.main(["--checkpoint", str(tiny_ckpt), "--out", str(out_dir), "--name", "tiny-bert"])
    assert rc == 0
    assert "already holds " + manifest["model_id"] in capsys.readouterr().out
    assert (out_dir / "model.onnx").stat().st_mtime_ns == mtime


def test_cli_exports_and_refuses_foreign_folder(tmp_path, tiny_ckpt, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    args = ["--checkpoint", str(tiny_ckpt), "--out", str(foreign), "-q"]
    assert ex.main(args) == 2
    assert (foreign / "notes.txt").exists()
    assert ex.main([*args, "--force", "--no-validate"]) == 0
    manifest = load_valid_manifest(foreign)
    assert manifest["name"] == TINY_BERT_NAME  # from the checkpoint folder's name
    assert manifest["validation"]["status"] == "skipped: --no-validate"
    assert not (foreign / "notes.txt").exists()
    assert "exported tiny-bert-onnx-fp32@" in capsys.readouterr().out


def test_default_minilm_fp32(tmp_path):
    out = tmp_path / "minilm-l6-fp32"
    manifest = ex.export_model(None, out, variant="fp32")
    assert manifest["name"] == "minilm-l6" and manifest["dim"] == 384
    assert manifest["model_id"].startswith("minilm-l6-onnx-fp32@")
    assert manifest["optimizer_fusions"]["Attention"] == 6
    v = manifest["validation"]
    assert v["status"] == "passed" and v["mean_cosine"] >= 0.9999 and v["min_cosine"] > 0.9999
    enc = Encoder(out, provider="cpu", intra_op_threads=2)
    vecs = enc.encode(["red retrospot lunch bag", "LUNCH BAG RED RETROSPOT", "garden hose reel"])
    assert vecs.shape == (3, 384)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # the model, not noise: same product ranks closer
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
