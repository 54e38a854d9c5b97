"""Online Retail rows -> contract records (pure, no Kafka)."""

from __future__ import annotations

import csv
import lzma
from datetime import date

import pytest

from streamrec import paths
from streamrec.retail import (
    COLUMNS,
    RetailRow,
    first_users,
    is_purchase,
    iter_retail_rows,
    parse_customer_id,
    parse_ts,
    to_contract_records,
)

T0 = 1291191960000  # 2010-12-01 08:26:00 UTC


def row(invoice="536365", code="85123A", desc="WHITE HEART", qty=6, ts=T0, price=2.55,
        cust="17850", line_no=1) -> RetailRow:  # fmt: skip
    return RetailRow(invoice, code, desc, qty, ts, price, cust, "United Kingdom", line_no)


def write_csv(path, lines, xz=False):
    opener = lzma.open if xz else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(lines)


def test_parse_fields():
    assert parse_ts("2010-12-01 08:26:00") == T0
    assert parse_customer_id("17850.0") == "17850"
    assert parse_customer_id("") is None
    assert parse_customer_id("nan") is None
    with pytest.raises(ValueError):
        parse_ts("yesterday")


@pytest.mark.parametrize(
    "r, ok",
    [
        (row(), True),
        (row(cust=None), False),
        (row(qty=0), False),
        (row(qty=-2), False),
        (row(invoice="C536379"), False),
        (row(price=0.0), False),
        (row(code="POST"), False),
        (row(code="BANK CHARGES"), False),
        (row(code="M"), False),
        (row(code="AMAZONFEE"), False),
        (row(code="gift_0001_20"), False),
        (row(code="DCGSSGIRL"), True),
    ],
)
def test_is_purchase(r, ok):
    assert is_purchase(r) is ok


def test_purchase_event_matches_the_contract():
    recs = list(to_contract_records([row(line_no=3)]))
    assert recs[0] == (
        "items",
        "85123A",
        {"item_id": "85123A", "title": "WHITE HEART", "price": 2.55, "available": True, "ts": T0},
    )
    topic, key, ev = recs[1]
    assert (topic, key) == ("events", "17850")
    assert ev == {
        "event_id": "536365-3",
        "user_id": "17850",
        "type": "purchase",
        "item_id": "85123A",
        "ts": T0,
        "quantity": 6,
        "price": 2.55,
        "session_id": "536365",
    }


def test_items_once_before_first_event_and_again_when_renamed():
    rows = [
        row(line_no=1),
        row(invoice="536366", cust="17851", line_no=1, ts=T0 + 60_000),
        row(invoice="536367", desc="WHITE HANGING HEART", line_no=1, ts=T0 + 120_000),
        row(invoice="536368", desc="", line_no=1, ts=T0 + 180_000),  # no description: no update
    ]
    recs = list(to_contract_records(rows))
    assert [(t, k) for t, k, _ in recs] == [
        ("items", "85123A"),
        ("events", "17850"),
        ("events", "17851"),
        ("items", "85123A"),
        ("events", "17850"),
        ("events", "17850"),
    ]
    assert recs[3][2]["title"] == "WHITE HANGING HEART"
    assert [t for t, _, _ in to_contract_records(rows, update_items=False)].count("items") == 1


def test_invalid_lines_dropped_and_time_order_stable():
    rows = [
        row(invoice="2", code="X", ts=T0 + 60_000, line_no=1),
        row(invoice="1", code="Y", ts=T0, line_no=1),
        row(invoice="1", code="POST", ts=T0, line_no=2),
        row(invoice="1", code="Z", ts=T0, line_no=3),
        row(invoice="C9", code="A", ts=T0, qty=-1),
    ]
    events = [v["event_id"] for t, _, v in to_contract_records(rows) if t == "events"]
    assert events == ["1-1", "1-3", "2-1"]


def test_iter_rows_reads_csv_and_xz_with_filters(tmp_path):
    lines = [
        ["536365", "85123A", "WHITE HEART", "6", "2010-12-01 08:26:00", "2.55", "17850.0", "UK"],
        ["536365", "71053", "WHITE  METAL LANTERN ", "6", "2010-12-01 08:26:00", "3.39", "17850.0", "UK"],
        ["536366", "22633", "HAND WARMER", "bad", "2010-12-01 08:28:00", "1.85", "17850.0", "UK"],
        ["536367", "84879", "BIRD ORNAMENT", "32", "2010-12-02 08:34:00", "1.69", "", "UK"],
    ]  # fmt: skip
    for name, xz in (("r.csv", False), ("r.csv.xz", True)):
        p = tmp_path / name
        write_csv(p, lines, xz=xz)
        rows = list(iter_retail_rows(p))
        assert [(r.invoice, r.line_no) for r in rows] == [
            ("536365", 1),
            ("536365", 2),
            ("536367", 1),
        ]
        assert rows[1].description == "WHITE METAL LANTERN"
        assert rows[2].customer_id is None
        assert len(list(iter_retail_rows(p, limit=1))) == 1
        assert [r.invoice for r in iter_retail_rows(p, start="2010-12-02")] == ["536367"]
        assert len(list(iter_retail_rows(p, end=date(2010, 12, 2)))) == 2


def test_line_numbers_continue_when_an_invoice_is_split_in_the_file(tmp_path):
    # the shared file has invoices whose lines are not next to each other: numbering restarting
    # would give two events one id (and score a line against a list triggered after it)
    line = ["2010-12-01 08:26:00", "2.55", "17850.0", "UK"]
    lines = [
        ["536365", "85123A", "WHITE HEART", "6", *line],
        ["536366", "22633", "HAND WARMER", "6", *line],
        ["536365", "71053", "WHITE METAL LANTERN", "6", *line],
    ]
    p = tmp_path / "split.csv"
    write_csv(p, lines)
    rows = list(iter_retail_rows(p))
    assert [(r.invoice, r.line_no) for r in rows] == [("536365", 1), ("536366", 1), ("536365", 2)]
    ids = [v["event_id"] for t, _, v in to_contract_records(rows) if t == "events"]
    assert len(set(ids)) == len(ids) == 3


def test_first_users():
    rows = [row(cust="a"), row(cust="b"), row(cust=None), row(cust="a"), row(cust="c")]
    assert [r.customer_id for r in first_users(rows, 2)] == ["a", "b", "a"]


def test_committed_sample_replays():
    sample = paths.sample_data_file()
    recs = list(to_contract_records(iter_retail_rows(sample, end="2010-12-02")))
    events = [v for t, _, v in recs if t == "events"]
    seen_items = set()
    for t, k, v in recs:
        if t == "items":
            seen_items.add(k)
        else:
            assert v["item_id"] in seen_items
    assert len(events) > 1000
    assert all(events[i]["ts"] <= events[i + 1]["ts"] for i in range(len(events) - 1))
    assert len({e["event_id"] for e in events}) == len(events)
