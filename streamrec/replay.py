"""Replay Online Retail CSV rows into Kafka as contract events and catalog items.

    streamrec replay --csv data/online_retail_sample.csv.xz --rate 50 --create-topics

Events go to ``events`` keyed by user_id, items to ``items`` keyed by item_id, as JSON; an item
is produced before the first event that names it. As fast as possible by default, or paced at
``--rate`` events per second (items are not counted).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException, Producer

from streamrec import paths, retail
from streamrec.topics import (
    EVENTS_TOPIC,
    ITEMS_TOPIC,
    add_client_flags,
    ensure_topics,
    parse_client_properties,
)


def _encode(value: dict | None) -> bytes | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def replay(
    records: Iterable[tuple[str, str, dict | None]],
    bootstrap: str,
    events_topic: str = EVENTS_TOPIC,
    items_topic: str = ITEMS_TOPIC,
    rate: float | None = None,
    progress: bool = True,
    producer_config: Mapping[str, str] | None = None,
    total: int | None = None,
) -> dict:
    """Produce ``("events" | "items", key, value)`` records; returns the counts.

    ``{"events", "items", "errors", "seconds"}``: records handed to the producer per kind,
    delivery failures (counted by the delivery callback), wall time. ``rate`` paces events
    (per second); ``total`` sizes the progress bar (events).
    """
    from tqdm import tqdm

    errors: list[KafkaError] = []
    fatal: list[KafkaError] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    def on_error(err: KafkaError):
        if err.fatal():
            fatal.append(err)

    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # acks=all, no duplicates or reordering on retry
        "linger.ms": 5,
        "compression.type": "lz4",
        "error_cb": on_error,
    }
    conf.update(producer_config or {})
    producer = Producer(conf)
    topic_of = {"events": events_topic, "items": items_topic}
    counts = {"events": 0, "items": 0}
    bar = tqdm(total=total, unit="ev", desc="replay", disable=not progress, file=sys.stderr)
    t0 = time.monotonic()
    try:
        for kind, key, value in records:
            if fatal:
                raise KafkaException(fatal[0])
            if kind == "events" and rate:
                due = t0 + counts["events"] / rate
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(wait)  # serves delivery callbacks; may return early
            payload = _encode(value)
            while True:
                try:
                    producer.produce(
                        topic_of[kind], key=key.encode(), value=payload, on_delivery=on_delivery
                    )
                    break
                except BufferError:  # local queue full: serve callbacks, retry
                    producer.poll(0.1)
            producer.poll(0)
            counts[kind] += 1
            if kind == "events":
                bar.update(1)
    finally:
        remaining = producer.flush(30)
        bar.close()
    if remaining:
        errors.extend([KafkaError(KafkaError._MSG_TIMED_OUT)] * remaining)
    return {**counts, "errors": len(errors), "seconds": round(time.monotonic() - t0, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamrec replay", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--csv",
        type=Path,
        default=paths.default_data_file(),
        help="Online Retail .csv or .csv.xz (default: %(default)s)",
    )
    add_client_flags(parser)
    parser.add_argument("--events-topic", default=EVENTS_TOPIC)
    parser.add_argument("--items-topic", default=ITEMS_TOPIC)
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    parser.add_argument("--limit", type=int, default=None, help="stop after N events")
    parser.add_argument("--users", type=int, default=None, help="only the first N customers")
    parser.add_argument("--start", default=None, help="first InvoiceDate (YYYY-MM-DD), inclusive")
    parser.add_argument("--end", default=None, help="last InvoiceDate (YYYY-MM-DD), exclusive")
    parser.add_argument(
        "--create-topics", action="store_true", help="create the two topics if missing"
    )
    parser.add_argument("--partitions", type=int, default=1, help="with --create-topics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    client = parse_client_properties(args.client_property)
    if not args.csv.exists():
        print(f"streamrec replay: no such file {args.csv}", file=sys.stderr)
        return 2
    rows = retail.iter_retail_rows(args.csv, start=args.start, end=args.end)
    if args.users is not None:
        rows = retail.first_users(rows, args.users)
    records = retail.to_contract_records(rows)
    if args.limit is not None:
        records = _limit_events(records, args.limit)
    try:
        if args.create_topics:
            ensure_topics(
                args.bootstrap_servers,
                {args.events_topic: args.partitions, args.items_topic: args.partitions},
                compacted={args.items_topic},
                client_config=client,
            )
        counts = replay(
            records,
            args.bootstrap_servers,
            args.events_topic,
            args.items_topic,
            rate=args.rate,
            progress=not args.no_progress,
            producer_config=client,
            total=args.limit,
        )
    except KeyboardInterrupt:
        print("streamrec replay: interrupted", file=sys.stderr)
        return 130
    except KafkaException as e:
        print(f"streamrec replay: {e}", file=sys.stderr)
        return 1
    print(
        f"replayed {counts['events']} events and {counts['items']} items from {args.csv.name} "
        f"in {counts['seconds']:.1f}s ({counts['errors']} delivery errors)"
    )
    return 1 if counts["errors"] else 0


def _limit_events(records, limit: int):
    n = 0
    for rec in records:
        if rec[0] == "events":
            if n >= limit:
                return
            n += 1
        yield rec
