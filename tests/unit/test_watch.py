"""`streamrec watch` formatting of recommendation records (no broker needed)."""

from __future__ import annotations

import json

from streamrec.watch import format_recommendation

TS = 1_291_190_000_000


def record(**extra):
    value = {
        "user_id": "17850",
        "trigger_event_id": "536365-7",
        "event_ts": TS,
        "emitted_at": TS + 120,
        "model": "minilm-l6-onnx-fp32@3f2a9c1e",
        "items": [
            {"item_id": "85123A", "score": 0.91, "reason": "bought with 71053"},
            {"item_id": "71053", "score": 0.5, "reason": "trending"},
            {"item_id": "22752", "score": 0.25},
        ],
    }
    value.update(extra)
    return value


def test_items_show_title_score_and_reason():
    titles = {"85123A": "WHITE HANGING HEART T-LIGHT HOLDER", "71053": "WHITE METAL LANTERN"}
    text = format_recommendation(b"17850", json.dumps(record()).encode(), titles)
    head, *rows = text.splitlines()
    assert "user 17850" in head and "after 536365-7" in head and "SESSION END" not in head
    assert "minilm-l6-onnx-fp32@3f2a9c1e" in head
    assert rows[0].split("<-")[0].split() == [
        "1.", "0.910", "85123A", "WHITE", "HANGING", "HEART", "T-LIGHT", "HOLDER",
    ]  # fmt: skip
    assert rows[0].endswith("<- bought with 71053")
    assert rows[1].endswith("<- trending")
    assert "<-" not in rows[2] and rows[2].split() == ["3.", "0.250", "22752"]


def test_session_end_lists_are_marked():
    text = format_recommendation("17850", record(trigger="session_end"))
    assert "SESSION END" in text.splitlines()[0] and "536365-7" in text.splitlines()[0]
    assert "SESSION END" not in format_recommendation("17850", record(trigger="event"))
    refreshed = record(trigger="session_end", refresh=3, scored_at=TS + 3 * 86_400_000)
    head = format_recommendation("17850", refreshed).splitlines()[0]
    assert "REFRESH 3 at 2010-12-04" in head and "536365-7" in head


def test_tombstones_and_bad_values_print_without_failing():
    assert "forgotten" in format_recommendation(b"u1", None)
    assert "not JSON" in format_recommendation(b"u1", b"{nope")
    assert "(no items)" in format_recommendation("u1", record(items=[]))
    assert "unexpected item" in format_recommendation("u1", record(items=["85123A"]))
