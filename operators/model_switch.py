"""Switching to another encoder: the world and a user's profile re-embedded with the new model.

A job resumed from a savepoint with another ``--model`` than the one its state was built with
(the documented path: stop with a savepoint, ``streamrec encode-catalog`` with the new model into
the embedding store, resume with ``--model NEW``) must never score one model's vectors against
the other's. Each recommend task, before it scores anything:

- :func:`reembed_world`: builds a new world from the restored one: every present item's text
  (the catalog keeps it) embedded with the new model, the content index and the text-prior
  neighbours rebuilt from those vectors (items added in their interned order, as they first
  arrived), every catalog update still waiting in the world's buffer embedded again; the
  behaviour model (co-occurrence, trending, the users' contexts) is kept as it is: it never
  depended on the vectors. Nothing of the old world changes while the new one is built, so a
  failure leaves it whole (the switch is all or nothing); the new world takes over its
  behaviour model's objects, so the old one is not used after.
- :func:`reembed_queries`: a user's recent search queries ``(ts, text, vector)`` with their
  vectors embedded again; the operator calls it when the model recorded in the user's keyed
  state (operators.keyed_state) is not the job's.

``embed`` is texts -> float32 ``[n, dim]`` unit rows (the job's encoder, behind the embedding
store that ``encode-catalog`` filled, so only texts it lacks go through the model). The new
model may have another dimension: every vector is rebuilt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from operators.catalog import CatalogEntry, ItemTable
from operators.content import TextNeighbours
from operators.world import World

Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class SwitchStats:
    items: int  # present items re-embedded
    pending: int  # catalog updates waiting in the buffer, re-embedded
    texts: int  # distinct texts sent to ``embed``


def _vectors(embed: Embed, texts: list[str], dim: int) -> dict[str, np.ndarray]:
    if not texts:
        return {}
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.shape != (len(texts), dim):
        raise ValueError(
            f"the new model embedded {len(texts)} texts as an array of shape {vectors.shape}, "
            f"want ({len(texts)}, {dim})"
        )
    return dict(zip(texts, vectors, strict=True))


def reembed_world(world: World, embed: Embed, dim: int) -> tuple[World, SwitchStats]:
    """A new world like ``world`` with every vector (and what derives from them) of ``embed``."""
    items = world.items
    present = [i for i in range(len(items)) if items.is_present(i)]
    pending = [n for n, b in enumerate(world._buffer) if isinstance(b[4], CatalogEntry)]
    texts: dict[str, None] = {}
    for i in present:
        texts.setdefault(items.text(i))
    for n in pending:
        texts.setdefault(world._buffer[n][4].embedded_text)
    vectors = _vectors(embed, list(texts), dim)

    new = World(dim, world.config)
    new.bound, new.applied, new._arrivals = world.bound, world.applied, world._arrivals
    new.together, new.trending, new.users = world.together, world.trending, world.users

    state = items.state()
    rows = np.zeros((len(items), dim), dtype=np.float32)
    for i in present:
        rows[i] = vectors[items.text(i)]
    new.items = ItemTable.from_state({**state, "dim": dim, "vectors": rows})
    new.text = TextNeighbours(world.text.m, world.text.probe)
    for i in present:  # the new world's index reads its table's (bfloat16) rows, as any world's
        new.index.add(i, new.items.vector(i))
        new.text.add(i, new.index)

    # waiting updates keep their place in the heap (its keys do not involve the embedding)
    buffer = list(world._buffer)
    for n in pending:
        *key, entry = buffer[n]
        vec = vectors[entry.embedded_text]
        embedding = np.ascontiguousarray(vec, dtype="<f4").tobytes()
        buffer[n] = (*key, dataclasses.replace(entry, embedding=embedding))
    new._buffer = buffer
    return new, SwitchStats(len(present), len(pending), len(texts))


def reembed_queries(
    queries: list[tuple[int, str, bytes]], embed_one: Callable[[str], np.ndarray]
) -> list[tuple[int, str, bytes]]:
    """``(ts, text, vector bytes)`` with each vector ``embed_one(text)`` (float32 little-endian),
    one text at a time, as the job embeds a search when it comes (so the vectors are the ones
    a job that always ran the new model would hold)."""
    return [
        (ts, text, np.ascontiguousarray(embed_one(text), dtype="<f4").tobytes())
        for ts, text, _ in queries
    ]
