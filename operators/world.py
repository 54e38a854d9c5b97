"""The world: everything global that every recommend task replicates, as of event time.

Every task receives all catalog updates and all events of all users. They are not applied on
arrival: :meth:`World.add` buffers them and :meth:`World.advance_to` applies, strictly in
``(ts, kind, key, arrival)`` order, every buffered update with ``ts`` below the new bound
(catalog updates before events at equal ``ts``; ``key`` is the item id or event id; an update
without ``ts`` counts as ``-inf``). So when the driver scores an event at time t after
``advance_to(t)``, the world holds exactly the updates before t: an item, a new text of an item
or another user's purchase counts from events strictly after its own time, whatever the order
or speed in which the streams arrived. ``advance_to`` never moves the bound back; an update that
arrives late (``ts`` below the bound) is applied at the next call.

What it holds:

- ``items`` (operators.catalog.ItemTable): interned ids, vectors, titles, visibility.
- ``index`` (operators.content.ContentIndex) over present items' vectors (it reads the table's:
  one copy), exact below operators.ann.MIN_KEYS present items and approximate from there on
  (operators.ann.IVFIndex, whose cells travel in the snapshot), and ``text`` (TextNeighbours):
  each item's nearest items by text, maintained as items come and go.
Events count for the behaviour model only when their item is in the catalog at their time (so
memory is bounded by the catalog, not by whatever ids events name; a user's profile still keeps
such items, and the contract's "filled in once the item arrives" holds for the profile).

- ``together`` (operators.cooccurrence.CoOccurrence): items taken into the same order (a pair
  of lines ``d`` apart weighs ``order_distance_decay ** (d - 1)``), and, with ``cross_weight``,
  into a user's next order; the pairs come from a small per-user context
  (current order, previous orders), bounded in time and size, erased by ``forget_user``.
- ``trending`` (operators.trending.Trending): decayed distinct buyers per item.

All of it changes only in ``advance_to`` (never on a read), in a deterministic order, so every
replica holds bit-identical state; :meth:`snapshot` / :meth:`restore` continue bit-identically.
"""

from __future__ import annotations

import heapq
import itertools
import math
import pickle
from typing import Any

import numpy as np

from operators.ann import MIN_KEYS as ANN_MIN_KEYS
from operators.catalog import CatalogEntry, ItemTable
from operators.config import DAY_MS, RankingConfig
from operators.content import ContentIndex, TextNeighbours
from operators.cooccurrence import CoOccurrence
from operators.events import Event, ItemRemoved
from operators.trending import Trending

SNAPSHOT_VERSION = 1
_CATALOG, _EVENT = 0, 1


class UserContext:
    """What the world keeps per user to form co-occurrence pairs and count distinct buyers."""

    __slots__ = ("last_ts", "order_key", "order", "past", "counted")

    def __init__(self, ts: int, order_key: str | None):
        self.last_ts = ts
        self.order_key = order_key
        self.order: dict[int, float] = {}  # current order: item -> type weight, first-seen order
        self.past: list[tuple[int, tuple[int, ...]]] = []  # previous orders, most recent last
        self.counted: dict[int, int] = {}  # item -> when it last counted for trending

    def state(self) -> tuple:
        return (self.last_ts, self.order_key, self.order, self.past, self.counted)

    @classmethod
    def from_state(cls, s: tuple) -> UserContext:
        u = cls(s[0], s[1])
        u.order, u.past, u.counted = dict(s[2]), list(s[3]), dict(s[4])
        return u


class World:
    def __init__(self, dim: int, config: RankingConfig | None = None):
        self.config = config or RankingConfig()
        wc = self.config.world
        self.dim = dim
        self.items = ItemTable(dim)
        # over the table's vectors (one copy); approximate from ANN_MIN_KEYS present items on
        self.index = ContentIndex(dim, rows=self._vectors, ann_min=ANN_MIN_KEYS)
        self.text = TextNeighbours(wc.text_neighbours, wc.text_probe)
        self.together = CoOccurrence(
            wc.co_half_life_days * DAY_MS,
            row_cap=wc.co_row_cap,
            neighbours=wc.co_neighbours,
            alpha=wc.co_alpha,
            refresh=wc.co_refresh,
            shrink=wc.co_shrink,
        )
        self.trending = Trending(wc.trending_half_life_days * DAY_MS, wc.trending_size)
        self.users: dict[str, UserContext] = {}  # least recently active first
        self.bound = -math.inf  # every update with ts < bound has been applied
        self.applied = 0  # updates applied so far
        self._buffer: list[tuple[float, int, str, int, Any]] = []  # heap
        self._arrivals = 0

    # ---- input ---------------------------------------------------------------------------------
    def add(self, update: CatalogEntry | ItemRemoved | Event) -> None:
        """Buffer a catalog update or an event (of any user) until time passes it.

        ValueError for an entry whose embedding does not have the world's dimension (so nothing
        that could fail later is ever buffered); TypeError for anything else than the three."""
        if isinstance(update, Event):
            key = (float(update.ts), _EVENT, update.event_id)
        elif isinstance(update, CatalogEntry):
            if len(update.embedding) != 4 * self.dim:
                raise ValueError(
                    f"item {update.item_id}: embedding of {len(update.embedding) // 4} values, "
                    f"the world's vectors have {self.dim}"
                )
            key = (-math.inf if update.ts is None else float(update.ts), _CATALOG, update.item_id)
        elif isinstance(update, ItemRemoved):
            # a tombstone has no time: it applies at once, and pending versions of the item
            # that arrived before it are void (the items topic is ordered per item)
            self._buffer = [
                b for b in self._buffer if not (b[1] == _CATALOG and b[2] == update.item_id)
            ]
            heapq.heapify(self._buffer)
            key = (-math.inf, _CATALOG, update.item_id)
        else:
            raise TypeError(f"the world takes CatalogEntry, ItemRemoved or Event, not {update!r}")
        heapq.heappush(self._buffer, (*key, self._arrivals, update))
        self._arrivals += 1

    def advance_to(self, t: float) -> int:
        """Apply every buffered update with ts < max(bound, t), in order; returns how many."""
        if t > self.bound:
            self.bound = float(t)
        buf = self._buffer
        n = 0
        while buf and buf[0][0] < self.bound:
            update = heapq.heappop(buf)[4]
            if isinstance(update, Event):
                self._apply_event(update)
            elif isinstance(update, CatalogEntry):
                self._apply_entry(update)
            else:
                self._apply_removal(update.item_id)
            n += 1
        if n:
            self.applied += n
            self.together.refresh(self.bound)
            self._expire_users()
        return n

    def _vectors(self) -> np.ndarray:
        return self.items.vectors

    @property
    def pending(self) -> int:
        return len(self._buffer)

    # ---- applying ------------------------------------------------------------------------------
    def _apply_entry(self, entry: CatalogEntry) -> None:
        idx, changed = self.items.upsert(entry)
        self.together.ensure(len(self.items))
        if changed:
            if idx in self.index:
                self.index.remove(idx)
                self.text.remove(idx, self.index)
            self.index.add(idx, self.items.vector(idx))
            self.text.add(idx, self.index)

    def _apply_removal(self, item_id: str) -> None:
        idx = self.items.remove(item_id)
        if idx is not None:
            self.index.remove(idx)
            self.text.remove(idx, self.index)

    def _apply_event(self, ev: Event) -> None:
        if ev.type == "forget_user":
            self.users.pop(ev.user_id, None)
            return
        wc = self.config.world
        tw = wc.type_weights.get(ev.type, 0.0)
        if ev.item_id is None or tw <= 0.0:
            return
        i = self.items.index.get(ev.item_id)
        if i is None:
            # never listed (yet): the world learns catalog items only, so its memory is bounded
            # by the catalog. An item that was listed and then removed still learns: a tombstone
            # has no time and applies at once, so "present" at this event's time would depend
            # on when each task advanced (replicas and restores would differ); lists never show
            # a removed item anyway.
            return
        ctx = self.users.pop(ev.user_id, None)
        if ctx is None:
            ctx = UserContext(ev.ts, ev.session_id)
        elif ev.session_id != ctx.order_key or ev.ts - ctx.last_ts >= self.config.session_gap_ms:
            self._close_order(ctx, ev)
        self.users[ev.user_id] = ctx  # most recently active last
        ctx.last_ts = max(ctx.last_ts, ev.ts)

        co = self.together
        w = co.weight(ev.ts)
        prev = ctx.order.get(i)
        if prev is None or tw > prev:
            delta = tw - (prev or 0.0)
            if prev is None:
                co.add_item(i, w * tw)
            wd, dd = w * delta, wc.order_distance_decay
            pairs = []
            for j, tj in itertools.islice(reversed(ctx.order.items()), wc.order_context):
                if j != i:
                    pairs.append((j, wd * tj))
                    wd *= dd  # lines further apart in the order count less
            co.add_pairs(i, pairs)
            if prev is None and wc.cross_weight > 0.0:
                cw = w * wc.cross_weight * delta
                for _, items in ctx.past:
                    for j in items:
                        if j != i:
                            co.add_directed(j, i, cw)
            ctx.order[i] = tw

        last = ctx.counted.get(i)
        if last is None or ev.ts - last >= wc.trending_dedup_days * DAY_MS:
            self.trending.add(i, ev.ts, tw)
            ctx.counted[i] = ev.ts

    def _close_order(self, ctx: UserContext, ev: Event) -> None:
        """``ev`` starts a new order: the current one joins the previous orders."""
        wc = self.config.world
        if ctx.order and wc.cross_weight > 0.0:
            items = tuple(itertools.islice(reversed(ctx.order), wc.cross_context))
            ctx.past.append((ctx.last_ts, items))
        lo = ev.ts - wc.cross_window_days * DAY_MS
        ctx.past = [p for p in ctx.past if p[0] >= lo][-wc.cross_orders :]
        dedup = wc.trending_dedup_days * DAY_MS
        ctx.counted = {k: t for k, t in ctx.counted.items() if ev.ts - t < dedup}
        ctx.order = {}
        ctx.order_key = ev.session_id

    def _expire_users(self) -> None:
        """Drop the contexts of users idle longer than the ttl, and the least recently active
        beyond ``user_max``."""
        wc = self.config.world
        lo = self.bound - wc.user_ttl_days * DAY_MS
        users = self.users
        while users:
            first = next(iter(users))
            if users[first].last_ts >= lo and len(users) <= wc.user_max:
                break
            del users[first]

    # ---- snapshot ------------------------------------------------------------------------------
    def snapshot(self, rows: bool = True) -> bytes:
        """Everything, pending updates included, as bytes; :meth:`restore` continues exactly.
        ``rows=False``: all but the catalog's rows (id, title, text, vector of each item), which
        are then saved in chunks (``self.items.changed_chunks()``, passed to :meth:`restore`);
        the job does so, so that a large catalog is not written again with every snapshot.

        The bytes are a function of the state alone (arrays are stored as raw bytes, so pickle's
        sharing of numpy's dtype objects cannot make two equal states pickle differently)."""
        return pickle.dumps(
            _encode(
                {
                    "version": SNAPSHOT_VERSION,
                    "dim": self.dim,
                    "config": self.config,
                    "bound": self.bound,
                    "applied": self.applied,
                    "arrivals": self._arrivals,
                    "buffer": self._buffer,
                    "items": self.items.state(rows),
                    "index": self.index.state(),
                    "text": self.text.state(),
                    "together": self.together.state(),
                    "trending": self.trending.state(),
                    "users": [(u, c.state()) for u, c in self.users.items()],
                }
            ),
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def restore(cls, data: bytes, chunks: dict[int, bytes] | None = None) -> World:
        """The world of a :meth:`snapshot`; ``chunks``: the catalog's rows of one taken without
        them (operators.catalog.ItemTable.from_state)."""
        s = _decode(pickle.loads(data))
        if s.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"world snapshot version {s.get('version')}, want {SNAPSHOT_VERSION}")
        w = cls(s["dim"], s["config"])
        w.bound, w.applied, w._arrivals = s["bound"], s["applied"], s["arrivals"]
        w._buffer = list(s["buffer"])
        w.items = ItemTable.from_state(s["items"], chunks)
        # the index over the table's vectors: present keys, and the ANN's cells as they were
        # (a snapshot without them, of an older version, builds them from the present keys)
        w.index.add_present(np.flatnonzero(w.items.present))
        w.index.restore_ann(s.get("index"))
        if w.index.ann is None and w.index.ann_min is not None and len(w.index) >= w.index.ann_min:
            w.index.restore_ann(None, build=True)
        w.text = TextNeighbours.from_state(s["text"])
        w.together = CoOccurrence.from_state(s["together"])
        w.trending = Trending.from_state(s["trending"])
        w.users = {u: UserContext.from_state(c) for u, c in s["users"]}
        return w


class _Array(tuple):
    """An encoded numpy array: (dtype string, shape, raw bytes)."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _Array((obj.dtype.str, obj.shape, obj.tobytes()))
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if type(obj) is tuple:
        return tuple(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, _Array):
        dtype, shape, raw = obj
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if type(obj) is tuple:
        return tuple(_decode(v) for v in obj)
    return obj
