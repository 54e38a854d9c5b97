"""Training pairs for the text encoder, built from a behaviour stream (plain Python, no torch).

The input is what the job reads: contract ``items`` records (``operators.events.Item``; its
``text()`` is what the job embeds) and ``events`` (``operators.events.Event``), from an Online
Retail-shaped file (:func:`behaviour_from_retail`) or from the topics themselves.
:func:`collect_behaviour` turns them into orders (the purchases of one ``session_id``; a purchase
without one is its own order per user and minute) and searches, with every item's text.

Pairs (:func:`build_pairs`), from the orders before the validation split only:

- ``same-order``: two distinct items bought in the same order;
- ``next-order``: an item of one of a user's orders and a different item of that user's next order;
- ``query``: a search query and an item the same user bought after it, in the same session (or,
  when either has no session, within ``query_window_ms``).

An item pair is unordered and appears once, whichever way round and however often it was seen; its
``support`` counts the orders and order transitions it was seen in (a basket that lists an item
twice counts once). Pairs seen fewer than ``min_support`` times are dropped (one co-occurrence in a
wholesaler's 200-line basket says little), as are pairs whose two texts are identical (nothing to
learn). Raw support favours the best sellers, which are bought with everything: with
``neighbours = N`` a pair is kept only when it is among the N strongest partners of one of its
items by association, ``support / sqrt(orders(a) * orders(b))`` (the cosine of item-kNN), so every
item contributes the items it is bought with *more than its popularity explains*. Query pairs are
rare and kept from a single sighting.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from operators.events import DeadLetter, Event, Item, ItemRemoved, event_from_dict, item_from_dict

ITEM_KEY = "item:"
QUERY_KEY = "query:"
DEFAULT_QUERY_WINDOW_MS = 60 * 60 * 1000
# each item's strongest partners kept (train-encoder's --neighbours). Chosen on the first three
# months' held-out recall: 30 beat 10 and "every pair with enough support" (README).
DEFAULT_NEIGHBOURS = 30


@dataclass(frozen=True, slots=True)
class Order:
    """The distinct items one user bought in one order (session), at the time of its first line."""

    order_id: str
    user_id: str
    ts: int
    items: tuple[str, ...]  # distinct, sorted
    session_id: str | None = None


@dataclass
class Behaviour:
    """Orders and searches in time order, and the text of every item they may name."""

    orders: list[Order]
    searches: list[Event]
    texts: dict[str, str]  # item_id -> Item.text() (latest version in range)
    first_seen: dict[str, int]  # item_id -> first item record or purchase time (epoch ms)
    skipped: Counter = field(default_factory=Counter)  # reason -> records left out

    def time_range(self) -> tuple[int, int] | None:
        """(first, last) order time, or None without orders."""
        if not self.orders:
            return None
        return self.orders[0].ts, self.orders[-1].ts


@dataclass(frozen=True, slots=True)
class Pair:
    """One training example: an anchor text and a text that belongs with it.

    Keys (``item:<id>`` or ``query:<text>``) tell when two in-batch texts are the same thing.
    """

    anchor_key: str
    anchor_text: str
    positive_key: str
    positive_text: str
    kind: str  # "same-order", "next-order" (only seen across orders) or "query"
    support: int


def normalise_query(text: str) -> str:
    return " ".join(text.lower().split())


def collect_behaviour(
    records: Iterable[Item | ItemRemoved | Event | DeadLetter],
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> Behaviour:
    """Orders, searches and item texts from contract records (any order; sorted by time here).

    Events outside ``[start_ms, end_ms)`` and item versions stamped at or after ``end_ms`` are left
    out; so are purchases of items that never had a catalog record. ``skipped`` counts each.
    """
    texts: dict[str, str] = {}
    text_ts: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    skipped: Counter = Counter()
    lines: dict[str, dict] = {}  # order key -> {"user", "ts", "session", "items"}
    searches: list[Event] = []

    def in_range(ts: int) -> bool:
        return (start_ms is None or ts >= start_ms) and (end_ms is None or ts < end_ms)

    for rec in records:
        if isinstance(rec, DeadLetter):
            skipped["dead letters"] += 1
        elif isinstance(rec, ItemRemoved):
            skipped["item tombstones (texts kept for past orders)"] += 1
        elif isinstance(rec, Item):
            ts = rec.ts if rec.ts is not None else -1
            if end_ms is not None and ts >= end_ms:
                skipped["item versions after the range"] += 1
                continue
            if rec.item_id not in text_ts or ts >= text_ts[rec.item_id]:
                texts[rec.item_id], text_ts[rec.item_id] = rec.text(), ts
            if rec.ts is not None:
                first_seen[rec.item_id] = min(first_seen.get(rec.item_id, ts), ts)
        elif isinstance(rec, Event):
            if not in_range(rec.ts):
                skipped["events outside the range"] += 1
            elif rec.type == "purchase":
                key = rec.session_id or f"{rec.user_id}@{rec.ts // 60_000}"
                order = lines.setdefault(
                    key,
                    {"user": rec.user_id, "ts": rec.ts, "session": rec.session_id, "items": set()},
                )
                order["ts"] = min(order["ts"], rec.ts)
                order["items"].add(rec.item_id)
            elif rec.type == "search" and rec.query and rec.query.strip():
                searches.append(rec)
            else:
                skipped[f"{rec.type} events (not used)"] += 1

    orders = []
    for key, o in lines.items():
        known = sorted(i for i in o["items"] if i in texts)
        if len(known) < len(o["items"]):
            skipped["purchases of items without a catalog record"] += len(o["items"]) - len(known)
        if not known:
            continue
        orders.append(Order(key, o["user"], o["ts"], tuple(known), o["session"]))
        for item in known:
            first_seen[item] = min(first_seen.get(item, o["ts"]), o["ts"])
    orders.sort(key=lambda o: (o.ts, o.order_id))
    searches.sort(key=lambda e: (e.ts, e.event_id))
    return Behaviour(orders, searches, texts, first_seen, skipped)


def retail_records(
    path: str | Path, start: str | None = None, end: str | None = None
) -> Iterator[Item | Event]:
    """An Online Retail-shaped CSV as the contract records ``streamrec replay`` would send."""
    from streamrec.retail import iter_retail_rows, to_contract_records

    for topic, key, value in to_contract_records(iter_retail_rows(path, start=start, end=end)):
        if topic == "items":
            yield item_from_dict(value, key)
        else:
            yield event_from_dict(value)


def split_by_time(orders: list[Order], val_fraction: float) -> tuple[list[Order], list[Order], int]:
    """(train, validation, split time): validation holds the orders in the last ``val_fraction``
    of the time range (first to last order), train everything before."""
    if not 0 < val_fraction < 1:
        raise ValueError("the validation fraction must be between 0 and 1")
    if not orders:
        raise ValueError("no orders to split")
    lo, hi = orders[0].ts, orders[-1].ts
    split = lo + int((hi - lo) * (1 - val_fraction))
    train = [o for o in orders if o.ts < split]
    val = [o for o in orders if o.ts >= split]
    return train, val, split


def same_order_counts(orders: Iterable[Order]) -> Counter:
    """{(a, b): orders holding both}, a < b."""
    counts: Counter = Counter()
    for order in orders:
        counts.update(itertools.combinations(order.items, 2))
    return counts


def next_order_counts(orders: Iterable[Order]) -> Counter:
    """{(a, b): a user's consecutive orders with a in one and b in the other}, a < b, a != b.

    An unordered pair counts once per order transition, whichever order holds which item.
    """
    by_user: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        by_user[order.user_id].append(order)
    counts: Counter = Counter()
    for user_orders in by_user.values():
        user_orders.sort(key=lambda o: (o.ts, o.order_id))
        for prev, nxt in itertools.pairwise(user_orders):
            counts.update({(min(a, b), max(a, b)) for a in prev.items for b in nxt.items if a != b})
    return counts


def strongest_partners(
    support: dict[tuple[str, str], int], orders: Iterable[Order], n: int
) -> set[tuple[str, str]]:
    """The pairs among each item's ``n`` strongest partners by ``support / sqrt(orders(a) *
    orders(b))`` (ties: more support, then item id), from either side."""
    bought = Counter(i for order in orders for i in order.items)
    partners: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for (a, b), s in support.items():
        score = s / np.sqrt(max(1, bought[a]) * max(1, bought[b]))
        partners[a].append((-score, -s, b))
        partners[b].append((-score, -s, a))
    kept = set()
    for a, ranked in partners.items():
        for _, _, b in sorted(ranked)[:n]:
            kept.add((min(a, b), max(a, b)))
    return kept


def query_counts(
    searches: Iterable[Event],
    orders: Iterable[Order],
    window_ms: int = DEFAULT_QUERY_WINDOW_MS,
) -> Counter:
    """{(normalised query, item): searches followed by a purchase of item}.

    A search leads to the items of the same user's orders at or after it, in the same session when
    both have one, else within ``window_ms``. Each (query, item) counts once per search.
    """
    by_user: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        by_user[order.user_id].append(order)
    counts: Counter = Counter()
    for search in searches:
        bought: set[str] = set()
        for order in by_user.get(search.user_id, ()):
            if order.ts < search.ts:
                continue
            if search.session_id and order.session_id:
                if order.session_id != search.session_id:
                    continue
            elif order.ts - search.ts > window_ms:
                continue
            bought.update(order.items)
        query = normalise_query(search.query or "")
        counts.update((query, item) for item in bought)
    return counts


def build_pairs(
    orders: list[Order],
    searches: list[Event],
    texts: dict[str, str],
    *,
    min_support: int = 2,
    neighbours: int = DEFAULT_NEIGHBOURS,
    query_window_ms: int = DEFAULT_QUERY_WINDOW_MS,
) -> tuple[list[Pair], dict[str, int]]:
    """Deduplicated training pairs (sorted by keys) and counts of what was kept and dropped.

    ``neighbours``: keep only each item's strongest partners by association (0: every pair with
    enough support).
    """
    same = same_order_counts(orders)
    nxt = next_order_counts(orders)
    stats = {
        "same_order_pairs_seen": len(same),
        "next_order_pairs_seen": len(nxt),
        "next_order_pairs_also_same_order": sum(1 for p in nxt if p in same),
    }
    support: dict[tuple[str, str], int] = {}
    dropped_support = dropped_text = 0
    for a, b in sorted(set(same) | set(nxt)):
        n = same.get((a, b), 0) + nxt.get((a, b), 0)
        if n < min_support:
            dropped_support += 1
        elif texts[a] == texts[b]:
            dropped_text += 1
        else:
            support[(a, b)] = n
    kept = set(support)
    if neighbours > 0:
        kept = strongest_partners(support, orders, neighbours)
    pairs: list[Pair] = []
    for a, b in sorted(kept):
        kind = "same-order" if (a, b) in same else "next-order"
        pairs.append(Pair(ITEM_KEY + a, texts[a], ITEM_KEY + b, texts[b], kind, support[(a, b)]))
    queries = query_counts(searches, orders, query_window_ms)
    for (query, item), n in sorted(queries.items()):
        if query != texts[item].lower():
            pairs.append(Pair(QUERY_KEY + query, query, ITEM_KEY + item, texts[item], "query", n))
    stats |= {
        "query_pairs_seen": len(queries),
        "dropped_below_min_support": dropped_support,
        "dropped_identical_text": dropped_text,
        "dropped_weaker_than_top_neighbours": len(support) - len(kept),
        "pairs": len(pairs),
        **{f"pairs_{k}": v for k, v in sorted(Counter(p.kind for p in pairs).items())},
    }
    return pairs, stats


def pairs_digest(pairs: Iterable[Pair]) -> str:
    """sha256 over the pairs' keys, texts and support: the training data, whatever its source."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(
            "\x1f".join((p.anchor_key, p.anchor_text, p.positive_key, p.positive_text)).encode()
        )
        h.update(f"\x1f{p.kind}\x1f{p.support}\x1e".encode())
    return h.hexdigest()


def pair_weight(support: np.ndarray) -> np.ndarray:
    """Sampling weight of a pair: the square root of its support."""
    return np.sqrt(np.maximum(np.asarray(support), 1).astype(np.float64))


def key_log_frequency(pairs: list[Pair]) -> dict[str, float]:
    """log of how often each key (item or query) turns up in a batch, up to a constant: the sum of
    the sampling weights of the pairs that hold it. The loss's sampling-bias correction."""
    mass: dict[str, float] = defaultdict(float)
    for pair, w in zip(pairs, pair_weight(np.array([p.support for p in pairs])), strict=True):
        mass[pair.anchor_key] += w
        mass[pair.positive_key] += w
    return {k: float(np.log(v)) for k, v in mass.items()}


def epoch_order(support: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """A random permutation of the pairs for one epoch, pairs with more support earlier on average.

    Weighted sampling without replacement (keys ``u ** (1 / w)``, Efraimidis and Spirakis) with
    ``w = sqrt(support)``, so that a run shorter than an epoch sees well-attested pairs first
    without only ever seeing the most popular items. Fixed by ``(seed, epoch)``.
    """
    rng = np.random.default_rng([seed, epoch])
    u = rng.random(len(support))
    keys = np.log(np.maximum(u, 1e-300)) / pair_weight(support)
    return np.argsort(-keys, kind="stable")


class BatchPlan:
    """Which pairs each training step sees: epochs of :func:`epoch_order` back to back, cut into
    batches. A function of the step alone, so a resumed run sees the same data."""

    def __init__(self, support: np.ndarray, seed: int, batch_size: int):
        if len(support) == 0:
            raise ValueError("no training pairs")
        if batch_size < 2:
            raise ValueError("in-batch negatives need a batch size of at least 2")
        self.support = np.asarray(support)
        self.seed = seed
        self.batch_size = batch_size
        self._orders: dict[int, np.ndarray] = {}

    def steps_per_epoch(self) -> float:
        return len(self.support) / self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k >= epoch - 1}
            self._orders[epoch] = epoch_order(self.support, self.seed, epoch)
        return self._orders[epoch]

    def indices(self, step: int) -> np.ndarray:
        """Pair indices of training step ``step`` (0-based)."""
        n = len(self.support)
        lo, hi = step * self.batch_size, (step + 1) * self.batch_size
        parts = []
        for epoch in range(lo // n, (hi - 1) // n + 1):
            a, b = max(lo - epoch * n, 0), min(hi - epoch * n, n)
            parts.append(self._order(epoch)[a:b])
        return np.concatenate(parts)
