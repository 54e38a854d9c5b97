"""streamrec train-encoder on a tiny random BERT and a week of the committed sample: the run folder,
determinism, resume, the loss, and the export of the result with its lineage."""

from __future__ import annotations

import json
import lzma
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models import export as ex
from models.manifest import load_valid_manifest, read_lineage
from models.testing import TINY_BERT_NAME, make_tiny_bert
from streamrec import paths
from streamrec import train_encoder as te

RANGE = ["--start", "2010-12-01", "--end", "2010-12-04"]
FAST = ["--steps", "6", "--batch-size", "16", "--save-every", "2", "--max-length", "16", "-q"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    """The committed sample up to 2010-12-04 (the rows the runs read; parsing all of it is slow)."""
    path = tmp_path_factory.mktemp("data") / "retail-sample-head.csv"
    with lzma.open(paths.sample_data_file(), "rt", encoding="utf-8") as f:
        days = tuple(f",2010-12-0{d} " for d in "123")
        path.write_text(
            "".join(line for n, line in enumerate(f) if n == 0 or any(map(line.__contains__, days)))
        )
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("base") / TINY_BERT_NAME)


@pytest.fixture(scope="module")
def train(csv, base):
    def run(out, *extra) -> int:
        return te.main(["--csv", str(csv), *RANGE, "--base", str(base), "--out", str(out), *FAST,
                        *extra])  # fmt: skip

    return run


@pytest.fixture(scope="module")
def trained(train, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    assert train(out) == 0
    return out


def weights(run_dir):
    return load_file(str(run_dir / "checkpoint" / "model.safetensors"))


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def report(run_dir) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_run_writes_checkpoint_report_and_lineage(trained, base):
    names = {p.name for p in trained.iterdir()}
    assert names == {"run.json", "eval-before.json", "checkpoint", "report.json", "report.md",
                     "loss.png"}  # fmt: skip
    ckpt = {p.name for p in (trained / "checkpoint").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "lineage.json"} <= ckpt
    r = report(trained)
    assert len(r["training"]["losses"]) == 6 and all(map(math.isfinite, r["training"]["losses"]))
    before, after = r["validation"]["before"], r["validation"]["after"]
    assert before["queries"] == after["queries"] > 50 and before["k"] == 10
    assert 0 <= before["recall"] <= 1 and 0 <= after["recall"] <= 1
    assert before["recall"] != after["recall"]  # the weights moved
    lineage = read_lineage(trained / "checkpoint")
    assert lineage == r["lineage"]
    assert lineage["name"] == "tiny-bert-ft"
    assert lineage["base_model"] == {"name": "tiny-bert", "checkpoint": str(base)}
    data = lineage["data"]
    assert data["source"] == "csv" and data["file"] == "retail-sample-head.csv"
    assert len(data["sha256"]) == 64
    assert lineage["time_range"]["start"] == "2010-12-01"
    assert lineage["time_range"]["end"] == "2010-12-04"
    assert lineage["time_range"]["validation_from"] < "2010-12-04"
    assert lineage["seed"] == 0 and lineage["training"]["steps"] == 6
    assert lineage["validation"]["recall@10_before"] == before["recall"]
    assert lineage["validation"]["recall@10_after"] == after["recall"]
    md = (trained / "report.md").read_text()
    assert "recall@10" in md and "streamrec train-encoder --csv" in md


def test_same_seed_same_weights_other_seed_other_weights(trained, train, tmp_path):
    assert train(tmp_path / "again") == 0
    assert same_weights(trained, tmp_path / "again")
    assert report(trained)["training"]["losses"] == report(tmp_path / "again")["training"]["losses"]
    assert train(tmp_path / "seed1", "--seed", "1") == 0
    assert not same_weights(trained, tmp_path / "seed1")


def test_resume_gives_the_uninterrupted_result(trained, train, tmp_path, capsys):
    out = tmp_path / "resumed"
    assert train(out, "--stop-at", "3") == 0
    assert not (out / "checkpoint").exists()
    assert [p.name for p in (out / "state").iterdir()] == ["step-000003.pt"]
    assert train(out) == 0
    assert same_weights(trained, out)
    assert report(out)["training"]["losses"] == report(trained)["training"]["losses"]
    assert not (out / "state").exists()
    capsys.readouterr()
    # a finished run is not trained again; other settings are refused
    assert train(out) == 0
    assert "already holds the finished run" in capsys.readouterr().out
    assert train(out, "--lr", "1e-3") == 1
    assert "settings differ" in capsys.readouterr().err


def test_interpolation_ships_a_blend_of_the_trained_and_base_weights(
    trained, train, base, tmp_path
):
    out = tmp_path / "wise"
    assert train(out, "--interpolate", "0.25") == 0
    mine, as_trained = weights(out), weights(trained)
    start = load_file(str(base / "model.safetensors"))
    assert mine.keys() == as_trained.keys()
    moved = 0
    for name, w in mine.items():
        b = start[name].float() if name in start else None
        if w.is_floating_point() and b is not None:
            assert torch.allclose(w, 0.25 * as_trained[name] + 0.75 * b, atol=1e-6), name
            moved += not torch.equal(w, as_trained[name])
    assert moved > 0
    r = report(out)
    got, want = r["validation"]["trained"], report(trained)["validation"]["after"]
    assert {**got, "seconds": 0} == {**want, "seconds": 0}  # the run as trained, validated
    assert r["lineage"]["training"]["interpolate"] == 0.25
    assert (
        r["lineage"]["validation"]["recall@10_as_trained"] == r["validation"]["trained"]["recall"]
    )
    assert "0.25 x trained + 0.75 x base" in (out / "report.md").read_text()
    assert report(trained)["lineage"]["training"]["interpolate"] == 1.0
    assert "trained" not in report(trained)["validation"]
    assert train(tmp_path / "bad", "--interpolate", "0") == 2


def test_bad_input_is_a_clear_error(base, train, tmp_path, capsys):
    rc = te.main(["--csv", str(tmp_path / "none.csv"), "--base", str(base), "--out",
                  str(tmp_path / "o"), "-q"])  # fmt: skip
    assert rc == 1 and "no such file" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert train(tmp_path / "mine") == 1
    assert "not a train-encoder folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").exists()
    assert train(tmp_path / "o2", "--start", "1st of May") == 1
    assert "use YYYY-MM-DD" in capsys.readouterr().err
    assert train(tmp_path / "o3", "--val-fraction", "1.5") == 1
    assert "--val-fraction 1.5" in capsys.readouterr().err


@pytest.mark.parametrize("log_q", [None, [0.5, -0.2, 1.3]])
def test_loss_masks_other_copies_of_the_same_item(log_q):
    # three texts X, Y, Z; pairs (X, Y), (X, Z), (Y, Z)
    emb = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.3, 1.0], [-0.5, 0.7]]), dim=1)
    a, p, scale = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 2]), 5.0
    lq = np.zeros(3) if log_q is None else np.array(log_q)
    # logit of text i against candidate j, the candidate's log sampling frequency taken off
    s = (scale * emb @ emb.T).numpy() - lq[None, :]
    X, Y, Z = 0, 1, 2

    def ce(target, candidates):
        return -s[target[0], target[1]] + math.log(sum(math.exp(s[i, j]) for i, j in candidates))

    # anchor -> positive; candidates that are the row's own anchor or positive are masked
    ap = [
        ce((X, Y), [(X, Y), (X, Z), (X, Z)]),
        ce((X, Z), [(X, Y), (X, Z)]),  # the other Z is masked
        ce((Y, Z), [(Y, Z)]),  # Y is the row's anchor, the other Z its positive
    ]
    # positive -> anchor
    pa = [
        ce((Y, X), [(Y, X)]),  # the other X is the row's anchor, Y its own positive
        ce((Z, X), [(Z, X), (Z, Y)]),
        ce((Z, Y), [(Z, X), (Z, X), (Z, Y)]),
    ]
    expected = (np.mean(ap) + np.mean(pa)) / 2
    lq_t = None if log_q is None else torch.tensor(log_q)
    assert float(te.mnr_loss(emb, a, p, scale, lq_t)) == pytest.approx(expected, rel=1e-5)


def test_export_records_lineage_and_tells_the_versions_apart(trained, base, tmp_path):
    ckpt = trained / "checkpoint"
    base_manifest = ex.export_model(base, tmp_path / "base", variant="fp32")
    assert base_manifest["lineage"] is None and base_manifest["name"] == TINY_BERT_NAME
    lineage = read_lineage(ckpt)
    for variant in ("fp32", "int8", "fp16"):
        out = tmp_path / f"ft-{variant}"
        assert (
            ex.main(["--checkpoint", str(ckpt), "--variant", variant, "--out", str(out), "-q"]) == 0
        )
        m = load_valid_manifest(out)
        assert m["name"] == "tiny-bert-ft" and m["lineage"] == lineage
        assert m["model_id"].startswith(f"tiny-bert-ft-onnx-{variant}@")
        assert m["validation"]["status"] == "passed" or (
            variant == "fp16" and m["validation"]["status"].startswith("skipped: no CUDA")
        )
        if variant == "fp32":
            assert m["model_id"] != base_manifest["model_id"]
            assert m["sha256"] != base_manifest["sha256"]
            fp32 = m
    # the same folder is reused for the same lineage, re-exported for another
    assert ex.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "ft-fp32"), "-q"]) == 0
    assert load_valid_manifest(tmp_path / "ft-fp32")["created_at"] == fp32["created_at"]
    assert ex.main(["--checkpoint", str(base), "--out", str(tmp_path / "ft-fp32"), "-q"]) == 0
    assert load_valid_manifest(tmp_path / "ft-fp32")["lineage"] is None
