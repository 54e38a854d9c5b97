"""How a recommend task keeps its world in Flink broadcast state (pure; the Flink function only
moves these entries in and out).

Every recommend task holds the same world (catalog, item vectors, behaviour model), built from
the same broadcast updates applied in event-time order (operators.world). Flink checkpoints
broadcast state, not Python objects, so the world is written there as

    "log/<id>"  -> (kind, payload)  every update received since the snapshot (id: its Kafka record)
    "snapshot"  -> bytes             the whole world when the log was last folded into it (the
                                     updates it had applied and those still waiting for their time)
    "meta"      -> {"version", "bound", "folded"}

A restore loads the snapshot and adds the logged updates again; the world applies them in the
same event-time order as before the failure, so the restored world continues bit for bit. The log
is folded into a new snapshot every ``compact_every`` updates, which bounds the state and the
restore time. Snapshots carry a schema version; :func:`upgrade` is the path for older ones.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
LOG = "log/"
SNAPSHOT = "snapshot"
META = "meta"


class StateVersionError(RuntimeError):
    """Broadcast state written by a newer job than this one."""


def upgrade(meta: dict, snapshot: bytes | None) -> bytes | None:
    """A snapshot of an older schema version in the current one (none older exists yet)."""
    version = meta.get("version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise StateVersionError(
            f"world state has schema version {version}; this job reads up to {SCHEMA_VERSION} "
            "(resume with the job version that wrote it)"
        )
    return snapshot


@dataclass
class WorldStore:
    """Bookkeeping of the log entries a task has written (their ids and event times)."""

    compact_every: int = 20_000
    logged: set[str] = field(default_factory=set)  # ids of the updates in the log

    def log_entry(self, update_id: str, kind: str, payload: bytes):
        """The (key, value) to put for an update just received."""
        self.logged.add(update_id)
        return LOG + update_id, (kind, payload)

    def due(self) -> bool:
        return len(self.logged) >= self.compact_every

    def compaction(self, snapshot: bytes, bound: float) -> tuple[list[tuple[str, Any]], list[str]]:
        """(puts, removes) that fold every logged update into ``snapshot``, the whole world
        (applied and waiting updates) now; ``bound`` (its event time) is for information."""
        folded = [LOG + i for i in self.logged]
        meta = {"version": SCHEMA_VERSION, "bound": bound, "folded": len(folded)}
        self.logged.clear()
        return [(SNAPSHOT, snapshot), (META, meta)], folded

    def restore(
        self,
        entries: Iterable[tuple[str, Any]],
        decode: Callable[[str, bytes], Any],
    ) -> tuple[bytes | None, list[Any]]:
        """(snapshot or None, updates to add again) from the broadcast state's entries; the
        bookkeeping is rebuilt from them."""
        snapshot, meta, updates = None, {}, []
        self.logged.clear()
        for key, value in entries:
            if key == SNAPSHOT:
                snapshot = value
            elif key == META:
                meta = value
            elif key.startswith(LOG):
                kind, payload = value
                self.logged.add(key[len(LOG) :])
                update = decode(kind, payload)
                if update is not None:
                    updates.append(update)
        return upgrade(meta, snapshot), updates


def encode_item_update(update) -> bytes:
    """Catalog updates travel (and are logged) pickled: CatalogEntry or ItemRemoved."""
    return pickle.dumps(update, protocol=pickle.HIGHEST_PROTOCOL)


def decode_update(kind: str, payload: bytes, max_future_ms: int | None = None):
    """A broadcast update: an Event ("event": the raw JSON of the events topic; None when it is
    not a valid event, which the keyed path reports as a dead letter) or a catalog update
    ("item"). ``max_future_ms``: the job's bound on ``ts`` (the parser's default if None)."""
    if kind == "item":
        return pickle.loads(payload)
    from operators.events import DEFAULT_MAX_FUTURE_MS, Event, parse_event

    bound = DEFAULT_MAX_FUTURE_MS if max_future_ms is None else max_future_ms
    parsed = parse_event(payload, topic="", max_future_ms=bound)
    return parsed if isinstance(parsed, Event) else None
