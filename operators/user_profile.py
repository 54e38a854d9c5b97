"""Per-user profile: what the keyed operator keeps in Flink state, and how an event updates it.

Plain Python, pickled into one Flink ValueState per user on every event, so it is small and
bounded (see ProfileConfig). Everything runs on event time (the ``ts`` of the user's events).

- ``session``: distinct items of the current session (a gap of ``session_gap_ms`` without
  events starts a new one), oldest first, with the strongest event type seen for each.
- ``orders``: the user's recent orders, current last: ``(session_id, session start, items)``.
  An order is the items of one ``session_id`` within one session (a session's items when events
  carry no ``session_id``).
- ``freq``: repeat frequency, TIFU-style: each order holding a purchased item adds a
  forward-decayed weight (``repeat_half_life_days``; 0: no decay, the number of orders), so
  frequent (and recent) repeats rank high.
- ``queries``: recent search queries ``(ts, text, float32 vector bytes)``.
- ``user_id``, ``last_ts``, ``last_event_id``: whose it is, when the session ends
  (``last_ts + session_gap_ms``) and which event that list replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from operators.config import DAY_MS, ProfileConfig
from operators.events import ITEM_EVENT_TYPES, Event
from operators.forward_decay import MAX_EXPONENT


@dataclass(slots=True)
class Profile:
    user_id: str | None = None
    last_ts: int | None = None
    last_event_id: str | None = None
    session_start: int | None = None
    session: list[tuple[str, int, str]] = field(default_factory=list)  # (item, ts, type)
    orders: list[tuple[str | None, int, list[str]]] = field(default_factory=list)
    freq: dict[str, float] = field(default_factory=dict)
    freq_landmark: int | None = None
    queries: list[tuple[int, str, bytes]] = field(default_factory=list)
    events: int = 0

    def __reduce__(self):
        # pickled as the constructor and its fields: faster than a slotted dataclass's state
        return (
            Profile,
            (
                self.user_id,
                self.last_ts,
                self.last_event_id,
                self.session_start,
                self.session,
                self.orders,
                self.freq,
                self.freq_landmark,
                self.queries,
                self.events,
            ),
        )

    def current_order(self) -> list[str]:
        """Items of the order in progress (empty once a new session has begun without items)."""
        if self.orders and self.orders[-1][1] == self.session_start:
            return self.orders[-1][2]
        return []

    def past_orders(self) -> list[list[str]]:
        """Items of the orders before the current one, most recent first."""
        past = self.orders[:-1] if self.current_order() else self.orders
        return [items for _, _, items in reversed(past)]


_TYPE_RANK = {"view": 0, "click": 1, "add_to_cart": 2, "purchase": 3}


def apply_event(
    p: Profile,
    ev: Event,
    cfg: ProfileConfig,
    session_gap_ms: int,
    query_vec: np.ndarray | None = None,
) -> Profile:
    """Apply one accepted event (not forget_user) to the profile, in place; returns it."""
    if p.last_ts is None or ev.ts - p.last_ts >= session_gap_ms:
        p.session_start = ev.ts
        p.session = []
    p.last_ts = ev.ts if p.last_ts is None else max(p.last_ts, ev.ts)
    p.last_event_id = ev.event_id
    p.user_id = ev.user_id
    p.events += 1

    if ev.type == "search" and ev.query is not None and query_vec is not None:
        vec = np.ascontiguousarray(query_vec, dtype="<f4").tobytes()
        lo = p.last_ts - cfg.query_window_ms
        queries = [q for q in p.queries if q[0] >= lo]
        queries.append((ev.ts, ev.query, vec))
        p.queries = queries[-cfg.query_max :] if cfg.query_max > 0 else []

    if ev.item_id is None or ev.type not in ITEM_EVENT_TYPES:
        return p
    item = ev.item_id

    # the session: distinct items, most recent last, strongest type kept
    typ = ev.type
    for n, (it, _, t) in enumerate(p.session):
        if it == item:
            if _TYPE_RANK[t] > _TYPE_RANK[typ]:
                typ = t
            del p.session[n]
            break
    p.session.append((item, ev.ts, typ))
    if len(p.session) > cfg.session_max:
        del p.session[0]

    # the order
    if not (p.orders and p.orders[-1][0] == ev.session_id and p.orders[-1][1] == p.session_start):
        p.orders.append((ev.session_id, p.session_start, []))
        if len(p.orders) > cfg.orders_max:
            del p.orders[0]
    items = p.orders[-1][2]
    first_in_order = item not in items
    if first_in_order:
        items.append(item)
        if len(items) > cfg.order_items_max:
            del items[0]

    # repeat frequency: once per order holding the purchase
    if ev.type == "purchase" and first_in_order:
        _add_freq(p, item, ev.ts, cfg)
    return p


def _add_freq(p: Profile, item: str, ts: int, cfg: ProfileConfig) -> None:
    half_life = cfg.repeat_half_life_days * DAY_MS
    if half_life <= 0:  # no decay: the number of orders
        p.freq[item] = p.freq.get(item, 0.0) + 1.0
    else:
        _add_decayed(p, item, ts, half_life)
    if len(p.freq) > cfg.repeat_max:  # drop the weakest tenth (ties: item id)
        drop = sorted(p.freq, key=lambda k: (p.freq[k], k))[: max(1, cfg.repeat_max // 10)]
        for k in drop:
            del p.freq[k]


def _add_decayed(p: Profile, item: str, ts: int, half_life: float) -> None:
    if p.freq_landmark is None:
        p.freq_landmark = ts
    elif (ts - p.freq_landmark) / half_life > MAX_EXPONENT:
        factor = 2.0 ** (-(ts - p.freq_landmark) / half_life)
        p.freq = {k: v * factor for k, v in p.freq.items()}
        p.freq_landmark = ts
    p.freq[item] = p.freq.get(item, 0.0) + 2.0 ** ((ts - p.freq_landmark) / half_life)
