"""The scorer against a brute-force reference of the contract's protocol, on random streams.

The reference below is written from CONTRACT.md ("Evaluation protocol") and the definitions in
streamrec/evaluation.py's docstring, without the scorer's incremental bookkeeping: for every
purchase it looks back over the whole stream (O(n^2)). Random streams have several users,
orders of several lines with equal timestamps, users interleaved (also inside an order),
``forget_user``, session-end lists, redelivered duplicates, records that match nothing,
tombstones, lists longer than K, empty lists and a random ``score_from``.
"""

from __future__ import annotations

import math
import random

import pytest

from streamrec.baselines import default_baselines, run_baselines
from streamrec.evaluation import score_records

TS = 1_291_190_000_000
MIN = 60_000
DAY = 24 * 3600 * 1000
K = 5
ITEMS = [f"i{j}" for j in range(9)]
LIST_TYPES = ("view", "click", "add_to_cart", "purchase", "search")
KIND_RANK = {"event": 0, "session_end": 1}


# ---- random streams -------------------------------------------------------------------------
def random_stream(rng: random.Random, n_users: int = 4, steps: int = 40) -> list[dict]:
    users = [f"u{j}" for j in range(n_users)]
    events: list[dict] = []
    last_order: dict[str, str] = {}
    n = 0
    t = TS

    def ev(user, typ, **kw):
        nonlocal n
        n += 1
        # ids in no particular order and not contiguous
        e = {"event_id": f"x{rng.randrange(10**9)}-{n}", "user_id": user, "type": typ, "ts": t}
        e.update(kw)
        events.append(e)

    for step in range(steps):
        user = rng.choice(users)
        t += rng.choice([0, 0, MIN, 45 * MIN, DAY, DAY, 7 * DAY])
        roll = rng.random()
        if roll < 0.45:  # an order of 1-4 lines at one timestamp
            if rng.random() < 0.15:
                ev(user, "purchase", item_id=rng.choice(ITEMS))  # no session_id
                continue
            order = last_order[user] = f"o{step}"
            for _ in range(rng.randint(1, 4)):
                ev(user, "purchase", item_id=rng.choice(ITEMS), session_id=order)
                if rng.random() < 0.3:  # another user's event inside the order
                    ev(rng.choice(users), "view", item_id=rng.choice(ITEMS))
                if rng.random() < 0.15:  # the user's own view inside the order
                    ev(user, "view", item_id=rng.choice(ITEMS))
        elif roll < 0.75:
            typ = rng.choice(["view", "click", "add_to_cart", "search"])
            if typ == "search":
                ev(user, typ, query="lantern")
            else:
                ev(user, typ, item_id=rng.choice(ITEMS))
        elif roll < 0.82:
            ev(user, "forget_user")
        elif user in last_order:  # the last order again (continued, or A B A)
            ev(user, "purchase", item_id=rng.choice(ITEMS), session_id=last_order[user])
    return events


def random_records(rng: random.Random, events: list[dict]) -> list[dict | None]:
    def lst():
        return rng.sample(ITEMS, rng.randint(0, 7))

    def rec(e, trigger=None, user=None):
        r = {
            "user_id": user or e["user_id"],
            "trigger_event_id": e["event_id"],
            "items": [{"item_id": i, "score": 1.0, "reason": "r"} for i in lst()],
        }
        if trigger is not None or rng.random() < 0.5:
            r["trigger"] = trigger or "event"
        return r

    records: list[dict | None] = []
    for e in events:
        if e["type"] in LIST_TYPES and rng.random() < 0.85:
            records.append(rec(e))
        if e["type"] in LIST_TYPES and rng.random() < 0.25:
            records.append(rec(e, "session_end"))
        if e["type"] == "forget_user":
            records.append(None)  # tombstone
    for r in rng.sample([r for r in records if r], k=len(records) // 6):
        records.append(dict(r, items=[{"item_id": i} for i in lst()]))  # redelivered, replaces
    if events:
        e = rng.choice(events)
        records.append(rec(e, user="someone-else"))  # wrong user: unmatched
        records.append(dict(rec(e), trigger_event_id="no-such-event"))
    # arrival order: mostly the protocol's, with a few records moved later
    for _ in range(len(records) // 8):
        records.append(records.pop(rng.randrange(len(records))))
    return records


def random_items(rng: random.Random, events: list[dict]) -> dict[str, int]:
    """Catalog first-seen times for some items (others are first seen in an event)."""
    days = (events[-1]["ts"] - TS) // DAY if events else 1
    return {it: TS + rng.randint(-10, days) * DAY for it in ITEMS if rng.random() < 0.5}


# ---- the brute-force reference --------------------------------------------------------------
def reference(events, records, items, k, score_from):
    """Per scored purchase: which lists score it and its segments, by looking back."""
    final = {}
    for r in records:  # the last arrival of a (trigger, kind) wins
        if r is not None:
            final[(r["trigger_event_id"], r.get("trigger") or "event")] = r
    pos = {e["event_id"]: i for i, e in enumerate(events)}

    def first_seen(item, i):
        if item in items:
            return items[item]
        return min(e["ts"] for e in events[: i + 1] if e.get("item_id") == item)

    def in_force(user, before, forgot):
        """Latest list of ``user`` triggered by one of their events in (forgot, before)."""
        best = None
        for (tid, kind), r in final.items():
            j = pos.get(tid)
            if j is None or r["user_id"] != user or events[j]["user_id"] != user:
                continue
            if forgot < j < before and kind in KIND_RANK:
                key = (j, KIND_RANK[kind])
                if best is None or key > best[0]:
                    best = (key, (tid, kind), [x["item_id"] for x in r["items"]])
        return (None, None) if best is None else best[1:]

    def rank(item, lst):
        if lst is not None and item in lst[:k]:
            return lst[:k].index(item) + 1
        return None

    out = []
    for i, p in enumerate(events):
        if p["type"] != "purchase":
            continue
        u = p["user_id"]
        mine = [j for j in range(i) if events[j]["user_id"] == u]
        forgot = max((j for j in mine if events[j]["type"] == "forget_user"), default=-1)
        buys = [j for j in mine if j > forgot and events[j]["type"] == "purchase"]
        # the order's first line: walk back over the user's purchases with the same session
        first = i
        for j in reversed(buys):
            if p.get("session_id") is None or events[j].get("session_id") != p["session_id"]:
                break
            first = j
        earlier = [j for j in buys if j < first]
        n_orders = sum(
            1
            for a, j in enumerate(earlier)
            if a == 0
            or events[j].get("session_id") is None
            or events[j].get("session_id") != events[earlier[a - 1]].get("session_id")
        )
        if score_from is not None and p["ts"] < score_from:
            continue
        ev_src, ev_list = in_force(u, i, forgot)
        bk_src, bk_list = in_force(u, first, forgot)
        out.append(
            {
                "i": i,
                "first": first,
                "event_src": ev_src,
                "basket_src": bk_src,
                "event_rank": rank(p["item_id"], ev_list),
                "basket_rank": rank(p["item_id"], bk_list),
                "split": "same_order"
                if ev_src is not None and pos[ev_src[0]] >= first
                else "before_order",
                "history": "1st" if n_orders == 0 else "2-5" if n_orders <= 4 else "6+",
                "item_age": "first_seen_7d"
                if p["ts"] - 7 * DAY < first_seen(p["item_id"], i)
                else "older",
                "repeat": "repeat"
                if any(events[j]["item_id"] == p["item_id"] for j in earlier)
                else "new_to_user",
            }
        )
    return out


def metrics(ranks, k):
    n = len(ranks)
    hits = [r for r in ranks if r is not None]
    return {
        f"hr@{k}": len(hits) / n if n else 0.0,
        f"ndcg@{k}": sum(1 / math.log2(r + 1) for r in hits) / n if n else 0.0,
        f"mrr@{k}": sum(1 / r for r in hits) / n if n else 0.0,
        "n": n,
    }


def assert_same(got, want):
    assert got["n"] == want["n"]
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


# ---- the tests ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(300))
def test_scorer_matches_the_brute_force_reference(seed):
    rng = random.Random(seed)
    events = random_stream(rng, n_users=rng.randint(1, 5), steps=rng.randint(5, 45))
    records = random_records(rng, events)
    items = random_items(rng, events)
    score_from = None
    if events and rng.random() < 0.4:
        score_from = rng.choice(events)["ts"]
    want = reference(events, records, items, K, score_from)
    got = score_records(events, records, items=items, k=K, score_from=score_from, trace=True)

    # the same lists score the same purchases
    assert len(got["scored"]) == len(want)
    for s, w in zip(got["scored"], want, strict=True):
        assert s.event_id == events[w["i"]]["event_id"]
        assert s.event_list == w["event_src"]
        assert s.basket_list == w["basket_src"]
        assert (s.event_rank, s.basket_rank) == (w["event_rank"], w["basket_rank"])

    # no list in force was triggered at or after what it scores, nor by another user
    pos = {e["event_id"]: i for i, e in enumerate(events)}
    for s, w in zip(got["scored"], want, strict=True):
        if s.event_list is not None:
            assert events[pos[s.event_list[0]]]["user_id"] == s.user_id
            assert pos[s.event_list[0]] < w["i"]
        if s.basket_list is not None:
            assert events[pos[s.basket_list[0]]]["user_id"] == s.user_id
            assert pos[s.basket_list[0]] < w["first"] <= w["i"]

    # the same figures, overall, split and per segment, at both levels
    for level in ("event", "basket"):
        assert_same(got[level], metrics([w[f"{level}_rank"] for w in want], K))
    for split in ("same_order", "before_order"):
        ranks = [w["event_rank"] for w in want if w["split"] == split]
        assert_same(got["event_split"][split], metrics(ranks, K))
    for fam, segs in got["segments"].items():
        for seg, levels in segs.items():
            for level, m in levels.items():
                ranks = [w[f"{level}_rank"] for w in want if w[fam] == seg]
                assert_same(m, metrics(ranks, K))
    assert got["n_purchases_without_list"] == sum(w["event_src"] is None for w in want)


def test_random_streams_exercise_every_case():
    """The generator makes the cases the reference test is meant to cover."""
    seen = set()
    for seed in range(300):
        rng = random.Random(seed)
        events = random_stream(rng, n_users=rng.randint(1, 5), steps=rng.randint(5, 45))
        records = random_records(rng, events)
        want = reference(events, records, random_items(rng, events), K, None)
        seen |= {w["split"] for w in want} | {w["history"] for w in want}
        seen |= {w["repeat"] for w in want} | {w["item_age"] for w in want}
        seen |= {w["event_src"][1] for w in want if w["event_src"]}
        seen |= {"forget" for e in events if e["type"] == "forget_user"}
        seen |= {"hit" for w in want if w["event_rank"]} | {
            "miss" for w in want if not w["event_rank"]
        }
        keys = [(r["trigger_event_id"], r.get("trigger")) for r in records if r]
        seen |= {"duplicate"} if len(keys) > len(set(keys)) else set()
    assert seen >= {
        "same_order", "before_order", "1st", "2-5", "6+", "repeat", "new_to_user",
        "first_seen_7d", "older", "event", "session_end", "forget", "hit", "miss", "duplicate",
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_baselines_and_job_lists_are_scored_by_the_same_code(seed):
    """A baseline's lists written out as job records and scored by ``score_records`` give the
    figures ``run_baselines`` gives for it."""
    rng = random.Random(1000 + seed)
    events = [e for e in random_stream(rng, n_users=5, steps=60) if e.get("ts") is not None]
    items = random_items(rng, events)
    stream = [("items", it, {"item_id": it, "ts": ts}) for it, ts in sorted(items.items())]
    stream += [("events", e["user_id"], e) for e in events]
    score_from = events[len(events) // 3]["ts"] if seed % 2 else None

    direct = run_baselines(stream, default_baselines(K), k=K, score_from=score_from)
    for b in default_baselines(K):
        records = []
        for e in events:
            lst = b.update(e)
            if e["type"] in LIST_TYPES:
                records.append(
                    {
                        "user_id": e["user_id"],
                        "trigger_event_id": e["event_id"],
                        "trigger": "event",
                        "items": [{"item_id": i, "score": 0.0} for i in lst],
                    }
                )
        got = score_records(events, records, items=items, k=K, score_from=score_from)
        assert got["n_records_unmatched"] == 0
        for key in (
            "n_records",
            "n_records_duplicate",
            "n_records_refreshed",
            "n_records_unmatched",
        ):
            got.pop(key)
        got.pop("n_records_out_of_user_order")
        assert got == direct[b.name]


def test_duplicate_event_ids_are_a_clear_error():
    e = {"event_id": "a-1", "user_id": "u", "type": "view", "item_id": "i0", "ts": TS}
    with pytest.raises(ValueError, match="occurs twice"):
        score_records([e, dict(e)], [])


def test_the_latest_refresh_of_a_session_end_list_is_in_force():
    ev = [
        {"event_id": "a-1", "user_id": "u", "type": "purchase", "item_id": "i1", "ts": TS},
        {"event_id": "a-2", "user_id": "u", "type": "purchase", "item_id": "i2", "ts": TS + 9e7},
    ]
    end = {"user_id": "u", "trigger_event_id": "a-1", "trigger": "session_end"}
    records = [
        {**end, "items": ["i9"]},
        {**end, "refresh": 2, "items": ["i2"]},
        {**end, "refresh": 1, "items": ["i8"]},  # redelivered late: an older refresh
        {**end, "refresh": 2, "items": ["i2"]},  # the same list again
    ]
    r = score_records(ev, records)
    assert r["event"]["hr@10"] == 0.5  # a-2 scored against refresh 2
    assert (r["n_records_duplicate"], r["n_records_refreshed"]) == (1, 2)


def test_same_code_on_the_committed_sample():
    """The same check on real data: every baseline's lists, written out as records."""
    from streamrec import evaluate, paths

    records = evaluate.load_records(paths.sample_data_file(), max_events=2000)
    events = evaluate.events_of(records)
    first_seen = evaluate.item_first_seen(records)
    score_from = events[1000]["ts"]
    direct = run_baselines(records, default_baselines(10), k=10, score_from=score_from)
    for b in default_baselines(10):
        lists = [
            {"user_id": e["user_id"], "trigger_event_id": e["event_id"], "items": b.update(e)}
            for e in events
        ]
        got = score_records(events, lists, items=first_seen, k=10, score_from=score_from)
        assert {k: v for k, v in got.items() if not k.startswith("n_records")} == direct[b.name]
