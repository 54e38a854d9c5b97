"""Parser benchmark: microseconds per record of ``parse_event`` / ``parse_item`` (the job calls
``parse_event`` once per event on its hot path).

    python -m benchmarks.parse [--number 20000] [--repeat 7]
    streamrec bench parse ...

Records are shaped like the Online Retail replay's (``streamrec.retail.purchase_event`` /
``item_record``), plus a search event and a few dead letters. Each line is the best of
``--repeat`` timeit runs of ``--number`` calls, in µs per call.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit

from operators.events import parse_event, parse_item

PURCHASE = {
    "event_id": "536365-1",
    "user_id": "17850",
    "type": "purchase",
    "item_id": "85123A",
    "ts": 1291191960000,
    "quantity": 6,
    "price": 2.55,
    "session_id": "536365",
}
SEARCH = {
    "event_id": "s-1",
    "user_id": "17850",
    "type": "search",
    "query": "white hanging heart t-light holder",
    "ts": 1291191960000,
}
ITEM = {
    "item_id": "85123A",
    "title": "WHITE HANGING HEART T-LIGHT HOLDER",
    "price": 2.55,
    "available": True,
    "ts": 1291191960000,
}


def cases() -> dict[str, tuple]:
    """name -> (function, args, kwargs)."""
    enc = lambda obj: json.dumps(obj).encode()  # noqa: E731
    kw = {"topic": "events", "partition": 0, "offset": 1}
    return {
        "event: valid purchase": (parse_event, (enc(PURCHASE),), kw),
        "event: valid search": (parse_event, (enc(SEARCH),), kw),
        "event: bad JSON (dead letter)": (parse_event, (b'{"event_id": "e1", "user_id"',), kw),
        "event: unknown type (dead letter)": (parse_event, (enc({**PURCHASE, "type": "x"}),), kw),
        "event: deep nesting (dead letter)": (parse_event, (b"[" * 5000 + b"]" * 5000,), kw),
        "item: valid": (parse_item, (b"85123A", enc(ITEM)), {**kw, "topic": "items"}),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="streamrec bench parse", description=__doc__.splitlines()[0])
    p.add_argument("--number", type=int, default=20000, help="calls per timing run")
    p.add_argument("--repeat", type=int, default=7, help="timing runs (best is reported)")
    args = p.parse_args(argv)
    print(f"{'case':40s} {'us/record':>10s}  result")
    for name, (fn, a, kw) in cases().items():
        try:
            result = type(fn(*a, **kw)).__name__
        except Exception as e:  # the old parser raised on hostile input: report, do not time
            print(f"{name:40s} {'-':>10s}  raised {type(e).__name__}")
            continue
        n = args.number if "deep" not in name else max(1, args.number // 50)
        best = min(timeit.repeat(lambda: fn(*a, **kw), number=n, repeat=args.repeat))  # noqa: B023
        print(f"{name:40s} {best / n * 1e6:10.2f}  {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
