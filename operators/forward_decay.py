"""Forward decay: time-decayed sums on event time that never need a sweep.

An observation at time t adds ``2 ** ((t - landmark) / half_life)`` instead of 1. Every stored
sum then carries the same hidden factor ``2 ** ((now - landmark) / half_life)``, so ratios and
rankings of sums need no division at all, and an absolute value "as of now" is one multiply
(:meth:`ForwardDecay.value_at`). When exponents grow large the owner rescales its sums once
(:meth:`ForwardDecay.rebase` says by how much); with half-lives of days that is every few
years of event time.

Pure Python; deterministic: the same observations in the same order give the same floats.
"""

from __future__ import annotations

import math

MAX_EXPONENT = 400.0  # 2**400 is far from float64's range; rebase beyond it


class ForwardDecay:
    """Weights of one half-life with a landmark fixed at the first observation."""

    __slots__ = ("half_life_ms", "landmark")

    def __init__(self, half_life_ms: float, landmark: float | None = None):
        if half_life_ms <= 0:
            raise ValueError("half_life_ms must be > 0")
        self.half_life_ms = float(half_life_ms)
        self.landmark = landmark

    def weight(self, ts: float) -> float:
        """Weight of an observation at ``ts`` (sets the landmark on first use)."""
        if self.landmark is None:
            self.landmark = float(ts)
        return math.pow(2.0, (ts - self.landmark) / self.half_life_ms)

    def needs_rebase(self, ts: float) -> bool:
        return self.landmark is not None and (ts - self.landmark) / self.half_life_ms > MAX_EXPONENT

    def rebase(self, ts: float) -> float:
        """Move the landmark to ``ts``; returns the factor every stored sum must be multiplied by."""
        factor = math.pow(2.0, -(ts - self.landmark) / self.half_life_ms)
        self.landmark = float(ts)
        return factor

    def value_at(self, total: float, now: float) -> float:
        """A stored sum expressed as of ``now`` (observations weighted 2**(-age/half_life))."""
        if self.landmark is None:
            return 0.0
        return total * math.pow(2.0, -(now - self.landmark) / self.half_life_ms)

    def state(self) -> tuple[float, float | None]:
        return (self.half_life_ms, self.landmark)

    @classmethod
    def from_state(cls, state: tuple[float, float | None]) -> ForwardDecay:
        return cls(*state)


def decay(age_ms: float, half_life_ms: float) -> float:
    """2**(-age/half_life); an age below zero (out-of-order data) does not grow the weight."""
    return math.pow(2.0, -max(age_ms, 0.0) / half_life_ms)
