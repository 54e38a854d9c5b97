"""Prequential scoring of rolling recommendation lists (pure Python + numpy; no Kafka, no Flink).

The protocol is the contract's ("Evaluation protocol", ../shared/CONTRACT.md):

* Feed the event stream in order. Per user, stream order is that user's event order.
* After an event, a recommender may emit a list for the event's user (the list "triggered" by the
  event; it already includes the event). When the user's session closes it may emit a second
  list for the same trigger event (``"trigger": "session_end"``), which is *later* than the
  per-event list of that trigger and replaces it. The list *in force* for user u is the latest
  list whose trigger event came before the current event in u's event order (ordered by the
  trigger's position, then per-event before session-end).
* ``forget_user`` erases the user: the tombstone removes their lists (no list is in force until
  the next one) and their history starts again (history length, repeat items).
* **Event level**: each ``purchase`` is scored against the list in force just before it.
* **Basket level**: every purchase line of one order is scored against the list that was in
  force just before the order's *first* line. An order is a run of one user's purchases with the
  same ``session_id`` (other event types in between do not end it; a purchase with another
  ``session_id``, or ``forget_user``, does); a purchase without ``session_id`` is an order of
  its own.
* A purchase with no list in force counts as a miss (and is still counted in ``n``).
* With a single relevant item at 1-based rank r <= K: HR = 1, NDCG = 1 / log2(r + 1), MRR = 1 / r;
  otherwise all three are 0.
* ``score_from`` (epoch ms): events before it only warm up (lists, history and first-seen times
  are built as usual); only purchases with ``ts >= score_from`` are scored, and only lists
  triggered at or after it count in the list statistics (coverage, fresh share, counts).

Splits and segments computed by the same :class:`Scorer` (each holds HR/NDCG/MRR and ``n``):

* ``event_split`` (event level only): ``same_order`` when the list in force was triggered at or
  after the first line of the purchase's own order (in practice: by an earlier line of the same
  order), ``before_order`` otherwise (triggered before the order started, or no list at all).
* ``segments``, each at both levels (``{"event": ..., "basket": ...}``):

  - ``history``: the user's orders before this purchase's order (``"1st"``: none, ``"2-5"``:
    1 to 4, ``"6+"``: 5 or more). All lines of one order fall in the same bucket.
  - ``item_age``: ``"first_seen_7d"`` when the purchased item was first seen (catalog ``ts``,
    or the first event naming it) less than ``new_item_ms`` (7 days) of event time before the
    purchase, ``"older"`` otherwise.
  - ``repeat``: ``"repeat"`` when the user bought the item in an earlier order (before this
    order's first line), ``"new_to_user"`` otherwise.

Extras:

* ``coverage``: distinct items that appear in any counted list / catalog size (items seen).
* ``fresh_share``: share of counted lists holding at least one item first seen within
  ``fresh_window_ms`` (24 h) of event time before the trigger event, i.e.
  ``trigger_ts - window < first_seen <= trigger_ts``.
* ``weekly``: event- and basket-level NDCG@K per ISO week (``"2011-W05"``) of the purchase ``ts``.
* ``by_history``: the same as ``segments["history"]`` (kept for existing readers).

Latency is separate from list scoring (it is about when lists arrive, not what is in them):
:func:`latencies_ms` pairs produce times of events with consume times of their lists and
:func:`latency_stats` summarises them (p50/p95/p99).

Typical use for a recorded run (the job's output, in arrival order)::

    result = score_records(events, records, items=item_first_seen)

and for an online recommender (a baseline) feed the :class:`Scorer` directly::

    s = Scorer(k=10)
    for ev in events:
        s.event(ev)                         # scored against the list in force
        s.emit(ev["user_id"], rec.update(ev), ev["event_id"], ev["ts"])
    result = s.result()

Both paths score through the same :class:`Scorer`. Nothing here assumes anything about the form
of event ids: they are matched as strings and must only be unique.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

DAY_MS = 24 * 3600 * 1000
NEW_ITEM_MS = 7 * DAY_MS
HISTORY_BUCKETS = ("1st", "2-5", "6+")
TRIGGER_EVENT = "event"
TRIGGER_SESSION_END = "session_end"
TRIGGERS = (TRIGGER_EVENT, TRIGGER_SESSION_END)  # protocol order for one trigger event
EVENT_SPLITS = ("same_order", "before_order")
SEGMENTS: dict[str, tuple[str, ...]] = {
    "history": HISTORY_BUCKETS,
    "item_age": ("first_seen_7d", "older"),
    "repeat": ("repeat", "new_to_user"),
}
LEVELS = ("event", "basket")


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


class Scored(NamedTuple):
    """One scored purchase (kept with ``Scorer(trace=True)``): which lists scored it.

    ``*_list``: ``(trigger_event_id, trigger)`` of the list in force, or None when there was none.
    """

    event_id: Any
    user_id: str
    item_id: str
    event_list: tuple[Any, str] | None
    basket_list: tuple[Any, str] | None
    event_rank: int | None
    basket_rank: int | None


class _User:
    """What the scorer tracks per user."""

    __slots__ = (
        "pos",
        "list",
        "list_src",
        "list_pos",
        "order_key",
        "order_first_pos",
        "order_list",
        "order_src",
        "order_bucket",
        "order_items",
        "orders_done",
        "bought",
    )

    def __init__(self, pos: int = 0) -> None:
        self.pos = pos  # number of the user's events so far (position of the latest one)
        self.list: tuple[str, ...] | None = None  # list in force
        self.list_src: tuple[Any, str] | None = None  # its (trigger_event_id, trigger)
        self.list_pos = 0  # position of its trigger event
        self.order_key: Any = None  # open order
        self.order_first_pos = 0
        self.order_list: tuple[str, ...] | None = None  # list in force before its first line
        self.order_src: tuple[Any, str] | None = None
        self.order_bucket = HISTORY_BUCKETS[0]
        self.order_items: set[str] = set()
        self.orders_done = 0
        self.bought: set[str] = set()  # items bought in earlier orders


class Scorer:
    """Incremental prequential scorer. Feed items, events and lists in stream order.

    For each event call :meth:`event` *before* :meth:`emit` of the list(s) that event triggered,
    so the event is scored against the list in force before it; emit a ``session_end`` list of a
    trigger after its per-event list and before the user's next event.
    """

    def __init__(
        self,
        k: int = 10,
        fresh_window_ms: int = DAY_MS,
        score_from: int | None = None,
        new_item_ms: int = NEW_ITEM_MS,
        trace: bool = False,
    ) -> None:
        self.k = k
        self.fresh_window_ms = fresh_window_ms
        self.score_from = score_from
        self.new_item_ms = new_item_ms
        self.scored: list[Scored] | None = [] if trace else None
        self._users: dict[str, _User] = {}
        self._acc = {level: _Acc() for level in LEVELS}
        self._split_acc = {s: _Acc() for s in EVENT_SPLITS}
        self._seg_acc = {
            (fam, seg, level): _Acc()
            for fam, segs in SEGMENTS.items()
            for seg in segs
            for level in LEVELS
        }
        self._week_acc: dict[str, _Acc] = {}
        self._week_basket_acc: dict[str, _Acc] = {}
        self._first_seen: dict[str, int] = {}
        self._recommended: set[str] = set()
        self.n_events = 0
        self.n_lists = 0  # counted lists (triggered at or after score_from)
        self._n_lists_by_trigger = dict.fromkeys(TRIGGERS, 0)
        self._n_fresh_lists = 0
        self._n_empty_lists = 0
        self._n_no_list = 0  # scored purchases with no list in force (event level)
        self._n_no_basket_list = 0  # the same at basket level
        self._n_warmup = 0  # purchases before score_from (not scored)

    # ---- inputs ------------------------------------------------------------------------------
    def item(self, item_id: str, ts: int | None = None) -> None:
        """An item arrived in the catalog (first sighting wins)."""
        if item_id not in self._first_seen:
            self._first_seen[item_id] = int(ts) if ts is not None else 0

    def _user(self, user_id: str) -> _User:
        u = self._users.get(user_id)
        if u is None:
            u = self._users[user_id] = _User()
        return u

    def event(self, ev: Mapping[str, Any]) -> None:
        """An event in stream order; purchases are scored against the list in force."""
        self.n_events += 1
        item = ev.get("item_id")
        ts = ev.get("ts")
        if item is not None and item not in self._first_seen:
            self._first_seen[item] = int(ts or 0)
        user_id = ev["user_id"]
        u = self._user(user_id)
        u.pos += 1
        typ = ev.get("type")
        if typ == "forget_user":  # all of the user's state (and lists) is gone
            self._users[user_id] = _User(pos=u.pos)
            return
        if typ != "purchase" or item is None:
            return

        session = ev.get("session_id")
        order_key = session if session is not None else ("__event__", ev.get("event_id"))
        if u.order_key is None or u.order_key != order_key:
            u.bought |= u.order_items
            u.order_key = order_key
            u.order_first_pos = u.pos
            u.order_list, u.order_src = u.list, u.list_src
            u.order_bucket = history_bucket(u.orders_done)
            u.order_items = set()
            u.orders_done += 1
        repeat = item in u.bought
        u.order_items.add(item)
        if ts is not None and self.score_from is not None and ts < self.score_from:
            self._n_warmup += 1
            return

        current = u.list
        r_event = rank_of(item, current, self.k)
        r_basket = rank_of(item, u.order_list, self.k)
        if current is None:
            self._n_no_list += 1
        if u.order_list is None:
            self._n_no_basket_list += 1
        self._acc["event"].add(r_event)
        self._acc["basket"].add(r_basket)
        same_order = current is not None and u.list_pos >= u.order_first_pos
        self._split_acc["same_order" if same_order else "before_order"].add(r_event)
        first_seen = self._first_seen[item]
        new_item = ts is not None and int(ts) - self.new_item_ms < first_seen
        segs = (
            ("history", u.order_bucket),
            ("item_age", "first_seen_7d" if new_item else "older"),
            ("repeat", "repeat" if repeat else "new_to_user"),
        )
        acc = self._seg_acc
        for fam, seg in segs:
            acc[fam, seg, "event"].add(r_event)
            acc[fam, seg, "basket"].add(r_basket)
        if ts is not None:
            wk = iso_week(int(ts))
            self._week_acc.setdefault(wk, _Acc()).add(r_event)
            self._week_basket_acc.setdefault(wk, _Acc()).add(r_basket)
        if self.scored is not None:
            self.scored.append(
                Scored(
                    ev.get("event_id"), user_id, item, u.list_src, u.order_src, r_event, r_basket
                )
            )

    def emit(
        self,
        user_id: str,
        items: Sequence[str],
        trigger_event_id: str | None = None,
        trigger_ts: int | None = None,
        trigger: str = TRIGGER_EVENT,
    ) -> None:
        """A list triggered by the user's latest event (``trigger``: ``"event"`` or
        ``"session_end"``); it is in force from now on."""
        lst = tuple(items)
        u = self._user(user_id)
        u.list = lst
        u.list_src = (trigger_event_id, trigger)
        u.list_pos = u.pos
        if trigger_ts is not None and self.score_from is not None and trigger_ts < self.score_from:
            return
        self.n_lists += 1
        self._n_lists_by_trigger[trigger] = self._n_lists_by_trigger.get(trigger, 0) + 1
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
        segments = {
            fam: {
                seg: {level: self._seg_acc[fam, seg, level].as_dict(k) for level in LEVELS}
                for seg in segs
            }
            for fam, segs in SEGMENTS.items()
        }
        return {
            "event": self._acc["event"].as_dict(k),
            "basket": self._acc["basket"].as_dict(k),
            "event_split": {s: self._split_acc[s].as_dict(k) for s in EVENT_SPLITS},
            "segments": segments,
            "by_history": segments["history"],
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
            "score_from": self.score_from,
            "n_events": self.n_events,
            "n_lists": self.n_lists,
            "n_session_end_lists": self._n_lists_by_trigger.get(TRIGGER_SESSION_END, 0),
            "n_empty_lists": self._n_empty_lists,
            "n_purchases_without_list": self._n_no_list,
            "n_purchases_without_basket_list": self._n_no_basket_list,
            "n_purchases_warmup": self._n_warmup,
        }


def list_key(rec: Mapping[str, Any]) -> tuple[str, str, int]:
    """``(trigger_event_id, trigger, refresh)`` of a ``recommendations`` value: one list. A
    session-end list scored again while the user was away carries ``"refresh": k`` (1, 2, ...;
    0 when absent); the one with the highest k replaces the others."""
    refresh = rec.get("refresh")
    return (
        str(rec["trigger_event_id"]),
        str(rec.get("trigger") or TRIGGER_EVENT),
        refresh if isinstance(refresh, int) else 0,
    )


def _item_ids(rec: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        (it["item_id"] if isinstance(it, Mapping) else it) for it in rec.get("items") or ()
    )


def score_records(
    events: Iterable[Mapping[str, Any]],
    records: Iterable[Mapping[str, Any] | None],
    items: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
    k: int = 10,
    fresh_window_ms: int = DAY_MS,
    score_from: int | None = None,
    trace: bool = False,
) -> dict[str, Any]:
    """Score recorded ``recommendations`` values against the event stream they answered.

    ``events``: contract events in stream order (``event_id`` unique). ``records``: recommendation
    values in the order they arrived (dicts with ``user_id``, ``trigger_event_id``, optional
    ``trigger`` (``"event"``, the default, or ``"session_end"``), ``items`` as
    ``[{"item_id", ...}]`` or plain ids). A record that arrives again for the same
    ``(trigger_event_id, trigger)`` (at-least-once redelivery) replaces the earlier one; null
    values (tombstones) are skipped (``forget_user`` in ``events`` clears the user's lists).
    Lists are fed to the :class:`Scorer` in the protocol's order, whatever their arrival order:
    after their trigger event, per-event list first, then the session-end list. ``items``: item
    first-seen times (``{item_id: ts}`` or pairs), fed before the stream so freshness uses the
    catalog's ``ts``.

    The result is :meth:`Scorer.result` plus ``n_records`` (non-null records read),
    ``n_records_duplicate`` (the same list again), ``n_records_refreshed`` (a list for the
    next visit replaced by a refresh of it, see :func:`list_key`), ``n_records_unmatched``
    (trigger not among ``events``, a user that differs from the trigger's user, or an unknown ``trigger``) and
    ``n_records_out_of_user_order``: records that arrived after a record of the same user
    triggered by a later event of that user (redeliveries, or lists emitted late; the scores do
    not depend on arrival order, but ``streamrec evaluate`` relies on per-user order to know when
    it has every list that can be in force). With ``trace`` the result holds ``"scored"``: one
    :class:`Scored` per scored purchase. ValueError if an ``event_id`` occurs twice in ``events``.
    """
    # (trigger_event_id, trigger) -> (refresh, user, items) of the list in force for it
    latest: dict[tuple[str, str], tuple[int, str, tuple[str, ...]]] = {}
    distinct: set[tuple[str, str, int]] = set()
    arrivals: list[tuple[str, str, str]] = []  # (user, trigger_event_id, trigger)
    n_records = 0
    for rec in records:
        if rec is None:
            continue
        n_records += 1
        tid, trig, refresh = key = list_key(rec)
        user = str(rec["user_id"])
        distinct.add(key)
        # a refreshed list replaces the one before it; a redelivered older one does not
        if refresh >= latest.get((tid, trig), (0,))[0]:
            latest[tid, trig] = (refresh, user, _item_ids(rec))
        arrivals.append((user, tid, trig))

    s = Scorer(k=k, fresh_window_ms=fresh_window_ms, score_from=score_from, trace=trace)
    if items is not None:
        pairs = items.items() if isinstance(items, Mapping) else items
        for item_id, ts in pairs:
            s.item(item_id, ts)
    matched = 0
    position: dict[str, int] = {}  # event_id -> position in the stream
    for ev in events:
        eid = str(ev["event_id"])
        if eid in position:
            raise ValueError(
                f"event_id {eid!r} occurs twice in the event stream: lists cannot be matched to "
                "their trigger event (event ids must be unique)"
            )
        position[eid] = len(position)
        s.event(ev)
        for trig in TRIGGERS:
            hit = latest.get((eid, trig))
            if hit is not None and hit[1] == ev["user_id"]:
                matched += 1
                s.emit(ev["user_id"], hit[2], ev["event_id"], ev.get("ts"), trigger=trig)
    out = s.result()
    out["n_records"] = n_records
    out["n_records_duplicate"] = n_records - len(distinct)
    out["n_records_refreshed"] = len(distinct) - len(latest)  # replaced by a later refresh
    out["n_records_unmatched"] = len(latest) - matched
    out["n_records_out_of_user_order"] = _out_of_user_order(arrivals, position)
    if trace:
        out["scored"] = s.scored
    return out


def _out_of_user_order(
    arrivals: Iterable[tuple[str, str, str]], position: Mapping[str, int]
) -> int:
    """Records that arrived after one of the same user triggered by a later event."""
    latest_pos: dict[str, int] = {}
    n = 0
    for user, tid, _trig in arrivals:
        p = position.get(tid)
        if p is None:
            continue
        seen = latest_pos.get(user, -1)
        if p < seen:
            n += 1
        else:
            latest_pos[user] = p
    return n


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
