"""Synthetic catalogs for the job benchmark: deterministic, built from the real vocabulary,
ids and titles distinct from the real ones; composed vectors."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import catalogs
from streamrec import paths


@pytest.fixture(scope="module")
def vocab() -> dict[str, float]:
    """The real titles of the committed Online Retail sample."""
    return catalogs.vocabulary(paths.sample_data_file())


def test_parts_of_a_title():
    assert catalogs.parts("WHITE HANGING HEART T-LIGHT HOLDER") == (
        ["WHITE HANGING HEART T-LIGHT", "WHITE HANGING HEART"],
        ["HOLDER", "T-LIGHT HOLDER"],
    )
    assert catalogs.parts("HAND WARMER") == (["HAND"], ["WARMER"])
    assert catalogs.parts("DOORMAT") == ([], ["DOORMAT"])


def test_catalog_is_deterministic_and_nested(vocab):
    a, _ = catalogs.synthetic_catalog(vocab, 2000, ts=123)
    b, _ = catalogs.synthetic_catalog(vocab, 2000, ts=123)
    assert a == b
    small, _ = catalogs.synthetic_catalog(vocab, 500, ts=123)
    assert small == a[:500]  # a smaller catalog is the start of a larger one
    other, _ = catalogs.synthetic_catalog(vocab, 500, ts=123, seed=7)
    assert [i["title"] for i in other] != [i["title"] for i in small]


def test_catalog_uses_the_real_vocabulary_and_new_ids_and_titles(vocab):
    items, sources = catalogs.synthetic_catalog(vocab, 3000, ts=42)
    real_words = {w for t in vocab for w in t.split()}
    titles = [i["title"] for i in items]
    assert len(set(titles)) == len(titles)
    assert not set(titles) & set(vocab)  # no real title again
    for it, src in zip(items, sources, strict=True):
        assert set(it["title"].split()) <= real_words
        assert src.source_a in vocab and src.source_b in vocab
        assert it["title"] == f"{src.prefix} {src.head}"
        assert src.source_a.startswith(src.prefix + " ") and src.source_b.endswith(src.head)
        assert it["price"] == vocab[src.source_b] and it["ts"] == 42 and it["available"]
    ids = [i["item_id"] for i in items]
    assert len(set(ids)) == len(ids) and all(i.startswith(catalogs.ID_PREFIX) for i in ids)
    assert not any(k.upper().startswith(catalogs.ID_PREFIX) for k in _real_ids())


def _real_ids() -> set[str]:
    from streamrec import retail

    rows = retail.iter_retail_rows(paths.sample_data_file())
    return {key for kind, key, _ in retail.to_contract_records(rows) if kind == "items"}


def test_too_small_a_vocabulary_is_a_clear_error():
    with pytest.raises(ValueError, match="only"):
        catalogs.synthetic_catalog({"RED MUG": 1.0, "BLUE BOWL": 2.0}, 50, ts=0)


def test_items_are_valid_catalog_records(vocab, tmp_path):
    from streamrec.encode_catalog import items_from_jsonl

    items, _ = catalogs.synthetic_catalog(vocab, 100, ts=1_291_000_000_000)
    path = catalogs.write_jsonl(items, tmp_path / "items.jsonl")
    parsed = list(items_from_jsonl(path))
    assert [p.item_id for p in parsed] == [i["item_id"] for i in items]
    assert [p.text() for p in parsed] == [i["title"] for i in items]


def test_composed_vectors_mix_the_sources_by_words():
    s = catalogs.SyntheticTitle("A B C", "A B", "C", "A B X", "Y C")
    assert s.words == (2, 1)
    real = {
        "A B": np.array([1.0, 0.0, 0.0], dtype=np.float32),
        "C": np.array([0.0, 1.0, 0.0], dtype=np.float32),
    }
    v = catalogs.composed_vectors([s, s], real)
    assert v.shape == (2, 3) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.allclose(v[0], np.array([2.0, 1.0, 0.0]) / np.sqrt(5.0))
