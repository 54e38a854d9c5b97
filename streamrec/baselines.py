"""Baseline recommenders that consume the contract event stream like the job does (pure Python).

Every baseline exposes ``update(event) -> tuple[item_id, ...]``: it applies the event to its state
and returns the top-K list for the event's user *after* that event (the list includes the event),
exactly as the job emits one ``recommendations`` record per accepted event. They run on event
order only (no wall clock), so replays at any speed give the same lists.

* :class:`Popularity`: purchases so far per item (lines, not quantity); ties: earlier first-seen.
* :class:`RecentPopularity`: same with event-time exponential decay (half-life, default 7 days).
  All items decay by the same factor, so the ranking only needs weights ``2**((ts - t0)/h)``.
* :class:`RepeatHistory`: the user's own most-bought items (by number of purchase lines), ties by
  global popularity, padded with popular items the user has not bought.
* :class:`ItemKNN`: items co-bought in the same order (``session_id``) with the user's recent
  items; cosine-normalised co-occurrence, top-N neighbours per item, padded with popular items.
* :class:`Blend`: weighted reciprocal-rank fusion of repeat history, item-kNN and recent
  popularity.

Only ``purchase`` events change counts and co-occurrence; ``view``/``click``/``add_to_cart`` only
move an item into the user's recent items (kNN); ``forget_user`` drops the user's state. Lists are
kept cheap with incremental counters and lazily maintained top lists (see :class:`TopCounter`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from typing import Any

ITEM_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase"})
LIST_EVENT_TYPES = frozenset({"view", "click", "add_to_cart", "purchase", "search"})
DAY_MS = 24 * 3600 * 1000


class TopCounter:
    """Item scores that only ever grow, with the top ``size`` kept sorted incrementally.

    Sort key: score descending, then first-seen order ascending (deterministic ties). Because
    scores only increase, an item outside the top can only enter it when its own score grows,
    so checking the updated item against the last entry keeps the top exact.
    """

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self.score: dict[str, float] = {}
        self.order: dict[str, int] = {}
        self._top: list[str] = []
        self._in_top: set[str] = set()
        self._cache: dict[int, tuple[str, ...]] = {}

    def _key(self, item: str) -> tuple[float, int]:
        return (-self.score[item], self.order[item])

    def add(self, item: str, w: float = 1.0) -> None:
        if item not in self.order:
            self.order[item] = len(self.order)
            self.score[item] = 0.0
        self.score[item] += w
        top = self._top
        if item in self._in_top:
            top.sort(key=self._key)
            self._cache.clear()
        elif len(top) < self.size or self._key(item) < self._key(top[-1]):
            top.append(item)
            self._in_top.add(item)
            top.sort(key=self._key)
            if len(top) > self.size:
                self._in_top.discard(top.pop())
            self._cache.clear()

    def scale(self, factor: float) -> None:
        """Multiply every score by ``factor`` > 0 (order unchanged)."""
        for it in self.score:
            self.score[it] *= factor

    def top(self, k: int) -> tuple[str, ...]:
        got = self._cache.get(k)
        if got is None:
            got = self._cache[k] = tuple(self._top[:k])
        return got

    def get(self, item: str) -> float:
        return self.score.get(item, 0.0)


def _pad(head: list[str], pad: Iterable[str], k: int) -> tuple[str, ...]:
    if len(head) >= k:
        return tuple(head[:k])
    seen = set(head)
    out = list(head)
    for it in pad:
        if it not in seen:
            out.append(it)
            seen.add(it)
            if len(out) == k:
                break
    return tuple(out)


class Baseline:
    name = "baseline"

    def __init__(self, k: int = 10) -> None:
        self.k = k

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:  # pragma: no cover - interface
        raise NotImplementedError


class Popularity(Baseline):
    """Global popularity: number of purchase lines so far."""

    name = "popularity"

    def __init__(self, k: int = 10, pool: int = 100) -> None:
        super().__init__(k)
        self.counts = TopCounter(max(pool, k))

    def observe(self, ev: Mapping[str, Any]) -> None:
        if ev.get("type") == "purchase" and ev.get("item_id") is not None:
            self.counts.add(ev["item_id"])

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:
        self.observe(ev)
        return self.counts.top(self.k)


class RecentPopularity(Baseline):
    """Popularity with event-time exponential decay: each purchase weighs 2**(-age/half_life)."""

    name = "recent_popularity"

    def __init__(self, k: int = 10, half_life_days: float = 7.0, pool: int = 100) -> None:
        super().__init__(k)
        self.half_life_ms = half_life_days * DAY_MS
        self.counts = TopCounter(max(pool, k))
        self._t0: float | None = None

    def observe(self, ev: Mapping[str, Any]) -> None:
        if ev.get("type") != "purchase" or ev.get("item_id") is None:
            return
        ts = float(ev["ts"])
        if self._t0 is None:
            self._t0 = ts
        # weight relative to t0; late events (ts < t0) just weigh less, as they should
        expo = (ts - self._t0) / self.half_life_ms
        if expo > 600:  # keep weights finite: rebase t0 (uniform rescale keeps the order)
            shift = expo - 1.0
            self.counts.scale(2.0**-shift)
            self._t0 += shift * self.half_life_ms
            expo = 1.0
        self.counts.add(ev["item_id"], 2.0**expo)

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:
        self.observe(ev)
        return self.counts.top(self.k)


class RepeatHistory(Baseline):
    """The user's own most-bought items (purchase lines), global popularity breaks ties."""

    name = "repeat_history"

    def __init__(self, k: int = 10, popularity: Popularity | None = None) -> None:
        super().__init__(k)
        self._own_pop = popularity is None
        self.pop = popularity or Popularity(k)
        self.user_counts: dict[str, dict[str, int]] = {}

    def observe(self, ev: Mapping[str, Any]) -> None:
        if self._own_pop:
            self.pop.observe(ev)
        if ev.get("type") == "forget_user":
            self.user_counts.pop(ev["user_id"], None)
            return
        if ev.get("type") == "purchase" and ev.get("item_id") is not None:
            uc = self.user_counts.setdefault(ev["user_id"], {})
            uc[ev["item_id"]] = uc.get(ev["item_id"], 0) + 1

    def own(self, user: str, n: int) -> list[str]:
        """The user's top ``n`` own items (no padding)."""
        uc = self.user_counts.get(user)
        if not uc:
            return []
        if len(uc) > n:
            thr = heapq.nlargest(n, uc.values())[-1]
            cands = [it for it, c in uc.items() if c >= thr]
        else:
            cands = list(uc)
        pc = self.pop.counts
        score, order = pc.score, pc.order
        cands.sort(key=lambda it: (-uc[it], -score.get(it, 0.0), order.get(it, 1 << 62)))
        return cands[:n]

    def recommend(self, user: str) -> tuple[str, ...]:
        return _pad(self.own(user, self.k), self.pop.counts.top(2 * self.k), self.k)

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:
        self.observe(ev)
        return self.recommend(ev["user_id"])


class ItemKNN(Baseline):
    """Item co-occurrence within orders (same user and ``session_id``), user's recent items.

    sim(i, j) = co(i, j) / sqrt(n_i * n_j), where n_i is the number of orders holding i. Each
    item keeps its top ``neighbours`` by sim, recomputed lazily when its co-occurrence row has
    grown by more than ``refresh`` (a fraction) since the last computation. A user's score for j
    is the sum over their ``recent`` most recent distinct items i (weight ``decay**position``) of
    sim(i, j).
    """

    name = "item_knn"

    def __init__(
        self,
        k: int = 10,
        recent: int = 10,
        neighbours: int = 30,
        decay: float = 0.9,
        refresh: float = 0.2,
        popularity: Popularity | None = None,
    ) -> None:
        super().__init__(k)
        self.recent_n = recent
        self.neighbours_n = neighbours
        self.decay = decay
        self.refresh = refresh
        self._own_pop = popularity is None
        self.pop = popularity or Popularity(k)
        self.co: dict[str, dict[str, int]] = {}
        self.row_total: dict[str, int] = {}
        self.n_orders: dict[str, int] = {}
        self._nb: dict[str, tuple[int, list[tuple[str, float]]]] = {}  # item -> (total, top)
        self._order: dict[str, tuple[Any, list[str], set[str]]] = {}  # user -> open order
        self.recent: dict[str, list[str]] = {}  # user -> most recent first, distinct

    def observe(self, ev: Mapping[str, Any]) -> None:
        if self._own_pop:
            self.pop.observe(ev)
        typ = ev.get("type")
        user = ev["user_id"]
        if typ == "forget_user":
            self._order.pop(user, None)
            self.recent.pop(user, None)
            return
        item = ev.get("item_id")
        if typ not in ITEM_EVENT_TYPES or item is None:
            return
        rec = self.recent.setdefault(user, [])
        if rec and rec[0] == item:
            pass
        else:
            if item in rec:
                rec.remove(item)
            rec.insert(0, item)
            del rec[self.recent_n :]
        if typ != "purchase":
            return
        session = ev.get("session_id")
        key = session if session is not None else ("__event__", ev.get("event_id"))
        o = self._order.get(user)
        if o is None or o[0] != key:
            o = (key, [], set())
            self._order[user] = o
        _, items, seen = o
        if item in seen:
            return
        self.n_orders[item] = self.n_orders.get(item, 0) + 1
        co, tot = self.co, self.row_total
        row = co.setdefault(item, {})
        for other in items:
            row[other] = row.get(other, 0) + 1
            orow = co.setdefault(other, {})
            orow[item] = orow.get(item, 0) + 1
            tot[other] = tot.get(other, 0) + 1
        tot[item] = tot.get(item, 0) + len(items)
        items.append(item)
        seen.add(item)

    def neighbours(self, item: str) -> list[tuple[str, float]]:
        total = self.row_total.get(item, 0)
        cached = self._nb.get(item)
        if cached is not None and total <= cached[0] * (1.0 + self.refresh):
            return cached[1]
        row = self.co.get(item) or {}
        n_i = self.n_orders.get(item, 1)
        no = self.n_orders
        top = heapq.nlargest(
            self.neighbours_n,
            ((j, c / math.sqrt(n_i * no.get(j, 1))) for j, c in row.items()),
            key=lambda p: p[1],
        )
        self._nb[item] = (total, top)
        return top

    def scores(self, user: str) -> dict[str, float]:
        acc: dict[str, float] = {}
        w = 1.0
        for i in self.recent.get(user, ()):
            for j, s in self.neighbours(i):
                acc[j] = acc.get(j, 0.0) + w * s
            w *= self.decay
        return acc

    def ranked(self, user: str, n: int) -> list[str]:
        acc = self.scores(user)
        order = self.pop.counts.order
        return heapq.nsmallest(n, acc, key=lambda j: (-acc[j], order.get(j, 1 << 62)))

    def recommend(self, user: str) -> tuple[str, ...]:
        return _pad(self.ranked(user, self.k), self.pop.counts.top(2 * self.k), self.k)

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:
        self.observe(ev)
        return self.recommend(ev["user_id"])


class Blend(Baseline):
    """Weighted reciprocal-rank fusion: sum over parts of w / (c + rank)."""

    name = "blend"

    def __init__(
        self,
        k: int = 10,
        weights: tuple[float, float, float] = (1.0, 0.5, 0.3),
        c: float = 5.0,
        half_life_days: float = 7.0,
        depth: int = 20,
    ) -> None:
        super().__init__(k)
        self.pop = Popularity(k)
        self.recent_pop = RecentPopularity(k, half_life_days=half_life_days)
        self.repeat = RepeatHistory(k, popularity=self.pop)
        self.knn = ItemKNN(k, popularity=self.pop)
        self.weights = weights
        self.c = c
        self.depth = depth

    def observe(self, ev: Mapping[str, Any]) -> None:
        self.pop.observe(ev)
        self.recent_pop.observe(ev)
        self.repeat.observe(ev)
        self.knn.observe(ev)

    def recommend(self, user: str) -> tuple[str, ...]:
        d = self.depth
        parts = (
            self.repeat.own(user, d),
            self.knn.ranked(user, d),
            self.recent_pop.counts.top(d),
        )
        acc: dict[str, float] = {}
        for w, lst in zip(self.weights, parts, strict=True):
            for r, it in enumerate(lst, start=1):
                acc[it] = acc.get(it, 0.0) + w / (self.c + r)
        order = self.pop.counts.order
        head = heapq.nsmallest(self.k, acc, key=lambda j: (-acc[j], order.get(j, 1 << 62)))
        return _pad(head, self.pop.counts.top(2 * self.k), self.k)

    def update(self, ev: Mapping[str, Any]) -> tuple[str, ...]:
        self.observe(ev)
        return self.recommend(ev["user_id"])


def default_baselines(k: int = 10, half_life_days: float = 7.0) -> list[Baseline]:
    return [
        Popularity(k),
        RecentPopularity(k, half_life_days=half_life_days),
        RepeatHistory(k),
        ItemKNN(k),
        Blend(k, half_life_days=half_life_days),
    ]


def run_baselines(
    records: Iterable[tuple[str, Any, Mapping[str, Any] | None]],
    baselines: list[Baseline] | None = None,
    k: int = 10,
    progress: bool = False,
    total: int | None = None,
    score_from: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run baselines over contract records and score each with the prequential :class:`Scorer`
    (the same one ``score_records`` scores the job's lists with).

    ``records``: ``("items" | "events", key, value)`` in stream order (as
    ``streamrec.retail.to_contract_records`` yields them). ``score_from``: see
    :class:`~streamrec.evaluation.Scorer`. Returns ``{name: Scorer.result()}``.
    """
    from streamrec.evaluation import Scorer

    baselines = baselines if baselines is not None else default_baselines(k)
    scorers = [Scorer(k=k, score_from=score_from) for _ in baselines]
    it: Iterable[Any] = records
    if progress:
        from tqdm import tqdm

        it = tqdm(records, total=total, unit="rec", desc="baselines", mininterval=2.0)
    pairs = list(zip(baselines, scorers, strict=True))
    for topic, _key, value in it:
        if value is None:
            continue
        if topic == "items":
            for s in scorers:
                s.item(value["item_id"], value.get("ts"))
            continue
        typ = value.get("type")
        for b, s in pairs:
            s.event(value)
            lst = b.update(value)
            if typ in LIST_EVENT_TYPES:
                s.emit(value["user_id"], lst, value.get("event_id"), value.get("ts"))
    return {b.name: s.result() for b, s in pairs}
