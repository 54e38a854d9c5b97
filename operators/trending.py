"""Trending: recent popularity in distinct users, decayed on event time.

Each (user, item) counts once per ``dedup`` window (the world decides; see operators.world), with
forward-decay weight (operators.forward_decay), so an item's score is the decayed number of
distinct recent buyers. Scores only grow in forward-decay space, so the top ``size`` list is
kept exactly and cheaply: an item outside it can only enter when its own score grows.

Ties are broken by item index; the world filters items that are not visible when it reads.
"""

from __future__ import annotations

import bisect

import numpy as np

from operators.forward_decay import ForwardDecay


class Trending:
    def __init__(self, half_life_ms: float, size: int = 200):
        self.decay = ForwardDecay(half_life_ms)
        self.size = size
        self.score: dict[int, float] = {}
        self.scores = np.zeros(1024, dtype=np.float64)  # the same, as an array by item index
        self.top: list[int] = []  # best first: (-score, index) ascending
        self._in_top: set[int] = set()
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None  # the top list, as arrays

    def _key(self, i: int) -> tuple[float, int]:
        return (-self.score[i], i)

    def add(self, i: int, ts: float, w: float = 1.0) -> None:
        """One more distinct recent buyer of item ``i`` at ``ts`` (weight ``w``)."""
        if self.decay.needs_rebase(ts):
            factor = self.decay.rebase(ts)
            self.score = {k: v * factor for k, v in self.score.items()}
            self.scores *= factor
        self.score[i] = self.score.get(i, 0.0) + w * self.decay.weight(ts)
        if i >= self.scores.shape[0]:
            scores = np.zeros(max(2 * self.scores.shape[0], i + 1), dtype=np.float64)
            scores[: self.scores.shape[0]] = self.scores
            self.scores = scores
        self.scores[i] = self.score[i]
        self._arrays = None
        top = self.top
        if i in self._in_top:
            top.remove(i)
        elif len(top) >= self.size and self._key(i) >= self._key(top[-1]):
            return
        bisect.insort(top, i, key=self._key)
        self._in_top.add(i)
        if len(top) > self.size:
            self._in_top.discard(top.pop())

    def top_items(self, visible: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best visible items and their scores (forward-decay units), best first."""
        if self._arrays is None:
            idx = np.array(self.top, dtype=np.int64)
            self._arrays = (idx, np.array([self.score[i] for i in self.top], dtype=np.float64))
        idx, score = self._arrays
        ok = np.flatnonzero(visible[idx])[:n]
        return idx[ok], score[ok]

    def relative(self, idx: np.ndarray) -> np.ndarray:
        """Scores of ``idx`` relative to the best item's (1.0 for the top trending item)."""
        if not self.top:
            return np.zeros(idx.shape[0], dtype=np.float64)
        inside = np.minimum(idx, self.scores.shape[0] - 1)
        out = np.where(idx < self.scores.shape[0], self.scores[inside], 0.0)
        return out / self.score[self.top[0]]

    def state(self) -> dict:
        return {
            "size": self.size,
            "decay": self.decay.state(),
            "score": self.score,
            "top": self.top,
        }

    @classmethod
    def from_state(cls, s: dict) -> Trending:
        t = cls(1.0, s["size"])
        t.decay = ForwardDecay.from_state(s["decay"])
        t.score = dict(s["score"])
        t.scores = np.zeros(max(1024, 1 + max(t.score, default=0)), dtype=np.float64)
        for i, v in t.score.items():
            t.scores[i] = v
        t.top = list(s["top"])
        t._in_top = set(t.top)
        t._arrays = None
        return t
