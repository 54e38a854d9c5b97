"""Prequential scoring on hand-made sequences whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrec.evaluation import (
    Scorer,
    history_bucket,
    iso_week,
    latencies_ms,
    latency_stats,
    rank_of,
    score_records,
)

TS = 1_291_190_000_000  # 2010-12-01
DAY = 24 * 3600 * 1000
TEN = [f"i{n}" for n in range(1, 11)]  # i1 .. i10


def purchase(eid, user, item, ts=TS, session=None):
    ev = {"event_id": eid, "user_id": user, "type": "purchase", "item_id": item, "ts": ts}
    if session is not None:
        ev["session_id"] = session
    return ev


def view(eid, user, item, ts=TS):
    return {"event_id": eid, "user_id": user, "type": "view", "item_id": item, "ts": ts}


def rec(eid, user, items):
    return {"user_id": user, "trigger_event_id": eid, "items": [{"item_id": i} for i in items]}


def test_rank_of():
    assert rank_of("i1", TEN, 10) == 1
    assert rank_of("i10", TEN, 10) == 10
    assert rank_of("i10", TEN, 5) is None
    assert rank_of("x", TEN, 10) is None
    assert rank_of("x", None, 10) is None


def test_hit_at_rank_1():
    events = [view("e1", "u", "i1"), purchase("e2", "u", "i1")]
    r = score_records(events, [rec("e1", "u", TEN)])
    assert r["event"] == {"hr@10": 1.0, "ndcg@10": 1.0, "mrr@10": 1.0, "n": 1}


def test_hit_at_rank_10():
    events = [view("e1", "u", "i1"), purchase("e2", "u", "i10")]
    r = score_records(events, [rec("e1", "u", TEN)])
    assert r["event"]["hr@10"] == 1.0
    assert r["event"]["ndcg@10"] == pytest.approx(1 / math.log2(11))
    assert r["event"]["mrr@10"] == pytest.approx(0.1)


def test_miss():
    events = [view("e1", "u", "i1"), purchase("e2", "u", "zzz")]
    r = score_records(events, [rec("e1", "u", TEN)])
    assert r["event"] == {"hr@10": 0.0, "ndcg@10": 0.0, "mrr@10": 0.0, "n": 1}


def test_purchase_before_any_list_is_a_miss():
    # e1 is u's first event: the list it triggers includes e1, so e1 itself has no list before it
    events = [purchase("e1", "u", "i1"), purchase("e2", "u", "i1")]
    r = score_records(events, [rec("e1", "u", TEN), rec("e2", "u", TEN)])
    assert r["event"]["n"] == 2
    assert r["event"]["hr@10"] == 0.5  # e1 miss, e2 hit at rank 1
    assert r["n_purchases_without_list"] == 1


def test_own_list_does_not_count_and_other_users_lists_do_not_apply():
    # v's list holds the item but is not u's; u's list after the purchase is too late
    events = [view("e1", "v", "i1"), purchase("e2", "u", "i1")]
    r = score_records(events, [rec("e1", "v", TEN), rec("e2", "u", TEN)])
    assert r["event"]["hr@10"] == 0.0


def test_latest_earlier_list_is_used():
    events = [view("e1", "u", "a"), view("e2", "u", "b"), purchase("e3", "u", "i1")]
    r = score_records(events, [rec("e1", "u", TEN), rec("e2", "u", ["x"] * 9 + ["i1"])])
    assert r["event"]["mrr@10"] == pytest.approx(0.1)


def test_missing_list_keeps_the_previous_one_in_force():
    # e2 produced no list (e.g. a lost record): the list of e1 is still the latest before e3
    events = [view("e1", "u", "a"), view("e2", "u", "b"), purchase("e3", "u", "i2")]
    r = score_records(events, [rec("e1", "u", TEN)])
    assert r["event"]["mrr@10"] == pytest.approx(0.5)


def test_duplicate_records_last_wins_and_unmatched_counted():
    events = [view("e1", "u", "a"), purchase("e2", "u", "i1")]
    recs = [rec("e1", "u", ["zz"]), rec("e1", "u", TEN), rec("nope", "u", TEN), None]
    r = score_records(events, recs)
    assert r["event"]["hr@10"] == 1.0
    assert r["n_records"] == 3
    assert r["n_records_unmatched"] == 1


def test_basket_uses_list_before_first_line():
    # order o1: lines e2, e3. Before e2 the list is L1 (holds i1, i2 at ranks 1, 2); after e2
    # the list changes to one holding only "x". Event level scores e3 against that; basket level
    # against L1.
    events = [
        view("e1", "u", "a"),
        purchase("e2", "u", "i1", session="o1"),
        purchase("e3", "u", "i2", session="o1"),
    ]
    recs = [rec("e1", "u", TEN), rec("e2", "u", ["x"]), rec("e3", "u", ["y"])]
    r = score_records(events, recs)
    assert r["event"]["n"] == r["basket"]["n"] == 2
    assert r["event"]["hr@10"] == 0.5
    assert r["basket"]["hr@10"] == 1.0
    assert r["basket"]["mrr@10"] == pytest.approx((1 + 0.5) / 2)


def test_basket_first_order_without_list_is_all_misses():
    events = [purchase(f"e{n}", "u", "i1", session="o1") for n in range(3)]
    r = score_records(events, [rec(f"e{n}", "u", TEN) for n in range(3)])
    assert r["event"]["hr@10"] == pytest.approx(2 / 3)
    assert r["basket"]["hr@10"] == 0.0
    assert r["basket"]["n"] == 3


def test_second_order_uses_list_after_previous_order():
    events = [
        purchase("e1", "u", "a", session="o1"),
        purchase("e2", "u", "b", session="o1"),
        purchase("e3", "u", "i3", session="o2"),
        purchase("e4", "u", "i1", session="o2"),
    ]
    recs = [rec("e1", "u", ["q"]), rec("e2", "u", TEN), rec("e3", "u", ["i1"])]
    r = score_records(events, recs)
    # basket: o1 lines miss (no list), o2 lines scored against the list after e2 (TEN)
    assert r["basket"]["hr@10"] == 0.5
    assert r["basket"]["mrr@10"] == pytest.approx((1 / 3 + 1) / 4)
    # event: e1 miss, e2 vs ["q"] miss, e3 vs TEN rank 3, e4 vs ["i1"] rank 1
    assert r["event"]["mrr@10"] == pytest.approx((1 / 3 + 1) / 4)


def test_history_buckets_count_orders():
    assert [history_bucket(n) for n in (0, 1, 4, 5, 9)] == ["1st", "2-5", "2-5", "6+", "6+"]
    events = []
    for o in range(7):
        events += [
            purchase(f"o{o}l{j}", "u", "i1", ts=TS + o * DAY, session=f"o{o}") for j in (1, 2)
        ]
    s = Scorer()
    for ev in events:
        s.event(ev)
        s.emit("u", TEN, ev["event_id"], ev["ts"])
    h = s.result()["by_history"]
    assert h["1st"]["event"]["n"] == 2  # both lines of the 1st order
    assert h["2-5"]["event"]["n"] == 8
    assert h["6+"]["event"]["n"] == 4
    assert h["1st"]["event"]["hr@10"] == 0.5  # first line has no list
    assert h["6+"]["event"]["hr@10"] == 1.0
    assert h["1st"]["basket"]["hr@10"] == 0.0


def test_coverage_fresh_share_and_weeks():
    s = Scorer(k=10)
    s.item("old", TS - 10 * DAY)
    s.item("new", TS - 3600 * 1000)
    s.item("never", TS - 10 * DAY)
    s.item("later", TS + 10 * DAY)
    s.event(view("e1", "u", "old"))
    s.emit("u", ["old", "new"], "e1", TS)  # fresh: "new" first seen 1 h before
    s.event(view("e2", "u", "old", ts=TS + 2 * DAY))
    s.emit("u", ["old", "new"], "e2", TS + 2 * DAY)  # "new" is now 2 days old
    s.event(purchase("e3", "u", "new", ts=TS + 8 * DAY))
    s.emit("u", ["later"], "e3", TS + 8 * DAY)  # "later" not yet seen: not fresh
    r = s.result()
    assert r["catalog_size"] == 4
    assert r["coverage"] == pytest.approx(3 / 4)
    assert r["fresh_share"] == pytest.approx(1 / 3)
    assert list(r["weekly"]) == [iso_week(TS + 8 * DAY)]
    assert r["weekly"][iso_week(TS + 8 * DAY)]["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_iso_week():
    assert iso_week(TS) == "2010-W48"  # Wed 2010-12-01
    assert iso_week(1_294_012_800_000) == "2011-W01"  # Mon 2011-01-03 00:00 UTC
    assert iso_week(1_294_012_800_000 - 1) == "2010-W52"  # Sun 2011-01-02 23:59 UTC


def test_latency_percentiles():
    produced = {f"e{n}": 1000.0 for n in range(1, 101)}
    consumed = {f"e{n}": 1000.0 + n for n in range(1, 101)}  # latencies 1..100 ms
    consumed["unknown"] = 5.0
    lat = latencies_ms(produced, consumed)
    assert lat.size == 100
    st = latency_stats(lat)
    assert st["p50"] == pytest.approx(np.percentile(np.arange(1, 101), 50)) == pytest.approx(50.5)
    assert st["p95"] == pytest.approx(95.05)
    assert st["p99"] == pytest.approx(99.01)
    assert st["max"] == 100 and st["n"] == 100
    assert latency_stats([])["n"] == 0


def end(eid, user, items):
    return dict(rec(eid, user, items), trigger="session_end")


def test_session_end_list_replaces_the_event_list_whatever_the_arrival_order():
    # o1 ends with e2; its session-end list (holding i3) serves the next order's lines
    events = [
        purchase("e1", "u", "a", session="o1"),
        purchase("e2", "u", "b", session="o1"),
        purchase("e3", "u", "i3", ts=TS + DAY, session="o2"),
    ]
    for records in (
        [rec("e1", "u", ["b"]), rec("e2", "u", TEN), end("e2", "u", ["i3"])],
        [end("e2", "u", ["i3"]), rec("e2", "u", TEN), rec("e1", "u", ["b"])],
    ):
        r = score_records(events, records)
        # e1: no list; e2 vs list of e1 (rank 1); e3 vs the session-end list (rank 1)
        assert r["event"]["mrr@10"] == pytest.approx(2 / 3)
        assert r["basket"]["mrr@10"] == pytest.approx(1 / 3)  # o1 lines have no list
        assert r["n_lists"] == 3 and r["n_session_end_lists"] == 1
        assert r["n_records_unmatched"] == 0


def test_duplicates_replace_per_trigger_and_kind():
    events = [view("e1", "u", "a"), purchase("e2", "u", "i2", ts=TS + DAY)]
    records = [
        end("e1", "u", ["i2"]),
        rec("e1", "u", ["x"]),
        end("e1", "u", ["y", "i2"]),  # redelivered: replaces the first session-end list only
        rec("e1", "u", ["z"]),
    ]
    r = score_records(events, records)
    assert r["event"]["mrr@10"] == pytest.approx(0.5)
    assert r["n_records"] == 4 and r["n_records_duplicate"] == 2
    assert r["n_records_out_of_user_order"] == 0


def test_records_arriving_after_a_later_trigger_of_the_user_are_counted():
    events = [view("e1", "u", "a"), view("e2", "v", "a"), view("e3", "u", "b")]
    records = [rec("e1", "u", TEN), rec("e3", "u", TEN), end("e1", "u", TEN), rec("e2", "v", TEN)]
    assert score_records(events, records)["n_records_out_of_user_order"] == 1


def test_forget_user_removes_the_list_in_force_and_the_history():
    events = [
        purchase("e1", "u", "i1", session="o1"),
        {"event_id": "f", "user_id": "u", "type": "forget_user", "ts": TS},
        purchase("e2", "u", "i1", ts=TS + DAY, session="o2"),
    ]
    r = score_records(events, [rec("e1", "u", TEN), None, rec("e2", "u", TEN)])
    assert r["event"]["hr@10"] == 0.0  # the list of e1 was erased
    assert r["segments"]["history"]["1st"]["event"]["n"] == 2  # u starts again
    assert r["segments"]["repeat"]["new_to_user"]["event"]["n"] == 2


def test_score_from_warms_up_on_earlier_events():
    events = [
        purchase("e1", "u", "i1", session="o1"),
        purchase("e2", "u", "i1", ts=TS + DAY, session="o2"),
        purchase("e3", "u", "i2", ts=TS + 2 * DAY, session="o3"),
    ]
    records = [rec("e1", "u", TEN), rec("e2", "u", TEN), rec("e3", "u", TEN)]
    r = score_records(events, records, score_from=TS + DAY)
    assert r["event"]["n"] == 2 and r["n_purchases_warmup"] == 1
    assert r["event"]["mrr@10"] == pytest.approx((1 + 0.5) / 2)  # lists from the warm-up count
    assert r["segments"]["history"]["2-5"]["event"]["n"] == 2  # o1 is history
    assert r["segments"]["repeat"]["repeat"]["event"]["n"] == 1  # i1 was bought in o1
    assert r["n_lists"] == 2  # only lists triggered from score_from on


def test_event_split_and_segments():
    # o1: i1, i2 (i2 listed by the list after the first line). o2 a week later: i1 again.
    events = [
        view("e0", "u", "a"),
        purchase("e1", "u", "i1", session="o1"),
        purchase("e2", "u", "i2", session="o1"),
        purchase("e3", "u", "i1", ts=TS + 8 * DAY, session="o2"),
    ]
    records = [rec("e0", "u", ["i1"]), rec("e1", "u", ["i2"]), rec("e2", "u", ["i1"])]
    r = score_records(events, records, items={"i1": TS, "i2": TS - 30 * DAY})
    split = r["event_split"]
    assert split["same_order"]["n"] == 1 and split["same_order"]["hr@10"] == 1.0  # e2
    assert split["before_order"]["n"] == 2 and split["before_order"]["hr@10"] == 1.0  # e1, e3
    seg = r["segments"]
    assert seg["item_age"]["first_seen_7d"]["event"]["n"] == 1  # e1: i1 first seen at TS
    assert seg["item_age"]["older"]["basket"]["n"] == 2
    assert seg["repeat"]["repeat"]["basket"]["hr@10"] == 1.0  # e3 vs the list after o1
    assert seg["repeat"]["new_to_user"]["basket"]["hr@10"] == 0.5  # e1 hit, e2 miss
    assert r["by_history"] == seg["history"]
