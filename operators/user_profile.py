"""Per-user profile: what the keyed operator keeps in Flink state, and how events update it.

Pure Python/numpy, pickled into one Flink ValueState per user. All decay runs on event time
(the ``ts`` of the user's events), never on the wall clock, so replaying history at any speed gives
the same profile.

- ``recent``: sliding window of recent interactions (ts, item_id, type), bounded by time and count;
  its vector is computed at scoring time from the current catalog, so an item that was not yet in
  the catalog when the event came is filled in as soon as it arrives.
- ``long_vec``: long-term interest vector, an event-time decayed sum of item embeddings; events
  whose item is not yet embedded wait in ``pending`` and are folded in (with their own decay) once
  the item is known.
- ``purchases``: per-item purchase counts and last purchase time (repeat purchases are real).
- ``queries``: recent search query vectors (ts, float32 bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from operators.events import Event

DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000


@dataclass(frozen=True)
class ProfileParams:
    type_weights: dict[str, float] = field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 6.0}
    )
    window_ms: int = 3 * DAY_MS  # sliding window of recent interactions
    window_max: int = 50
    short_half_life_ms: int = 12 * HOUR_MS  # decay inside the window
    long_half_life_ms: int = 30 * DAY_MS  # decay of the long-term vector
    pending_max: int = 200  # interactions waiting for their item's embedding
    query_window_ms: int = 1 * DAY_MS
    query_max: int = 5
    query_half_life_ms: int = 2 * HOUR_MS
    purchases_max: int = 500  # distinct purchased items kept per user (least recent dropped)


def decay(dt_ms: float, half_life_ms: float) -> float:
    """2^(-dt/half_life); events from the future (out of order) do not grow."""
    return math.pow(2.0, -max(dt_ms, 0.0) / half_life_ms)


@dataclass
class Profile:
    last_ts: int | None = None
    recent: list[tuple[int, str, str]] = field(default_factory=list)
    long_vec: np.ndarray | None = None
    long_ts: int | None = None
    pending: list[tuple[int, str, float]] = field(default_factory=list)
    purchases: dict[str, tuple[int, int]] = field(default_factory=dict)  # item -> (count, last_ts)
    queries: list[tuple[int, bytes]] = field(default_factory=list)
    events_seen: int = 0


Lookup = Callable[[str], "np.ndarray | None"]


def _add_long(p: Profile, vec: np.ndarray, weight: float, ts: int, params: ProfileParams) -> None:
    """Add weight*vec observed at ts into the long-term vector, decayed to the vector's own time."""
    if p.long_vec is None:
        p.long_vec = np.zeros_like(vec, dtype=np.float32)
        p.long_ts = ts
    if ts >= p.long_ts:
        p.long_vec *= decay(ts - p.long_ts, params.long_half_life_ms)
        p.long_ts = ts
        p.long_vec += weight * vec
    else:  # an older observation (out of order, or a pending item filled in late)
        p.long_vec += (weight * decay(p.long_ts - ts, params.long_half_life_ms)) * vec


def fill_pending(p: Profile, lookup: Lookup, params: ProfileParams) -> None:
    """Fold interactions whose item has since been embedded into the long-term vector."""
    if not p.pending:
        return
    still = []
    for ts, item_id, w in p.pending:
        vec = lookup(item_id)
        if vec is None:
            still.append((ts, item_id, w))
        else:
            _add_long(p, vec, w, ts, params)
    p.pending = still


def apply_event(
    p: Profile,
    ev: Event,
    lookup: Lookup,
    params: ProfileParams,
    query_vec: np.ndarray | None = None,
) -> Profile:
    """Apply one accepted event (not forget_user) to the profile, in place; returns it."""
    now = ev.ts if p.last_ts is None else max(p.last_ts, ev.ts)
    p.last_ts = now
    p.events_seen += 1
    fill_pending(p, lookup, params)

    if ev.item_id is not None and ev.type in params.type_weights:
        w = params.type_weights[ev.type]
        p.recent.append((ev.ts, ev.item_id, ev.type))
        vec = lookup(ev.item_id)
        if vec is None:
            p.pending.append((ev.ts, ev.item_id, w))
            if len(p.pending) > params.pending_max:
                p.pending = p.pending[-params.pending_max :]
        else:
            _add_long(p, vec, w, ev.ts, params)
        if ev.type == "purchase":
            count, last = p.purchases.get(ev.item_id, (0, ev.ts))
            p.purchases[ev.item_id] = (count + 1, max(last, ev.ts))
            if len(p.purchases) > params.purchases_max:
                oldest = min(p.purchases, key=lambda k: p.purchases[k][1])
                del p.purchases[oldest]

    if ev.type == "search" and query_vec is not None:
        p.queries.append((ev.ts, np.asarray(query_vec, dtype=np.float32).tobytes()))

    # slide the windows on event time
    lo = now - params.window_ms
    p.recent = [r for r in p.recent if r[0] >= lo][-params.window_max :]
    qlo = now - params.query_window_ms
    p.queries = [q for q in p.queries if q[0] >= qlo][-params.query_max :]
    return p
