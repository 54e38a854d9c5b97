"""The on-disk embedding store (RocksDB via rocksdict), the encoder reading through it, and the
offline catalog encoder (``streamrec encode-catalog``) filling it from a file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.embedding_store import EmbeddingStore, StoreError
from models.encoder import Encoder
from streamrec import encode_catalog


def unit(rng, n, dim):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_put_get_and_reopen_read_only(tmp_path):
    rng = np.random.default_rng(0)
    vecs = unit(rng, 3, 8)
    with EmbeddingStore(tmp_path / "s", "m@1", 8, read_only=False) as s:
        assert s.put_many(["a", "b", "c"], vecs) == 3
        assert len(s) == 3
    with EmbeddingStore(tmp_path / "s", "m@1", 8) as s:
        got = s.get_many(["c", "zzz", "a"])
        np.testing.assert_array_equal(got[0], vecs[2])
        assert got[1] is None
        np.testing.assert_array_equal(got[2], vecs[0])
        assert got[0].dtype == np.float32 and got[0].flags.writeable
        assert [m["model_id"] for m in s.models()] == ["m@1"]
        with pytest.raises(StoreError, match="read-only"):
            s.put_many(["d"], vecs[:1])


def test_models_are_kept_apart(tmp_path):
    rng = np.random.default_rng(1)
    with EmbeddingStore(tmp_path / "s", "m@1", 8, read_only=False) as s:
        s.put_many(["a"], unit(rng, 1, 8))
    with EmbeddingStore(tmp_path / "s", "m@2", 4, read_only=False) as s:
        assert s.get_many(["a"]) == [None]  # another export never sees m@1's vectors
        s.put_many(["a", "b"], unit(rng, 2, 4))
        assert len(s) == 2
        assert sorted(m["model_id"] for m in s.models()) == ["m@1", "m@2"]
    with EmbeddingStore(tmp_path / "s", "m@1", 8) as s:
        assert len(s) == 1
    with pytest.raises(StoreError, match="8-dim vectors for m@1, not 16"):
        EmbeddingStore(tmp_path / "s", "m@1", 16)


def test_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="encode-catalog --store"):
        EmbeddingStore(tmp_path / "missing", "m@1", 8)
    with EmbeddingStore(tmp_path / "s", "m@1", 8, read_only=False) as s:
        with pytest.raises(ValueError, match="shape"):
            s.put_many(["a", "b"], np.zeros((1, 8)))
        assert len(s) == 0  # nothing half-written


def test_encoder_serves_misses_from_the_store(tiny_model_dir, tmp_path):
    enc = Encoder(tiny_model_dir, provider="cpu", cache_size=100)
    reference = enc.encode(["red lantern", "blue mug"])
    sentinel = np.zeros(enc.dim, np.float32)
    sentinel[0] = 1.0
    with EmbeddingStore(tmp_path / "s", enc.model_id, enc.dim, read_only=False) as s:
        s.put_many(["red lantern"], sentinel[None])
    enc = Encoder(tiny_model_dir, provider="cpu", cache_size=100)
    enc.attach_store(EmbeddingStore(tmp_path / "s", enc.model_id, enc.dim))
    out = enc.encode(["red lantern", "blue mug", "red lantern"])
    np.testing.assert_array_equal(out[0], sentinel)  # from the store, not the model
    np.testing.assert_array_equal(out[2], sentinel)
    np.testing.assert_allclose(out[1], reference[1], atol=1e-6)
    assert enc.stats.store_hits == 1 and enc.stats.sequences == 1
    enc.encode(["red lantern"])  # now in the LRU cache
    assert enc.stats.store_hits == 1 and enc.stats.cache_hits == 2
    with pytest.raises(ValueError, match="embedding store is for other@1"):
        enc.attach_store(EmbeddingStore(tmp_path / "o", "other@1", enc.dim, read_only=False))


def test_encode_catalog_from_jsonl_resumes(tiny_model_dir, tmp_path, capsys):
    lines = [
        {"item_id": "1", "title": "WHITE METAL LANTERN", "ts": 1},
        {"item_id": "2", "title": "RED MUG", "category": "kitchen"},
        {"item_id": "1", "title": "WHITE METAL LANTERN", "ts": 2},  # same text: once
        {"item_id": "3"},  # no title: invalid, reported
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n[1, 2]\n{broken\n")
    store = tmp_path / "store"
    args = ["--from-jsonl", str(path), "--store", str(store), "--model", str(tiny_model_dir)]
    assert encode_catalog.main([*args, "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "3 item records" in out and "(3 invalid)" in out and "2 distinct texts" in out
    assert "2 encoded" in out and "now holds 2 vectors" in out
    assert "missing field 'title'" in err
    enc = Encoder(tiny_model_dir, provider="cpu")
    with EmbeddingStore(store, enc.model_id, enc.dim) as s:
        got = s.get_many(["WHITE METAL LANTERN", "RED MUG . kitchen"])
    expected = enc.encode(["WHITE METAL LANTERN", "RED MUG . kitchen"])
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)
    # a second run finds everything stored and encodes nothing
    assert encode_catalog.main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "0 encoded" in out and "2 already stored" in out


def test_encode_catalog_reports_a_missing_model(tmp_path, capsys):
    args = ["--from-jsonl", str(tmp_path / "x"), "--model", str(tmp_path / "no-model")]
    assert encode_catalog.main([*args, "--store", str(tmp_path / "s")]) == 1
    assert "no-model" in capsys.readouterr().err


def test_encode_catalog_from_retail_takes_every_title_version(tiny_model_dir, tmp_path, capsys):
    csv = tmp_path / "retail.csv"
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    rows = [
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,UK",
        "536366,71053,WHITE METAL LANTERN,6,2010-12-01 08:28:00,3.39,17850,UK",
        "536367,85123A,WHITE HANGING HEART T-LIGHT HOLDER,2,2010-12-01 09:00:00,2.55,13047,UK",
        "536368,85123A,CREAM HANGING HEART T-LIGHT HOLDER,2,2010-12-02 09:00:00,2.55,13047,UK",
    ]
    csv.write_text("\n".join([header, *rows]) + "\n")
    store = tmp_path / "store"
    args = ["--from-retail", str(csv), "--store", str(store), "--model", str(tiny_model_dir)]
    assert encode_catalog.main([*args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    # as the replay publishes them: each product once, again when its title changes
    assert "3 item records" in out and "3 distinct texts" in out and "3 encoded" in out


def test_encode_catalog_reports_a_missing_input(tiny_model_dir, tmp_path, capsys):
    args = ["--from-jsonl", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model_dir)]
    assert encode_catalog.main([*args, "--store", str(tmp_path / "s"), "--device", "cpu"]) == 1
    assert "nope.jsonl" in capsys.readouterr().err
