"""The ranking's report: the job's lists (offline driver) against every baseline, with ablations.

    python -m streamrec.ranking_report [--csv FILE] [--config ranking.json] [--out DIR]
        [--model DIR] [--ablations content,collaborative,repeat,trending,content-only|none]

For the job's configuration (RankingConfig defaults, tuned on the first three months only: see
streamrec/tune.py), each ablation (without content, collaborative, repeat, trending) and every
baseline of streamrec.baselines, over the whole shared file, two periods are scored:

- ``whole``: every purchase of the file;
- ``rest``: purchases from ``--score-from`` (default 2011-03-01, the end of the tuning split) on;
  lists and histories are warmed up on everything before (nothing is reset).

Metrics (NDCG@10, HR@10) at both levels of the contract's protocol (event: the list in force
before each purchase line; basket: the list in force before the order's first line), by user
history (orders before this one: 1st, 2-5, 6+), on items first seen in the 7 days before the
purchase, and on repeat (bought by the user in an earlier order) vs new-to-user items.

The job's lists come from streamrec.simulate (the job's semantics: a session-end list replaces
the list of the session's last event). Every recommender's whole-file headline and history
figures are also computed by streamrec.evaluation.Scorer on the same calls, and must agree: the
segments below are a second bookkeeping of the same protocol, checked against the reference.
Writes report.md and report.json under ``--out`` (default reports/ranking-<time>).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from operators.config import FAMILIES, RankingConfig
from streamrec import paths

K = 10
FRESH_MS = 7 * 24 * 3600 * 1000
SEGMENTS = ("all", "1st", "2-5", "6+", "fresh7d", "repeat", "new")
LEVELS = ("event", "basket")


class _Acc:
    __slots__ = ("n", "hits", "ndcg")

    def __init__(self) -> None:
        self.n = self.hits = 0
        self.ndcg = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.hits += 1
            self.ndcg += 1.0 / math.log2(rank + 1)

    def as_dict(self) -> dict[str, float | int]:
        n = self.n
        return {"ndcg": self.ndcg / n if n else 0.0, "hr": self.hits / n if n else 0.0, "n": n}


def _rank(item: str, lst: Sequence[str] | None) -> int | None:
    if lst:
        for r, it in enumerate(lst[:K], start=1):
            if it == item:
                return r
    return None


class SegmentScorer:
    """The contract's prequential protocol with periods and segments (see the module doc)."""

    def __init__(self, score_from: int) -> None:
        from streamrec.evaluation import Scorer

        self.score_from = score_from
        self.reference = Scorer(k=K)  # the project's scorer, fed the same calls
        self.acc = {
            (p, lvl, s): _Acc() for p in ("whole", "rest") for lvl in LEVELS for s in SEGMENTS
        }
        self._current: dict[str, tuple[str, ...]] = {}
        self._order: dict[str, tuple[Any, tuple[str, ...] | None, str]] = {}
        self._orders_done: dict[str, int] = {}
        self._mine: dict[str, tuple[Any, set[str]]] = {}
        self._before: dict[str, set[str]] = {}
        self._first_seen: dict[str, int] = {}

    def item(self, item_id: str, ts: int | None) -> None:
        self.reference.item(item_id, ts)
        self._first_seen.setdefault(item_id, int(ts or 0))

    def emit(self, user: str, items: Sequence[str], trigger_id=None, ts=None) -> None:
        self.reference.emit(user, items, trigger_id, ts)
        self._current[user] = tuple(items)

    def event(self, ev: Mapping[str, Any]) -> None:
        self.reference.event(ev)
        item, user, ts = ev.get("item_id"), ev["user_id"], int(ev["ts"])
        if ev.get("type") == "forget_user":  # the user starts over: no list, no orders, no history
            for per_user in (
                self._current,
                self._order,
                self._orders_done,
                self._mine,
                self._before,
            ):
                per_user.pop(user, None)
            return
        if item is not None:
            self._first_seen.setdefault(item, ts)
        if ev.get("type") != "purchase" or item is None:
            return
        current = self._current.get(user)
        key = ev.get("session_id")
        key = key if key is not None else ("__event__", ev.get("event_id"))
        o = self._order.get(user)
        if o is None or o[0] != key:
            earlier = self._orders_done.get(user, 0)
            bucket = "1st" if earlier <= 0 else ("2-5" if earlier <= 4 else "6+")
            o = self._order[user] = (key, current, bucket)
            self._orders_done[user] = earlier + 1
        mine = self._mine.get(user)
        if mine is None or mine[0] != key:
            if mine is not None:
                self._before.setdefault(user, set()).update(mine[1])
            mine = self._mine[user] = (key, set())
        repeat = item in self._before.get(user, ())
        mine[1].add(item)
        segs = ["all", o[2], "repeat" if repeat else "new"]
        if ts - self._first_seen[item] < FRESH_MS:
            segs.append("fresh7d")
        ranks = {"event": _rank(item, current), "basket": _rank(item, o[1])}
        for period in ("whole", "rest") if ts >= self.score_from else ("whole",):
            for lvl, r in ranks.items():
                for s in segs:
                    self.acc[period, lvl, s].add(r)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            p: {lvl: {s: self.acc[p, lvl, s].as_dict() for s in SEGMENTS} for lvl in LEVELS}
            for p in ("whole", "rest")
        }
        ref = self.reference.result()
        checks = [(ref[lvl][f"ndcg@{K}"], out["whole"][lvl]["all"]["ndcg"]) for lvl in LEVELS]
        for b in ("1st", "2-5", "6+"):
            for lvl in LEVELS:
                checks.append(
                    (ref["by_history"][b][lvl][f"ndcg@{K}"], out["whole"][lvl][b]["ndcg"])
                )
        worst = max(abs(a - b) for a, b in checks)
        if worst > 1e-9:
            raise AssertionError(f"segment bookkeeping disagrees with Scorer by {worst}")
        out["reference"] = {lvl: ref[lvl] for lvl in LEVELS}
        out["coverage"] = ref["coverage"]
        return out


# ---- runs ---------------------------------------------------------------------------------------
def score_job(records, embed, config: RankingConfig, score_from: int) -> dict[str, Any]:
    from operators.recommender import Recommender
    from streamrec.simulate import Simulation

    s = SegmentScorer(score_from)
    for kind, key, value in records:
        if kind == "items" and value is not None:
            s.item(value.get("item_id", key), value.get("ts"))
    sim = Simulation(Recommender(embed.dim, embed.model_id, K, config, clock=lambda: 0))

    def emit(out) -> None:
        if out.value is None:  # a forget_user tombstone
            return
        rec = json.loads(out.value)
        s.emit(rec["user_id"], [i["item_id"] for i in rec["items"]], rec["trigger_event_id"])

    t0 = time.process_time()
    n = 0
    for ends, ev, own in sim.steps(records, embed):
        for o in ends:
            emit(o)
        if ev is not None:
            n += 1
            s.event(_as_dict(ev))
        if own is not None:
            emit(own)
    res = s.result()
    res["cpu_s"] = time.process_time() - t0
    res["us_per_event_cpu"] = res["cpu_s"] / max(1, n) * 1e6
    return res


def _as_dict(ev) -> dict[str, Any]:
    return {
        "event_id": ev.event_id,
        "user_id": ev.user_id,
        "type": ev.type,
        "item_id": ev.item_id,
        "ts": ev.ts,
        "session_id": ev.session_id,
    }


def score_baselines(records, score_from: int) -> dict[str, dict[str, Any]]:
    from streamrec.baselines import LIST_EVENT_TYPES, default_baselines

    bls = default_baselines(K)
    scorers = [SegmentScorer(score_from) for _ in bls]
    for kind, _key, value in records:
        if value is None:
            continue
        if kind == "items":
            for s in scorers:
                s.item(value["item_id"], value.get("ts"))
            continue
        for b, s in zip(bls, scorers, strict=True):
            s.event(value)
            lst = b.update(value)
            if value.get("type") in LIST_EVENT_TYPES:
                s.emit(value["user_id"], lst)
    return {b.name: s.result() for b, s in zip(bls, scorers, strict=True)}


# ---- ablations ----------------------------------------------------------------------------------
CONTENT_ONLY = "content-only"


def parse_ablations(text: str) -> list[str]:
    """``--ablations``: families (each run without it), ``content-only``, or ``none``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in FAMILIES and n != CONTENT_ONLY]
    if unknown:
        raise SystemExit(
            f"ranking_report: unknown ablation(s) {unknown}; known: {list(FAMILIES)}, "
            f"{CONTENT_ONLY}, none"
        )
    return names


def ablation_config(config: RankingConfig, ablation: str) -> RankingConfig:
    if ablation == CONTENT_ONLY:
        return config.without(*(f for f in FAMILIES if f != "content"))
    return config.without(ablation)


def ablation_label(ablation: str) -> str:
    return "content only" if ablation == CONTENT_ONLY else f"without {ablation}"


# ---- report -------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    run = report["run"]
    rows = [("**job**", report["job"])]
    rows += [(f"job {ablation_label(a)}", r) for a, r in report["ablations"].items()]
    rows += [(name, r) for name, r in report["baselines"].items()]
    lines = [
        "# Ranking report (offline driver: the job's semantics, no Kafka or Flink)",
        "",
        f"Data: `{run['csv']}`, {run['events']:,} purchase events. Model: `{run['model']}`. "
        f"K = {K}. Configuration: RankingConfig defaults (tuned on {run['tuned_on'][0]} to "
        f"{run['tuned_on'][1]} only), `{run['config_sha']}`. "
        f"Rest = purchases from {run['score_from']} on, warmed up on everything before.",
        "",
    ]
    for period, title in (("whole", "Whole file"), ("rest", f"Rest (from {run['score_from']})")):
        lines += [
            f"## {title}: NDCG@{K} (HR@{K})",
            "",
            "| recommender | event | basket | event 1st | event 2-5 | event 6+ | basket 2-5 | "
            "basket 6+ | event fresh 7d | event repeat | event new | basket repeat | "
            "basket new |",
            "|---" * 13 + "|",
        ]
        for name, r in rows:
            e, b = r[period]["event"], r[period]["basket"]

            def c(x):
                return f"{x['ndcg']:.4f}"

            lines.append(
                f"| {name} | {c(e['all'])} ({e['all']['hr']:.3f}) | "
                f"{c(b['all'])} ({b['all']['hr']:.3f}) | {c(e['1st'])} | {c(e['2-5'])} | "
                f"{c(e['6+'])} | {c(b['2-5'])} | {c(b['6+'])} | {c(e['fresh7d'])} | "
                f"{c(e['repeat'])} | {c(e['new'])} | {c(b['repeat'])} | {c(b['new'])} |"
            )
        n = report["job"][period]["event"]
        lines += [
            "",
            f"n: {n['all']['n']:,} purchases; 1st {n['1st']['n']:,}, 2-5 {n['2-5']['n']:,}, "
            f"6+ {n['6+']['n']:,}; fresh 7d {n['fresh7d']['n']:,}; repeat "
            f"{n['repeat']['n']:,}, new {n['new']['n']:,}. (Basket level in the 1st bucket is 0 "
            "for everyone: no list is in force before a user's first order.)",
            "",
        ]
    lines += [
        "- event: each purchase line against the user's latest list before it; basket: every "
        "line of an order against the list in force before its first line; a purchase with "
        "no list in force is a miss.",
        "- fresh 7d: the item was first seen (catalog ts or first event) in the 7 days before "
        "the purchase; repeat: the user bought the item in an earlier order; new: not.",
        f"- whole-file headline and history figures agree with streamrec.evaluation.Scorer "
        f"(checked in the run); job CPU time {report['job']['us_per_event_cpu']:.0f} us/event.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import hashlib

    from threadpoolctl import threadpool_limits

    from streamrec.evaluate import load_records
    from streamrec.retail import parse_ts
    from streamrec.simulate import cached_embedder
    from streamrec.tune import TUNE_END, TUNE_START

    p = argparse.ArgumentParser(prog="python -m streamrec.ranking_report", description=__doc__)
    p.add_argument("--csv", type=Path, default=paths.shared_data_file())
    p.add_argument("--config", type=Path, default=None, help="a RankingConfig JSON file")
    p.add_argument("--score-from", default=TUNE_END, help="first day of the rest (YYYY-MM-DD)")
    p.add_argument(
        "--ablations",
        default=",".join(FAMILIES),
        help="runs besides the job, comma-separated: a signal family (the job without it), "
        "'content-only' (every family but content off), or 'none' (default: every family)",
    )
    p.add_argument("--no-ablations", action="store_true", help="same as --ablations none")
    p.add_argument("--model", default=None, help="the encoder (default: the job's default)")
    p.add_argument(
        "--baselines-from",
        type=Path,
        default=None,
        help="reuse the baselines of an earlier report.json (same file and --score-from)",
    )
    p.add_argument("--baselines-only", action="store_true", help="score the baselines only")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if not args.csv.exists():
        print(f"ranking_report: no such file {args.csv}", file=sys.stderr)
        return 2
    threadpool_limits(1, user_api="blas")
    config = RankingConfig.load(args.config) if args.config else RankingConfig()
    score_from = parse_ts(args.score_from + " 00:00:00")
    out = args.out or paths.PROJECT_ROOT / "reports" / f"ranking-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(args.csv)
    ablations = [] if args.no_ablations else parse_ablations(args.ablations)
    embed = cached_embedder(records, model=args.model) if args.model else cached_embedder(records)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {
        "run": {
            "csv": str(args.csv),
            "events": sum(1 for k, _, _ in records if k == "events"),
            "model": embed.model_id,
            "score_from": args.score_from,
            "tuned_on": [TUNE_START, TUNE_END],
            "config": config.to_dict(),
            "config_sha": hashlib.sha256(config.to_json().encode()).hexdigest()[:12],
        },
        "ablations": {},
    }
    if args.baselines_only:
        log("ranking_report: baselines")
        report["baselines"] = score_baselines(records, score_from)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        log(f"ranking_report: {out}")
        return 0
    log("ranking_report: the job's lists")
    report["job"] = score_job(records, embed, config, score_from)
    for ablation in ablations:
        log(f"ranking_report: {ablation_label(ablation)}")
        report["ablations"][ablation] = score_job(
            records, embed, ablation_config(config, ablation), score_from
        )
    if args.baselines_from:
        earlier = json.loads(args.baselines_from.read_text())
        same = (earlier["run"]["csv"], earlier["run"]["score_from"]) == (
            str(args.csv),
            args.score_from,
        )
        if not same:
            print("ranking_report: --baselines-from is of another file or period", file=sys.stderr)
            return 2
        report["baselines"] = earlier["baselines"]
        report["run"]["baselines_from"] = str(args.baselines_from)
    else:
        log("ranking_report: baselines")
        report["baselines"] = score_baselines(records, score_from)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    (out / "report.md").write_text(md)
    print(md)
    log(f"ranking_report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
