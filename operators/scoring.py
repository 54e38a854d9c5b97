"""Scoring candidate items for one user and picking the top K (pure numpy).

score(item) = w_short * cos(item, recent window vector)
            + w_long  * cos(item, long-term interest vector)
            + w_query * cos(item, recent query vector)
            + w_repeat * log1p(times bought) * decay(since last bought)
over every available catalog item. Vectors are L2-normalised, so cos is a dot product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from operators.catalog import CatalogIndex
from operators.user_profile import Profile, ProfileParams, decay


@dataclass(frozen=True)
class ScoringParams:
    w_short: float = 1.0
    w_long: float = 0.5
    w_query: float = 1.0
    w_repeat: float = 0.35
    repeat_half_life_ms: int = 60 * 24 * 3600 * 1000


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    n = float(np.linalg.norm(v))
    return None if n < 1e-12 else (v / n).astype(np.float32, copy=False)


def short_vector(
    p: Profile, catalog: CatalogIndex, params: ProfileParams, as_of: int | None = None
) -> np.ndarray | None:
    if not p.recent or p.last_ts is None:
        return None
    acc = None
    for ts, item_id, etype in p.recent:
        vec = catalog.vector(item_id, as_of)
        if vec is None:
            continue
        w = params.type_weights.get(etype, 0.0) * decay(p.last_ts - ts, params.short_half_life_ms)
        acc = w * vec if acc is None else acc + w * vec
    return _unit(acc)


def query_vector(p: Profile, params: ProfileParams) -> np.ndarray | None:
    if not p.queries or p.last_ts is None:
        return None
    acc = None
    for ts, raw in p.queries:
        w = decay(p.last_ts - ts, params.query_half_life_ms)
        vec = np.frombuffer(raw, dtype=np.float32)
        acc = w * vec if acc is None else acc + w * vec
    return _unit(acc)


def score_items(
    p: Profile,
    catalog: CatalogIndex,
    pparams: ProfileParams,
    sparams: ScoringParams,
    as_of: int | None = None,
) -> np.ndarray:
    """Scores for every catalog row (rows not recommendable at ``as_of`` are -inf)."""
    emb = catalog.embeddings
    scores = np.zeros(emb.shape[0], dtype=np.float32)
    user = np.zeros(catalog.dim, dtype=np.float32)
    for w, vec in (
        (sparams.w_short, short_vector(p, catalog, pparams, as_of)),
        (sparams.w_long, _unit(p.long_vec)),
        (sparams.w_query, query_vector(p, pparams)),
    ):
        if vec is not None and w:
            user += w * vec
    if user.any():
        scores += emb @ user
        for row, vec in catalog.earlier_versions(as_of):  # items changed after as_of
            scores[row] = float(vec @ user)
    if sparams.w_repeat and p.last_ts is not None:
        for item_id, (count, last) in p.purchases.items():
            row = catalog.row(item_id)
            if row is not None:
                scores[row] += (
                    sparams.w_repeat
                    * math.log1p(count)
                    * decay(p.last_ts - last, sparams.repeat_half_life_ms)
                )
    scores[~catalog.visible(as_of)] = -np.inf
    return scores


def top_k(scores: np.ndarray, catalog: CatalogIndex, k: int) -> list[tuple[str, float]]:
    """The k best available items, best first; ties broken by item_id so output is deterministic."""
    finite = np.flatnonzero(np.isfinite(scores))
    if finite.size == 0 or k <= 0:
        return []
    if finite.size > k:
        kth = -np.partition(-scores[finite], k - 1)[k - 1]  # the k-th best score
        cand = finite[scores[finite] >= kth]  # every item tied with it goes to the tie-break
    else:
        cand = finite
    ranked = sorted(
        ((round(float(scores[r]), 6), catalog.item_id_at(int(r))) for r in cand),
        key=lambda t: (-t[0], t[1]),
    )
    return [(item_id, s) for s, item_id in ranked[:k]]


def recommend(
    p: Profile,
    catalog: CatalogIndex,
    k: int,
    pparams: ProfileParams | None = None,
    sparams: ScoringParams | None = None,
    as_of: int | None = None,
) -> list[tuple[str, float]]:
    pparams = pparams or ProfileParams()
    sparams = sparams or ScoringParams()
    return top_k(score_items(p, catalog, pparams, sparams, as_of), catalog, k)
