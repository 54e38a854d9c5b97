"""Prequential scoring of rolling recommendation lists (pure Python + numpy; no Kafka, no Flink).

The protocol is the contract's ("Evaluation protocol", ../shared/CONTRACT.md):

* Feed the event stream in order. Per user, stream order is that user's event order.
* After an event, a recommender may emit a list for the event's user (the list "triggered" by the
  event; it already includes the event). The list *in force* for user u is the latest list whose
  trigger event came before the current event in u's event order.
* **Event level**: each ``purchase`` is scored against the list in force just before it.
* **Basket level**: every purchase line of one order (same user, same ``session_id``; an event
  without ``session_id`` is an order of its own) is scored against the list that was in force
  just before the order's *first* line.
* A purchase with no list in force counts as a miss (and is still counted in ``n``).
* With a single relevant item at 1-based rank r <= K: HR = 1, NDCG = 1 / log2(r + 1), MRR = 1 / r;
  otherwise all three are 0.

Extras computed by the same :class:`Scorer`:

* ``coverage``: distinct items that appear in any emitted list / catalog size (items seen).
* ``fresh_share``: share of emitted lists holding at least one item first seen (item ``ts``, or
  the first event naming it) within ``fresh_window_ms`` (24 h) of event time before the trigger
  event, i.e. ``trigger_ts - window < first_seen <= trigger_ts``.
* ``by_history``: event-level metrics split by the user's history at that purchase. History length
  is defined in **orders**: the number of distinct earlier orders (``session_id``; or single
  events without one) of that user that contained a purchase. Buckets: ``"1st"`` (no earlier
  order), ``"2-5"`` (1 to 4 earlier orders, i.e. the user's 2nd to 5th order), ``"6+"``.
  All lines of one order fall in the same bucket.
* ``weekly``: event- and basket-level NDCG@K per ISO week (``"2011-W05"``) of the purchase ``ts``.

Latency is separate from list scoring (it is about when lists arrive, not what is in them):
:func:`latencies_ms` pairs produce times of events with consume times of their lists and
:func:`latency_stats` summarises them (p50/p95/p99).

Typical use for a recorded run (the job's output)::

    result = score_records(events, records, items=item_first_seen)

and for an online recommender (a baseline) feed the :class:`Scorer` directly::

    s = Scorer(k=10)
    for ev in events:
        s.event(ev)                         # scored against the list in force
        s.emit(ev["user_id"], rec.update(ev), ev["event_id"], ev["ts"])
    result = s.result()
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

DAY_MS = 24 * 3600 * 1000
HISTORY_BUCKETS = ("1st", "2-5", "6+")


def history_bucket(earlier_orders: int) -> str:
    """Bucket of a purchase given the number of the user's earlier orders (see module doc)."""
    if earlier_orders <= 0:
        return "1st"
    if earlier_orders <= 4:
        return "2-5"
    return "6+"


def iso_week(ts_ms: int) -> str:
    """ISO week of an epoch-millisecond timestamp (UTC), e.g. ``"2011-W05"``."""
    y, w, _ = _dt.datetime.fromtimestamp(ts_ms / 1000, tz=_dt.timezone.utc).isocalendar()
    return f"{y}-W{w:02d}"


class _Acc:
    """Running sums of HR/NDCG/MRR over scored purchases."""

    __slots__ = ("n", "hits", "ndcg", "rr")

    def __init__(self) -> None:
        self.n = 0
        self.hits = 0
        self.ndcg = 0.0
        self.rr = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.hits += 1
            self.ndcg += 1.0 / math.log2(rank + 1)
            self.rr += 1.0 / rank

    def as_dict(self, k: int) -> dict[str, float | int]:
        n = self.n
        return {
            f"hr@{k}": self.hits / n if n else 0.0,
            f"ndcg@{k}": self.ndcg / n if n else 0.0,
            f"mrr@{k}": self.rr / n if n else 0.0,
            "n": n,
        }


def rank_of(item_id: str, items: Sequence[str] | None, k: int) -> int | None:
    """1-based rank of ``item_id`` in the first ``k`` entries of ``items``, or None."""
    if not items:
        return None
    for r, it in enumerate(items[:k], start=1):
        if it == item_id:
            return r
    return None


class Scorer:
    """Incremental prequential scorer. Feed items, events and lists in stream order.

    For each event call :meth:`event` *before* :meth:`emit` of the list that event triggered, so
    the event is scored against the list in force before it.
    """

    def __init__(self, k: int = 10, fresh_window_ms: int = DAY_MS) -> None:
        self.k = k
        self.fresh_window_ms = fresh_window_ms
        self._current: dict[str, tuple[str, ...]] = {}  # user -> list in force
        # user -> (order key, list in force before its first line, history bucket)
        self._order: dict[str, tuple[Any, tuple[str, ...] | None, str]] = {}
        self._orders_done: dict[str, int] = {}  # user -> number of orders started so far
        self._event_acc = _Acc()
        self._basket_acc = _Acc()
        self._hist_acc = {b: _Acc() for b in HISTORY_BUCKETS}
        self._hist_basket_acc = {b: _Acc() for b in HISTORY_BUCKETS}
        self._week_acc: dict[str, _Acc] = {}
        self._week_basket_acc: dict[str, _Acc] = {}
        self._first_seen: dict[str, int] = {}
        self._recommended: set[str] = set()
        self.n_events = 0
        self.n_lists = 0
        self._n_fresh_lists = 0
        self._n_empty_lists = 0
        self._n_no_list = 0  # purchases with no list in force (event level)

    # ---- inputs ------------------------------------------------------------------------------
    def item(self, item_id: str, ts: int | None = None) -> None:
        """An item arrived in the catalog (first sighting wins)."""
        if item_id not in self._first_seen:
            self._first_seen[item_id] = int(ts) if ts is not None else 0

    def event(self, ev: Mapping[str, Any]) -> None:
        """An event in stream order; purchases are scored against the list in force."""
        self.n_events += 1
        item = ev.get("item_id")
        if item is not None and item not in self._first_seen:
            self._first_seen[item] = int(ev.get("ts") or 0)
        if ev.get("type") != "purchase" or item is None:
            return
        user = ev["user_id"]
        current = self._current.get(user)

        session = ev.get("session_id")
        order_key = session if session is not None else ("__event__", ev.get("event_id"))
        open_order = self._order.get(user)
        if open_order is None or open_order[0] != order_key:
            earlier = self._orders_done.get(user, 0)
            open_order = (order_key, current, history_bucket(earlier))
            self._order[user] = open_order
            self._orders_done[user] = earlier + 1
        _, basket_list, bucket = open_order

        r_event = rank_of(item, current, self.k)
        r_basket = rank_of(item, basket_list, self.k)
        if current is None:
            self._n_no_list += 1
        self._event_acc.add(r_event)
        self._basket_acc.add(r_basket)
        self._hist_acc[bucket].add(r_event)
        self._hist_basket_acc[bucket].add(r_basket)
        ts = ev.get("ts")
        if ts is not None:
            wk = iso_week(int(ts))
            self._week_acc.setdefault(wk, _Acc()).add(r_event)
            self._week_basket_acc.setdefault(wk, _Acc()).add(r_basket)

    def emit(
        self,
        user_id: str,
        items: Sequence[str],
        trigger_event_id: str | None = None,
        trigger_ts: int | None = None,
    ) -> None:
        """The list triggered by the user's latest event; it is in force from now on."""
        lst = tuple(items)
        self._current[user_id] = lst
        self.n_lists += 1
        if not lst:
            self._n_empty_lists += 1
            return
        self._recommended.update(lst)
        if trigger_ts is not None:
            lo = trigger_ts - self.fresh_window_ms
            fs = self._first_seen
            for it in lst:
                t = fs.get(it)
                if t is not None and lo < t <= trigger_ts:
                    self._n_fresh_lists += 1
                    break

    # ---- outputs -----------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        k = self.k
        catalog = len(self._first_seen)
        return {
            "event": self._event_acc.as_dict(k),
            "basket": self._basket_acc.as_dict(k),
            "by_history": {
                b: {
                    "event": self._hist_acc[b].as_dict(k),
                    "basket": self._hist_basket_acc[b].as_dict(k),
                }
                for b in HISTORY_BUCKETS
            },
            "weekly": {
                wk: {
                    f"ndcg@{k}": self._week_acc[wk].as_dict(k)[f"ndcg@{k}"],
                    f"basket_ndcg@{k}": self._week_basket_acc[wk].as_dict(k)[f"ndcg@{k}"],
                    "n": self._week_acc[wk].n,
                }
                for wk in sorted(self._week_acc)
            },
            "coverage": len(self._recommended) / catalog if catalog else 0.0,
            "recommended_items": len(self._recommended),
            "catalog_size": catalog,
            "fresh_share": self._n_fresh_lists / self.n_lists if self.n_lists else 0.0,
            "n_events": self.n_events,
            "n_lists": self.n_lists,
            "n_empty_lists": self._n_empty_lists,
            "n_purchases_without_list": self._n_no_list,
        }


def score_records(
    events: Iterable[Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]],
    items: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
    k: int = 10,
    fresh_window_ms: int = DAY_MS,
) -> dict[str, Any]:
    """Score recorded ``recommendations`` values against the event stream they answered.

    ``events``: contract events in stream order. ``records``: recommendation values (dicts with
    ``user_id``, ``trigger_event_id``, ``items`` as ``[{"item_id", "score"}]`` or plain ids); a
    duplicate for the same trigger (at-least-once redelivery) replaces the earlier one; null
    values (tombstones) are skipped. ``items``: item first-seen times (``{item_id: ts}`` or pairs),
    fed before the stream so freshness uses the catalog's ``ts``.

    The result is :meth:`Scorer.result` plus ``n_records`` and ``n_records_unmatched`` (records
    whose trigger is not among ``events``, or whose user differs from the trigger's user).
    """
    by_trigger: dict[str, tuple[str, tuple[str, ...]]] = {}
    n_records = 0
    for rec in records:
        if rec is None:
            continue
        n_records += 1
        ids = tuple(
            (it["item_id"] if isinstance(it, Mapping) else it) for it in rec.get("items") or ()
        )
        by_trigger[str(rec["trigger_event_id"])] = (str(rec["user_id"]), ids)

    s = Scorer(k=k, fresh_window_ms=fresh_window_ms)
    if items is not None:
        pairs = items.items() if isinstance(items, Mapping) else items
        for item_id, ts in pairs:
            s.item(item_id, ts)
    matched = 0
    for ev in events:
        s.event(ev)
        hit = by_trigger.get(str(ev["event_id"]))
        if hit is not None and hit[0] == ev["user_id"]:
            matched += 1
            s.emit(ev["user_id"], hit[1], ev["event_id"], ev.get("ts"))
    out = s.result()
    out["n_records"] = n_records
    out["n_records_unmatched"] = len(by_trigger) - matched
    return out


# ---- latency ---------------------------------------------------------------------------------
def latencies_ms(
    produced_ms: Mapping[str, float], consumed_ms: Mapping[str, float] | Iterable[tuple[str, float]]
) -> np.ndarray:
    """Per-list latency: consume time of the list minus produce time of its trigger event (ms).

    ``produced_ms``: event_id -> wall-clock produce time; ``consumed_ms``: trigger_event_id ->
    wall-clock time the list was consumed (or pairs). Lists without a produce time are skipped.
    """
    pairs = consumed_ms.items() if isinstance(consumed_ms, Mapping) else consumed_ms
    out = [c - produced_ms[e] for e, c in pairs if e in produced_ms]
    return np.asarray(out, dtype=np.float64)


def latency_stats(samples: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """p50/p95/p99 (linear interpolation, numpy's default), mean, max and count, in ms."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return {"p50": None, "p95": None, "p99": None, "mean": None, "max": None, "n": 0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(a.mean()),
        "max": float(a.max()),
        "n": int(a.size),
    }
