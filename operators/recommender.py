"""The per-event core of the recommend operator, without Flink.

The Flink function (operators/functions.py) moves state in and out and calls these; everything
here can be tested with plain Python. Output is the contract's ``recommendations`` record.
"""

from __future__ import annotations

import json
import time

import numpy as np

from operators.catalog import CatalogEntry, CatalogIndex
from operators.events import SCORED_TYPES, Event, Item
from operators.scoring import ScoringParams, recommend
from operators.user_profile import Profile, ProfileParams, apply_event


def catalog_entry(item: Item, embedding: np.ndarray) -> CatalogEntry:
    return CatalogEntry(
        item_id=item.item_id,
        embedding=np.ascontiguousarray(embedding, dtype="<f4").tobytes(),
        title=item.title,
        available=item.available,
        price=item.price,
        ts=item.ts,
    )


def recommendation_record(
    user_id: str,
    event: Event,
    items: list[tuple[str, float]],
    model_id: str,
    emitted_at: int | None = None,
) -> bytes:
    return json.dumps(
        {
            "user_id": user_id,
            "trigger_event_id": event.event_id,
            "event_ts": event.ts,
            "emitted_at": int(time.time() * 1000) if emitted_at is None else emitted_at,
            "model": model_id,
            "items": [{"item_id": i, "score": s} for i, s in items],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


class Recommender:
    """Catalog view + scoring parameters of one operator task."""

    def __init__(
        self,
        dim: int,
        model_id: str,
        top_k: int = 10,
        profile_params: ProfileParams | None = None,
        scoring_params: ScoringParams | None = None,
        as_of_event_time: bool = True,
    ):
        self.catalog = CatalogIndex(dim)
        self.model_id = model_id
        self.top_k = top_k
        self.pparams = profile_params or ProfileParams()
        self.sparams = scoring_params or ScoringParams()
        # recommend only items whose catalog ts is at or before the event's ts
        self.as_of_event_time = as_of_event_time

    def upsert_item(self, entry: CatalogEntry) -> None:
        self.catalog.upsert(entry)

    def remove_item(self, item_id: str) -> None:
        self.catalog.remove(item_id)

    def on_event(
        self, profile: Profile | None, event: Event, query_vec: np.ndarray | None = None
    ) -> tuple[Profile | None, bytes | None]:
        """Apply an accepted event; returns (new profile or None to clear, output value).

        ``forget_user`` returns (None, None): the caller clears the user's state and writes a
        tombstone (null value) keyed by the user.
        """
        if event.type == "forget_user":
            return None, None
        profile = profile if profile is not None else Profile()
        # with as-of semantics, the profile too only sees items in the catalog before the event
        as_of = event.ts if self.as_of_event_time else None
        apply_event(
            profile, event, lambda i: self.catalog.vector(i, as_of), self.pparams, query_vec
        )
        if event.type not in SCORED_TYPES:
            return profile, None
        items = recommend(profile, self.catalog, self.top_k, self.pparams, self.sparams, as_of)
        return profile, recommendation_record(event.user_id, event, items, self.model_id)
