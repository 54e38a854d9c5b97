"""Approximate nearest items for a large catalog: an inverted file (IVF) whose results are a
function of the catalog's updates alone, so every replica and every restore returns the same
neighbours.

The keys are split into *cells*, one per centroid; a search scores exactly (cosine, over the
caller's vector matrix) the members of the cells whose centroids are nearest to the query (at
most ``probe`` cells, and no more once ``budget`` rows are reached), instead of every row.

- The first centroids are trained once, when the index is built: a fixed number of spherical
  k-means steps (numpy, float64) over keys at evenly spaced positions in key order, started
  from evenly spaced keys too.
- A key goes to the cell of its nearest centroid (float64 scores; ties to the lower cell). A
  cell that grows past ``max_cell`` members is split in two by 2-means over its members (in key
  order), so cells stay small as the catalog grows and a search costs about the same at any
  size. A cell whose members cannot be split (identical vectors) waits until it doubles.
- Centroids and cells change only on :meth:`add` / :meth:`remove`, in the world's deterministic
  order, and are stored whole (:meth:`state`): a restore does not recompute anything.
- A search's result depends on the *set* of members of the probed cells, not on their order:
  they are scored exactly and the best are taken with ties broken by key.

Memory: one int32 per key, the centroids (float64, about one per ``max_cell / 2`` keys); the
vectors stay the caller's (one copy).
"""

from __future__ import annotations

import numpy as np

from operators.content import best_first

LISTS = 1024  # cells of a new index
PROBE = 16  # cells scored per search, at most
BUDGET = 8_000  # rows scored per search: no further cell once reached
MAX_CELL = 1024  # a cell with more members is split
TRAIN_PER_LIST = 32  # training vectors per centroid (at most)
TRAIN_STEPS = 8  # k-means steps (4 for a split)
MIN_KEYS = 20_000  # the index is built once the catalog reaches this many present items

EMPTY = np.zeros(0, dtype=np.int64)


def _spaced(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` of ``keys`` at evenly spaced positions (all of them when there are fewer)."""
    return keys if keys.size <= n else keys[(np.arange(n) * keys.size) // n]


def kmeans(x: np.ndarray, k: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, dim] of unit length, cell of each row): spherical k-means over the float64
    rows ``x``, started from rows at evenly spaced positions; an empty cell keeps its centroid."""
    c = x[(np.arange(k) * len(x)) // k].copy()
    for step in range(steps + 1):
        cell = np.argmax(x @ c.T, axis=1)
        if step == steps:
            return c, cell
        sums = np.zeros_like(c)
        np.add.at(sums, cell, x)
        norm = np.linalg.norm(sums, axis=1)
        full = norm > 0
        c[full] = sums[full] / norm[full, None]
    raise AssertionError("unreachable")


class IVFIndex:
    """Cells of keys around centroids; :meth:`search` scores the nearest cells exactly."""

    def __init__(self, centroids: np.ndarray, probe: int, budget: int, max_cell: int):
        c = np.ascontiguousarray(centroids, dtype=np.float64)
        self.n_cells = c.shape[0]
        self._centroids = np.zeros((max(64, 2 * self.n_cells), c.shape[1]), dtype=np.float64)
        self._centroids[: self.n_cells] = c
        self.probe = probe
        self.budget = budget
        self.max_cell = max_cell
        self.cell_of = np.full(1024, -1, dtype=np.int32)  # key -> cell (-1: not indexed)
        self.cells: list[np.ndarray] = [EMPTY for _ in range(self.n_cells)]
        self.split_at = [max_cell] * self.n_cells  # a cell is split beyond this many members

    @property
    def centroids(self) -> np.ndarray:
        return self._centroids[: self.n_cells]

    @classmethod
    def build(
        cls,
        keys: np.ndarray,
        rows: np.ndarray,
        lists: int | None = None,
        probe: int | None = None,
    ) -> IVFIndex:
        """An index over ``keys`` (ascending) whose vectors are ``rows[keys]`` (``lists`` and
        ``probe``: the module's LISTS and PROBE by default): trained centroids, then every
        oversized cell split."""
        lists = min(lists or LISTS, keys.size)
        x = rows[_spaced(keys, TRAIN_PER_LIST * lists)].astype(np.float64)
        ivf = cls(kmeans(x, lists, TRAIN_STEPS)[0], probe or PROBE, BUDGET, MAX_CELL)
        ivf._grow_keys(int(keys[-1]) + 1)
        for start in range(0, keys.size, 4096):  # bounded temporary memory
            chunk = keys[start : start + 4096]
            ivf.cell_of[chunk] = np.argmax(rows[chunk].astype(np.float64) @ ivf.centroids.T, 1)
        ivf._fill_cells(keys)
        c = 0
        while c < ivf.n_cells:  # new cells are appended, and checked in turn
            while ivf.cells[c].size > ivf.split_at[c]:
                ivf._split(c, rows)
            c += 1
        return ivf

    def _fill_cells(self, keys: np.ndarray) -> None:
        cells = self.cell_of[keys]
        order = np.argsort(cells, kind="stable")
        sorted_keys, sorted_cells = keys[order].astype(np.int64), cells[order]
        bounds = np.searchsorted(sorted_cells, np.arange(self.n_cells + 1))
        self.cells = [sorted_keys[bounds[c] : bounds[c + 1]] for c in range(self.n_cells)]

    def _grow_keys(self, n: int) -> None:
        if n > self.cell_of.size:
            cell_of = np.full(max(2 * self.cell_of.size, n), -1, dtype=np.int32)
            cell_of[: self.cell_of.size] = self.cell_of
            self.cell_of = cell_of

    def _split(self, c: int, rows: np.ndarray) -> None:
        """Cell ``c`` in two by 2-means over its members in key order (the second half becomes a
        new cell); when they cannot be told apart, ``c`` waits until it has doubled."""
        members = np.sort(self.cells[c])
        cents, side = kmeans(rows[members].astype(np.float64), 2, 4)
        if side.all() or not side.any():
            self.split_at[c] = 2 * members.size
            return
        new = self.n_cells
        if new == self._centroids.shape[0]:
            grown = np.zeros((2 * new, self._centroids.shape[1]), dtype=np.float64)
            grown[:new] = self._centroids
            self._centroids = grown
        self._centroids[c] = cents[0]
        self._centroids[new] = cents[1]
        self.n_cells += 1
        self.cells[c] = members[side == 0]
        self.cells.append(members[side == 1])
        self.split_at[c] = self.max_cell
        self.split_at.append(self.max_cell)
        self.cell_of[self.cells[new]] = new

    def add(self, key: int, vec: np.ndarray, rows: np.ndarray) -> None:
        """Index ``key`` (its vector ``vec`` is ``rows[key]``)."""
        self.remove(key)
        cell = int(np.argmax(self.centroids @ np.asarray(vec, dtype=np.float64)))
        self._grow_keys(key + 1)
        self.cell_of[key] = cell
        self.cells[cell] = np.append(self.cells[cell], np.int64(key))
        if self.cells[cell].size > self.split_at[cell]:
            self._split(cell, rows)

    def remove(self, key: int) -> None:
        if key < self.cell_of.size and self.cell_of[key] >= 0:
            cell = int(self.cell_of[key])
            members = self.cells[cell]
            self.cells[cell] = members[members != key]
            self.cell_of[key] = -1

    def search(
        self, vec: np.ndarray, n: int, rows: np.ndarray, exclude: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best members of the nearest cells by cosine (``rows @ vec``), best first,
        ties by key."""
        q = np.asarray(vec, dtype=np.float32)
        near = best_first(
            np.arange(self.n_cells, dtype=np.int64),
            self.centroids @ q.astype(np.float64),
            self.probe,
        )[0].tolist()
        cells = self.cells
        sizes = np.cumsum([cells[c].size for c in near])
        near = near[: int(np.searchsorted(sizes, self.budget)) + 1]
        keys = np.concatenate([cells[c] for c in near])
        if exclude is not None:
            keys = keys[keys != exclude]
        return best_first(keys, rows[keys] @ q, n)

    def state(self) -> dict:
        return {
            "centroids": self.centroids.copy(),
            "params": (self.probe, self.budget, self.max_cell),
            "split_at": np.array(self.split_at, dtype=np.int64),
            "cell_of": self.cell_of.copy(),
        }

    @classmethod
    def from_state(cls, s: dict) -> IVFIndex:
        ivf = cls(s["centroids"], *s["params"])
        ivf.split_at = s["split_at"].tolist()
        ivf.cell_of = np.asarray(s["cell_of"], dtype=np.int32).copy()
        ivf._fill_cells(np.flatnonzero(ivf.cell_of >= 0))
        return ivf
