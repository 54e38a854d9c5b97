"""Item-to-item co-occurrence learned online: forward-decayed counts, bounded rows, neighbours.

Two items co-occur when one user takes both into the same order (or, with a smaller weight,
into orders close in time; the world decides the pairs and weights). Counts are forward-decayed
on event time (see operators.forward_decay), so old co-purchases fade without sweeps.

- ``count[i]``: decayed number of orders holding item i.
- ``rows[i][j]``: decayed co-occurrence of i with j; at most ``row_cap`` entries per item (the
  weakest are dropped when a row overflows by a quarter), so memory is bounded per item.
- ``neighbours(i)``: the ``neighbours`` best j by asymmetric cosine
  ``co(i, j) / (count[i] ** alpha * count[j] ** (1 - alpha))`` (alpha 0.5 is plain cosine,
  1.0 the conditional probability P(j | i)), times ``co / (co + shrink)`` (pairs seen in few
  orders say little), best first, ties by index. A row's list is
  recomputed by :meth:`refresh` once the row has grown by ``refresh`` (a fraction) since its last
  computation; the world calls it after applying updates, never on a read, so every replica
  holds the same lists whatever it was asked.

The normalisation is a ratio of sums with the same forward-decay factor, so it needs no division
by the decay. Deterministic: iteration is in insertion order, ties broken by index.
"""

from __future__ import annotations

import numpy as np

from operators.content import EMPTY_KEYS, EMPTY_SIMS, best_first, pack_lists, unpack_lists
from operators.forward_decay import ForwardDecay


class CoOccurrence:
    def __init__(
        self,
        half_life_ms: float,
        row_cap: int = 200,
        neighbours: int = 50,
        alpha: float = 0.5,
        refresh: float = 0.2,
        shrink: float = 0.0,
    ):
        self.decay = ForwardDecay(half_life_ms)
        self.row_cap = row_cap
        self.n_neighbours = neighbours
        self.alpha = alpha
        self.refresh_ratio = refresh
        self.shrink = shrink
        self.rows: dict[int, dict[int, float]] = {}
        self.count = np.zeros(1024, dtype=np.float64)
        self.nb: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._added: dict[int, float] = {}  # row weight added since the row's last refresh
        self._base: dict[int, float] = {}  # row weight at its last refresh
        self._dirty: dict[int, None] = {}  # rows due for a refresh, in the order they got due

    # ---- updates -----------------------------------------------------------------------------
    def weight(self, ts: float) -> float:
        """Forward-decay weight of an observation at ``ts`` (rebases every sum when needed)."""
        if self.decay.needs_rebase(ts):
            self._scale(self.decay.rebase(ts))
        return self.decay.weight(ts)

    def _scale(self, factor: float) -> None:
        for row in self.rows.values():
            for j in row:
                row[j] *= factor
        self.count *= factor
        self._added = {i: v * factor for i, v in self._added.items()}
        self._base = {i: v * factor for i, v in self._base.items()}

    def ensure(self, n: int) -> None:
        """Room for items 0..n-1 in ``count``."""
        if n > self.count.shape[0]:
            count = np.zeros(max(2 * self.count.shape[0], n), dtype=np.float64)
            count[: self.count.shape[0]] = self.count
            self.count = count

    def add_item(self, i: int, w: float) -> None:
        """One more order holds item ``i`` (weight ``w``)."""
        self.ensure(i + 1)
        self.count[i] += w

    def add_pair(self, i: int, j: int, w: float) -> None:
        """``i`` and ``j`` co-occurred with weight ``w`` (both directions)."""
        self._inc(i, j, w)
        self._inc(j, i, w)

    def add_pairs(self, i: int, others: list[tuple[int, float]]) -> None:
        """``i`` co-occurred with each ``j`` of ``others`` with weight ``w`` (both directions)."""
        if not others:
            return
        rows, added, base, dirty = self.rows, self._added, self._base, self._dirty
        ratio, hi = self.refresh_ratio, self.row_cap + self.row_cap // 4
        row_i = rows.get(i)
        if row_i is None:
            row_i = rows[i] = {}
        total = 0.0
        for j, w in others:
            row_i[j] = row_i.get(j, 0.0) + w
            total += w
            row = rows.get(j)
            if row is None:
                row = rows[j] = {}
            row[i] = row.get(i, 0.0) + w
            got = added[j] = added.get(j, 0.0) + w
            if got > ratio * base.get(j, 0.0) and j not in dirty:
                dirty[j] = None
            if len(row) > hi:
                self._prune(j, row)
        got = added[i] = added.get(i, 0.0) + total
        if got > ratio * base.get(i, 0.0) and i not in dirty:
            dirty[i] = None
        if len(row_i) > hi:
            self._prune(i, row_i)

    def add_directed(self, i: int, j: int, w: float) -> None:
        """``j`` followed ``i`` (only the row of ``i`` grows)."""
        self._inc(i, j, w)

    def _inc(self, i: int, j: int, w: float) -> None:
        row = self.rows.get(i)
        if row is None:
            row = self.rows[i] = {}
        row[j] = row.get(j, 0.0) + w
        added = self._added.get(i, 0.0) + w
        self._added[i] = added
        if i not in self._dirty and added > self.refresh_ratio * self._base.get(i, 0.0):
            self._dirty[i] = None
        if len(row) > self.row_cap + self.row_cap // 4:
            self._prune(i, row)

    def _prune(self, i: int, row: dict[int, float]) -> None:
        keys = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
        vals = np.fromiter(row.values(), dtype=np.float64, count=len(row))
        keep = set(best_first(keys, vals, self.row_cap)[0].tolist())
        self.rows[i] = {j: v for j, v in row.items() if j in keep}

    def refresh(self, now: float) -> int:
        """Recompute the neighbour lists of rows that grew enough; returns how many."""
        n = 0
        factor = self.decay.value_at(1.0, now)
        for i in self._dirty:
            row = self.rows[i]
            keys = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            vals = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            a = self.alpha
            norm = max(self.count[i], 1e-300) ** a * np.maximum(self.count[keys], 1e-300) ** (1 - a)
            sims = vals / norm
            if self.shrink > 0:  # few co-occurrences say little: co / (co + shrink)
                eff = vals * factor
                sims *= eff / (eff + self.shrink)
            nk, ns = best_first(keys, sims, self.n_neighbours)
            self.nb[i] = (nk, ns.astype(np.float32))
            self._base[i] = float(vals.sum())
            self._added[i] = 0.0
            n += 1
        self._dirty.clear()
        return n

    # ---- reads -------------------------------------------------------------------------------
    def neighbours(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.nb.get(i, (EMPTY_KEYS, EMPTY_SIMS))

    def count_factor(self, now: float) -> float:
        """Multiply ``count`` by this for decayed numbers of orders as of ``now``."""
        return self.decay.value_at(1.0, now)

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values())

    # ---- snapshot ----------------------------------------------------------------------------
    def state(self) -> dict:
        """Plain arrays (item indexes as int32) and dicts; :meth:`from_state` rebuilds exactly."""
        rows, nb = self.rows, self.nb
        total = sum(len(r) for r in rows.values())
        return {
            "params": (
                self.row_cap,
                self.n_neighbours,
                self.alpha,
                self.refresh_ratio,
                self.shrink,
            ),
            "decay": self.decay.state(),
            "row_ids": np.fromiter(rows.keys(), dtype=np.int32, count=len(rows)),
            "row_len": np.fromiter((len(r) for r in rows.values()), np.int32, len(rows)),
            "row_keys": np.fromiter((j for r in rows.values() for j in r), np.int32, total),
            "row_vals": np.fromiter(
                (v for r in rows.values() for v in r.values()), dtype=np.float64, count=total
            ),
            "count": self.count.copy(),
            "nb": pack_lists(nb),
            "added": self._added,
            "base": self._base,
            "dirty": list(self._dirty),
        }

    @classmethod
    def from_state(cls, s: dict) -> CoOccurrence:
        row_cap, n_nb, alpha, refresh, shrink = s["params"]
        c = cls(1.0, row_cap, n_nb, alpha, refresh, shrink)
        c.decay = ForwardDecay.from_state(s["decay"])
        keys, vals = s["row_keys"].tolist(), s["row_vals"].tolist()
        start = 0
        for i, n in zip(s["row_ids"].tolist(), s["row_len"].tolist(), strict=True):
            c.rows[i] = dict(zip(keys[start : start + n], vals[start : start + n], strict=True))
            start += n
        c.count = s["count"].copy()
        c.nb = unpack_lists(s["nb"])
        c._added = dict(s["added"])
        c._base = dict(s["base"])
        c._dirty = dict.fromkeys(s["dirty"])
        return c
