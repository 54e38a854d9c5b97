"""Ranking and the Recommender facade on hand-made worlds whose answers are known."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from operators.config import FAMILIES, Mix, ProfileConfig, RankingConfig
from operators.recommender import Recommender
from operators.user_profile import Profile, apply_event
from tests.unit.streams import DIM, MIN, T0, buy, entry, ev, unit

# a little shop: lanterns (x-axis), mugs (y-axis), a candle between them, a new lantern later
SHOP = {
    "LANTERN": unit(1, 0, 0),
    "LANTERN2": unit(0.95, 0.05, 0),
    "MUG": unit(0, 1, 0),
    "MUG2": unit(0.05, 0.95, 0),
    "CANDLE": unit(0.5, 0.5, 0.2),
    "BAG": unit(0, 0, 1),
}


def shop(config: RankingConfig | None = None, top_k: int = 10) -> Recommender:
    """Items listed at T0; others bought MUG+MUG2 (often) and LANTERN+CANDLE, BAG (once)."""
    rec = Recommender(DIM, "m@1", top_k=top_k, config=config, clock=lambda: 123)
    for item, v in SHOP.items():
        rec.world.add(entry(item, v, ts=T0, title=f"WHITE {item}"))
    n = 0
    for o in range(6):
        ts = T0 + (o + 1) * 60 * MIN
        lines = ["MUG", "MUG2"] if o % 2 else ["LANTERN", "CANDLE"]
        if o == 5:
            lines = ["BAG"]
        for item in lines:
            n += 1
            rec.world.add(buy(f"o{o}-{n}", f"other{o}", item, ts, f"o{o}"))
    rec.world.advance_to(T0 + 10 * 60 * MIN)
    return rec


def items_of(value: bytes) -> list[dict]:
    return json.loads(value)["items"]


def event_list(rec, profile, e, qvec=None):
    rec.world.advance_to(e.ts)
    profile, value = rec.on_event(profile, e, qvec)
    rec.world.add(e)
    return profile, items_of(value)


def test_co_purchased_items_come_first_and_say_so():
    t = T0 + 11 * 60 * MIN
    _, items = event_list(shop(), None, ev("v1", "me", "view", t, "MUG"))
    assert items[0]["item_id"] == "MUG2"
    # its reason is the signal that gave it the most (in this shop, titles are alike too)
    assert items[0]["reason"] in ("bought with MUG", "similar to 'WHITE MUG'")
    _, items = event_list(
        shop(RankingConfig().without("content")), None, ev("v1", "me", "view", t, "MUG")
    )
    assert items[0]["item_id"] == "MUG2"
    assert items[0]["reason"] == "bought with MUG"


def test_a_new_users_list_is_never_zero_scores_in_id_order():
    rec = shop()
    t = T0 + 11 * 60 * MIN
    # a search with nothing behind it: only trending can fill the list
    _, items = event_list(rec, None, ev("s1", "new", "search", t, query="zzz"))
    assert items, "trending fills the list"
    assert all(i["score"] > 0 for i in items)
    assert {i["reason"] for i in items} == {"trending"}
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1


def test_only_visible_items_are_listed():
    rec = shop()
    rec.world.add(entry("MUG2", SHOP["MUG2"], ts=T0 + 10 * 60 * MIN, available=False))
    from operators.events import ItemRemoved

    rec.world.add(ItemRemoved("CANDLE"))
    t = T0 + 11 * 60 * MIN
    _, items = event_list(rec, None, ev("v1", "me", "view", t, "MUG"))
    ids = {i["item_id"] for i in items}
    assert "MUG2" not in ids and "CANDLE" not in ids and ids


def test_the_text_prior_lists_an_item_nobody_bought_yet():
    rec = shop()
    t = T0 + 11 * 60 * MIN
    rec.world.add(entry("LANTERN3", unit(0.97, 0.03, 0.01), ts=t - 1, title="METAL LANTERN"))
    _, items = event_list(rec, None, ev("v1", "me", "view", t, "LANTERN"))
    got = {i["item_id"]: i["reason"] for i in items}
    assert got.get("LANTERN3") == "similar to 'WHITE LANTERN'"


def test_a_search_query_steers_the_list():
    rec = shop()
    t = T0 + 11 * 60 * MIN
    _, items = event_list(rec, None, ev("s1", "me", "search", t, query="bag"), SHOP["BAG"])
    assert items[0]["item_id"] == "BAG"
    assert items[0]["reason"] == "matches search 'bag'"


def test_items_of_the_current_order_are_masked_for_the_next_click_not_the_next_visit():
    rec = shop()
    t = T0 + 11 * 60 * MIN
    p, items = event_list(rec, None, buy("b1", "me", "MUG", t, "mine"))
    assert "MUG" not in {i["item_id"] for i in items}
    rec.world.advance_to(t + rec.config.session_gap_ms)
    p, value = rec.on_session_end(p, t + rec.config.session_gap_ms)
    after = items_of(value)
    assert after[0]["item_id"] == "MUG" and after[0]["reason"] == "bought before"


def test_session_end_record_names_the_sessions_last_event():
    rec = shop(top_k=3)
    t = T0 + 11 * 60 * MIN
    p, _ = event_list(rec, None, buy("b1", "me", "MUG", t, "mine"))
    p, _ = event_list(rec, p, buy("b2", "me", "BAG", t + 5 * MIN, "mine"))
    at = t + 5 * MIN + rec.config.session_gap_ms
    rec.world.advance_to(at)
    p2, value = rec.on_session_end(p, at)
    assert p2 is p
    rec_ = json.loads(value)
    assert rec_["trigger"] == "session_end" and rec_["trigger_event_id"] == "b2"
    assert rec_["event_ts"] == t + 5 * MIN and rec_["user_id"] == "me"
    assert len(rec_["items"]) == 3
    assert rec.on_session_end(Profile(), at) == (Profile(), None)


def test_event_record_shape_and_forget_user():
    rec = shop(top_k=4)
    t = T0 + 11 * 60 * MIN
    rec.world.advance_to(t)
    p, value = rec.on_event(None, ev("e9", "u1", "click", t, "MUG"))
    r = json.loads(value)
    assert set(r) == {
        "user_id", "trigger_event_id", "event_ts", "emitted_at", "model", "trigger", "items",
    }  # fmt: skip
    assert (r["user_id"], r["trigger_event_id"], r["event_ts"]) == ("u1", "e9", t)
    assert (r["model"], r["emitted_at"], r["trigger"]) == ("m@1", 123, "event")
    assert len(r["items"]) == 4
    assert all(set(i) == {"item_id", "score", "reason"} for i in r["items"])
    assert rec.on_event(p, ev("f", "u1", "forget_user", t + 1)) == (None, None)


def test_ties_break_by_item_id():
    rec = Recommender(DIM, "m", top_k=3, config=RankingConfig().without("content"))
    for item in ["z", "m", "a", "q"]:
        rec.world.add(entry(item, unit(1), ts=T0))
    for n, item in enumerate(["z", "m", "a", "q"]):  # one buyer each: equal trending
        rec.world.add(buy(f"e{n}", f"u{n}", item, T0 + 1))
    rec.world.advance_to(T0 + 2)
    _, value = rec.on_event(None, ev("s", "new", "search", T0 + 2, query="x"))
    assert [i["item_id"] for i in items_of(value)] == ["a", "m", "q"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ablations_switch_a_family_off(family):
    cfg = RankingConfig().without(family)
    assert cfg.disabled == {family}
    assert all(not cfg.enabled(s) for s in FAMILIES[family])
    assert all(cfg.enabled(s) for f, sigs in FAMILIES.items() if f != family for s in sigs)
    rec = shop(cfg)
    t = T0 + 11 * 60 * MIN
    p, items = event_list(rec, None, buy("b1", "me", "LANTERN", t, "mine"))
    rec.world.advance_to(t + rec.config.session_gap_ms)
    _, value = rec.on_session_end(p, t + rec.config.session_gap_ms)
    reasons = {i["reason"].split(" ")[0] for i in items + items_of(value)}
    banned = {
        "collaborative": "bought with",
        "repeat": "bought before",
        "trending": "trending",
        "content": "similar",
    }[family]
    assert not any(i["reason"].startswith(banned) for i in items + items_of(value))
    assert reasons  # the other signals still make lists
    assert all(i["score"] > 0 for i in items + items_of(value))


def test_unknown_family_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown signal families"):
        RankingConfig().without("magic")
    with pytest.raises(ValueError, match="unknown event settings"):
        RankingConfig.from_dict({"event": {"colab": 1.0}})


def test_config_round_trips_through_json():
    cfg = dataclasses.replace(
        RankingConfig().without("content"), event=Mix(collab=2.0, position_decay=0.5)
    )
    assert RankingConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_config_loads_from_a_file_or_from_the_tuning_output(tmp_path):
    cfg = dataclasses.replace(RankingConfig(), event=Mix(collab=2.0, similar=5.0))
    bare, tuned = tmp_path / "bare.json", tmp_path / "tuned.json"
    bare.write_text(cfg.to_json())
    tuned.write_text(json.dumps({"config": cfg.to_dict(), "objective": 3.3, "split": ["a", "b"]}))
    assert RankingConfig.load(bare) == RankingConfig.load(tuned) == cfg


def test_profile_is_bounded():
    cfg = ProfileConfig(session_max=5, orders_max=3, order_items_max=4, repeat_max=10, query_max=2)
    p = Profile()
    q = np.zeros(DIM, dtype=np.float32)
    for n in range(300):
        t = T0 + n * MIN * (40 if n % 7 == 0 else 1)
        apply_event(p, buy(f"e{n}", "u", f"i{n % 37}", t, f"o{n // 7}"), cfg, 30 * MIN)
        apply_event(p, ev(f"s{n}", "u", "search", t, query=f"q{n}"), cfg, 30 * MIN, q)
    assert len(p.session) <= 5 and len(p.orders) <= 3
    assert all(len(items) <= 4 for _, _, items in p.orders)
    assert len(p.freq) <= 10 and len(p.queries) <= 2
    assert p.user_id == "u" and p.last_event_id == "s299"


def test_profile_pickles_every_field():
    p = Profile()
    cfg = ProfileConfig()
    apply_event(p, buy("e1", "u", "MUG", T0, "o1"), cfg, 30 * MIN)
    apply_event(p, ev("s1", "u", "search", T0 + 1, query="mug"), cfg, 30 * MIN, unit(0, 1))
    assert all(getattr(p, f.name) not in (None, [], {}) for f in dataclasses.fields(p))
    assert pickle.loads(pickle.dumps(p)) == p


def test_repeat_frequency_counts_orders_without_decay_when_asked():
    cfg = ProfileConfig(repeat_half_life_days=0.0)
    p = Profile()
    lines = [("A", "o1", 0), ("A", "o1", 1), ("B", "o1", 2), ("A", "o2", 180)]
    for n, (item, order, minute) in enumerate(lines):
        apply_event(p, buy(f"e{n}", "u", item, T0 + minute * MIN, order), cfg, 30 * MIN)
    assert p.freq == {"A": 2.0, "B": 1.0}  # once per order holding it
