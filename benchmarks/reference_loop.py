"""The plain-loop reference: the job's work in one Python process, with no Flink at all.

    python -m benchmarks.reference_loop --bootstrap-servers B --events-topic E --items-topic I \\
        --output-topic O [--dlq-topic D] [--embedding-store DIR] [--model M] [--top-k 10]

A confluent-kafka consumer of the items and events topics -> the code the job runs
(``operators.events`` parsers, ``operators.recommender.Recommender`` driven by
``streamrec.simulate.Simulation`` exactly as the job drives it: session ends before the events
that follow them, ``world.advance_to`` then ``on_event`` then ``world.add``) -> a
confluent-kafka producer of the lists (key = user id; a tombstone for ``forget_user``) and of the
dead letters. Catalog texts are embedded with the job's encoder behind the same embedding store
(``--embedding-store``); search queries with a second encoder, one at a time, as the job does.

Ordering: the catalog goes first. An event is applied once every catalog record up to its time
has been read (an item with a later ``ts`` has arrived, or the items partitions are read to
their end), which is what the job's event-time alignment achieves; nothing else is held back.

``streamrec bench job`` runs it as its ``loop`` variant, to show what PyFlink costs. It takes
the job's plumbing flags (topics, group, ``--start-from``) and ignores the job flags it has no
use for (``--parallelism``, checkpoints, ``--align``, ...). It runs until SIGTERM / Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from collections import deque
from pathlib import Path

log = logging.getLogger("streamrec.reference_loop")

BATCH = 500  # records per consume() call


def parser() -> argparse.ArgumentParser:
    from jobs.config import DEFAULT_MODEL

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reference_loop", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--events-topic", default="events")
    p.add_argument("--items-topic", default="items")
    p.add_argument("--output-topic", default="recommendations")
    p.add_argument("--dlq-topic", default="events-dlq")
    p.add_argument("--group-id", default="streamrec-reference-loop")
    p.add_argument("--start-from", choices=["earliest", "latest"], default="earliest")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    p.add_argument("--embedding-store", default=None, metavar="DIR")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--session-gap", type=int, default=1_800_000, dest="session_gap_ms")
    p.add_argument("--max-future", type=int, default=86_400_000, dest="max_future_ms")
    p.add_argument("--blas-threads", type=int, default=1)
    return p


class ReferenceLoop:
    """Consumer -> parse -> Simulation (the ranking core) -> producer; see the module doc."""

    def __init__(self, args: argparse.Namespace):
        from confluent_kafka import Consumer, Producer

        from jobs.recommend import resolve_model
        from models.encoder import Encoder
        from operators.config import RankingConfig
        from operators.recommender import Recommender
        from streamrec.simulate import Simulation

        self.args = args
        model_dir, manifest = resolve_model(args.model)
        self.model_dir = model_dir
        self.items_encoder = Encoder(model_dir, provider=args.device, batch_size=64)
        if args.embedding_store:
            from models.embedding_store import EmbeddingStore

            self.items_encoder.attach_store(
                EmbeddingStore(
                    args.embedding_store, self.items_encoder.model_id, self.items_encoder.dim
                )
            )
        self.query_encoder = None  # loaded at the first search event
        ranking = dataclasses.replace(RankingConfig(), session_gap_ms=args.session_gap_ms)
        rec = Recommender(int(manifest["dim"]), manifest["model_id"], args.top_k, ranking)
        self.sim = Simulation(rec)
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap_servers,
                "group.id": args.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": args.start_from,
                "enable.partition.eof": False,
            }
        )
        self.producer = Producer(
            {"bootstrap.servers": args.bootstrap_servers, "linger.ms": 5, "acks": "all"}
        )
        self.pending: deque = deque()  # (Event, created) waiting for the catalog
        self.items_ts = float("-inf")  # largest ts of a catalog record read
        self.items_tps: list = []
        self.stopped = False
        self.counts = {"events": 0, "items": 0, "lists": 0, "dead_letters": 0}

    # ---- Kafka ------------------------------------------------------------------------------
    def assign(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

        start = OFFSET_BEGINNING if self.args.start_from == "earliest" else OFFSET_END
        tps = []
        for topic in (self.args.items_topic, self.args.events_topic):
            md = self.consumer.list_topics(topic, timeout=30).topics[topic]
            if md.error is not None:
                raise SystemExit(f"reference loop: topic {topic}: {md.error}")
            parts = [TopicPartition(topic, p, start) for p in sorted(md.partitions)]
            tps += parts
            if topic == self.args.items_topic:
                self.items_tps = parts
        self.consumer.assign(tps)

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:  # local queue full: serve delivery reports, retry
                self.producer.poll(0.05)

    def catalog_read(self) -> bool:
        """Every items partition read to its high watermark (as of the last fetch)."""
        from confluent_kafka import TopicPartition

        positions = self.consumer.position(
            [TopicPartition(t.topic, t.partition) for t in self.items_tps]
        )
        for tp in positions:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
            except Exception:  # noqa: BLE001 - no fetch yet: ask the broker
                _, high = self.consumer.get_watermark_offsets(tp, timeout=5.0)
            if high < 0:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=5.0)
            if tp.offset < 0 or tp.offset < high:
                if tp.offset < 0 and high == 0:
                    continue  # an empty partition
                return False
        return True

    # ---- the work ---------------------------------------------------------------------------
    def on_items(self, msgs) -> None:
        from operators.events import DeadLetter, ItemRemoved
        from operators.recommender import catalog_entry

        now = int(time.time() * 1000)
        parsed = []
        for m in msgs:
            p = _parse_item(m, now, self.args.max_future_ms)
            if isinstance(p, DeadLetter):
                self.dead_letter(p)
            else:
                parsed.append(p)
        texts = [p.text() for p in parsed if not isinstance(p, ItemRemoved)]
        vectors = iter(self.items_encoder.encode(texts)) if texts else iter(())
        for p in parsed:
            if isinstance(p, ItemRemoved):
                self.sim.item(p)
            else:
                self.sim.item(catalog_entry(p, next(vectors)))
                if p.ts is not None:
                    self.items_ts = max(self.items_ts, p.ts)
            self.counts["items"] += 1

    def on_event(self, ev) -> None:
        qvec = None
        if ev.type == "search" and ev.query:
            if self.query_encoder is None:
                from models.encoder import Encoder

                self.query_encoder = Encoder(
                    self.model_dir, provider=self.args.device, batch_size=1, cache_size=0
                )
            qvec = self.query_encoder.encode([ev.query])[0]
        ends, own = self.sim.event(ev, qvec)
        for out in [*ends, own] if own is not None else ends:
            self.produce(self.args.output_topic, out.user_id.encode(), out.value)
            self.counts["lists"] += out.value is not None
        self.counts["events"] += 1

    def dead_letter(self, dl) -> None:
        self.counts["dead_letters"] += 1
        self.produce(self.args.dlq_topic, None, dl.to_json())

    def release(self) -> None:
        """Apply the held events whose catalog has been read (all of them at its end)."""
        if not self.pending:
            return
        everything = self.pending[-1].ts > self.items_ts and self.catalog_read()
        while self.pending and (everything or self.pending[0].ts <= self.items_ts):
            self.on_event(self.pending.popleft())

    def run(self) -> None:
        from operators.events import DeadLetter

        self.assign()
        items_topic = self.args.items_topic
        while not self.stopped:
            msgs = self.consumer.consume(BATCH, 0.05)
            items, now = [], int(time.time() * 1000)
            for m in msgs:
                if m.error():
                    log.warning("consumer: %s", m.error())
                    continue
                if m.topic() == items_topic:
                    items.append(m)
                    continue
                ev = _parse_event(m, now, self.args.max_future_ms)
                if isinstance(ev, DeadLetter):
                    self.dead_letter(ev)
                else:
                    self.pending.append(ev)
            if items:
                self.on_items(items)
            self.release()
            self.producer.poll(0)

    def close(self) -> None:
        self.producer.flush(30)
        self.consumer.close()


def _source(msg, now_ms: int, max_future_ms: int) -> dict:
    """The parsers' keyword arguments for a consumed record: its coordinates and the clock."""
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "now_ms": now_ms,
        "max_future_ms": max_future_ms,
    }


def _parse_event(msg, now_ms: int, max_future_ms: int):
    from operators.events import parse_event

    return parse_event(msg.value(), **_source(msg, now_ms, max_future_ms))


def _parse_item(msg, now_ms: int, max_future_ms: int):
    from operators.events import parse_item

    return parse_item(msg.key(), msg.value(), **_source(msg, now_ms, max_future_ms))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args, ignored = parser().parse_known_args(argv)
    if ignored:
        log.info("job flags the loop has no use for: %s", " ".join(ignored))
    if args.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")
    if args.embedding_store and not (Path(args.embedding_store) / "CURRENT").is_file():
        print(f"reference loop: no embedding store at {args.embedding_store}", file=sys.stderr)
        return 2
    loop = ReferenceLoop(args)

    def _stop(signum, frame):
        loop.stopped = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    log.info(
        "reference loop: %s + %s -> %s (one process, no Flink)",
        args.events_topic,
        args.items_topic,
        args.output_topic,
    )
    try:
        loop.run()
    finally:
        loop.close()
    log.info("reference loop stopped: %s", loop.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
