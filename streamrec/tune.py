"""Tuning the ranking on the first three months of the shared file, reproducibly.

    python -m streamrec.tune                      # search, print the tuned RankingConfig JSON
    python -m streamrec.tune --out tuned.json     # and write it
    python -m streamrec.tune --weights-only --model EXPORT --out mix.json
                                                  # only the mixes' weights, for another encoder

Split: only records with 2010-12-01 <= ts < 2011-03-01 (``TUNE_END``) are read; every purchase
in them is scored (prequential protocol of CONTRACT.md, event and basket level). Nothing after
``TUNE_END`` is ever looked at. The result is frozen in operators/config.py's defaults;
streamrec/ranking_report.py reports on the rest (warm-up on the first three months, scored
from 2011-03-01) and on the whole file.

Method (deterministic, no random draws):

1. Structural settings (decays, normalisation, seeds: things that change the candidates) are
   searched one at a time over ``SPACE``, in order, from ``START`` (hand-set values), two
   passes (coordinate search; the second tries the neighbours of each chosen value). Each
   trial runs the job's semantics (streamrec.simulate) over the split once and records, for
   every purchase, the candidate features of the list in force (:class:`Dataset`).
2. For each trial the two mixes' weights are fitted on those features by coordinate descent
   over ``WEIGHT_GRID`` (re-ranking the recorded candidates exactly as operators.ranking does,
   without re-running the stream): the event mix serves the event level, the session-end mix
   the basket level.
3. Objective: event NDCG@10 / best baseline's event NDCG@10 + basket NDCG@10 / best
   baseline's basket NDCG@10, both measured on the same split with streamrec.baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from operators.config import SIGNALS, RankingConfig
from operators.events import SCORED_TYPES
from operators.ranking import Candidates
from operators.recommender import Recommender
from streamrec import paths
from streamrec.simulate import Embed, Record, Simulation, embed_dim

TUNE_START = "2010-12-01"
TUNE_END = "2011-03-01"  # exclusive: nothing from here on is read while tuning
K = 10
FRESH_MS = 7 * 24 * 3600 * 1000

# where the search starts: hand-set values before any tuning (RankingConfig's fields not named
# here keep their defaults, which are the frozen result of this search)
START: dict[str, Any] = {
    "world": {
        "co_half_life_days": 90.0,
        "co_neighbours": 40,
        "co_alpha": 0.5,
        "co_shrink": 0.0,
        "order_distance_decay": 1.0,
        "cross_weight": 0.0,
        "trending_half_life_days": 7.0,
        "trending_dedup_days": 7.0,
    },
    "profile": {"repeat_half_life_days": 60.0},
    "event": {
        "collab": 1.0, "repeat": 0.5, "trending": 0.05, "text": 0.1, "similar": 0.0,
        "query": 1.0, "bought": 0.0, "position_decay": 0.8, "past_orders": 0, "max_seeds": 20,
        "text_rarity": 10.0,
    },
    "session_end": {
        "collab": 0.3, "repeat": 1.0, "trending": 0.1, "text": 0.05, "similar": 0.0,
        "query": 1.0, "bought": 0.0, "position_decay": 1.0, "past_orders": 2, "max_seeds": 20,
        "text_rarity": 10.0,
    },
}  # fmt: skip

# structural settings, searched one at a time in this order; the first pass tries every value,
# later passes the values next to the current one
SPACE: list[tuple[str, list[Any]]] = [
    ("event.position_decay", [0.15, 0.3, 0.45, 0.6, 0.8]),
    ("world.order_distance_decay", [0.4, 0.6, 0.8, 1.0]),
    ("world.co_alpha", [0.5, 0.6, 0.7, 0.8]),
    ("world.co_shrink", [0.0, 2.0, 5.0]),
    ("world.co_neighbours", [40, 80]),
    ("event.max_seeds", [5, 10, 20]),
    ("profile.repeat_half_life_days", [60.0, 180.0, 1000.0]),
    ("world.trending_half_life_days", [1.0, 2.0, 7.0]),
    ("world.trending_dedup_days", [0.0, 7.0]),
    ("session_end.past_orders", [0, 2]),
    ("world.cross_weight", [0.0, 0.3]),
    ("event.text_rarity", [3.0, 10.0, 30.0]),
]
WEIGHT_GRID = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0]


# ---- recording candidate features ---------------------------------------------------------------
class Collector(Simulation):
    """The job's order of calls; each list is its Candidates instead of record bytes."""

    def on_event(self, profile, event, query_vec):
        profile = self.rec.update(profile, event, query_vec)
        if profile is None or event.type not in SCORED_TYPES:
            return profile, None
        return profile, self.rec.ranker.candidates(profile, "event", event.ts)

    def on_session_end(self, profile, at, refresh=0):
        return profile, self.rec.ranker.candidates(profile, "session_end", at)


@dataclass
class Dataset:
    """Candidate features of every list some purchase was scored against, and the purchases."""

    feats: np.ndarray  # [rows, signals] of the lists that hold a purchase's item
    idrank: np.ndarray  # [rows] rank of the row's item id in id order (the tie-break)
    row_mix: np.ndarray  # [rows] 0: event mix, 1: session-end mix
    n: int  # purchases scored
    # per level ("event", "basket"): (target row or -1, comparison rows, their pair)
    levels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    bucket: np.ndarray  # [n] history bucket 0: 1st order, 1: 2-5, 2: 6+
    fresh: np.ndarray  # [n] item first seen in the 7 days before the purchase
    repeat: np.ndarray  # [n] the user bought the item in an earlier order


def _bucket(earlier: int) -> int:
    return 0 if earlier <= 0 else (1 if earlier <= 4 else 2)


def collect(records: Iterable[Record], embed: Embed, config: RankingConfig) -> Dataset:
    """Run the job's semantics over ``records``; keep what scoring every purchase needs."""
    sim = Collector(Recommender(embed_dim(embed), "tune", K, config, clock=lambda: 0))
    kept: list[Candidates] = []
    feats: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    mixes: list[int] = []

    def ref(c: Candidates | None) -> int:
        if c is None:
            return -1
        if c.ref < 0:
            c.ref = len(kept)
            kept.append(c)
            feats.append(c.features.astype(np.float32))
            idx.append(c.idx)
            mixes.append(0 if c.trigger == "event" else 1)
        return c.ref

    def row(c: Candidates | None, target: int | None) -> int:
        if c is None or target is None or c.idx.size == 0:
            return -1
        r = int(np.searchsorted(c.idx, target))
        return r if r < c.idx.size and c.idx[r] == target else -1

    in_force: dict[str, Candidates] = {}
    open_order: dict[str, tuple[Any, Candidates | None, int]] = {}
    orders_done: dict[str, int] = {}
    bought_before: dict[str, set[str]] = {}
    this_order: dict[str, tuple[Any, set[str]]] = {}
    first_seen: dict[str, int] = {}
    pairs: list[tuple[int, int, int, int, int, bool, bool]] = []

    def first_sight(records):
        for rec in records:
            kind, key, value = rec
            if kind == "items" and value is not None:
                first_seen.setdefault(value.get("item_id", key), int(value.get("ts") or 0))
            yield rec

    for ends, ev, own in sim.steps(first_sight(records), embed):
        for o in ends:
            in_force[o.user_id] = o.value
        if ev is None:
            continue
        user = ev.user_id
        if ev.item_id is not None:
            first_seen.setdefault(ev.item_id, ev.ts)
        if ev.type == "purchase" and ev.item_id is not None:
            cur = in_force.get(user)
            key = ev.session_id if ev.session_id is not None else ("__event__", ev.event_id)
            o = open_order.get(user)
            if o is None or o[0] != key:
                earlier = orders_done.get(user, 0)
                o = open_order[user] = (key, cur, _bucket(earlier))
                orders_done[user] = earlier + 1
            t = sim.world.items.index.get(ev.item_id)
            mine = this_order.get(user)
            if mine is None or mine[0] != key:
                if mine is not None:
                    bought_before.setdefault(user, set()).update(mine[1])
                mine = this_order[user] = (key, set())
            repeat = ev.item_id in bought_before.get(user, ())
            mine[1].add(ev.item_id)
            fresh = ev.ts - first_seen[ev.item_id] < FRESH_MS
            pairs.append((ref(cur), row(cur, t), ref(o[1]), row(o[1], t), o[2], fresh, repeat))
        if ev.type == "forget_user":  # the user starts over (as the protocol's Scorer does)
            for per_user in (in_force, open_order, orders_done, this_order, bought_before):
                per_user.pop(user, None)
        if own is not None:
            in_force[user] = own.value

    sizes = np.array([f.shape[0] for f in feats], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(sizes)])
    ids = sim.world.items.ids
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    all_idx = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    p = np.array(pairs, dtype=np.int64).reshape(-1, 7)
    # only the rows of lists that hold a purchase's item can change a metric: keep those
    per_level = {}
    for name, (lc, rc) in {"event": (0, 1), "basket": (2, 3)}.items():
        lists, rows = p[:, lc], p[:, rc]
        which = np.flatnonzero((lists >= 0) & (rows >= 0))
        seg = sizes[lists[which]]
        offs = np.arange(int(seg.sum())) - np.repeat(np.cumsum(seg) - seg, seg)
        cmp_rows = np.repeat(start[lists[which]], seg) + offs
        per_level[name] = (
            which,
            start[lists[which]] + rows[which],
            cmp_rows,
            np.repeat(which, seg),
        )
    needed = np.unique(np.concatenate([v[2] for v in per_level.values()] + [np.zeros(0, int)]))
    levels = {}
    for name, (which, target_rows, cmp_rows, cmp_pair) in per_level.items():
        target = np.full(len(pairs), -1, dtype=np.int64)
        target[which] = np.searchsorted(needed, target_rows)
        levels[name] = (target, np.searchsorted(needed, cmp_rows), cmp_pair)
    all_feats = np.concatenate(feats) if feats else np.zeros((0, len(SIGNALS)), np.float32)
    return Dataset(
        feats=all_feats[needed].astype(np.float64),
        idrank=rank[all_idx[needed]],
        row_mix=np.repeat(np.array(mixes, dtype=np.int8), sizes)[needed],
        n=len(pairs),
        levels=levels,
        bucket=p[:, 4].astype(np.int8),
        fresh=p[:, 5].astype(bool),
        repeat=p[:, 6].astype(bool),
    )


# ---- re-ranking recorded candidates -------------------------------------------------------------
def weight_vector(config: RankingConfig, trigger: str) -> np.ndarray:
    mix = config.mix(trigger)
    w = np.array([getattr(mix, s) if config.enabled(s) else 0.0 for s in SIGNALS])
    if config.enabled("trending"):
        w[SIGNALS.index("trending")] = max(w[SIGNALS.index("trending")], config.trending_floor)
    return w


def gains(ds: Dataset, w_event: np.ndarray, w_session: np.ndarray, k: int = K) -> dict:
    """NDCG@k gain of every purchase at both levels under these weights (as ranking.top)."""
    f = ds.feats
    total = np.where(ds.row_mix == 0, f @ w_event, f @ w_session).round(6)
    out = {}
    for name, (target, cmp_rows, cmp_pair) in ds.levels.items():
        ok = target >= 0
        tt = np.where(ok, total[np.maximum(target, 0)], 0.0)
        tr = ds.idrank[np.maximum(target, 0)]
        t = total[cmp_rows]
        better = (t > tt[cmp_pair]) | ((t == tt[cmp_pair]) & (ds.idrank[cmp_rows] < tr[cmp_pair]))
        rank = 1 + np.bincount(cmp_pair, weights=better, minlength=ds.n)
        hit = ok & (tt > 0) & (rank <= k)
        out[name] = np.where(hit, 1.0 / np.log2(rank + 1.0), 0.0)
    return out


def summary(ds: Dataset, g: dict) -> dict:
    def mean(x, mask=None):
        x = x if mask is None else x[mask]
        return float(x.mean()) if x.size else 0.0

    out = {lvl: mean(g[lvl]) for lvl in ("event", "basket")}
    out["by_history"] = {
        b: {lvl: mean(g[lvl], ds.bucket == i) for lvl in ("event", "basket")}
        for i, b in enumerate(("1st", "2-5", "6+"))
    }
    return out


def optimise_weights(
    ds: Dataset, config: RankingConfig, base: tuple[float, float], sweeps: int = 2
) -> tuple[RankingConfig, float, dict]:
    """Coordinate descent over each mix's weights on WEIGHT_GRID (ties keep the current)."""
    w = {t: weight_vector(config, t) for t in ("event", "session_end")}
    used = np.flatnonzero(ds.feats.any(axis=0)).tolist() if ds.feats.size else []
    free = [s for s in SIGNALS if config.enabled(s) and SIGNALS.index(s) in used]

    def objective() -> tuple[float, dict]:
        s = summary(ds, gains(ds, w["event"], w["session_end"]))
        return s["event"] / base[0] + s["basket"] / base[1], s

    best, best_s = objective()
    for _ in range(sweeps):
        improved = False
        for trigger in ("event", "session_end"):
            for name in free:
                i = SIGNALS.index(name)
                keep = w[trigger][i]
                for value in WEIGHT_GRID:
                    w[trigger][i] = value
                    j, s = objective()
                    if j > best + 1e-9:
                        best, best_s, keep, improved = j, s, value, True
                w[trigger][i] = keep
        if not improved:
            break
    mixes = {
        t: dataclasses.replace(config.mix(t), **{s: float(w[t][SIGNALS.index(s)]) for s in free})
        for t in ("event", "session_end")
    }
    return dataclasses.replace(config, **mixes), best, best_s


# ---- the structural search ----------------------------------------------------------------------
def with_setting(config: RankingConfig, path: str, value: Any) -> RankingConfig:
    part, name = path.split(".")
    return dataclasses.replace(
        config, **{part: dataclasses.replace(getattr(config, part), **{name: value})}
    )


def get_setting(config: RankingConfig, path: str) -> Any:
    part, name = path.split(".")
    return getattr(getattr(config, part), name)


def baseline_bars(records: list[Record]) -> tuple[float, float, dict]:
    """Best baseline NDCG@10 at event and basket level on ``records`` (and all of them)."""
    from streamrec.baselines import run_baselines

    res = run_baselines(records, k=K)
    ev = max(r["event"][f"ndcg@{K}"] for r in res.values())
    bk = max(r["basket"][f"ndcg@{K}"] for r in res.values())
    return ev, bk, res


def logged_bars(records: list[Record], log=print) -> tuple[float, float]:
    """(event, basket) best baseline NDCG@10 on ``records``, logged: the objective's scale."""
    ev, bk, _ = baseline_bars(records)
    log(f"best baselines on the split: event {ev:.4f}, basket {bk:.4f}")
    return ev, bk


def start_config() -> RankingConfig:
    return RankingConfig.from_dict(START)


def tune(
    records: list[Record],
    embed: Embed,
    start: RankingConfig | None = None,
    passes: int = 2,
    log=print,
    progress=None,
) -> tuple[RankingConfig, dict]:
    """Coordinate search from ``start`` (default START) over SPACE; returns the best config."""
    config = start or start_config()
    base = logged_bars(records, log)
    trials: dict[str, tuple[float, RankingConfig, dict]] = {}

    def trial(cfg: RankingConfig, sweeps: int = 2) -> tuple[float, RankingConfig, dict]:
        key = f"{cfg.to_json()}/{sweeps}"
        if key not in trials:
            t0 = time.perf_counter()
            ds = collect(records, embed, cfg)
            fitted, j, s = optimise_weights(ds, cfg, base, sweeps=sweeps)
            trials[key] = (j, fitted, s)
            log(
                f"  J {j:.4f} event {s['event']:.4f} basket {s['basket']:.4f} "
                f"({time.perf_counter() - t0:.0f}s)"
            )
        return trials[key]

    log("start")
    best_j, config, best_s = trial(config)
    for n in range(passes):
        changed = False
        for path, values in SPACE:
            current = get_setting(config, path)
            if n > 0 and current in values:  # later passes: the neighbours of the current value
                at = values.index(current)
                values = values[max(0, at - 1) : at + 2]
            for value in values:
                if value == current:
                    continue
                log(f"pass {n + 1}: {path} = {value} (now {current})")
                j, fitted, s = trial(with_setting(config, path, value))
                if j > best_j + 1e-9:
                    best_j, config, best_s, changed = j, fitted, s, True
                    current = value
                    log(f"  -> kept {path} = {value}")
                    if progress is not None:  # the best so far, for a run cut short
                        progress(config, best_j)
        if not changed:
            break
    log("final weights (more sweeps)")
    best_j, config, best_s = trial(config, sweeps=4)
    return config, {
        "objective": best_j,
        "split": best_s,
        "baselines": {"event": base[0], "basket": base[1]},
        "trials": len(trials),
    }


def refit_weights(
    records: list[Record],
    embed: Embed,
    config: RankingConfig | None = None,
    log=print,
) -> tuple[RankingConfig, dict]:
    """``config`` (default: the frozen defaults) with both mixes' weights refitted on
    ``records``, its structure kept: what another encoder's features need."""
    config = config or RankingConfig()
    ev, bk = logged_bars(records, log)
    ds = collect(records, embed, config)
    before = summary(
        ds, gains(ds, weight_vector(config, "event"), weight_vector(config, "session_end"))
    )
    log(f"weights as they are: event {before['event']:.4f} basket {before['basket']:.4f}")
    fitted, j, s = optimise_weights(ds, config, (ev, bk), sweeps=4)
    log(f"refitted: event {s['event']:.4f} basket {s['basket']:.4f}")
    info = {
        "objective": j,
        "split": s,
        "before_refit": before,
        "baselines": {"event": ev, "basket": bk},
        "model": getattr(embed, "model_id", None),
    }
    return fitted, info


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    from streamrec.evaluate import load_records
    from streamrec.retail import parse_ts
    from streamrec.simulate import cached_embedder

    p = argparse.ArgumentParser(prog="python -m streamrec.tune", description=__doc__.split("\n")[0])
    p.add_argument("--csv", type=Path, default=paths.shared_data_file())
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write the tuned config JSON here")
    p.add_argument("--model", default=None, help="the encoder (default: the job's default)")
    p.add_argument(
        "--weights-only",
        action="store_true",
        help="refit only the two mixes' weights of the current defaults (one pass over the "
        "split, no structural search): the mix for another encoder",
    )
    args = p.parse_args(argv)
    threadpool_limits(1, user_api="blas")
    records = load_records(args.csv, start=TUNE_START, end=TUNE_END)
    last = max(v["ts"] for k, _, v in records if k == "events")
    if last >= parse_ts(TUNE_END + " 00:00:00"):  # never: load_records cuts at TUNE_END
        raise SystemExit(f"tune: data after {TUNE_END} in the tuning split")
    embed = cached_embedder(records, model=args.model) if args.model else cached_embedder(records)
    if args.weights_only:
        config, info = refit_weights(records, embed, log=lambda m: print(m, flush=True))
        return _write(config, info, args.out)

    def progress(cfg: RankingConfig, j: float) -> None:
        if args.out:
            best = {"config": cfg.to_dict(), "objective": j, "partial": True}
            args.out.with_suffix(".partial.json").write_text(json.dumps(best, indent=1))

    config, info = tune(
        records, embed, passes=args.passes, log=lambda m: print(m, flush=True), progress=progress
    )
    return _write(config, info, args.out)


def _write(config: RankingConfig, info: dict, out_file: Path | None) -> int:
    out = {"config": config.to_dict(), **info, "split": [TUNE_START, TUNE_END]}
    text = json.dumps(out, indent=1, sort_keys=True)
    print(text)
    if out_file:
        out_file.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
