"""The per-user API the Flink wrapper calls, without Flink: profile in, record out.

    rec = Recommender(dim, model_id, top_k=10, config=RankingConfig())
    rec.world.add(update); rec.world.advance_to(t)      # global state, as of event time
    profile, value = rec.on_event(profile, event, query_vec)
    profile, value = rec.on_session_end(profile, at_ts)

The driver (the Flink function, or streamrec.simulate) owns the order of calls:

- before ``on_event(profile, event)`` it calls ``world.advance_to(event.ts)``, and after it
  ``world.add(event)`` (the event counts for everyone, itself included, from later times on);
- a user's session closes when no event of theirs comes before ``last_ts + session_gap_ms``:
  at that time ``at_ts`` the driver calls ``world.advance_to(at_ts)`` and ``on_session_end``.
  A session end due at T goes before an event of that user at ts == T (which starts a new
  session).
- while the user stays away, the list for the next visit is scored again at each of
  ``config.refresh_times(session_end)`` (``on_session_end(profile, at,
  refresh=k)``, k = 1, 2, ...), the same way: the world advanced to that time first. The
  user's next event ends the series.

Values are the contract's ``recommendations`` record plus ``"trigger"`` (``"event"`` or
``"session_end"``) and a ``"reason"`` per item. A session-end record has the session's last
event as ``trigger_event_id`` and its ts as ``event_ts``: it replaces that event's list. A
refreshed one also carries ``"refresh": k`` and ``"scored_at"`` (the event time it was scored
as of); it replaces the one before it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from operators.catalog import CatalogEntry
from operators.config import RankingConfig
from operators.events import SCORED_TYPES, Event, Item
from operators.ranking import Ranked, Ranker
from operators.user_profile import Profile, apply_event
from operators.world import World


def catalog_entry(item: Item, embedding: np.ndarray) -> CatalogEntry:
    """An item version with its embedding, as the world takes it."""
    text = item.text()
    return CatalogEntry(
        item_id=item.item_id,
        embedding=np.ascontiguousarray(embedding, dtype="<f4").tobytes(),
        title=item.title,
        available=item.available,
        price=item.price,
        ts=item.ts,
        text=None if text == item.title else text,
    )


def recommendation_record(
    user_id: str,
    trigger_event_id: str,
    event_ts: int,
    items: list[Ranked],
    model_id: str,
    trigger: str,
    emitted_at: int,
    refresh: int = 0,
    scored_at: int | None = None,
) -> bytes:
    record = {
        "user_id": user_id,
        "trigger_event_id": trigger_event_id,
        "event_ts": event_ts,
        "emitted_at": emitted_at,
        "model": model_id,
        "trigger": trigger,
    }
    if refresh:
        record["refresh"] = refresh
        record["scored_at"] = scored_at
    record["items"] = [{"item_id": r.item_id, "score": r.score, "reason": r.reason} for r in items]
    return json.dumps(
        record,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Recommender:
    """World + ranking of one operator task. ``clock`` gives ``emitted_at`` (default: wall)."""

    def __init__(
        self,
        dim: int,
        model_id: str,
        top_k: int = 10,
        config: RankingConfig | None = None,
        clock: Callable[[], int] | None = None,
        world: World | None = None,
    ):
        self.config = config or RankingConfig()
        self.model_id = model_id
        self.top_k = top_k
        self.clock = clock or wall_clock_ms
        self.world = world if world is not None else World(dim, self.config)
        self.ranker = Ranker(self.world, self.config, top_k)

    def restore_world(self, snapshot: bytes, chunks: dict[int, bytes] | None = None) -> None:
        """Replace the world with a restored snapshot (see World.snapshot; ``chunks``: its
        catalog rows when it was taken without them). The snapshot's world settings must be this
        recommender's (the mixes may differ: they only rank)."""
        world = World.restore(snapshot, chunks)
        if (world.config.world, world.config.session_gap_ms) != (
            self.config.world,
            self.config.session_gap_ms,
        ):
            raise ValueError(
                "the world snapshot was taken with other world settings than this job's "
                f"({world.config.world} / gap {world.config.session_gap_ms} ms)"
            )
        self.use_world(world)

    def use_world(self, world: World) -> None:
        """Score against ``world`` from now on (a restored or re-embedded one)."""
        self.world = world
        self.ranker = Ranker(self.world, self.config, self.top_k)

    def update(
        self, profile: Profile | None, event: Event, query_vec: np.ndarray | None = None
    ) -> Profile | None:
        """The profile after ``event`` (None for ``forget_user``: the user is erased)."""
        if event.type == "forget_user":
            return None
        profile = profile if profile is not None else Profile()
        return apply_event(
            profile, event, self.config.profile, self.config.session_gap_ms, query_vec
        )

    def on_event(
        self, profile: Profile | None, event: Event, query_vec: np.ndarray | None = None
    ) -> tuple[Profile | None, bytes | None]:
        """Apply an accepted event; returns (new profile or None to clear, output value).

        ``forget_user`` returns (None, None): the caller clears the user's state and writes a
        tombstone (null value) keyed by the user. Types with a list (view, click, add_to_cart,
        purchase, search) get a record with ``"trigger": "event"``.
        """
        profile = self.update(profile, event, query_vec)
        if profile is None or event.type not in SCORED_TYPES:
            return profile, None
        items = self.ranker.rank(profile, "event", event.ts)
        value = recommendation_record(
            event.user_id, event.event_id, event.ts, items, self.model_id, "event", self.clock()
        )
        return profile, value

    def on_session_end(
        self, profile: Profile, at_ts: int, refresh: int = 0
    ) -> tuple[Profile, bytes | None]:
        """The user's session closed at ``at_ts``: the list for their next visit (``refresh``
        k > 0: scored again at ``at_ts``, the k-th time since the session closed).

        The profile is returned unchanged (the next event starts a new session by itself); a
        profile with no event yet gets no record.
        """
        if profile is None or profile.last_event_id is None or profile.user_id is None:
            return profile, None
        items = self.ranker.rank(profile, "session_end", at_ts)
        value = recommendation_record(
            profile.user_id,
            profile.last_event_id,
            profile.last_ts,
            items,
            self.model_id,
            "session_end",
            self.clock(),
            refresh,
            at_ts,
        )
        return profile, value
