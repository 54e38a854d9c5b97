"""Online Retail (UCI) rows -> contract records, as pure functions (no Kafka, no Flink).

Each valid purchase line becomes a contract ``purchase`` event on ``events``; an item appears on
``items`` (title = Description, price = UnitPrice) the first time its StockCode is seen, before
the event that names it, and again when its description changes. Records come out in event-time
order (stable: file order is kept within one minute).

A valid purchase line has a CustomerID, ``Quantity > 0``, ``UnitPrice > 0``, an InvoiceNo that
does not start with ``C`` (cancellation) and a StockCode that names a product (not postage,
fees, manual adjustments or gift vouchers).
"""

from __future__ import annotations

import csv
import io
import lzma
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

# StockCodes that are not products: postage, carriage, fees, manual lines, discounts, samples
NON_PRODUCT_CODES = frozenset(
    {
        "POST",
        "DOT",
        "M",
        "C2",
        "C3",
        "D",
        "S",
        "B",
        "BANK CHARGES",
        "AMAZONFEE",
        "CRUK",
        "PADS",
        "ADJUST",
        "ADJUST2",
        "TEST001",
        "TEST002",
    }
)
NON_PRODUCT_PREFIXES = ("gift_",)  # gift vouchers

DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M")


@dataclass(frozen=True, slots=True)
class RetailRow:
    """One CSV line, typed. ``line_no`` numbers the lines of one invoice from 1 in file order."""

    invoice: str
    stock_code: str
    description: str
    quantity: int
    ts: int  # InvoiceDate as epoch milliseconds, UTC
    unit_price: float
    customer_id: str | None
    country: str
    line_no: int = 1


def parse_ts(text: str) -> int:
    """``"2010-12-01 08:26:00"`` (UTC) -> epoch milliseconds."""
    text = text.strip()
    for fmt in DATE_FORMATS:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return int(dt.replace(tzinfo=timezone.utc).timestamp() * 1000)
    raise ValueError(f"unrecognised InvoiceDate {text!r}")


def parse_customer_id(text: str | None) -> str | None:
    """``"17850.0"`` -> ``"17850"``; empty or ``nan`` -> None."""
    text = (text or "").strip()
    if not text or text.lower() == "nan":
        return None
    if text.endswith(".0"):
        text = text[:-2]
    return text


def parse_row(fields: dict[str, str], line_no: int = 1) -> RetailRow:
    """One ``csv.DictReader`` row -> :class:`RetailRow` (ValueError if a field is malformed)."""
    return RetailRow(
        invoice=fields["InvoiceNo"].strip(),
        stock_code=fields["StockCode"].strip(),
        description=" ".join((fields.get("Description") or "").split()),
        quantity=int(float(fields["Quantity"])),
        ts=parse_ts(fields["InvoiceDate"]),
        unit_price=float(fields["UnitPrice"] or "nan"),
        customer_id=parse_customer_id(fields.get("CustomerID")),
        country=(fields.get("Country") or "").strip(),
        line_no=line_no,
    )


def is_product(stock_code: str) -> bool:
    return stock_code.upper() not in NON_PRODUCT_CODES and not stock_code.startswith(
        NON_PRODUCT_PREFIXES
    )


def is_purchase(row: RetailRow) -> bool:
    """A real purchase line of a known customer (see the module doc)."""
    return (
        row.customer_id is not None
        and row.quantity > 0
        and row.unit_price > 0
        and not row.invoice.upper().startswith("C")
        and is_product(row.stock_code)
    )


def _open_text(path: Path) -> io.TextIOBase:
    path = Path(path)
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _to_ms(bound: str | date | datetime | int | None) -> int | None:
    if bound is None or isinstance(bound, int):
        return bound
    if isinstance(bound, str):
        return parse_ts(bound if " " in bound else bound + " 00:00:00")
    if not isinstance(bound, datetime):
        bound = datetime(bound.year, bound.month, bound.day)
    if bound.tzinfo is None:
        bound = bound.replace(tzinfo=timezone.utc)
    return int(bound.timestamp() * 1000)


def iter_retail_rows(
    path: str | Path,
    limit: int | None = None,
    start: str | date | datetime | int | None = None,
    end: str | date | datetime | int | None = None,
) -> Iterator[RetailRow]:
    """Typed rows of an Online Retail ``.csv`` or ``.csv.xz`` file, in file order.

    ``start`` (inclusive) and ``end`` (exclusive) filter on InvoiceDate: ``"2010-12-01"``, a
    date, a datetime (naive = UTC) or epoch ms. ``limit`` caps the rows yielded. Malformed lines
    are skipped. ``line_no`` counts every line of an invoice in file order, also when its lines
    are not next to each other in the file, so event ids are unique and do not depend on the
    filters.
    """
    lo, hi = _to_ms(start), _to_ms(end)
    n = 0
    lines_of: dict[str, int] = {}  # invoice -> lines seen so far
    with _open_text(Path(path)) as f:
        for fields in csv.DictReader(f):
            invoice = (fields.get("InvoiceNo") or "").strip()
            line_no = lines_of[invoice] = lines_of.get(invoice, 0) + 1
            try:
                row = parse_row(fields, line_no)
            except (KeyError, ValueError, TypeError):
                continue
            if (lo is not None and row.ts < lo) or (hi is not None and row.ts >= hi):
                continue
            if limit is not None and n >= limit:
                return
            n += 1
            yield row


def time_ordered(rows: Iterable[RetailRow]) -> Iterator[RetailRow]:
    """Stable sort by ``ts`` one calendar day at a time (the file comes in day order)."""
    day_ms = 86_400_000
    buf: list[RetailRow] = []
    day = None
    for row in rows:
        d = row.ts // day_ms
        if day is not None and d != day:
            buf.sort(key=lambda r: r.ts)
            yield from buf
            buf = []
        day = d
        buf.append(row)
    buf.sort(key=lambda r: r.ts)
    yield from buf


def event_id(row: RetailRow) -> str:
    return f"{row.invoice}-{row.line_no}"


def purchase_event(row: RetailRow) -> dict:
    """The contract ``purchase`` event of one valid line."""
    return {
        "event_id": event_id(row),
        "user_id": row.customer_id,
        "type": "purchase",
        "item_id": row.stock_code,
        "ts": row.ts,
        "quantity": row.quantity,
        "price": row.unit_price,
        "session_id": row.invoice,
    }


def item_record(row: RetailRow) -> dict:
    """The contract ``items`` value for the product of one line."""
    return {
        "item_id": row.stock_code,
        "title": row.description or row.stock_code,
        "price": row.unit_price,
        "available": True,
        "ts": row.ts,
    }


def to_contract_records(
    rows: Iterable[RetailRow], update_items: bool = True
) -> Iterator[tuple[str, str, dict]]:
    """``("items" | "events", key, value)`` in event-time order.

    Key is the item_id for ``items`` and the user_id for ``events``. An item comes before the
    first event naming it; with ``update_items`` it comes again when its description changes.
    Lines that are not valid purchases are dropped.
    """
    titles: dict[str, str] = {}
    for row in time_ordered(r for r in rows if is_purchase(r)):
        item = item_record(row)
        seen = titles.get(row.stock_code)
        if seen is None or (update_items and row.description and seen != item["title"]):
            titles[row.stock_code] = item["title"]
            yield "items", row.stock_code, item
        yield "events", row.customer_id, purchase_event(row)


def first_users(rows: Iterable[RetailRow], n: int) -> Iterator[RetailRow]:
    """Only the rows of the first ``n`` customers to buy something (in file order)."""
    users: set[str] = set()
    for row in rows:
        if not is_purchase(row):
            continue
        if row.customer_id not in users:
            if len(users) >= n:
                continue
            users.add(row.customer_id)
        yield row
