"""Ranking: candidates from every signal, normalised, weighted, with a reason per item.

For a user's profile, a trigger (``"event"`` or ``"session_end"``, which picks the Mix) and the
time ``now`` (the world holds the updates before it):

1. Seeds: the current session's items, the most recent weighted most (``position_decay`` per
   step back, times the event type's weight), plus the items of ``past_orders`` previous orders
   (``past_weight``, times ``order_decay`` per order further back).
2. Signals, each a sparse score over items:
   - ``collab``: sum over seeds of seed weight x co-occurrence similarity (session-kNN style);
   - ``repeat``: the user's decayed purchase frequency (profile ``freq``), and ``bought``: 1 for
     every item in it (a feature only: with a large weight, past purchases come first);
   - ``trending``: decayed distinct recent buyers, relative to the top item's (for every
     candidate: among a user's past items it breaks ties by what is selling now);
   - ``text``: sum over seeds of seed weight x text similarity x h / (h + orders of the rarer of
     the two items): text speaks for items with little behaviour, new ones first;
   - ``query``: cosine to recent search queries (decayed by age), from the content index;
   - ``similar``: cosine of a candidate to the seeds' weighted mean vector (a feature only).
3. Candidates: items that are visible and, for a mix with ``mask_order``, not in the current
   order; each signal's scores are divided by their maximum over them (``similar`` stays a
   cosine, clipped at 0; trending is relative to the top item); the candidates kept are the
   union of each signal's top ``candidates``.
4. Score = weights . features (the trending weight is at least ``trending_floor``, so trending
   fills lists that other signals leave short); the top K with a positive score, best first,
   ties by item id. No list is ever a run of zero scores.
5. Reason of an item: the signal that contributed most, in words: "bought with 85123A",
   "bought before", "trending", "similar to 'WHITE METAL LANTERN'", "matches search 'lantern'".

:meth:`Ranker.candidates` exposes the candidate features, so tuning can re-rank the same
candidates under other weights (:meth:`Ranker.top`) without recomputing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import numpy as np

from operators.config import SIGNALS, Mix, RankingConfig
from operators.forward_decay import decay
from operators.user_profile import Profile
from operators.world import World

N_SIGNALS = len(SIGNALS)
S_COLLAB, S_REPEAT, S_TRENDING, S_TEXT, S_SIMILAR, S_QUERY, S_BOUGHT = range(N_SIGNALS)
EMPTY_I = np.zeros(0, dtype=np.int64)
EMPTY_F = np.zeros(0, dtype=np.float64)


@dataclass
class Candidates:
    """Candidate items of one list and their per-signal features (rows align with ``idx``)."""

    trigger: str
    idx: np.ndarray  # [m] world item indexes, ascending
    features: np.ndarray  # [m, N_SIGNALS] normalised signal scores
    seeds: list[int]  # seed item indexes
    # every (item, contribution, signal, seed position) behind collab and text, for reasons
    entries: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    queries: list[tuple[str, np.ndarray, float]]  # (text, vector, weight)
    ref: int = -1  # free for tools (tuning numbers the lists it keeps)


class Ranked(NamedTuple):
    item_id: str
    score: float
    reason: str


def _per_seed(
    lists: list[dict[int, tuple[np.ndarray, np.ndarray]]], seeds: list[int]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each neighbour table, the seeds' lists concatenated: (items, similarities, seed
    position of each entry)."""
    out = []
    for table in lists:
        ks, ss, pos, sizes = [], [], [], []
        get = table.get
        for n, i in enumerate(seeds):
            got = get(i)
            if got is not None:
                ks.append(got[0])
                ss.append(got[1])
                pos.append(n)
                sizes.append(got[0].size)
        if ks:
            out.append((np.concatenate(ks), np.concatenate(ss), np.repeat(pos, sizes)))
        else:
            out.append((EMPTY_I, EMPTY_F, EMPTY_I))
    return out


def _unique_inverse(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(k, return_inverse=True)`` for a 1-d int array, without its overheads."""
    perm = k.argsort()
    ks = k[perm]
    first = np.empty(ks.size, dtype=bool)
    first[:1] = True
    np.not_equal(ks[1:], ks[:-1], out=first[1:])
    inv = np.empty(ks.size, dtype=np.int64)
    inv[perm] = np.cumsum(first) - 1
    return ks[first], inv


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """keys[i] in sorted_set, for a small sorted set (cost O(len(keys) log len(set)))."""
    if sorted_set.size == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, keys), sorted_set.size - 1)
    return sorted_set[at] == keys


class Ranker:
    def __init__(self, world: World, config: RankingConfig, top_k: int = 10):
        self.world = world
        self.config = config
        self.top_k = top_k
        self._on = {s: config.enabled(s) for s in SIGNALS}  # the config is frozen
        self._weights = {t: self._weights_of(t) for t in ("event", "session_end")}

    # ---- seeds -------------------------------------------------------------------------------
    def seeds(self, p: Profile, mix: Mix) -> tuple[list[int], list[float]]:
        index = self.world.items.index
        tw = self.config.seed_type_weights
        seeds: dict[int, float] = {}
        w = 1.0
        for item, _, typ in reversed(p.session[-mix.max_seeds :]):
            i = index.get(item)
            if i is not None:
                sw = w * tw.get(typ, 0.0)
                if seeds.get(i, 0.0) < sw:
                    seeds[i] = sw
            w *= mix.position_decay
        if mix.past_orders:
            w = mix.past_weight
            for items in p.past_orders()[: mix.past_orders]:
                for item in items:
                    i = index.get(item)
                    if i is not None and seeds.get(i, 0.0) < w:
                        seeds[i] = w
                w *= mix.order_decay
        return list(seeds), list(seeds.values())

    # ---- candidates --------------------------------------------------------------------------
    def candidates(
        self, p: Profile, trigger: str, now: int, weights: np.ndarray | None = None
    ) -> Candidates:
        """The candidates of a list and their features. With ``weights`` (the ranking's), the
        features that do not choose candidates and weigh zero (``similar``, ``bought``) are
        left at 0: the scores, the lists and the reasons are the same, for less work."""
        cfg = self.config
        on = self._on
        mix = cfg.mix(trigger)
        world = self.world
        items = world.items
        seeds, seed_w = self.seeds(p, mix)
        seed_wa = np.array(seed_w, dtype=np.float64)
        keys: list[np.ndarray] = []  # per part: items, values, signal
        vals: list[np.ndarray] = []
        sigs: list[int] = []
        present: set[int] = set()  # signals with candidates

        # collab and text: neighbour lists of the seeds
        entries = (EMPTY_I, EMPTY_F, EMPTY_I, EMPTY_I)
        tables = []
        if on["collab"]:
            tables.append((S_COLLAB, world.together.nb))
        if on["text"]:
            tables.append((S_TEXT, world.text.lists))
        if seeds and tables:
            ek, ev, es, ep = [], [], [], []
            found = _per_seed([t for _, t in tables], seeds)
            for (signal, _), (k, s, pos) in zip(tables, found, strict=True):
                if k.size == 0:
                    continue
                s = s * seed_wa[pos]
                if signal == S_TEXT:
                    count = world.together.count
                    rare = np.minimum(count[k], count[np.array(seeds, dtype=np.int64)[pos]])
                    rare *= world.together.count_factor(now)
                    h = mix.text_rarity
                    s = np.maximum(s, 0.0) * (h / (h + rare))
                ek.append(k)
                ev.append(s)
                es.append(signal)
                ep.append(pos)
            if ek:
                sig = np.repeat(np.array(es, dtype=np.int64), [a.size for a in ek])
                entries = (np.concatenate(ek), np.concatenate(ev), sig, np.concatenate(ep))
                present.update(es)
                keys.append(entries[0])
                vals.append(entries[1])
                sigs.append(-1)  # signals given per entry

        if on["repeat"] and p.freq:
            n = len(p.freq)
            k = np.fromiter(map(items.index.get, p.freq, repeat(-1, n)), dtype=np.int64, count=n)
            freq = np.fromiter(p.freq.values(), dtype=np.float64, count=n)
            known = k >= 0
            bought = np.sort(k[known])
            keys.append(k[known])
            vals.append(freq[known])
            sigs.append(S_REPEAT)
            present.add(S_REPEAT)

        else:
            bought = EMPTY_I

        masked = EMPTY_I
        if mix.mask_order:
            order = p.current_order()
            if order:
                index = items.index
                masked = np.array(sorted({index.get(it, -1) for it in order}), dtype=np.int64)

        if on["trending"]:
            k, s = world.trending.top_items(items.visible, cfg.candidates + masked.size)
            keys.append(k)
            vals.append(s)
            sigs.append(S_TRENDING)
            present.add(S_TRENDING)

        queries: list[tuple[str, np.ndarray, float]] = []
        if on["query"] and p.queries:
            pc = cfg.profile
            for ts, q, raw in p.queries:
                vec = np.frombuffer(raw, dtype="<f4")
                if now - ts > pc.query_window_ms or vec.shape != (world.dim,):
                    continue  # too old, or embedded by another model
                w = decay(now - ts, pc.query_half_life_ms)
                k, s = world.index.search(vec, cfg.candidates + masked.size)
                keys.append(k)
                vals.append(np.maximum(s.astype(np.float64), 0.0) * w)
                sigs.append(S_QUERY)
                present.add(S_QUERY)
                queries.append((q, vec, w))

        if not keys:
            return Candidates(trigger, EMPTY_I, np.zeros((0, N_SIGNALS)), seeds, entries, queries)
        k = np.concatenate(keys)
        v = np.concatenate(vals)
        sig = np.repeat(np.array(sigs, dtype=np.int64), [a.size for a in keys])
        if entries[0].size:
            sig[: entries[0].size] = entries[2]

        # one aggregation for every signal: f[signal, item] = sum of values (rows contiguous)
        u, inv = _unique_inverse(k)
        m = u.size
        f = np.bincount(sig * m + inv, weights=v, minlength=N_SIGNALS * m)
        f = f.astype(np.float64, copy=False).reshape(N_SIGNALS, m)
        ok = items.visible[u]
        if masked.size:
            ok &= ~_member(u, masked)
        u, f = u[ok], f[:, ok]
        m = u.size

        # each signal divided by its maximum; the union of each signal's top N
        n_top = cfg.candidates
        keep = np.zeros(m, dtype=bool)
        for signal in sorted(present):
            row = f[signal]
            mx = row.max() if m else 0.0
            if mx <= 0:
                continue
            row /= mx
            nz = np.flatnonzero(row > 0)
            if nz.size > n_top:
                pos = row[nz]
                keep[nz[pos >= np.partition(pos, nz.size - n_top)[nz.size - n_top]]] = True
            else:
                keep[nz] = True
        if not keep.all():
            u, f = u[keep], f[:, keep]

        if bought.size and on["bought"] and (weights is None or weights[S_BOUGHT] != 0):
            f[S_BOUGHT] = _member(u, bought)
        if on["trending"] and u.size:  # every candidate's, against the top item's
            f[S_TRENDING] = world.trending.relative(u)
        if on["similar"] and u.size and seeds and (weights is None or weights[S_SIMILAR] != 0):
            vecs = items.vectors
            user = seed_wa @ vecs[seeds]
            norm = float(np.linalg.norm(user))
            if norm > 0:
                f[S_SIMILAR] = np.maximum(vecs[u] @ (user / norm), 0.0)
        feats = f.T  # [candidates, signals]
        return Candidates(trigger, u, feats, seeds, entries, queries)

    # ---- ranking -----------------------------------------------------------------------------
    def weights(self, trigger: str) -> np.ndarray:
        w = self._weights.get(trigger)
        return self._weights_of(trigger) if w is None else w.copy()

    def _weights_of(self, trigger: str) -> np.ndarray:
        cfg = self.config
        mix = cfg.mix(trigger)
        w = np.array([getattr(mix, s) if cfg.enabled(s) else 0.0 for s in SIGNALS])
        if cfg.enabled("trending"):
            w[S_TRENDING] = max(w[S_TRENDING], cfg.trending_floor)
        return w

    def top(self, cands: Candidates, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``cands`` in the top K and their scores (rounded to 6 digits), best first."""
        if cands.idx.size == 0:
            return EMPTY_I, EMPTY_F
        total = np.round(cands.features @ weights, 6)
        rows = np.flatnonzero(total > 0)
        k = self.top_k
        if rows.size > k:
            kth = np.partition(total[rows], rows.size - k)[rows.size - k]
            rows = rows[total[rows] >= kth]
        ids = self.world.items.ids
        names = [ids[i] for i in cands.idx[rows].tolist()]
        keyed = zip((-total[rows]).tolist(), names, rows.tolist(), strict=True)
        rows = np.array([r for *_, r in sorted(keyed)[:k]], dtype=np.int64)
        return rows, total[rows]

    def rank(self, p: Profile, trigger: str, now: int) -> list[Ranked]:
        w = self._weights.get(trigger)
        if w is None:
            w = self._weights_of(trigger)
        cands = self.candidates(p, trigger, now, w)
        rows, scores = self.top(cands, w)
        ids = self.world.items.ids
        reasons = self.reasons(cands, rows, w)
        return [
            Ranked(ids[i], s, r)
            for i, s, r in zip(cands.idx[rows].tolist(), scores.tolist(), reasons, strict=True)
        ]

    # ---- reasons -----------------------------------------------------------------------------
    def reasons(self, cands: Candidates, rows: np.ndarray, weights: np.ndarray) -> list[str]:
        if rows.size == 0:
            return []
        items = self.world.items
        best = np.argmax(cands.features[rows] * weights, axis=1).tolist()
        top_idx = cands.idx[rows]
        seed_of: dict[tuple[int, int], int] = {}  # (item, signal) -> seed of the largest part
        k, v, sig, pos = cands.entries
        if k.size and any(b in (S_COLLAB, S_TEXT) for b in best):
            sel = np.flatnonzero(_member(k, np.sort(top_idx)))
            sel = sel[np.argsort(-v[sel], kind="stable")]  # largest part first
            _, first = np.unique(k[sel] * N_SIGNALS + sig[sel], return_index=True)
            for j in sel[first].tolist():
                seed_of[int(k[j]), int(sig[j])] = cands.seeds[pos[j]]
        out = []
        for item, signal in zip(top_idx.tolist(), best, strict=True):
            if signal in (S_REPEAT, S_BOUGHT):
                out.append("bought before")
            elif signal == S_COLLAB and (item, S_COLLAB) in seed_of:
                out.append(f"bought with {items.ids[seed_of[item, S_COLLAB]]}")
            elif signal == S_TEXT and (item, S_TEXT) in seed_of:
                out.append(f"similar to '{self._title(seed_of[item, S_TEXT])}'")
            elif signal == S_QUERY and cands.queries:
                vec = items.vectors[item]
                q = max(cands.queries, key=lambda t, vec=vec: float(vec @ t[1]) * t[2])[0]
                out.append(f"matches search '{q}'")
            elif signal == S_SIMILAR and cands.seeds:
                sims = items.vectors[cands.seeds] @ items.vectors[item]
                out.append(f"similar to '{self._title(cands.seeds[int(np.argmax(sims))])}'")
            else:
                out.append("trending")
        return out

    def _title(self, i: int) -> str:
        return self.world.items.titles[i] or self.world.items.ids[i]
