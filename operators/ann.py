"""Approximate nearest items for a large catalog: an inverted file (IVF) whose results are a
function of the catalog alone, so every replica and every restore returns the same neighbours.

The keys are split into ``lists`` cells, one per *centroid*; a search scores exactly (cosine,
over the caller's vector matrix) the members of the ``probe`` cells whose centroids are nearest
to the query, instead of every row. Determinism, by construction:

- the centroids are trained once, when the index is built, by a fixed number of spherical
  k-means steps (numpy, float64) over the present keys at evenly spaced positions in key order,
  started from evenly spaced keys too: the same keys give the same centroids, and they never
  change afterwards (they are part of :meth:`state`);
- a key's cell is its nearest centroid, scored in float64 (products of float32 values are exact
  there, so two cells tie only when their centroids tie; ties go to the lower cell), and it is
  stored (:meth:`state`), so a restore does not recompute it;
- a search's result depends on the *set* of members of the probed cells, not on their order:
  the members are scored exactly and the best are taken with ties broken by key.

Cost per search: one [lists, dim] product for the probe, then ``probe * keys / lists`` rows.
Memory: one int32 per key plus the centroids; the vectors stay the caller's (one copy).
"""

from __future__ import annotations

import numpy as np

from operators.content import best_first

LISTS = 1024  # cells (centroids)
PROBE = 16  # cells scored per search
TRAIN_PER_LIST = 32  # training vectors per centroid (at most)
TRAIN_STEPS = 8  # k-means steps
MIN_KEYS = 20_000  # the index is built once the catalog reaches this many present items


def _spaced(keys: np.ndarray, n: int) -> np.ndarray:
    """``n`` of ``keys`` at evenly spaced positions (all of them when there are fewer)."""
    return keys if keys.size <= n else keys[(np.arange(n) * keys.size) // n]


def train(keys: np.ndarray, rows: np.ndarray, lists: int) -> np.ndarray:
    """Centroids ([lists, dim], unit length): spherical k-means over up to
    ``TRAIN_PER_LIST * lists`` evenly spaced keys, from evenly spaced keys among those; a
    centroid left empty keeps its place. Deterministic for the same keys and vectors."""
    x = rows[_spaced(keys, TRAIN_PER_LIST * lists)].astype(np.float64)
    c = x[(np.arange(min(lists, len(x))) * len(x)) // min(lists, len(x))].copy()
    for _ in range(TRAIN_STEPS):
        cell = np.argmax(x @ c.T, axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, cell, x)
        norm = np.linalg.norm(sums, axis=1)
        full = norm > 0
        c[full] = sums[full] / norm[full, None]
    return c


class IVFIndex:
    """Cells of keys around fixed centroids; :meth:`search` scores the nearest cells exactly."""

    def __init__(self, centroids: np.ndarray, probe: int):
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float64)
        self.probe = min(probe, self.centroids.shape[0])
        self.cell_of = np.full(1024, -1, dtype=np.int32)  # key -> cell (-1: not indexed)
        self.cells: list[np.ndarray] = [
            np.zeros(0, dtype=np.int64) for _ in range(self.centroids.shape[0])
        ]

    @classmethod
    def build(
        cls, keys: np.ndarray, rows: np.ndarray, lists: int | None = None, probe: int | None = None
    ) -> IVFIndex:
        """An index over ``keys`` (ascending) whose vectors are ``rows[keys]`` (``lists`` and
        ``probe``: the module's LISTS and PROBE by default)."""
        ivf = cls(train(keys, rows, lists or LISTS), probe or PROBE)
        n = keys.size
        for start in range(0, n, 4096):  # bounded temporary memory
            chunk = keys[start : start + 4096]
            cells = np.argmax(rows[chunk].astype(np.float64) @ ivf.centroids.T, axis=1)
            ivf._grow(int(chunk[-1]) + 1)
            ivf.cell_of[chunk] = cells
        order = np.argsort(ivf.cell_of[keys], kind="stable")
        sorted_keys, sorted_cells = keys[order], ivf.cell_of[keys][order]
        bounds = np.searchsorted(sorted_cells, np.arange(len(ivf.cells) + 1))
        for c in range(len(ivf.cells)):
            ivf.cells[c] = sorted_keys[bounds[c] : bounds[c + 1]].astype(np.int64)
        return ivf

    def _grow(self, n: int) -> None:
        if n > self.cell_of.size:
            cell_of = np.full(max(2 * self.cell_of.size, n), -1, dtype=np.int32)
            cell_of[: self.cell_of.size] = self.cell_of
            self.cell_of = cell_of

    def add(self, key: int, vec: np.ndarray) -> None:
        self.remove(key)
        cell = int(np.argmax(self.centroids @ np.asarray(vec, dtype=np.float64)))
        self._grow(key + 1)
        self.cell_of[key] = cell
        self.cells[cell] = np.append(self.cells[cell], np.int64(key))

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
            np.arange(len(self.cells), dtype=np.int64),
            self.centroids @ q.astype(np.float64),
            self.probe,
        )[0]
        keys = np.concatenate([self.cells[c] for c in near.tolist()])
        if exclude is not None:
            keys = keys[keys != exclude]
        return best_first(keys, rows[keys] @ q, n)

    def state(self) -> dict:
        return {
            "centroids": self.centroids.astype(np.float32),  # copies of float32 vectors: exact
            "probe": self.probe,
            "cell_of": self.cell_of.copy(),
        }

    @classmethod
    def from_state(cls, s: dict) -> IVFIndex:
        ivf = cls(s["centroids"], s["probe"])
        cell_of = np.asarray(s["cell_of"], dtype=np.int32)
        ivf.cell_of = cell_of.copy()
        keys = np.flatnonzero(cell_of >= 0)
        order = np.argsort(cell_of[keys], kind="stable")
        sorted_keys, sorted_cells = keys[order], cell_of[keys][order]
        bounds = np.searchsorted(sorted_cells, np.arange(len(ivf.cells) + 1))
        for c in range(len(ivf.cells)):
            ivf.cells[c] = sorted_keys[bounds[c] : bounds[c + 1]].astype(np.int64)
        return ivf
