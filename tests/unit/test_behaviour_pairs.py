"""Training pairs from a behaviour stream: orders, consecutive orders, query -> purchase."""

from __future__ import annotations

import numpy as np
import pytest

from operators.events import DeadLetter, Event, Item, ItemRemoved
from streamrec.behaviour_pairs import (
    BatchPlan,
    build_pairs,
    collect_behaviour,
    epoch_order,
    next_order_counts,
    retail_records,
    same_order_counts,
    split_by_time,
    strongest_partners,
)

MIN = 60_000
TITLES = {
    "A": "RED RETROSPOT MUG",
    "B": "RED RETROSPOT BOWL",
    "C": "PAPER CHAIN KIT",
    "D": "CHRISTMAS LIGHTS",
    "E": "RED RETROSPOT MUG",  # same text as A under another code
}


def items(**extra) -> list[Item]:
    return [Item(i, t, ts=0, **extra.get(i, {})) for i, t in TITLES.items()]


def buy(user: str, item: str, ts: int, session: str | None) -> Event:
    return Event(f"{session}-{item}-{ts}", user, "purchase", ts, item_id=item, session_id=session)


def search(user: str, query: str, ts: int, session: str | None = None) -> Event:
    return Event(f"s-{user}-{ts}", user, "search", ts, query=query, session_id=session)


def shop() -> list:
    """u1 buys {A, B, C} then {C, D}; u2 buys {A, B} (one line twice) and, later, {E, A}."""
    return [
        *items(),
        buy("u1", "A", 1 * MIN, "o1"),
        buy("u1", "B", 1 * MIN, "o1"),
        buy("u1", "C", 1 * MIN, "o1"),
        buy("u1", "C", 5 * MIN, "o2"),
        buy("u1", "D", 5 * MIN, "o2"),
        buy("u2", "A", 2 * MIN, "o3"),
        buy("u2", "B", 2 * MIN, "o3"),
        buy("u2", "B", 2 * MIN, "o3"),
        buy("u2", "E", 9 * MIN, "o4"),
        buy("u2", "A", 9 * MIN, "o4"),
    ]


def test_orders_group_purchases_by_session_in_time_order():
    b = collect_behaviour(reversed(shop()))  # arrival order does not matter
    assert [(o.order_id, o.user_id, o.ts, o.items) for o in b.orders] == [
        ("o1", "u1", 1 * MIN, ("A", "B", "C")),
        ("o3", "u2", 2 * MIN, ("A", "B")),
        ("o2", "u1", 5 * MIN, ("C", "D")),
        ("o4", "u2", 9 * MIN, ("A", "E")),
    ]
    assert b.texts["C"] == "PAPER CHAIN KIT"
    assert b.first_seen["D"] == 0


def test_purchases_without_a_session_are_one_order_per_user_and_minute():
    recs = [*items(), *(buy("u", i, 7 * MIN + 5, None) for i in "AB"), buy("u", "C", 9 * MIN, None)]
    b = collect_behaviour(recs)
    assert [o.items for o in b.orders] == [("A", "B"), ("C",)]


def test_item_text_is_what_the_job_embeds_and_unknown_items_are_counted():
    recs = [
        Item("A", "MUG", category="kitchen", description="spotty", ts=0),
        Item("A", "MUG V2", ts=3 * MIN),  # a later version wins
        Item("B", "BOWL", ts=99 * MIN),  # stamped after the range: left out
        ItemRemoved("A"),
        DeadLetter("bad", "events", 0, 1, "{"),
        buy("u", "A", MIN, "o"),
        buy("u", "Z", MIN, "o"),  # never in the catalog
        buy("u", "A", 50 * MIN, "late"),
        Event("v", "u", "view", MIN, item_id="A"),
    ]
    b = collect_behaviour(recs, start_ms=0, end_ms=10 * MIN)
    assert b.texts == {"A": "MUG V2"}
    assert [o.items for o in b.orders] == [("A",)]
    assert b.skipped == {
        "dead letters": 1,
        "item tombstones (texts kept for past orders)": 1,
        "item versions after the range": 1,
        "events outside the range": 1,
        "view events (not used)": 1,
        "purchases of items without a catalog record": 1,
    }
    assert Item("A", "MUG", category="kitchen", description="spotty").text() == (
        "MUG . kitchen . spotty"
    )


def test_same_order_and_consecutive_order_counts():
    orders = collect_behaviour(shop()).orders
    assert same_order_counts(orders) == {
        ("A", "B"): 2,  # o1 and o3 (o3 lists B twice: counted once)
        ("A", "C"): 1,
        ("B", "C"): 1,
        ("C", "D"): 1,
        ("A", "E"): 1,
    }
    # u1: o1 {A, B, C} -> o2 {C, D}; u2: o3 {A, B} -> o4 {A, E}; C -> C and A -> A are no pair
    assert next_order_counts(orders) == {
        ("A", "C"): 1,
        ("A", "D"): 1,
        ("B", "C"): 1,
        ("B", "D"): 1,
        ("C", "D"): 1,
        ("A", "E"): 1,
        ("B", "E"): 1,
        ("A", "B"): 1,
    }


def test_pairs_are_deduplicated_with_support_and_min_support():
    b = collect_behaviour(shop())
    pairs, stats = build_pairs(b.orders, [], b.texts, min_support=2, neighbours=0)
    got = {(p.anchor_key, p.positive_key): (p.kind, p.support) for p in pairs}
    assert got == {
        ("item:A", "item:B"): ("same-order", 3),
        ("item:A", "item:C"): ("same-order", 2),
        ("item:B", "item:C"): ("same-order", 2),
        ("item:C", "item:D"): ("same-order", 2),
        # A and E have the same text: nothing to learn
    }
    assert stats["dropped_identical_text"] == 1
    assert stats["dropped_below_min_support"] == 3  # A-D, B-D, B-E
    pairs1, _ = build_pairs(b.orders, [], b.texts, min_support=1, neighbours=0)
    kinds = {(p.anchor_key, p.positive_key): p.kind for p in pairs1}
    assert kinds[("item:A", "item:D")] == "next-order"
    assert pairs[0].anchor_text == "RED RETROSPOT MUG" and pairs[0].positive_text == TITLES["B"]


def test_query_pairs_follow_the_session_or_the_window():
    recs = [
        *items(),
        search("u1", "  Paper CHAIN ", 0, "o1"),
        buy("u1", "C", MIN, "o1"),  # same session: a pair
        buy("u1", "D", 2 * MIN, "o9"),  # another session: none
        search("u2", "lights", 10 * MIN),  # no session: within the window
        buy("u2", "D", 20 * MIN, "x1"),
        buy("u2", "B", 200 * MIN, "x2"),  # past the window
        buy("u2", "A", 5 * MIN, "x0"),  # before the search
    ]
    b = collect_behaviour(recs)
    pairs, stats = build_pairs(
        b.orders, b.searches, b.texts, min_support=5, query_window_ms=60 * MIN
    )
    queries = [(p.anchor_key, p.anchor_text, p.positive_key, p.kind) for p in pairs]
    assert queries == [
        ("query:lights", "lights", "item:D", "query"),
        ("query:paper chain", "paper chain", "item:C", "query"),
    ]
    assert stats["pairs_query"] == 2


def test_strongest_partners_prefer_association_over_popularity():
    # P is in every order; X and Y are only ever bought together
    orders = collect_behaviour(
        [
            *(Item(i, f"T{i}", ts=0) for i in "PXYQ"),
            *(buy(f"u{n}", "P", n * MIN, f"o{n}") for n in range(6)),
            *(buy(f"u{n}", "Q", n * MIN, f"o{n}") for n in range(6)),
            *(buy(f"u{n}", i, n * MIN, f"o{n}") for n in range(2) for i in "XY"),
        ]
    ).orders
    support = dict(same_order_counts(orders))
    assert strongest_partners(support, orders, 1) == {("P", "Q"), ("X", "Y")}


def test_split_by_time_holds_out_the_last_fraction():
    orders = collect_behaviour(shop()).orders  # at 1, 2, 5, 9 minutes
    train, val, split = split_by_time(orders, 0.25)
    assert split == 7 * MIN
    assert [o.order_id for o in train] == ["o1", "o3", "o2"] and [o.order_id for o in val] == ["o4"]
    with pytest.raises(ValueError):
        split_by_time(orders, 1.0)


def test_batches_are_a_function_of_seed_and_step():
    support = np.array([1, 1, 1, 50, 2, 3, 1])
    plan = BatchPlan(support, seed=3, batch_size=3)
    first_epochs = np.concatenate([epoch_order(support, 3, 0), epoch_order(support, 3, 1)])
    got = np.concatenate([plan.indices(s) for s in range(4)])  # 12 = one epoch and 5
    assert got.tolist() == first_epochs[:12].tolist()
    assert sorted(got[:7].tolist()) == list(range(7))  # an epoch sees every pair once
    again = BatchPlan(support, seed=3, batch_size=3)
    assert again.indices(3).tolist() == plan.indices(3).tolist()  # resumable: step alone
    assert epoch_order(support, 4, 0).tolist() != epoch_order(support, 3, 0).tolist()
    # well-supported pairs come early on average
    first = [epoch_order(support, s, 0)[0] for s in range(200)]
    assert np.mean(np.array(first) == 3) > 2 / 7


def test_retail_rows_become_orders(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,10A,RED MUG,1,2011-01-01 10:00:00,1.0,7.0,UK\n"
        "1,10B,RED BOWL,1,2011-01-01 10:00:00,1.0,7.0,UK\n"
        "1,POST,POSTAGE,1,2011-01-01 10:00:00,1.0,7.0,UK\n"  # not a product
        "C2,10A,RED MUG,-1,2011-01-01 11:00:00,1.0,7.0,UK\n"  # cancellation
        "2,10C,GUEST CUP,1,2011-01-01 12:00:00,1.0,,UK\n"  # no customer
        "3,10A,RED MUG,1,2011-01-03 09:00:00,1.0,8.0,UK\n"
    )
    b = collect_behaviour(retail_records(csv, start="2011-01-01", end="2011-01-02"))
    assert [(o.order_id, o.user_id, o.items) for o in b.orders] == [("1", "7", ("10A", "10B"))]
    assert b.texts == {"10A": "RED MUG", "10B": "RED BOWL"}
