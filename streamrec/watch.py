"""Tail the ``recommendations`` topic and print each rolling list readably.

    streamrec watch [--user 17850] [--from-beginning] [--max 20]

Item titles come from the ``items`` topic, read from the beginning at start and kept up to date
while watching. Each item shows its ``reason`` when the record carries one ("bought with
85123A", "trending", ...). A list emitted when the user's session closed (``"trigger":
"session_end"``: the list for the user's next visit) is marked SESSION END. A tombstone (null
value) prints as "forgotten".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError

from streamrec.topics import (
    ITEMS_TOPIC,
    RECOMMENDATIONS_TOPIC,
    add_client_flags,
    parse_client_properties,
    partitions,
    read_to_end,
)


def _fmt_ts(ms: int | None) -> str:
    if not isinstance(ms, int | float):
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_recommendation(
    key: str | bytes | None,
    value: bytes | str | dict | None,
    titles: Mapping[str, str] | None = None,
    width: int = 60,
) -> str:
    """One ``recommendations`` record as text: a header line and one line per item."""
    titles = titles or {}
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if value is None:
        return f"user {key}  forgotten (tombstone: all state erased)"
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except ValueError:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return f"user {key}  (not JSON: {text[:80]!r})"
    if not isinstance(value, dict):
        return f"user {key}  (unexpected value: {str(value)[:80]!r})"
    user = value.get("user_id", key)
    event_ts, emitted = value.get("event_ts"), value.get("emitted_at")
    when = "after"
    if value.get("trigger") == "session_end":
        when = "SESSION END, list for the next visit, after"
        if value.get("refresh"):
            when = (
                f"REFRESH {value['refresh']} at {_fmt_ts(value.get('scored_at'))} of the list "
                "for the next visit, after"
            )
    head = f"[{_fmt_ts(event_ts)}] user {user}  {when} {value.get('trigger_event_id', '?')}"
    extra = []
    if value.get("model"):
        extra.append(str(value["model"]))
    if isinstance(emitted, int | float):
        extra.append(f"emitted {_fmt_ts(emitted)}")
    if extra:
        head += f"  ({', '.join(extra)})"
    items = value.get("items") or []
    if not items:
        return head + "\n     (no items)"
    lines = [head]
    for rank, it in enumerate(items, 1):
        if not isinstance(it, dict):
            lines.append(f"  {rank:2d}. (unexpected item: {str(it)[:60]!r})")
            continue
        item_id = str(it.get("item_id", "?"))
        score = it.get("score")
        score_s = f"{score:6.3f}" if isinstance(score, int | float) else "     ?"
        title = titles.get(item_id, "")
        if len(title) > width:
            title = title[: width - 1] + "…"
        line = f"  {rank:2d}. {score_s}  {item_id:<10} {title:<{width}}"
        if it.get("reason"):
            line += f"  <- {it['reason']}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _update_titles(titles: dict[str, str], msg) -> None:
    key = msg.key().decode(errors="replace") if msg.key() else None
    if msg.value() is None:
        if key:
            titles.pop(key, None)
        return
    try:
        item = json.loads(msg.value())
    except ValueError:
        return
    if isinstance(item, dict) and item.get("item_id") is not None:
        titles[str(item["item_id"])] = str(item.get("title") or "")


def load_titles(consumer: Consumer, items_topic: str, timeout: float = 60) -> dict[str, str]:
    """Read ``items_topic`` from the beginning to its current end; item_id -> title.

    Leaves the items partitions assigned, so later catalog updates keep arriving.
    """
    titles: dict[str, str] = {}
    with contextlib.suppress(TimeoutError):  # show lists with the titles read so far
        for msg in read_to_end(consumer, items_topic, timeout):
            _update_titles(titles, msg)
    return titles


def watch(
    bootstrap: str,
    topic: str = RECOMMENDATIONS_TOPIC,
    items_topic: str | None = ITEMS_TOPIC,
    user: str | None = None,
    from_beginning: bool = False,
    max_records: int | None = None,
    client_config: Mapping[str, str] | None = None,
    out=sys.stdout,
    idle_timeout: float | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> int:
    """Print recommendation lists until Ctrl-C, ``max_records``, ``idle_timeout`` s of silence
    or ``stop_when()`` returning true (checked between polls).

    Returns the number of lists printed.
    """
    errors: list[KafkaError] = []

    def on_error(err: KafkaError):
        if err.fatal():
            errors.append(err)

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"streamrec-watch-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "error_cb": on_error,
    }
    conf.update(client_config or {})
    consumer = Consumer(conf)
    printed = 0
    try:
        titles = load_titles(consumer, items_topic) if items_topic else {}
        parts = partitions(consumer, topic, OFFSET_BEGINNING if from_beginning else OFFSET_END)
        if not parts:
            print(f"watch: topic {topic!r} does not exist (yet)", file=sys.stderr)
            return 0
        consumer.incremental_assign(parts)
        print(
            f"watch: {topic} ({len(parts)} partitions), {len(titles)} item titles"
            + (f", user {user}" if user else ""),
            file=sys.stderr,
        )
        last = time.monotonic()
        while max_records is None or printed < max_records:
            if errors:
                raise RuntimeError(f"fatal Kafka error: {errors[0]}")
            if stop_when is not None and stop_when():
                break
            msg = consumer.poll(0.5)
            if msg is None:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"watch: {msg.error()}", file=sys.stderr)
                continue
            last = time.monotonic()
            if msg.topic() == items_topic:
                _update_titles(titles, msg)
                continue
            key = msg.key().decode(errors="replace") if msg.key() else None
            if user is not None and key != user:
                continue
            print(format_recommendation(key, msg.value(), titles), file=out, flush=True)
            printed += 1
    finally:
        consumer.close()
    return printed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamrec watch", description=__doc__.split("\n")[0])
    add_client_flags(parser)
    parser.add_argument("--topic", default=RECOMMENDATIONS_TOPIC, help="recommendations topic")
    parser.add_argument("--items-topic", default=ITEMS_TOPIC, help="for titles ('' for none)")
    parser.add_argument("--user", default=None, help="only this user's lists")
    parser.add_argument("--from-beginning", action="store_true", help="not only new lists")
    parser.add_argument("--max", type=int, default=None, help="stop after N lists")
    parser.add_argument(
        "--idle-timeout", type=float, default=None, help="stop after S seconds without records"
    )
    args = parser.parse_args(argv)
    try:
        watch(
            args.bootstrap_servers,
            args.topic,
            args.items_topic or None,
            user=args.user,
            from_beginning=args.from_beginning,
            max_records=args.max,
            client_config=parse_client_properties(args.client_property),
            idle_timeout=args.idle_timeout,
        )
    except KeyboardInterrupt:
        return 0
    except RuntimeError as e:
        print(f"streamrec watch: {e}", file=sys.stderr)
        return 1
    return 0
