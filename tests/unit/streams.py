"""Small hand-made and random streams for the ranking core's tests (tiny vectors, few items)."""

from __future__ import annotations

import random

import numpy as np

from operators.catalog import CatalogEntry
from operators.events import Event

DIM = 8
MIN = 60_000
T0 = 1_291_190_000_000  # 2010-12-01


def unit(*xs: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


def entry(item_id: str, vec, ts: int | None = None, available=True, title=None) -> CatalogEntry:
    v = np.asarray(vec, dtype="<f4")
    return CatalogEntry(item_id, v.tobytes(), title or f"TITLE {item_id}", available, None, ts)


def ev(eid, user, etype, ts, item=None, session=None, query=None) -> Event:
    return Event(eid, user, etype, ts, item_id=item, query=query, session_id=session)


def buy(eid, user, item, ts, session=None) -> Event:
    return ev(eid, user, "purchase", ts, item, session)


def random_vectors(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n):
        v = rng.standard_normal(DIM).astype(np.float32)
        out[f"i{k:03d}"] = v / np.linalg.norm(v)
    return out


def random_records(seed: int = 0, n_items: int = 40, n_users: int = 12, n_orders: int = 60):
    """Contract records ("items" | "events", key, value) in event-time order: items listed over
    time (some re-titled, some unavailable, one removed), users placing orders of a few lines
    (all lines of an order share a ts, as in the retail data), views, searches, a forget_user.
    Returns (records, {text: vector}) for :func:`embedder`."""
    rng = random.Random(seed)
    vecs = random_vectors(n_items, seed)
    texts: dict[str, np.ndarray] = {}
    records: list[tuple[str, str, dict | None]] = []
    ts = T0
    listed: list[str] = []

    def list_item(item_id: str, title: str, available=True):
        if title == f"ITEM {item_id}":
            texts[title] = vecs[item_id]
        records.append(
            (
                "items",
                item_id,
                {"item_id": item_id, "title": title, "available": available, "ts": ts},
            )
        )

    for k in range(n_items // 2):
        list_item(f"i{k:03d}", f"ITEM i{k:03d}")
        listed.append(f"i{k:03d}")
    n_ev = 0
    for o in range(n_orders):
        ts += rng.choice([1, 5, 20, 45, 120]) * MIN
        if len(listed) < n_items and rng.random() < 0.4:
            item_id = f"i{len(listed):03d}"
            list_item(item_id, f"ITEM {item_id}")
            listed.append(item_id)
        if rng.random() < 0.08:
            item_id = rng.choice(listed)
            list_item(item_id, f"NEW TEXT {o} {item_id}", available=rng.random() < 0.7)
        user = f"u{rng.randrange(n_users)}"
        if rng.random() < 0.15:
            n_ev += 1
            records.append(
                (
                    "events",
                    user,
                    {
                        "event_id": f"s{n_ev}",
                        "user_id": user,
                        "type": "search",
                        "query": f"ITEM {rng.choice(listed)}",
                        "ts": ts,
                    },
                )
            )
        invoice = f"inv{o}"
        popular = listed[: max(3, len(listed) // 3)]
        for line in range(rng.randint(1, 6)):
            item = rng.choice(popular if rng.random() < 0.6 else listed)
            etype = "purchase" if rng.random() < 0.85 else "view"
            n_ev += 1
            records.append(
                (
                    "events",
                    user,
                    {
                        "event_id": f"{invoice}-{line}",
                        "user_id": user,
                        "type": etype,
                        "item_id": item,
                        "ts": ts,
                        "session_id": invoice,
                    },
                )
            )
        if o == n_orders // 2:
            records.append(("items", listed[1], None))  # a tombstone
            n_ev += 1
            records.append(
                (
                    "events",
                    "u1",
                    {"event_id": f"f{n_ev}", "user_id": "u1", "type": "forget_user", "ts": ts},
                )
            )
    return records, texts


def embedder(texts: dict[str, np.ndarray]):
    """text -> vector: the known texts, else a deterministic vector from the text's bytes."""

    def embed(text: str) -> np.ndarray:
        got = texts.get(text)
        if got is None:
            seed = sum(text.encode()) % 1000
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            got = v / np.linalg.norm(v)
        return got

    embed.dim = DIM
    return embed
