"""What the item texts say: vector search over the catalog, and each item's text neighbours.

- :class:`ContentIndex`: nearest items to a vector by cosine (rows are unit vectors, so a dot
  product). This is the one place that searches vectors: exact (numpy over every row) while the
  catalog is small, approximate (operators.ann.IVFIndex, deterministic) from ``ann_min`` present
  items on. It can read the vectors of the catalog's table (``rows``) instead of copying them.
- :class:`TextNeighbours`: each item's ``m`` most similar items by text, computed when the item
  arrives (one search) and kept up to date as other items arrive or leave, so a per-event read
  is a dict lookup. This is the text prior that gives new and rare items neighbours before
  anyone has bought them.

Keys are the world's interned item indexes (see operators.catalog.ItemTable). Ties are broken by
key, so results do not depend on dict or set order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

EMPTY_KEYS = np.zeros(0, dtype=np.int64)
EMPTY_SIMS = np.zeros(0, dtype=np.float32)


def best_first(keys: np.ndarray, sims: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best (key, sim) pairs, highest sim first, ties by key ascending."""
    if keys.size > n:
        kth = np.partition(sims, keys.size - n)[keys.size - n]  # the n-th highest sim
        keep = sims >= kth  # everything tied with it goes through the tie-break
        keys, sims = keys[keep], sims[keep]
    order = np.lexsort((keys, -sims))[:n]
    return keys[order], sims[order]


def pack_lists(lists: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Neighbour lists {key: (keys, sims)} as four flat arrays (keys as int32), for snapshots."""
    return {
        "ids": np.fromiter(lists.keys(), dtype=np.int32, count=len(lists)),
        "len": np.fromiter((k.size for k, _ in lists.values()), np.int32, len(lists)),
        "keys": np.concatenate([k for k, _ in lists.values()]).astype(np.int32)
        if lists
        else np.zeros(0, np.int32),
        "sims": np.concatenate([s for _, s in lists.values()]) if lists else EMPTY_SIMS,
    }


def unpack_lists(packed: dict[str, np.ndarray]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    keys = packed["keys"].astype(np.int64)
    sims = packed["sims"].astype(np.float32)
    out = {}
    start = 0
    for i, n in zip(packed["ids"].tolist(), packed["len"].tolist(), strict=True):
        out[i] = (keys[start : start + n].copy(), sims[start : start + n].copy())
        start += n
    return out


class ContentIndex:
    """Cosine search over unit vectors, keyed by small non-negative integers.

    ``rows``: a function giving the [keys, dim] matrix that holds each key's vector (the
    catalog's table; :meth:`add` then only marks the key); without it the index keeps its own
    copy. ``ann_min``: present keys from which searches go through an IVFIndex (None: never).
    """

    def __init__(
        self,
        dim: int,
        capacity: int = 1024,
        rows: Callable[[], np.ndarray] | None = None,
        ann_min: int | None = None,
    ):
        self.dim = dim
        self._source = rows
        self._rows = np.zeros((capacity if rows is None else 0, dim), dtype=np.float32)
        self._alive = np.zeros(capacity, dtype=bool)
        self._size = 0  # 1 + the highest key ever added
        self._count = 0
        self.ann_min = ann_min
        self.ann = None  # operators.ann.IVFIndex once the catalog has reached ann_min

    def rows(self) -> np.ndarray:
        return self._rows if self._source is None else self._source()

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        return key < self._size and bool(self._alive[key])

    def add(self, key: int, vec: np.ndarray) -> None:
        """Insert or replace the vector of ``key`` (with ``rows``: ``vec`` is the row there)."""
        if key >= self._alive.shape[0]:
            cap = max(2 * self._alive.shape[0], key + 1)
            alive = np.zeros(cap, dtype=bool)
            alive[: self._size] = self._alive[: self._size]
            self._alive = alive
            if self._source is None:
                rows = np.zeros((cap, self.dim), dtype=np.float32)
                rows[: self._size] = self._rows[: self._size]
                self._rows = rows
        if not self._alive[key]:
            self._count += 1
        if self._source is None:
            self._rows[key] = vec
        self._alive[key] = True
        self._size = max(self._size, key + 1)
        if self.ann is not None:
            self.ann.add(key, vec, self.rows())
        elif self.ann_min is not None and self._count >= self.ann_min:
            from operators.ann import IVFIndex

            self.ann = IVFIndex.build(np.flatnonzero(self._alive[: self._size]), self.rows())

    def remove(self, key: int) -> None:
        if key in self:
            if self._source is None:
                self._rows[key] = 0.0
            self._alive[key] = False
            self._count -= 1
            if self.ann is not None:
                self.ann.remove(key)

    def vector(self, key: int) -> np.ndarray | None:
        return self.rows()[key] if key in self else None

    def search(
        self, vec: np.ndarray, n: int, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keys and cosine similarities of the ``n`` items nearest to ``vec``, best first."""
        if n <= 0 or self._count == 0:
            return EMPTY_KEYS, EMPTY_SIMS
        if self.ann is not None:
            return self.ann.search(vec, n, self.rows(), exclude)
        sims = self.rows()[: self._size] @ np.asarray(vec, dtype=np.float32)
        alive = self._alive[: self._size]
        if exclude is not None and exclude < self._size and alive[exclude]:
            alive = alive.copy()
            alive[exclude] = False
        keys = np.flatnonzero(alive)
        return best_first(keys, sims[keys], n)

    def add_present(self, keys: np.ndarray) -> None:
        """With ``rows``: mark ``keys`` (ascending, not yet added) present at once, without
        building the ANN (a restore; see :meth:`restore_ann`)."""
        if self._source is None:
            raise ValueError("add_present needs an index over the catalog's rows")
        if keys.size == 0:
            return
        top = int(keys[-1]) + 1
        if top > self._alive.shape[0]:
            alive = np.zeros(max(2 * self._alive.shape[0], top), dtype=bool)
            alive[: self._size] = self._alive[: self._size]
            self._alive = alive
        self._count += int(np.count_nonzero(~self._alive[keys]))
        self._alive[keys] = True
        self._size = max(self._size, top)

    def state(self) -> dict | None:
        """What a restore cannot rebuild from the vectors: the ANN's cells (None: exact)."""
        return None if self.ann is None else self.ann.state()

    def restore_ann(self, s: dict | None, build: bool = False) -> None:
        """After re-adding the present keys: the ANN as :meth:`state` gave it (``build``: a new
        one over the present keys)."""
        from operators.ann import IVFIndex

        if build:
            self.ann = IVFIndex.build(np.flatnonzero(self._alive[: self._size]), self.rows())
        else:
            self.ann = None if s is None else IVFIndex.from_state(s)


class TextNeighbours:
    """Each item's ``m`` nearest items by text, maintained as items arrive, change or leave.

    On arrival an item searches ``probe`` (>= m) neighbours: its own list is the best ``m``,
    and it enters the list of each probed item it beats (similarity is symmetric, so the items
    whose lists it belongs in are among its own nearest). When an item leaves (or its text
    changes), the lists that held it are searched again.
    """

    def __init__(self, m: int = 20, probe: int = 40):
        self.m = m
        self.probe = max(probe, m)
        self.lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._listed_by: dict[int, set[int]] = {}  # key -> keys whose list holds it

    def neighbours(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        return self.lists.get(key, (EMPTY_KEYS, EMPTY_SIMS))

    def _set(self, key: int, keys: np.ndarray, sims: np.ndarray) -> None:
        old = self.lists.get(key)
        if old is not None:
            for k in old[0].tolist():
                self._listed_by.get(k, set()).discard(key)
        self.lists[key] = (keys, sims)
        for k in keys.tolist():
            self._listed_by.setdefault(k, set()).add(key)

    def add(self, key: int, index: ContentIndex) -> None:
        """``key`` has just been added to ``index`` (with its current vector)."""
        keys, sims = index.search(index.vector(key), self.probe, exclude=key)
        self._set(key, keys[: self.m], sims[: self.m])
        m = self.m
        for other, sim in zip(keys.tolist(), sims.tolist(), strict=True):
            okeys, osims = self.neighbours(other)
            # its place: after higher similarities, and after equal ones of a lower key
            at = int(np.searchsorted(-osims, -sim, side="left"))
            while at < okeys.size and osims[at] == sim and okeys[at] < key:
                at += 1
            if at >= m:
                continue
            self._listed_by.setdefault(key, set()).add(other)
            if okeys.size >= m:
                self._listed_by.get(int(okeys[m - 1]), set()).discard(other)
            nk = np.concatenate((okeys[:at], np.array([key], dtype=np.int64), okeys[at : m - 1]))
            ns = np.concatenate((osims[:at], np.array([sim], dtype=np.float32), osims[at : m - 1]))
            self.lists[other] = (nk, ns)

    def remove(self, key: int, index: ContentIndex) -> None:
        """``key`` has just been removed from ``index``: drop its list, refill those holding it."""
        old = self.lists.pop(key, None)
        if old is not None:
            for k in old[0].tolist():
                self._listed_by.get(k, set()).discard(key)
        for other in sorted(self._listed_by.pop(key, ())):
            vec = index.vector(other)
            if vec is None:
                continue
            keys, sims = index.search(vec, self.m, exclude=other)
            self._set(other, keys, sims)

    def state(self) -> dict:
        return {"m": self.m, "probe": self.probe, "lists": pack_lists(self.lists)}

    @classmethod
    def from_state(cls, s: dict) -> TextNeighbours:
        t = cls(s["m"], s["probe"])
        for key, (keys, sims) in unpack_lists(s["lists"]).items():
            t._set(key, keys, sims)
        return t
