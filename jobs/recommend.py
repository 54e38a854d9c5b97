"""The recommend job: Kafka events + catalog -> per-user top-K lists on Kafka.

    items  --parse--> [encode: ONNX BERT] --broadcast---------------------------+
                  \\-> dead letters                                              v
    events --parse--> [embed queries] --key_by(user_id)--> [profile + score] --> recommendations
                  \\-> dead letters --> events-dlq

Runs on the local mini-cluster with ``streamrec run [flags]`` (or ``python -m jobs.recommend``)
and unchanged on a cluster with ``flink run -py jobs/recommend.py [flags]``. This file only wires:
the logic is in ``operators/``, the flags in ``jobs/config.py``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `flink run -py jobs/recommend.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Configuration, Duration, WatermarkStrategy
from pyflink.common.typeinfo import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSink,
    KafkaSource,
)
from pyflink.java_gateway import get_gateway

from jobs.config import JobConfig, parse_args
from operators.batching import bucket_of
from operators.functions import (
    CATALOG_STATE,
    DLQ_TAG,
    KV_ROW,
    EmbedQueries,
    EncodeItems,
    EventTimestamps,
    ItemTimestamps,
    ParseEvents,
    ParseItems,
    Recommend,
)

log = logging.getLogger("streamrec.job")

RAW_ROW = Types.ROW_NAMED(
    ["topic", "partition", "offset", "timestamp", "key", "value"],
    [
        Types.STRING(),
        Types.INT(),
        Types.LONG(),
        Types.LONG(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
    ],
)


def resolve_model(model: str) -> tuple[Path, dict]:
    """A model folder (or a name in the model cache) and its manifest."""
    from streamrec import paths

    cand = Path(model)
    folder = cand if cand.is_dir() else paths.model_dir() / model
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(
            f"no exported encoder at {folder} (manifest.json missing); "
            "run `streamrec export-model` or `streamrec setup`, or pass --model DIR"
        )
    return folder.resolve(), json.loads(manifest.read_text())


def environment(cfg: JobConfig) -> StreamExecutionEnvironment:
    conf = Configuration()
    conf.set_string("state.backend.type", "rocksdb")
    conf.set_string("execution.checkpointing.dir", cfg.resolved_checkpoint_dir())
    conf.set_string("python.fn-execution.bundle.time", str(cfg.bundle_time_ms))
    conf.set_string("python.fn-execution.bundle.size", str(cfg.bundle_size))
    conf.set_string("pipeline.name", cfg.job_name)
    python = cfg.python_executable
    if python is None and not _submitted_by_flink_cli():
        python = sys.executable  # local mini-cluster: workers run this interpreter (its venv)
    if python:
        conf.set_string("python.executable", python)
    if cfg.restart_attempts < 0:  # keep serving: restart from the last checkpoint, with backoff
        conf.set_string("restart-strategy.type", "exponential-delay")
    elif cfg.restart_attempts == 0:
        conf.set_string("restart-strategy.type", "none")
    else:
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(cfg.restart_attempts))
        conf.set_string("restart-strategy.fixed-delay.delay", "5 s")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.configure(conf)  # also when the JVM (and an earlier environment) already exists
    if python:
        env.set_python_executable(python)
    env.add_jars(*cfg.resolved_jars())
    env.set_parallelism(cfg.parallelism)
    if cfg.checkpoint_interval_ms > 0:
        env.enable_checkpointing(cfg.checkpoint_interval_ms)
    elif cfg.delivery == "exactly-once":
        raise SystemExit("--delivery exactly-once needs checkpoints (--checkpoint-interval > 0)")
    return env


def kafka_source(cfg: JobConfig, topic: str, client_suffix: str) -> KafkaSource:
    jvm = get_gateway().jvm
    reset = (
        KafkaOffsetResetStrategy.EARLIEST
        if cfg.start_from == "earliest"
        else KafkaOffsetResetStrategy.LATEST
    )
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(cfg.bootstrap_servers)
        .set_topics(topic)
        .set_group_id(cfg.group_id)
        .set_client_id_prefix(f"{cfg.group_id}-{client_suffix}")
        # resume from the group's committed offsets; fall back to --start-from
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(reset))
        .set_property("partition.discovery.interval.ms", "10000")
    )
    for k, v in cfg.kafka_properties.items():
        builder.set_property(k, v)
    # every record, raw: Row(topic, partition, offset, timestamp, key, value) (PyFlink's builder
    # only exposes value-only deserialisers, which lose keys, offsets and tombstones)
    builder._j_builder.setDeserializer(jvm.io.streamrec.flink.RawRecordDeserializer())
    return builder.build()


def kafka_sink(cfg: JobConfig, topic: str, name: str) -> KafkaSink:
    jvm = get_gateway().jvm
    builder = KafkaSink.builder().set_bootstrap_servers(cfg.bootstrap_servers)
    if cfg.delivery == "exactly-once":
        builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        builder.set_transactional_id_prefix(f"{cfg.group_id}-{name}")
        builder.set_property("transaction.timeout.ms", "600000")
    else:
        builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    builder.set_property("linger.ms", "5")
    for k, v in cfg.kafka_properties.items():
        builder.set_property(k, v)
    # Row(key, value) -> keyed record; null value -> tombstone
    builder._j_builder.setRecordSerializer(jvm.io.streamrec.flink.KeyValueRowSerializer(topic))
    return builder.build()


def pipeline(items_raw, events_raw, cfg: JobConfig):
    """The operator graph between sources and sinks: raw Kafka rows in, (recommendations, dead
    letters) out, both as Row(key, value). Shared by the job and the pipeline tests."""
    model_dir, manifest = resolve_model(cfg.model)
    model_id, dim = manifest["model_id"], int(manifest["dim"])

    # encoder operators batch records per bucket (a few buckets per task)
    encoder_args = (str(model_dir), cfg.device, cfg.encoder_batch_size, cfg.encoder_max_delay_ms)
    store_path = None  # catalog embeddings computed offline (streamrec encode-catalog)
    if cfg.embedding_store:
        store = Path(cfg.embedding_store).expanduser().resolve()
        store_path = str(store)
        if not (store / "CURRENT").is_file():
            raise SystemExit(
                f"--embedding-store {cfg.embedding_store}: no RocksDB store there "
                "(create it with `streamrec encode-catalog --store DIR`)"
            )
    buckets = 4 * cfg.parallelism

    def event_time(assigner):
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(
            Duration.of_millis(cfg.out_of_orderness_ms)
        ).with_timestamp_assigner(assigner)
        return strategy.with_idleness(Duration.of_millis(cfg.idleness_ms))

    # catalog: parse -> event time -> embed (batched; once per item version) -> broadcast.
    # Event time is assigned next to the source, so it follows the topic's order; the encoder
    # flushes waiting items before a watermark passes them (event-time timers).
    items = items_raw.process(ParseItems()).name("parse-items").uid("parse-items")
    catalog = (
        items.assign_timestamps_and_watermarks(event_time(ItemTimestamps()))
        .name("item-time")
        .uid("item-time")
        .key_by(lambda it: bucket_of(it.item_id, buckets), key_type=Types.INT())
        .process(EncodeItems(*encoder_args, event_time_flush=True, store_path=store_path))
        .name("encode-items")
        .uid("encode-items")
        .broadcast(CATALOG_STATE)
    )

    # events: parse (invalid -> DLQ) -> event time -> embed queries -> keyed profile + score
    events = events_raw.process(ParseEvents()).name("parse-events").uid("parse-events")
    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(cfg.out_of_orderness_ms)
    ).with_timestamp_assigner(EventTimestamps())
    timed = events.assign_timestamps_and_watermarks(watermarks).name("event-time").uid("event-time")
    embedded = (
        timed.key_by(lambda ev: bucket_of(ev.user_id, buckets), key_type=Types.INT())
        .process(EmbedQueries(*encoder_args, event_time_flush=True))
        .name("embed-queries")
        .uid("embed-queries")
    )
    recs = (
        embedded.key_by(lambda pair: pair[0].user_id, key_type=Types.STRING())
        .connect(catalog)
        .process(
            Recommend(
                dim,
                model_id,
                cfg.top_k,
                cfg.state_ttl_days,
                align=cfg.align == "event-time",
                max_wait_ms=cfg.max_wait_ms,
                blas_threads=cfg.blas_threads,
            ),
            output_type=KV_ROW,
        )
        .name("recommend")
        .uid("recommend")
    )
    dead = (
        events.get_side_output(DLQ_TAG)
        .union(items.get_side_output(DLQ_TAG))
        .map(lambda r: r, output_type=KV_ROW)
        .name("dead-letters")
        .uid("dead-letters")
    )
    return recs, dead


def build(env: StreamExecutionEnvironment, cfg: JobConfig) -> None:
    """Kafka sources -> pipeline -> Kafka sinks."""
    no_wm = WatermarkStrategy.no_watermarks()
    items_raw = env.from_source(
        kafka_source(cfg, cfg.items_topic, "items"), no_wm, "items-source", RAW_ROW
    ).uid("items-source")
    events_raw = env.from_source(
        kafka_source(cfg, cfg.events_topic, "events"), no_wm, "events-source", RAW_ROW
    ).uid("events-source")
    recs, dead = pipeline(items_raw, events_raw, cfg)
    recs.sink_to(kafka_sink(cfg, cfg.output_topic, "recs")).name("recommendations-sink").uid(
        "recommendations-sink"
    )
    dead.sink_to(kafka_sink(cfg, cfg.dlq_topic, "dlq")).name("dlq-sink").uid("dlq-sink")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = parse_args(argv)
    # a parent that ran PyFlink in-process (loopback workers, e.g. a test session) leaves this
    # set; this process is a job driver and must be able to start its own gateway
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    env = environment(cfg)
    build(env, cfg)
    log.info(
        "starting %s: %s -> %s (brokers %s, parallelism %d, model %s)",
        cfg.job_name,
        cfg.events_topic,
        cfg.output_topic,
        cfg.bootstrap_servers,
        cfg.parallelism,
        cfg.model,
    )
    env.execute(cfg.job_name)
    return 0


def _submitted_by_flink_cli() -> bool:
    # `flink run` launches the Python driver with this set; a plain `python` run does not
    return "_PYTHON_WORKING_DIR" in os.environ or "FLINK_CONF_DIR" in os.environ


if __name__ == "__main__":
    sys.exit(main())
