"""The catalog table's state in chunks of rows (what the job's folds write)."""

from __future__ import annotations

import numpy as np
import pytest

from operators import catalog
from operators.catalog import CatalogEntry, ItemTable


def _entry(n: int, angle: float = 0.0, title: str | None = None) -> CatalogEntry:
    vec = np.array([np.cos(n + angle), np.sin(n + angle), 0.0], dtype="<f4")
    return CatalogEntry(f"i{n}", vec.tobytes(), title or f"ITEM {n}")


def _ten_items(monkeypatch) -> ItemTable:
    """A table of ten items, saved in chunks of 4 rows."""
    monkeypatch.setattr(catalog, "CHUNK_ROWS", 4)
    t = ItemTable(3)
    for n in range(10):
        t.upsert(_entry(n))
    return t


def _same(a: ItemTable, b: ItemTable) -> bool:
    sa, sb = a.state(), b.state()
    return (
        all(
            np.array_equal(sa[k], sb[k]) if isinstance(sa[k], np.ndarray) else sa[k] == sb[k]
            for k in sa
        )
        and a.index == b.index
    )


def test_only_changed_chunks_are_saved_again(monkeypatch):
    t = _ten_items(monkeypatch)
    saved = t.changed_chunks()
    assert sorted(saved) == [0, 1, 2]
    assert t.changed_chunks() == {}
    t.upsert(_entry(5, angle=1.0))  # a new vector
    t.upsert(_entry(2, title="NEW TITLE"))  # the same vector, a new title
    t.remove("i9")
    t.intern("i10")  # a new id, not in the catalog yet
    again = t.changed_chunks()
    assert sorted(again) == [0, 1, 2]
    t.upsert(_entry(10))
    latest = t.changed_chunks()
    assert sorted(latest) == [2]
    saved.update(again)
    saved.update(latest)
    restored = ItemTable.from_state(t.state(rows=False), saved)
    assert _same(restored, t) and restored.titles[2] == "NEW TITLE"
    assert restored.changed_chunks() == {}  # what it was restored from is saved already


def test_a_missing_or_misplaced_chunk_is_refused(monkeypatch):
    t = _ten_items(monkeypatch)
    saved = t.changed_chunks()
    with pytest.raises(ValueError, match="miss 4 of 10 items"):
        ItemTable.from_state(t.state(rows=False), {0: saved[0], 2: saved[2]})
    with pytest.raises(ValueError, match="does not fit"):
        ItemTable.from_state(t.state(rows=False), {**saved, 3: saved[0]})


def test_a_state_with_its_rows_saves_every_chunk_next(monkeypatch):
    """Older snapshots held the rows (vectors as float32), as does a model switch's table."""
    t = _ten_items(monkeypatch)
    full = ItemTable.from_state(t.state())
    assert _same(full, t) and sorted(full.changed_chunks()) == [0, 1, 2]
