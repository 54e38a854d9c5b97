"""The catalog as a dense, incrementally updated embedding matrix (pure numpy).

Each task of the recommend operator keeps one of these beside Flink's broadcast state: broadcast
state is the source of truth (checkpointed, restored), this index is the fast in-memory view the
scorer multiplies against. It is rebuilt from broadcast state after a restore.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What broadcast state holds per item: the embedding and what the output needs."""

    item_id: str
    embedding: bytes  # float32, L2-normalised, little-endian
    title: str
    available: bool = True
    price: float | None = None
    ts: int | None = None

    def vector(self) -> np.ndarray:
        return np.frombuffer(self.embedding, dtype=np.float32)


class CatalogIndex:
    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self._emb = np.zeros((capacity, dim), dtype=np.float32)
        self._available = np.zeros(capacity, dtype=bool)
        # event time from which each item exists (its first version's ts; -inf when unknown)
        self._since = np.full(capacity, -np.inf, dtype=np.float64)
        # event time of each row's current version, and earlier versions [(ts, vector)] of items
        # whose text changed, so lookups as of an earlier event time see what was there then
        self._version_ts = np.full(capacity, -np.inf, dtype=np.float64)
        self._history: dict[str, list[tuple[float, np.ndarray]]] = {}
        # the latest version ts among items with history: lookups as of later times need no
        # earlier version (kept as a bound: removing an item may leave it too high, never too low)
        self._newest_change = -np.inf
        self._ids: list[str | None] = [None] * capacity
        self._row: dict[str, int] = {}
        self._free: list[int] = []
        self._size = 0  # rows in use or freed (high-water mark)
        self.titles: dict[str, str] = {}
        self.first_seen: dict[str, int | None] = {}

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._row

    def _grow(self) -> None:
        cap = self._emb.shape[0] * 2
        emb = np.zeros((cap, self.dim), dtype=np.float32)
        emb[: self._size] = self._emb[: self._size]
        avail = np.zeros(cap, dtype=bool)
        avail[: self._size] = self._available[: self._size]
        since = np.full(cap, -np.inf, dtype=np.float64)
        since[: self._size] = self._since[: self._size]
        version_ts = np.full(cap, -np.inf, dtype=np.float64)
        version_ts[: self._size] = self._version_ts[: self._size]
        self._emb, self._available, self._since = emb, avail, since
        self._version_ts = version_ts
        self._ids.extend([None] * (cap - len(self._ids)))

    def upsert(self, entry: CatalogEntry) -> None:
        vec = entry.vector()
        if vec.shape != (self.dim,):
            raise ValueError(
                f"item {entry.item_id}: embedding has shape {vec.shape}, want ({self.dim},)"
            )
        row = self._row.get(entry.item_id)
        if row is None:
            if self._free:
                row = self._free.pop()
            else:
                if self._size == self._emb.shape[0]:
                    self._grow()
                row = self._size
                self._size += 1
            self._row[entry.item_id] = row
            self._ids[row] = entry.item_id
            self._since[row] = -np.inf if entry.ts is None else float(entry.ts)
            self._version_ts[row] = self._since[row]
            self.first_seen.setdefault(entry.item_id, entry.ts)
        elif entry.ts is not None and entry.ts > self._version_ts[row]:
            # a newer version: keep the one it replaces for lookups as of earlier times
            old = (float(self._version_ts[row]), self._emb[row].copy())
            self._history.setdefault(entry.item_id, []).append(old)
            self._version_ts[row] = float(entry.ts)
            self._newest_change = max(self._newest_change, float(entry.ts))
        self._emb[row] = vec
        self._available[row] = entry.available
        self.titles[entry.item_id] = entry.title

    def remove(self, item_id: str) -> None:
        row = self._row.pop(item_id, None)
        if row is None:
            return
        self._emb[row] = 0.0
        self._available[row] = False
        self._since[row] = -np.inf
        self._version_ts[row] = -np.inf
        self._history.pop(item_id, None)
        self._ids[row] = None
        self._free.append(row)
        self.titles.pop(item_id, None)

    def vector(self, item_id: str, as_of: int | None = None) -> np.ndarray | None:
        """The item's embedding; None if unknown, or (with ``as_of``) not yet in the catalog
        strictly before that event time."""
        row = self._row.get(item_id)
        if row is None or (as_of is not None and self._since[row] >= as_of):
            return None
        if as_of is None or self._version_ts[row] < as_of:
            return self._emb[row]
        return self._earlier_version(item_id, as_of)

    def _earlier_version(self, item_id: str, as_of: int) -> np.ndarray:
        versions = self._history[item_id]
        return next(vec for ts, vec in reversed(versions) if ts < as_of)

    def earlier_versions(self, as_of: int | None) -> list[tuple[int, np.ndarray]]:
        """(row, vector) for items whose current version is not yet in force at ``as_of``."""
        if as_of is None or as_of > self._newest_change:  # the common case: nothing changed since
            return []
        out = []
        for item_id in self._history:
            row = self._row[item_id]
            if self._version_ts[row] >= as_of and self._since[row] < as_of:
                out.append((row, self._earlier_version(item_id, as_of)))
        return out

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def is_available(self, item_id: str) -> bool:
        row = self._row.get(item_id)
        return row is not None and bool(self._available[row])

    @property
    def embeddings(self) -> np.ndarray:
        """[rows, dim] view; rows of removed items are zero and unavailable."""
        return self._emb[: self._size]

    @property
    def available(self) -> np.ndarray:
        return self._available[: self._size]

    def visible(self, as_of: int | None = None) -> np.ndarray:
        """Rows that can be recommended at event time ``as_of``: available, and in the catalog
        strictly before then (an item added at t is recommended from events after t), so a
        replay gives the same lists whatever the timing of the catalog topic."""
        avail = self.available
        return avail if as_of is None else avail & (self._since[: self._size] < as_of)

    def item_id_at(self, row: int) -> str | None:
        return self._ids[row]
