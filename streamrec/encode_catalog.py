"""Offline catalog encoder: embed every catalog text once, into the on-disk embedding store.

    streamrec encode-catalog --from-topic                       # the items topic, to its end
    streamrec encode-catalog --from-jsonl items.jsonl           # one items-topic value per line
    streamrec encode-catalog --from-retail [CSV]                # Online Retail product titles
    streamrec run --embedding-store .cache/embeddings ...       # the job bootstraps from it

Every version of every item is read (the job embeds each version it meets), their texts
(``operators.events.Item.text``) deduplicated, those already in the store skipped, the rest
encoded in batches and written chunk by chunk, so an interrupted run resumes where it stopped.
Records that are not valid items are counted and reported, never fatal. Encoder flags match
the job's (``--model``, ``--device``); vectors are stored under the model's id, so the job only
uses them with the same export.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from operators.events import DeadLetter, Item, item_from_dict, parse_item
from streamrec import paths
from streamrec.topics import ITEMS_TOPIC, add_client_flags, parse_client_properties

CHUNK = 2048  # texts per model round trip and store write


def default_store_dir() -> Path:
    return paths.cache_dir() / "embeddings"


def items_from_jsonl(path: Path) -> Iterator[Item | DeadLetter]:
    """Items from a file of items-topic values (JSON objects), one per line, parsed as the job
    parses the topic (``parse_item``); a bad line is a DeadLetter naming its line."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parsed = parse_item(None, line.rstrip(b"\r\n"), topic=str(path), offset=n)
            if isinstance(parsed, DeadLetter):
                parsed = dataclasses.replace(parsed, error=f"line {n}: {parsed.error}")
            yield parsed


def items_from_retail(path: Path) -> Iterator[Item]:
    """Every product title of an Online Retail file, as the replay would publish them."""
    from streamrec import retail

    for kind, key, value in retail.to_contract_records(retail.iter_retail_rows(path)):
        if kind == "items":
            yield item_from_dict(value, key)


def items_from_topic(
    bootstrap: str, topic: str, client_config: dict[str, str], timeout: float
) -> Iterator[Item | DeadLetter]:
    """Every record of the items topic from its beginning to its end at the start."""
    from confluent_kafka import Consumer

    from streamrec.topics import read_to_end

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": f"streamrec-encode-catalog-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        **client_config,
    }
    consumer = Consumer(conf)
    try:
        for msg in read_to_end(consumer, topic, timeout):
            parsed = parse_item(
                msg.key(), msg.value(), topic=topic, partition=msg.partition(), offset=msg.offset()
            )
            if not isinstance(parsed, Item | DeadLetter):
                continue  # a tombstone: nothing to embed
            yield parsed
    finally:
        consumer.close()


def encode_catalog(items: Iterable[Item | DeadLetter], store, encoder, out=None) -> dict:
    """Embed the distinct texts of ``items`` that ``store`` lacks; returns counts and timing.

    Progress and skipped records go to ``out`` (default: stderr)."""
    out = out or sys.stderr
    t0 = time.perf_counter()
    texts: dict[str, None] = {}
    stats = {"items": 0, "invalid": 0, "texts": 0, "already_stored": 0, "encoded": 0}
    for it in items:
        if isinstance(it, DeadLetter):
            stats["invalid"] += 1
            if stats["invalid"] <= 5:
                print(f"encode-catalog: skipped invalid record: {it.error}", file=out)
            continue
        stats["items"] += 1
        texts.setdefault(it.text())
    unique = list(texts)
    stats["texts"] = len(unique)
    t_model = 0.0
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        todo = [t for t, v in zip(chunk, store.get_many(chunk), strict=True) if v is None]
        stats["already_stored"] += len(chunk) - len(todo)
        if todo:
            t = time.perf_counter()
            vectors = encoder.encode(todo)
            t_model += time.perf_counter() - t
            store.put_many(todo, vectors)
            stats["encoded"] += len(todo)
        print(
            f"encode-catalog: {min(start + CHUNK, len(unique)):,}/{len(unique):,} texts "
            f"({stats['encoded']:,} encoded)",
            file=out,
            flush=True,
        )
    stats["seconds"] = time.perf_counter() - t0
    stats["encode_seconds"] = t_model
    stats["texts_per_s"] = stats["encoded"] / t_model if t_model else None
    return stats


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrec encode-catalog",
        description="embed the catalog's item texts into the on-disk embedding store "
        "the job bootstraps from (--embedding-store)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-topic", action="store_true", help="read the items topic to its end")
    src.add_argument(
        "--from-jsonl", type=Path, metavar="FILE", help="items-topic values, a line each"
    )
    src.add_argument(
        "--from-retail",
        nargs="?",
        const="",
        metavar="CSV",
        help="Online Retail product titles (default file: the shared data, else the sample)",
    )
    p.add_argument("--store", type=Path, default=default_store_dir(), help="default %(default)s")
    p.add_argument("--model", default=None, help="exported encoder, as the job's --model")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=128, help="texts per model call")
    p.add_argument("--items-topic", default=ITEMS_TOPIC)
    p.add_argument("--timeout", type=float, default=300, help="seconds to read the topic")
    add_client_flags(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from jobs.config import DEFAULT_MODEL
    from models.embedding_store import EmbeddingStore, StoreError
    from models.encoder import Encoder, resolve_model_dir
    from models.manifest import ManifestError

    try:
        model_dir = resolve_model_dir(args.model or DEFAULT_MODEL)
        encoder = Encoder(model_dir, provider=args.device, batch_size=args.batch_size, cache_size=0)
    except (FileNotFoundError, ManifestError, RuntimeError) as e:
        print(f"streamrec encode-catalog: {e}", file=sys.stderr)
        return 1
    if args.from_topic:
        items = items_from_topic(
            args.bootstrap_servers,
            args.items_topic,
            parse_client_properties(args.client_property),
            args.timeout,
        )
        source = f"topic {args.items_topic} at {args.bootstrap_servers}"
    elif args.from_jsonl is not None:
        items, source = items_from_jsonl(args.from_jsonl), str(args.from_jsonl)
    else:
        csv = Path(args.from_retail) if args.from_retail else paths.default_data_file()
        items, source = items_from_retail(csv), str(csv)
    try:
        store = EmbeddingStore(args.store, encoder.model_id, encoder.dim, read_only=False)
    except StoreError as e:
        print(f"streamrec encode-catalog: {e}", file=sys.stderr)
        return 1
    with store:
        try:
            stats = encode_catalog(items, store, encoder)
        except (TimeoutError, OSError) as e:  # the topic's end not reached, an unreadable file
            print(f"streamrec encode-catalog: {e}", file=sys.stderr)
            return 1
        total = len(store)
    rate = f", {stats['texts_per_s']:,.0f} texts/s" if stats["texts_per_s"] else ""
    print(
        f"encode-catalog: {stats['items']:,} item records from {source} "
        f"({stats['invalid']} invalid), {stats['texts']:,} distinct texts: "
        f"{stats['encoded']:,} encoded on {encoder.provider}{rate}, "
        f"{stats['already_stored']:,} already stored; {args.store} now holds {total:,} vectors "
        f"for {encoder.model_id} ({stats['seconds']:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
