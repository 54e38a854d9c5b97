"""The offline driver: the job's order of calls, determinism, restarts, session ends."""

from __future__ import annotations

import json
import pickle

from operators.config import RankingConfig
from operators.recommender import Recommender
from operators.world import World
from streamrec.simulate import Simulation, simulate
from tests.unit.streams import DIM, MIN, T0, embedder, random_records


def run(records, texts, config=None):
    return list(simulate(records, embedder(texts), config or RankingConfig(), "m@1"))


def test_same_input_gives_identical_records():
    records, texts = random_records(seed=11)
    a, b = run(records, texts), run(records, texts)
    assert a == b
    assert sum(1 for _, v in a if v is None) == 1  # the forget_user tombstone
    triggers = {json.loads(v)["trigger"] for _, v in a if v is not None}
    assert triggers == {"event", "session_end"}


def test_a_restart_from_snapshots_mid_stream_continues_bit_identically():
    records, texts = random_records(seed=12)
    embed = embedder(texts)
    whole = run(records, texts)

    def sim():
        return Simulation(Recommender(DIM, "m@1", config=RankingConfig(), clock=lambda: 0))

    first = sim()
    cut = len(records) // 2
    out = []
    for ends, _, own in first.steps(records[:cut], embed, finish=False):
        out += ends + ([own] if own else [])
    assert first._due  # sessions are open at the cut
    # what the job checkpoints: the world (broadcast) and the keyed state (profiles, timers)
    world_bytes = first.world.snapshot()
    keyed = pickle.dumps((first.profiles, first._due, first._refresh, first._heap))
    second = Simulation(
        Recommender(
            DIM, "m@1", config=RankingConfig(), clock=lambda: 0, world=World.restore(world_bytes)
        )
    )
    second.profiles, second._due, second._refresh, second._heap = pickle.loads(keyed)
    out += list(second.feed(records[cut:], embed))
    assert [(o.user_id, o.value) for o in out] == whole


def test_session_ends_fire_in_time_order_and_before_the_users_next_session():
    gap = RankingConfig().session_gap_ms
    recs = [("items", "x", {"item_id": "x", "title": "X", "ts": T0})]

    def purchase(eid, user, ts):
        return ("events", user, {"event_id": eid, "user_id": user, "type": "purchase",
                                 "item_id": "x", "ts": ts, "session_id": eid})  # fmt: skip

    recs += [
        purchase("a1", "a", T0 + MIN),
        purchase("b1", "b", T0 + 2 * MIN),
        purchase("a2", "a", T0 + MIN + gap - 1),  # same session: a's end moves
        purchase("c1", "c", T0 + 2 * MIN + gap),  # b's session closed exactly now
        purchase("b2", "b", T0 + 2 * MIN + gap),  # b's own end at this ts goes first
    ]
    out = [json.loads(v) for _, v in simulate(recs, embedder({}), RankingConfig())]
    seq = [(r["trigger"], r["trigger_event_id"]) for r in out]
    assert seq == [
        ("event", "a1"),
        ("event", "b1"),
        ("event", "a2"),
        ("event", "c1"),  # b's end is due at c1's ts: another user's end waits
        ("session_end", "b1"),
        ("event", "b2"),
        ("session_end", "a2"),  # the rest at the end of input, in (time, user) order
        ("session_end", "b2"),
        ("session_end", "c1"),
    ]
    end_b1 = out[4]
    assert end_b1["event_ts"] == T0 + 2 * MIN and end_b1["user_id"] == "b"


def test_lists_of_users_away_are_refreshed_until_they_come_back():
    config = RankingConfig(refresh_days=(1.0, 2.5))
    gap, day = config.session_gap_ms, 24 * 60 * MIN
    recs = [("items", "x", {"item_id": "x", "title": "X", "ts": T0}),
            ("items", "y", {"item_id": "y", "title": "Y", "ts": T0})]  # fmt: skip

    def purchase(eid, user, ts, item="x"):
        return ("events", user, {"event_id": eid, "user_id": user, "type": "purchase",
                                 "item_id": item, "ts": ts, "session_id": eid})  # fmt: skip

    end_a = T0 + MIN + gap
    recs += [
        purchase("a1", "a", T0 + MIN),
        purchase("b1", "b", T0 + 2 * MIN),
        purchase("b2", "b", end_a + int(1.5 * day), "y"),  # between a's two refreshes
        purchase("c1", "c", end_a + 3 * day),  # after a's last one
    ]
    out = [json.loads(v) for _, v in simulate(recs, embedder({}), config)]
    seq = [(r["trigger"], r["trigger_event_id"], r.get("refresh"), r.get("scored_at")) for r in out]
    end_b, end_b2 = T0 + 2 * MIN + gap, end_a + int(1.5 * day) + gap
    ra, rb, rb2 = (config.refresh_times(e) for e in (end_a, end_b, end_b2))
    # a day and 2.5 days after the session's end, on whole hours
    assert ra == (
        -(-(end_a + day) // (60 * MIN)) * 60 * MIN,
        -(-(end_a + int(2.5 * day)) // (60 * MIN)) * 60 * MIN,
    )
    assert seq == [
        ("event", "a1", None, None),
        ("event", "b1", None, None),
        ("session_end", "a1", None, None),
        ("session_end", "b1", None, None),
        ("session_end", "a1", 1, ra[0]),
        ("session_end", "b1", 1, rb[0]),
        ("event", "b2", None, None),  # b is back: no second refresh of b1's list
        ("session_end", "b2", None, None),
        ("session_end", "a1", 2, ra[1]),
        ("session_end", "b2", 1, rb2[0]),
        ("event", "c1", None, None),
        ("session_end", "c1", None, None),  # end of input: session ends only, no refreshes
    ]
    # a refreshed list is scored as of its time: y was bought in between, and now trends
    a_lists = [r for r in out if r["user_id"] == "a" and r["trigger"] == "session_end"]
    assert "y" not in [i["item_id"] for i in a_lists[0]["items"]]
    assert "y" in [i["item_id"] for i in a_lists[2]["items"]]


def test_bad_records_are_counted_not_fatal():
    recs = [
        ("items", "x", {"item_id": "x", "title": "X", "ts": T0}),
        ("items", "y", {"item_id": "y"}),  # no title
        ("events", "u", {"event_id": "e1", "user_id": "u", "type": "teleport", "ts": T0 + 1}),
        (
            "events",
            "u",
            {"event_id": "e2", "user_id": "u", "type": "view", "item_id": "x", "ts": T0 + 2},
        ),  # fmt: skip
    ]
    sim = Simulation(Recommender(DIM, "m", config=RankingConfig(), clock=lambda: 0))
    out = list(sim.feed(recs, embedder({})))
    assert sim.dead_letters == 2
    assert [o.trigger for o in out] == ["event", "session_end"]
