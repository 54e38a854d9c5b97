"""Create (and delete) the job's Kafka topics with confluent-kafka's AdminClient.

    streamrec topics create --bootstrap-servers localhost:9092 --partitions 2

creates ``events``, ``items`` (log-compacted), ``recommendations`` (compacted with time
retention, so a forget_user tombstone removes the user's lists) and ``events-dlq`` when they are
missing; every name is a flag. Extra client settings (SASL, SSL, ...) pass through
unchanged with ``-X key=value``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamrec import paths

EVENTS_TOPIC = "events"
ITEMS_TOPIC = "items"
RECOMMENDATIONS_TOPIC = "recommendations"
DLQ_TOPIC = "events-dlq"

COMPACTED_CONFIG = {"cleanup.policy": "compact"}
# recommendations: compacted (a forget_user tombstone removes the user's earlier lists; each user
# keeps only the latest list) and deleted after a retention time (lists of users who never come
# back go too); tombstones themselves are kept delete.retention.ms, so consumers see them
RECOMMENDATIONS_RETENTION_MS = 7 * 24 * 3600 * 1000
TOMBSTONE_RETENTION_MS = 24 * 3600 * 1000


def recommendations_config(retention_ms: int = RECOMMENDATIONS_RETENTION_MS) -> dict[str, str]:
    """Topic settings of ``recommendations``: compacted with time retention."""
    return {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(retention_ms),
        "delete.retention.ms": str(TOMBSTONE_RETENTION_MS),
        # roll and clean segments within a day, so that compaction (which skips the active
        # segment) removes a forgotten user's lists within about a day, not a week
        "segment.ms": str(min(retention_ms, 24 * 3600 * 1000)),
        "max.compaction.lag.ms": str(24 * 3600 * 1000),
    }


def parse_client_properties(pairs: Iterable[str] | None) -> dict[str, str]:
    """``["security.protocol=SASL_SSL", ...]`` -> a librdkafka config dict."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"client property {pair!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def partitions(consumer: Consumer, topic: str, offset: int) -> list[TopicPartition]:
    """Every partition of ``topic`` at ``offset`` (empty if the topic does not exist)."""
    md = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None:
        return []
    return [TopicPartition(topic, p, offset) for p in sorted(md.partitions)]


def read_to_end(consumer: Consumer, topic: str, timeout: float = 60):
    """Yield ``topic``'s messages from the beginning up to its end as of the call.

    Assigns every partition to ``consumer`` (left assigned, so later records keep arriving for
    a caller that goes on polling). Raises TimeoutError if the end is not reached in
    ``timeout`` seconds; a missing topic yields nothing.
    """
    parts = partitions(consumer, topic, OFFSET_BEGINNING)
    if not parts:
        return
    consumer.incremental_assign(parts)
    ends = {}
    for tp in parts:
        lo, hi = consumer.get_watermark_offsets(tp, timeout=10)
        if hi > lo:
            ends[tp.partition] = hi
    deadline = time.monotonic() + timeout
    while ends:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic}: end not reached in {timeout:.0f}s ({ends} to go)")
        msg = consumer.poll(0.5)
        if msg is None:
            # a transactional producer's last offset is a commit marker, never delivered: the
            # position (next offset to read) passes it
            done = consumer.position([TopicPartition(topic, p) for p in ends])
            for tp in done:
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition, None)
            continue
        if msg.error():
            if msg.error().fatal():
                raise KafkaException(msg.error())
            continue
        yield msg
        if msg.offset() + 1 >= ends.get(msg.partition(), 0):
            ends.pop(msg.partition(), None)


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers`` and ``-X key=value`` (shared by topics, replay and watch)."""
    parser.add_argument(
        "--bootstrap-servers",
        default=paths.default_bootstrap_servers(),
        help="Kafka brokers (default: $KAFKA_BOOTSTRAP_SERVERS or localhost:9092)",
    )
    parser.add_argument(
        "-X",
        "--client-property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka client setting, passed through unchanged (repeatable)",
    )


def _error_cb(err: KafkaError) -> None:
    # librdkafka reports transient broker-down states here; only fatal ones are worth raising
    if err.fatal():
        raise KafkaException(err)


def admin_client(bootstrap: str, client_config: Mapping[str, str] | None = None) -> AdminClient:
    conf = {"bootstrap.servers": bootstrap, "error_cb": _error_cb, "log_level": 4}
    conf.update(client_config or {})
    return AdminClient(conf)


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    compacted: Iterable[str] = frozenset({ITEMS_TOPIC}),
    replication_factor: int = 1,
    timeout: float = 30,
    client_config: Mapping[str, str] | None = None,
    per_topic: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics of ``{name: partitions}`` that do not exist yet; returns those created.

    ``config`` applies to every new topic; names in ``compacted`` also get
    ``cleanup.policy=compact``; ``per_topic`` adds settings to one topic. Existing topics are
    left as they are (partitions included). Returns once every topic has a leader for each
    partition, so producers can write at once.
    """
    admin = admin_client(bootstrap, client_config)
    compacted = set(compacted)
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = []
    for name, partitions in topics.items():
        if name in existing:
            continue
        conf = dict(config or {})
        if name in compacted:
            conf.update(COMPACTED_CONFIG)
        conf.update((per_topic or {}).get(name, {}))
        new.append(
            NewTopic(
                name,
                num_partitions=int(partitions),
                replication_factor=replication_factor,
                config=conf,
            )
        )
    created = []
    if new:
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for name, fut in futures.items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race: fine
                    raise
    _wait_for_leaders(admin, topics, timeout)
    return created


def _wait_for_leaders(admin: AdminClient, topics: Mapping[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout)
        missing = [
            name
            for name in topics
            if name not in md.topics
            or md.topics[name].error is not None
            or not md.topics[name].partitions
            or any(p.leader < 0 for p in md.topics[name].partitions.values())
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout:.0f}s: {missing}")
        time.sleep(0.1)


def delete_topics(
    bootstrap: str,
    names: Iterable[str],
    timeout: float = 30,
    client_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Delete the named topics that exist; returns those deleted."""
    admin = admin_client(bootstrap, client_config)
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [n for n in names if n in existing]
    if not names:
        return []
    deleted = []
    for name, fut in admin.delete_topics(names, operation_timeout=timeout).items():
        try:
            fut.result()
            deleted.append(name)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    return deleted


def topic_config(
    bootstrap: str, name: str, client_config: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The effective configuration of one topic (``{"cleanup.policy": "compact", ...}``)."""
    from confluent_kafka.admin import ConfigResource

    admin = admin_client(bootstrap, client_config)
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    entries = admin.describe_configs([res])[res].result()
    return {k: v.value for k, v in entries.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="streamrec topics", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("create", "delete", "list"):
        p = sub.add_parser(action)
        add_client_flags(p)
        if action == "list":
            continue
        p.add_argument("--events-topic", default=EVENTS_TOPIC)
        p.add_argument("--items-topic", default=ITEMS_TOPIC, help="log-compacted")
        p.add_argument("--output-topic", default=RECOMMENDATIONS_TOPIC)
        p.add_argument("--dlq-topic", default=DLQ_TOPIC)
        if action == "create":
            p.add_argument("--partitions", type=int, default=1, help="per topic (default 1)")
            p.add_argument("--replication-factor", type=int, default=1)
            p.add_argument(
                "--recommendations-retention-ms",
                type=int,
                default=RECOMMENDATIONS_RETENTION_MS,
                metavar="MS",
                help="the output topic is compacted (a forget_user tombstone removes the "
                "user's lists) and deleted after this (default: 7 days)",
            )
    args = parser.parse_args(argv)
    client = parse_client_properties(args.client_property)
    try:
        if args.action == "list":
            md = admin_client(args.bootstrap_servers, client).list_topics(timeout=30)
            for name in sorted(md.topics):
                if not name.startswith("__"):
                    print(f"{name}\t{len(md.topics[name].partitions)} partitions")
            return 0
        names = [args.events_topic, args.items_topic, args.output_topic, args.dlq_topic]
        if args.action == "delete":
            done = delete_topics(args.bootstrap_servers, names, client_config=client)
            print(f"deleted: {', '.join(done) or 'nothing'}")
            return 0
        done = ensure_topics(
            args.bootstrap_servers,
            dict.fromkeys(names, args.partitions),
            compacted={args.items_topic},
            replication_factor=args.replication_factor,
            client_config=client,
            per_topic={
                args.output_topic: recommendations_config(args.recommendations_retention_ms)
            },
        )
        existing = [n for n in names if n not in done]
        print(
            f"created: {', '.join(done) or 'nothing'}; already there: {', '.join(existing) or 'none'}"
        )
    except (KafkaException, TimeoutError) as e:
        print(f"streamrec topics {args.action}: {e}", file=sys.stderr)
        return 1
    return 0
