"""How a recommend task keeps its world in Flink broadcast state (pure; the Flink function only
moves these entries in and out).

Every recommend task holds the same world (catalog, item vectors, behaviour model), built from
the same broadcast updates applied in event-time order (operators.world). Flink checkpoints
broadcast state, not Python objects, so the world is written there as

    "log/<id>"  -> (kind, payload, seq)  every update received since the snapshot (id: its Kafka
                                         record; seq: its arrival number on this task; an
                                         event as WORLD_EVENT, a catalog update as received)
    "snapshot"  -> bytes                 the whole world but its catalog rows when the log
                                         was last folded into it (the updates it had applied
                                         and those still waiting)
    "catalog/<k>" -> bytes               catalog rows k * CHUNK_ROWS on: ids, titles, texts,
                                         bfloat16 vectors (operators.catalog); a fold rewrites
                                         only the chunks that changed since the one before
    "meta"      -> {"version", "model_id", "dim", "bound", "folded", "seq"}

A restore loads the snapshot and its catalog chunks and adds the logged updates again, in their
arrival order; with :func:`advance` the world then applies them exactly as before the failure, so
the restored world continues bit for bit. The log is folded into a new snapshot every
``compact_every`` updates (which bounds the state and the restore time; a million items' rows are
about 850 MB, which a fold does not write again when few items changed), and as soon as a
``forget_user`` has been applied (the log holds that user's events until then; the snapshot holds
no trace of them). The world only ever sees the fields of an event it uses
(:data:`WORLD_EVENT_FIELDS`): no query text.

``meta`` names the encoder the world's vectors come from: a task never mixes two models. A task
restored with another model re-embeds the world first (:meth:`WorldStore.switch_from`,
operators.model_switch) and folds the old model's state away with its next update. Snapshots carry a schema version; :func:`upgrade` is the path for
older ones.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 3
LOG = "log/"
SNAPSHOT = "snapshot"
CATALOG = "catalog/"
META = "meta"

# what the world reads from an event (operators.world.World._apply_event and its ordering key);
# the rest (query text, quantity, price, unknown fields) never reaches the world or its log
WORLD_EVENT_FIELDS = ("event_id", "user_id", "type", "ts", "item_id", "session_id")


class StateVersionError(RuntimeError):
    """Broadcast state written by a newer job than this one."""


def upgrade(meta: dict, entries: list[tuple[str, tuple]]) -> list[tuple[str, str, bytes, int]]:
    """Log entries of an older schema version as ``(id, kind, payload, seq)`` of the current one.

    Version 1 logged ``(kind, payload)`` without arrival numbers (they are numbered in the order
    Flink hands them back) and catalog payloads without the model that embedded them. Versions 1
    and 2 kept the catalog's rows inside the snapshot (vectors as float32): the restored world
    reads them there, and its first fold writes them as chunks."""
    version = meta.get("version", 1)
    if version > SCHEMA_VERSION:
        raise StateVersionError(
            f"world state has schema version {version}; this job reads up to {SCHEMA_VERSION} "
            "(resume with the job version that wrote it)"
        )
    out = []
    for n, (update_id, value) in enumerate(entries):
        if len(value) == 2:  # version 1
            kind, payload = value
            seq = -len(entries) + n  # before anything numbered by this version
        else:
            kind, payload, seq = value
        out.append((update_id, kind, payload, seq))
    return out


@dataclass
class WorldStore:
    """Bookkeeping of the log a task has written: ids, arrival numbers, forgets to fold."""

    compact_every: int = 20_000
    model_id: str | None = None  # the encoder of this task's vectors (recorded in meta)
    dim: int | None = None
    logged: set[str] = field(default_factory=set)  # ids of the updates in the log
    seq: int = 0  # arrival number of the next update
    # logged forget_user updates not folded yet: (ts, updates the world had applied when it came)
    forgets: list[tuple[float, int]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # as restored (empty: nothing was there)
    _meta_written: bool = False
    _fold: bool = False  # fold at the next update (after a model switch)

    def _meta(self, bound: float, folded: int) -> dict:
        return {
            "version": SCHEMA_VERSION,
            "model_id": self.model_id,
            "dim": self.dim,
            "bound": bound,
            "folded": folded,
            "seq": self.seq,
        }

    def log_entry(self, update_id: str, kind: str, payload: bytes, forget_ts=None, applied=0):
        """The (key, value) pairs to put for an update just received (its log entry, and the
        meta entry the first time). ``forget_ts``: the update is a forget_user at that time;
        ``applied``: the world's count of applied updates when it was added."""
        self.logged.add(update_id)
        if forget_ts is not None:
            self.forgets.append((forget_ts, applied))
        puts = [(LOG + update_id, (kind, payload, self.seq))]
        self.seq += 1
        if not self._meta_written:
            puts.append((META, self._meta(self.meta.get("bound", -math.inf), 0)))
            self._meta_written = True
        return puts

    def due(self, bound: float = -math.inf, applied: int = 0) -> bool:
        """Time to fold: the log is long, or a forget_user that the world has applied (``bound``
        and ``applied``: the world's) still has its user's events in the log."""
        return (
            self._fold
            or len(self.logged) >= self.compact_every
            or any(self._applied(f, bound, applied) for f in self.forgets)
        )

    @staticmethod
    def _applied(forget: tuple[float, int], bound: float, applied: int) -> bool:
        # the world applies an update once an advance passes its ts; one that came late (ts
        # already below the bound) at the next advance, which then applies something
        ts, applied_then = forget
        return ts < bound and applied > applied_then

    def compaction(
        self,
        snapshot: bytes,
        bound: float,
        applied: int = 0,
        chunks: dict[int, bytes] | None = None,
    ) -> tuple[list[tuple[str, Any]], list[str]]:
        """(puts, removes) that fold every logged update into ``snapshot``, the whole world
        (applied and waiting updates) now, taken without its catalog rows; ``chunks``: the
        chunks of rows changed since the last fold (``World.snapshot(rows=False)``,
        ``ItemTable.changed_chunks()``); ``bound`` is its event time, ``applied`` its count of
        applied updates."""
        folded = [LOG + i for i in self.logged]
        self.logged.clear()
        self.forgets = [f for f in self.forgets if not self._applied(f, bound, applied)]
        self._meta_written = True
        self._fold = False
        puts: list[tuple[str, Any]] = [(CATALOG + str(k), c) for k, c in (chunks or {}).items()]
        puts += [(SNAPSHOT, snapshot), (META, self._meta(bound, len(folded)))]
        return puts, folded

    def fold(self, world) -> tuple[list[tuple[str, Any]], list[str]]:
        """:meth:`compaction` of ``world`` (an operators.world.World) now: its snapshot without
        the catalog's rows, and the chunks of rows that changed since the last fold."""
        return self.compaction(
            world.snapshot(rows=False), world.bound, world.applied, world.items.changed_chunks()
        )

    def restore(
        self,
        entries: Iterable[tuple[str, Any]],
        decode: Callable[[str, bytes], Any],
    ) -> tuple[bytes | None, dict[int, bytes], list[Any]]:
        """(snapshot or None, its catalog chunks, updates to add again in their arrival order)
        from the broadcast state's entries; the bookkeeping is rebuilt from them (``meta`` as
        found; then :meth:`count_forgets_from` the restored world's count of applied
        updates)."""
        snapshot, meta, logged, chunks = None, {}, [], {}
        for key, value in entries:
            if key == SNAPSHOT:
                snapshot = value
            elif key == META:
                meta = dict(value)
            elif key.startswith(LOG):
                logged.append((key[len(LOG) :], value))
            elif key.startswith(CATALOG):
                chunks[int(key[len(CATALOG) :])] = value
        logged = upgrade(meta, logged)
        logged.sort(key=lambda e: e[3])
        self.meta = meta
        self._meta_written = bool(meta)
        self.logged = {update_id for update_id, *_ in logged}
        self.seq = max([meta.get("seq", 0)] + [seq + 1 for *_, seq in logged])
        self.forgets = []
        updates = []
        for _, kind, payload, _ in logged:
            update = decode(kind, payload)
            if update is not None:
                updates.append(update)
                if getattr(update, "type", None) == "forget_user":
                    self.forgets.append((update.ts, 0))
        return snapshot, chunks, updates

    def count_forgets_from(self, applied: int) -> None:
        """After a restore: the logged forgets wait for advances beyond the restored world's
        ``applied`` count (they are added to it again, and applied again)."""
        self.forgets = [(ts, applied) for ts, _ in self.forgets]

    def switch_from(self) -> str | None:
        """The model the restored world was built with, when it is not this task's (model id
        or dimension): the task must re-embed it before it scores (operators.model_switch)
        and then call :meth:`switched`. None: nothing restored, or the same model."""
        model, dim = self.meta.get("model_id"), self.meta.get("dim")
        if model is None or (model == self.model_id and dim == self.dim):
            return None
        return f"{model} (dim {dim})"

    def switched(self) -> None:
        """The restored world was re-embedded with this task's model: the next update folds
        the whole log, of the old model's entries, into a snapshot of the new world (with meta
        naming the new model), so the state never holds the two models' vectors at once. Until
        then it holds the old world, whole, under the old model's name."""
        self.meta = {**self.meta, "model_id": self.model_id, "dim": self.dim}
        self._fold = True


def advance(world, t: float) -> int:
    """``world.advance_to(t)``, one event time of buffered updates at a time.

    ``World.advance_to`` refreshes derived state (co-occurrence neighbour lists, the users'
    contexts) after each call, so a world advanced to t1 then t2 differed from one advanced to
    t2 at once. Stepping through the buffered updates' own times makes the world a function of
    its updates alone: the same on every task (each advances to its own users' event times) and
    after a restore (which adds the logged updates again at once). Returns updates applied."""
    buf = world._buffer  # heap of (ts, kind, key, arrival, update): the smallest ts first
    n = 0
    while buf and buf[0][0] < t:
        s = buf[0][0]
        # updates without time (-inf) first, on their own; then each time s: all of ts <= s
        n += world.advance_to(-sys.float_info.max if s == -math.inf else s + 1)
    return n + world.advance_to(t)


# the log's kind for an event reduced to WORLD_EVENT_FIELDS (the broadcast input's "event" is a
# raw record of the events topic)
WORLD_EVENT = "world_event"


def world_event_payload(event) -> bytes:
    """What the world keeps of an event (the log's payload, kind :data:`WORLD_EVENT`): its
    :data:`WORLD_EVENT_FIELDS` as JSON, read back by :func:`decode_update`."""
    doc = {k: getattr(event, k) for k in WORLD_EVENT_FIELDS if getattr(event, k) is not None}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_item_update(update, model_id: str | None) -> bytes:
    """Catalog updates travel (and are logged) pickled with the encoder's model id:
    ``(model_id, CatalogEntry | ItemRemoved)``."""
    return pickle.dumps((model_id, update), protocol=pickle.HIGHEST_PROTOCOL)


def decode_item_update(payload: bytes):
    """(model_id, update) of an encoded catalog update (model None: written by schema 1)."""
    value = pickle.loads(payload)
    if isinstance(value, tuple) and len(value) == 2 and (value[0] is None or type(value[0]) is str):
        return value
    return None, value


def decode_update(kind: str, payload: bytes, max_future_ms: int | None = None):
    """A broadcast update or log entry: an Event ("event": a record of the events topic, reduced
    to what the world uses, None when it is not a valid event, which the keyed path reports as a
    dead letter; :data:`WORLD_EVENT`: an event as logged) or a catalog update ("item": ``(model_id, update)``, see
    :func:`decode_item_update`). ``max_future_ms``: the job's bound on ``ts``."""
    if kind == "item":
        return decode_item_update(payload)
    from operators.events import DEFAULT_MAX_FUTURE_MS, Event, parse_event

    if kind == WORLD_EVENT:  # written by this module from a valid event
        return Event(**json.loads(payload))

    bound = DEFAULT_MAX_FUTURE_MS if max_future_ms is None else max_future_ms
    parsed = parse_event(payload, topic="", max_future_ms=bound)
    if not isinstance(parsed, Event):
        return None
    if parsed.query is None and parsed.quantity is None and parsed.price is None:
        return parsed
    from dataclasses import replace

    return replace(parsed, query=None, quantity=None, price=None)
