"""The ONNX Runtime encoder: output, parity with PyTorch, cache, bucketing, integrity checks."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from models import export as ex
from models.encoder import Encoder, cuda_status, resolve_model_dir
from models.manifest import ManifestError
from models.testing import TINY_BERT_NAME, make_tiny_bert

TEXTS = [
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "red lunch bag",
    "a",
    "SET OF 3 CAKE TINS PANTRY DESIGN with a much longer description to make it longer",
    "vintage christmas bunting",
    "JUMBO BAG RED RETROSPOT",
    "ceramic",
    "PACK OF 72 RETROSPOT CAKE CASES",
    "glass star frosted t-light holder in a gift box",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    ckpt = make_tiny_bert(root / TINY_BERT_NAME)
    out = root / "models" / f"{TINY_BERT_NAME}-fp32"
    manifest = ex.export_model(ckpt, out, variant="fp32", name=TINY_BERT_NAME)
    return ckpt, out, manifest


@pytest.fixture(scope="module")
def encoder(tiny):
    return Encoder(tiny[1], provider="cpu", batch_size=4, intra_op_threads=1)


def _torch_vectors(ckpt, texts):
    """The PyTorch model with the same pooling, one text at a time (no padding at all)."""
    wrapped, tokenizer, _, _ = ex.load_pooled_model(ckpt)
    rows = []
    for text in texts:
        enc = tokenizer([text], truncation=True, max_length=128, return_tensors="np")
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        rows.append(ex.torch_reference(wrapped, feeds)[0])
    return np.stack(rows)


def test_attributes(encoder, tiny):
    manifest = tiny[2]
    assert encoder.model_id == manifest["model_id"]
    assert encoder.model_id.startswith("tiny-bert-onnx-fp32@")
    assert encoder.dim == 32 and encoder.variant == "fp32" and encoder.provider == "cpu"


def test_shape_dtype_and_unit_rows(encoder):
    vecs = encoder.encode(TEXTS)
    assert vecs.shape == (len(TEXTS), 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    empty = encoder.encode([])
    assert empty.shape == (0, 32) and empty.dtype == np.float32


def test_matches_pytorch(tiny):
    enc = Encoder(tiny[1], provider="cpu", batch_size=64, cache_size=0)
    got = enc.encode(TEXTS)
    want = _torch_vectors(tiny[0], TEXTS)
    cos = (got * want).sum(1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.9999, cos


def test_cache_hits_and_duplicates(tiny):
    enc = Encoder(tiny[1], provider="cpu", batch_size=4)
    first = enc.encode(TEXTS + TEXTS[:2])  # two duplicates inside one call: encoded once
    s = enc.stats
    assert (s.cache_misses, s.cache_hits, s.sequences) == (len(TEXTS), 2, len(TEXTS))
    assert s.batches == len(TEXTS)  # 9 unique texts, each run alone (exact_rows)
    batches = s.batches
    again = enc.encode(list(reversed(TEXTS)))
    assert enc.stats.batches == batches  # nothing reached the model
    assert enc.stats.cache_hits == 2 + len(TEXTS)
    np.testing.assert_array_equal(again, first[: len(TEXTS)][::-1])
    np.testing.assert_array_equal(first[len(TEXTS) :], first[:2])
    mixed = enc.encode(["brand new text", TEXTS[0]])
    assert enc.stats.cache_misses == len(TEXTS) + 1
    np.testing.assert_array_equal(mixed[1], first[0])


def test_lru_eviction(tiny):
    enc = Encoder(tiny[1], provider="cpu", cache_size=2)
    enc.encode(["a", "b"])
    enc.encode(["a"])  # a is now the most recent
    enc.encode(["c"])  # evicts b
    misses = enc.stats.cache_misses
    enc.encode(["a", "c"])
    assert enc.stats.cache_misses == misses
    enc.encode(["b"])
    assert enc.stats.cache_misses == misses + 1


def test_a_texts_vector_never_depends_on_its_batch(tiny):
    """Bit for bit: the job's catalog batches depend on arrival timing, its lists must not."""
    enc = Encoder(tiny[1], provider="cpu", batch_size=3, cache_size=0)
    alone = np.concatenate([enc.encode([t]) for t in TEXTS])
    for batch in (TEXTS, TEXTS[::-1], TEXTS[1:] + TEXTS[:1]):
        got = enc.encode(batch)
        want = alone[[TEXTS.index(t) for t in batch]]
        assert np.array_equal(got, want)
    # length-bucketed batches (exact_rows=False) pad and block differently: close, not equal
    fast = Encoder(tiny[1], provider="cpu", batch_size=3, cache_size=0, exact_rows=False)
    np.testing.assert_allclose(fast.encode(TEXTS), alone, atol=2e-5)


def test_bucketing_does_not_change_results(tiny):
    one_by_one = Encoder(tiny[1], provider="cpu", batch_size=1, cache_size=0)
    bucketed = Encoder(tiny[1], provider="cpu", batch_size=3, cache_size=0, exact_rows=False)
    single = np.concatenate([one_by_one.encode([t]) for t in TEXTS])
    batched = bucketed.encode(TEXTS)
    np.testing.assert_allclose(batched, single, atol=2e-5)
    s = bucketed.stats
    assert s.batches == 3 and s.sequences == len(TEXTS)
    # sorted by length, each batch pads to its own longest: less padding than one big batch
    lengths = [len(e.ids) for e in bucketed.tokenizer.encode_batch(TEXTS)]
    assert s.tokens == sum(lengths)
    assert s.padded_tokens < len(TEXTS) * max(lengths)


def test_truncates_at_max_length(encoder):
    long_text = " ".join(["retrospot"] * 400)
    enc = encoder.tokenizer.encode(long_text)
    assert len(enc.ids) == encoder.max_length == 128
    assert encoder.encode([long_text]).shape == (1, 32)


def test_warmup_is_not_counted(tiny):
    enc = Encoder(tiny[1], provider="cpu")
    enc.warmup()
    assert enc.stats.batches == 0 and enc.stats.cache_misses == 0


def test_sha256_mismatch_raises(tmp_path, tiny):
    bad = tmp_path / "bad"
    shutil.copytree(tiny[1], bad)
    path = bad / "model.onnx"
    middle = path.stat().st_size // 2  # inside the embedding matrix: still a loadable model
    with open(path, "r+b") as f:
        f.seek(middle)
        byte = f.read(1)
        f.seek(middle)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ManifestError, match="sha256 mismatch"):
        Encoder(bad, provider="cpu")
    Encoder(bad, provider="cpu", verify_sha256=False)  # explicitly opted out


def test_missing_manifest_raises(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json"):
        Encoder(tmp_path, provider="cpu")


def test_provider_choice_is_logged(tiny, caplog):
    with caplog.at_level(logging.INFO, logger="streamrec.encoder"):
        enc = Encoder(tiny[1])  # auto
    usable, why = cuda_status()
    assert enc.provider == ("cuda" if usable else "cpu")
    msg = " ".join(r.getMessage() for r in caplog.records if r.name == "streamrec.encoder")
    assert enc.provider.upper() in msg and why in msg
    if not usable:
        with pytest.raises(RuntimeError, match="CUDA is not usable"):
            Encoder(tiny[1], provider="cuda")
    with pytest.raises(ValueError):
        Encoder(tiny[1], provider="tpu")


def test_resolve_model_dir(tiny, tmp_path, monkeypatch):
    _, out, manifest = tiny
    monkeypatch.setenv("STREAMREC_CACHE", str(out.parent.parent))  # <cache>/models/<name>
    assert resolve_model_dir(str(out)) == out.resolve()
    assert resolve_model_dir("tiny-bert-fp32") == out.resolve()
    assert resolve_model_dir(manifest["model_id"]) == out.resolve()
    assert resolve_model_dir("tiny-bert-onnx-fp32") == out.resolve()
    with pytest.raises(ManifestError):
        resolve_model_dir("tiny-bert-onnx-fp32@00000000")
    with pytest.raises(FileNotFoundError, match="export-model"):
        resolve_model_dir("no-such-model-int8")
