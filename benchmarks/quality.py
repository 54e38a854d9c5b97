"""Baseline quality on the Online Retail file, without Kafka or the job (the harness cross-check).

    python -m benchmarks.quality [--csv FILE] [--limit N] [--weeks W] [--reader builtin|retail]
                                 [--include-non-products] [--only NAME ...]

Reads the file with ``streamrec.retail`` when it is importable (``--reader retail``), else with the
minimal reader below, which follows the same definitions: rows with a CustomerID, Quantity > 0,
not a cancellation (InvoiceNo starting with "C"), a product stock code; stable-sorted by
InvoiceDate, so file order is kept within each minute. Every purchase line becomes one event;
``session_id`` is the invoice. Prints event- and basket-level HR/NDCG/MRR@10 per baseline.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import lzma
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Stock codes that are not products (postage, manual entries, fees, samples...).
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "M", "m", "C2", "PADS", "BANK CHARGES", "CRUK", "D", "S", "B", "AMAZONFEE"}
)


def _is_product(code: str) -> bool:
    return bool(code) and code not in NON_PRODUCT_CODES and not code.startswith("gift_")


def builtin_records(
    path: Path, limit: int | None = None, include_non_products: bool = False
) -> list[tuple[str, str, dict[str, Any]]]:
    """Contract records (items on first sight, then purchase events), in time order."""
    opener = lzma.open if str(path).endswith(".xz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        for n, r in enumerate(csv.DictReader(fh)):
            if limit is not None and n >= limit:
                break
            cust = (r.get("CustomerID") or "").strip()
            inv = r["InvoiceNo"].strip()
            code = r["StockCode"].strip()
            try:
                qty = int(float(r["Quantity"]))
            except ValueError:
                continue
            if not cust or qty <= 0 or inv.startswith("C"):
                continue
            if not include_non_products and not _is_product(code):
                continue
            ts = int(
                dt.datetime.strptime(r["InvoiceDate"].strip(), "%Y-%m-%d %H:%M:%S")
                .replace(tzinfo=dt.timezone.utc)
                .timestamp()
                * 1000
            )
            rows.append((ts, n, inv, code, qty, float(r["UnitPrice"] or 0), cust, r["Description"]))
    rows.sort(key=lambda x: (x[0], x[1]))  # stable: file order within each minute
    out: list[tuple[str, str, dict[str, Any]]] = []
    seen: set[str] = set()
    for ts, n, inv, code, qty, price, cust, desc in rows:
        user = str(int(float(cust)))
        if code not in seen:
            seen.add(code)
            out.append(
                (
                    "items",
                    code,
                    {"item_id": code, "title": desc, "price": price, "available": True, "ts": ts},
                )
            )
        out.append(
            (
                "events",
                user,
                {
                    "event_id": f"r{n}",
                    "user_id": user,
                    "type": "purchase",
                    "item_id": code,
                    "ts": ts,
                    "quantity": qty,
                    "price": price,
                    "session_id": inv,
                },
            )
        )
    return out


def retail_records(path: Path, limit: int | None = None) -> Iterator[tuple[str, str, dict]]:
    from streamrec import retail

    return retail.to_contract_records(retail.iter_retail_rows(path, limit=limit))


def main(argv: list[str] | None = None) -> int:
    from streamrec import baselines as B
    from streamrec import paths

    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    ap.add_argument("--csv", type=Path, default=paths.default_data_file())
    ap.add_argument("--limit", type=int, default=None, help="read at most N CSV rows")
    ap.add_argument("--weeks", type=float, default=None, help="keep the first W weeks of events")
    ap.add_argument("--reader", choices=("auto", "builtin", "retail"), default="auto")
    ap.add_argument("--include-non-products", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="baseline names to run")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)

    reader = args.reader
    if reader == "auto":
        try:
            import streamrec.retail  # noqa: F401

            reader = "retail"
        except ImportError:
            reader = "builtin"
    t0 = time.perf_counter()
    if reader == "retail":
        recs = list(retail_records(args.csv, args.limit))
    else:
        recs = builtin_records(args.csv, args.limit, args.include_non_products)
    if args.weeks is not None:
        first = next(v["ts"] for t, _, v in recs if t == "events")
        end = first + args.weeks * 7 * 24 * 3600 * 1000
        recs = [r for r in recs if r[2].get("ts", first) < end]
    n_ev = sum(1 for t, _, _ in recs if t == "events")
    print(
        f"reader={reader} records={len(recs)} events={n_ev} read_s={time.perf_counter() - t0:.1f}"
    )
    bl = B.default_baselines()
    if args.only:
        bl = [b for b in bl if b.name in args.only]
    results = {}
    for b in bl:
        t1 = time.perf_counter()
        res = B.run_baselines(recs, [b])[b.name]
        results[b.name] = res
        e, k = res["event"], res["basket"]
        print(
            f"{b.name:18s} event HR@10 {e['hr@10']:.4f} NDCG@10 {e['ndcg@10']:.4f} "
            f"MRR@10 {e['mrr@10']:.4f} | basket HR@10 {k['hr@10']:.4f} NDCG@10 "
            f"{k['ndcg@10']:.4f} MRR@10 {k['mrr@10']:.4f} | n={e['n']} "
            f"cov={res['coverage']:.3f} fresh={res['fresh_share']:.3f} "
            f"({time.perf_counter() - t1:.1f}s)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
