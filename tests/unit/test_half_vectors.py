"""bfloat16 storage of item vectors (operators.half_vectors) and the table that uses it."""

from __future__ import annotations

import numpy as np
import pytest

from operators.catalog import CatalogEntry, ItemTable
from operators.half_vectors import HalfRows, pack, unpack


def test_values_come_back_within_half_a_unit_in_the_last_place():
    x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    back = unpack(pack(x))
    assert back.dtype == np.float32
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0**-8)
    exact = np.array([0.0, -0.0, 1.0, -0.5, 0.375, 2.0**-20], dtype=np.float32)
    assert np.array_equal(unpack(pack(exact)), exact)


def test_halfway_values_round_to_even():
    # float32 bits exactly halfway between two bfloat16 values
    bits = np.array([0x3F808000, 0x3F818000, 0xBF808001], dtype=np.uint32)
    got = pack(bits.view(np.float32))
    assert got.tolist() == [0x3F80, 0x3F82, 0xBF81]


def test_cosines_of_unit_vectors_move_by_about_1e_4():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((2_000, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = v[0]
    exact = v @ q
    stored = unpack(pack(v)) @ unpack(pack(q))
    err = np.abs(stored - exact)
    assert err.max() < 1e-3 and err.mean() < 2e-4


def test_rows_read_as_float32():
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    rows = HalfRows(pack(x))
    assert rows.shape == (5, 4)
    assert rows[1].dtype == np.float32 and np.array_equal(rows[1], unpack(pack(x[1])))
    assert np.array_equal(rows[[0, 3]], unpack(pack(x[[0, 3]])))
    assert np.array_equal(rows[:], unpack(pack(x)))
    np.testing.assert_allclose(rows[:] @ x[2], x @ x[2], rtol=1e-2, atol=1e-2)


def test_the_table_stores_half_and_reads_older_float32_snapshots():
    vec = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    t = ItemTable(3)
    idx, changed = t.upsert(CatalogEntry("a", vec.tobytes(), "A"))
    assert changed and t.state()["vectors"].dtype == np.uint16
    np.testing.assert_allclose(t.vector(idx), vec, rtol=2.0**-8)
    # the same version again changes nothing; a vector that rounds differently does
    assert not t.upsert(CatalogEntry("a", vec.tobytes(), "A"))[1]
    assert t.upsert(CatalogEntry("a", np.array([0.8, 0.6, 0], "<f4").tobytes(), "A"))[1]
    older = {**t.state(), "vectors": np.array([vec], dtype=np.float32)}  # before bfloat16
    restored = ItemTable.from_state(older)
    assert np.array_equal(restored.vector(0), unpack(pack(vec)))
    assert np.array_equal(ItemTable.from_state(t.state()).state()["vectors"], t.state()["vectors"])


def test_a_small_table_reads_its_float32_copy_a_large_one_unpacks(monkeypatch):
    from operators import catalog

    monkeypatch.setattr(catalog, "MIRROR_MAX_ROWS", 6)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((8, 4)).astype(np.float32)
    t = ItemTable(4, capacity=2)
    for n in range(6):
        t.upsert(CatalogEntry(f"i{n}", vecs[n].tobytes(), "T"))
    rows = t.vectors
    assert rows.mirror is not None and np.array_equal(rows[:], unpack(pack(vecs[:6])))
    with pytest.raises(ValueError):
        rows[2][0] = 1.0  # a view of the table's copy: read-only
    t.remove("i1")
    assert not t.vectors[1].any()
    small = ItemTable.from_state(t.state())
    assert small.vectors.mirror is not None and np.array_equal(small.vectors[:], t.vectors[:])
    for n in (6, 7):  # past MIRROR_MAX_ROWS: the bits only, the same values
        t.upsert(CatalogEntry(f"i{n}", vecs[n].tobytes(), "T"))
    assert t.vectors.mirror is None
    assert np.array_equal(t.vectors[6:], unpack(pack(vecs[6:])))
    assert np.array_equal(t.vectors[:6], small.vectors[:])
    assert ItemTable.from_state(t.state()).vectors.mirror is None
