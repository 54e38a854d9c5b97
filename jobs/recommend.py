"""The recommend job: Kafka events + catalog -> per-user top-K lists on Kafka.

    items  --[JVM: key, ts]--> parse --> [encode: ONNX BERT] --+
                                  \\-> dead letters            +--union--> broadcast -----+
    events --[JVM: key, ts]--+--[JVM]-------------------------+                          v
                             \\--key_by(user_id) [JVM]---------> [recommend: parse, profile,
                                                                   rank (RocksDB)] --> recommendations
                                                                   \\-> dead letters --> events-dlq

Records are keyed and timed in the JVM at the source (io.streamrec.flink.KeyedRecords); each
event then crosses into Python once, into the recommend operator (operators/recommend_function.py),
which by default runs inside the TaskManager JVM (PyFlink's thread mode). Every recommend task also
receives every catalog update and every event on its broadcast input, to keep the same world model.

Runs on the local mini-cluster with ``streamrec run [flags]`` (or ``python -m jobs.recommend``)
and unchanged on a cluster with ``flink run -py jobs/recommend.py [flags]``. This file only wires:
the logic is in ``operators/``, the flags in ``jobs/config.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `flink run -py jobs/recommend.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyflink.common import Configuration, Types, WatermarkStrategy
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaSink,
    KafkaSource,
)
from pyflink.datastream.data_stream import KeyedStream
from pyflink.java_gateway import get_gateway

from jobs.config import JobConfig, parse_args
from operators.batching import bucket_of
from operators.config import RankingConfig
from operators.functions import (
    DLQ_TAG,
    KEYED_ROW,
    KV_ROW,
    RECORD_ROW,
    UPDATE_ROW,
    EncodeItems,
    ParseItems,
)
from operators.recommend_function import WORLD_STATE, Recommend, RecommendSettings
from streamrec import paths

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

PROMETHEUS_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"

# the field each topic's records are keyed by, and whether a record without it (a catalog
# tombstone) falls back to the Kafka key
KEY_FIELDS = {"events": ("user_id", False), "items": ("item_id", True)}


@functools.lru_cache(maxsize=8)
def resolve_model(model: str) -> tuple[Path, dict]:
    """A model folder (or a name in the model cache) and its manifest, verified: the ONNX file's
    sha256 is the manifest's (so a corrupted or half-copied model is a one-line error here,
    before the job is submitted, not a failure in every task)."""
    from models.manifest import ManifestError, read_manifest, verify_model_file

    cand = Path(model)
    folder = cand if cand.is_dir() else paths.model_dir() / model
    if not (folder / "manifest.json").is_file():
        raise SystemExit(
            f"no exported encoder at {folder} (manifest.json missing); "
            "run `streamrec export-model` or `streamrec setup`, or pass --model DIR"
        )
    try:
        manifest = read_manifest(folder)
        verify_model_file(folder, manifest)
    except ManifestError as e:
        raise SystemExit(f"--model {model}: {e}") from None
    if not (folder / "tokenizer.json").is_file():
        raise SystemExit(f"--model {model}: {folder / 'tokenizer.json'} not found")
    return folder.resolve(), manifest


# written beside checkpoints (in the job's folder) and into savepoints that `streamrec run` takes:
# what the state was built with, checked before a job resumes from it
STATE_INFO = "streamrec-state.json"


def state_info(manifest: dict) -> dict:
    from operators.keyed_state import HELD_VERSION, PROFILE_VERSION
    from operators.world_store import SCHEMA_VERSION

    return {
        "model_id": manifest["model_id"],
        "dim": int(manifest["dim"]),
        "world_schema": SCHEMA_VERSION,
        "profile_schema": PROFILE_VERSION,
        "held_schema": HELD_VERSION,
    }


def _local_path(uri: str) -> Path | None:
    """A local folder for a path or file: URI (None for other file systems)."""
    if uri.startswith("file:"):
        uri = uri[len("file:") :]
        while uri.startswith("//"):
            uri = uri[1:]
    elif "://" in uri:
        return None
    return Path(uri)


def write_state_info(folder: str, manifest: dict) -> None:
    path = _local_path(folder)
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / STATE_INFO).write_text(json.dumps(state_info(manifest)) + "\n")
    except OSError as e:
        log.warning("could not write %s into %s: %s", STATE_INFO, path, e)


def check_restore_path(
    restore: str, manifest: dict, embedding_store: str | None = None
) -> str | None:
    """SystemExit (one line) when the savepoint or checkpoint at ``restore`` was written by a
    newer job, as far as its STATE_INFO tells. When it was built with another model than
    ``manifest``'s, the job switches models (operators.model_switch): returns what it will do,
    for the driver to print (None: the same model, or nothing recorded: then the tasks find
    out from the state itself and switch all the same)."""
    path = _local_path(restore)
    if path is None:
        return None
    if path.name == "_metadata":
        path = path.parent
    if not path.exists():
        raise SystemExit(f"--from-savepoint {restore}: no such savepoint or checkpoint")
    for folder in (path, path.parent):
        info_file = folder / STATE_INFO
        if info_file.is_file():
            break
    else:
        return None
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"--from-savepoint {restore}: unreadable {info_file}: {e}") from None
    ours = state_info(manifest)
    newer = [k for k in ours if k.endswith("_schema") and int(info.get(k, 0)) > ours[k]]
    if newer:
        raise SystemExit(
            f"--from-savepoint {restore}: written by a newer job ({', '.join(newer)} "
            f"{[info[k] for k in newer]} > {[ours[k] for k in newer]}); resume with that version"
        )
    if (info.get("model_id"), info.get("dim")) == (ours["model_id"], ours["dim"]):
        return None
    return (
        f"switching models: the state at {restore} was built with {info.get('model_id')} "
        f"(dim {info.get('dim')}); this job runs {ours['model_id']} (dim {ours['dim']}). "
        "Before it scores anything, every recommend task re-embeds the restored catalog with "
        f"the new model ({_store_note(embedding_store, ours)}); each user's search queries are "
        "re-embedded when the user is next scored; the behaviour model is kept. Lists name "
        f"{ours['model_id']} from the first one on."
    )


def _store_note(embedding_store: str | None, ours: dict) -> str:
    """Where the re-embedded catalog's vectors come from, for the switch message."""
    if not embedding_store:
        return (
            "no --embedding-store: every item text goes through the encoder; "
            "`streamrec encode-catalog --model NEW --store DIR` and --embedding-store DIR "
            "reuse vectors computed offline"
        )
    from models.embedding_store import EmbeddingStore, StoreError

    try:
        with EmbeddingStore(embedding_store, ours["model_id"], ours["dim"]) as store:
            n = len(store)
    except StoreError as e:
        return f"the embedding store is unusable ({e}): every item text goes through the encoder"
    return (
        f"{n:,} vectors of the new model in the embedding store {embedding_store}; "
        "texts it lacks go through the encoder"
    )


def environment(cfg: JobConfig) -> StreamExecutionEnvironment:
    conf = Configuration()
    conf.set_string("state.backend.type", "rocksdb")
    # timers in the heap (checkpointed with the keyed state): a user's timers are touched on
    # every event, RocksDB-backed timers would cost a write and a read each
    conf.set_string("state.backend.rocksdb.timer-service.factory", "HEAP")
    conf.set_string("execution.checkpointing.dir", cfg.resolved_checkpoint_dir())
    conf.set_string("execution.checkpointing.savepoint-dir", cfg.resolved_savepoint_dir())
    conf.set_string(
        "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
    )
    if cfg.from_savepoint:
        conf.set_string("execution.state-recovery.path", cfg.from_savepoint)
    conf.set_string("python.execution-mode", cfg.execution_mode)
    conf.set_string("python.fn-execution.bundle.time", str(cfg.bundle_time_ms))
    conf.set_string("python.fn-execution.bundle.size", str(cfg.bundle_size))
    conf.set_string("pipeline.name", cfg.job_name)
    conf.set_string("pipeline.auto-watermark-interval", f"{cfg.watermark_interval_ms} ms")
    python = cfg.python_executable
    if python is None and not _submitted_by_flink_cli():
        python = sys.executable  # local mini-cluster: workers run this interpreter (its venv)
    if python:
        conf.set_string("python.executable", python)
    python_path = cfg.python_path or (paths.worker_python_path(python) if python else None)
    if python_path:
        conf.set_string("python.pythonpath", python_path)
    if cfg.restart_attempts < 0:  # keep serving: restart from the last checkpoint, with backoff
        conf.set_string("restart-strategy.type", "exponential-delay")
    elif cfg.restart_attempts == 0:
        conf.set_string("restart-strategy.type", "none")
    else:
        conf.set_string("restart-strategy.type", "fixed-delay")
        conf.set_string("restart-strategy.fixed-delay.attempts", str(cfg.restart_attempts))
        conf.set_string("restart-strategy.fixed-delay.delay", "5 s")
    local = not _submitted_by_flink_cli()
    if local and cfg.metrics_port:
        conf.set_string("metrics.reporter.prom.factory.class", PROMETHEUS_FACTORY)
        # the first free port of PORT..PORT+9: several local jobs (tests, an evaluation beside
        # a demo) each get one; the job's log names it
        conf.set_string("metrics.reporter.prom.port", f"{cfg.metrics_port}-{cfg.metrics_port + 9}")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.configure(conf)  # also when the JVM (and an earlier environment) already exists
    if local and cfg.metrics_port:
        # the mini-cluster loads no plugins: the reporter goes on the local JVM's class path
        # (not pipeline.jars, which would ship it to a cluster as a user jar)
        from pyflink.util.java_utils import add_jars_to_context_class_loader

        jars = paths.prometheus_reporter_jars()
        if not jars:
            raise SystemExit(
                "--metrics-port: the Prometheus reporter jar is missing; run `streamrec setup` "
                "(or pass --metrics-port 0)"
            )
        add_jars_to_context_class_loader([j.as_uri() for j in jars])
    if python:
        env.set_python_executable(python)
    env.add_jars(*cfg.resolved_jars())
    env.set_parallelism(cfg.parallelism)
    env.set_buffer_timeout(cfg.buffer_timeout_ms)
    if cfg.checkpoint_interval_ms > 0:
        env.enable_checkpointing(cfg.checkpoint_interval_ms)
    elif cfg.delivery == "exactly-once":
        raise SystemExit("--delivery exactly-once needs checkpoints (--checkpoint-interval > 0)")
    return env


def watermarks(cfg: JobConfig, topic_kind: str) -> WatermarkStrategy:
    """Event time from the records' ts, per Kafka partition, in the JVM (io.streamrec.flink.
    EventTimes). The catalog gets --catalog-wait to deliver its first records at start, and its
    own bound: event time is the minimum over every partition, so with the events' bound an
    active catalog partition held each list up to twice that bound (until it counted as idle)."""
    catalog = topic_kind == "items"
    startup = cfg.catalog_wait_ms if catalog else cfg.idleness_ms
    bound = cfg.catalog_out_of_orderness_ms if catalog else cfg.out_of_orderness_ms
    j = get_gateway().jvm.io.streamrec.flink.EventTimes.strategy(bound, cfg.idleness_ms, startup)
    return WatermarkStrategy(j)


def kafka_source(cfg: JobConfig, topic: str, topic_kind: str) -> KafkaSource:
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
        .set_client_id_prefix(f"{cfg.group_id}-{topic_kind}")
        # resume from the group's committed offsets; fall back to --start-from
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(reset))
        .set_property("partition.discovery.interval.ms", "10000")
    )
    for k, v in cfg.kafka_properties.items():
        builder.set_property(k, v)
    key_field, fallback = KEY_FIELDS[topic_kind]
    builder._j_builder.setDeserializer(
        jvm.io.streamrec.flink.KeyedRecordDeserializer(key_field, fallback, cfg.max_future_ms)
    )
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


def keyed_by_field(stream: DataStream) -> KeyedStream:
    """A stream of Row(key, record) keyed by its key field in the JVM (no Python key selector):
    the Python operator downstream receives the record."""
    jvm = get_gateway().jvm
    j_keyed = stream._j_data_stream.keyBy(
        jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, RECORD_ROW, stream)


def keyed_records(raw: DataStream, cfg: JobConfig, topic_kind: str) -> DataStream:
    """Raw Kafka rows (RAW_ROW) -> keyed, timed records exactly as the Kafka source emits them
    (the same JVM code and watermarks): how tests feed the graph from collections. Runs at the
    parallelism of ``raw``, so records keep their order as they would within a partition."""
    jvm = get_gateway().jvm
    key_field, fallback = KEY_FIELDS[topic_kind]
    mapper = jvm.io.streamrec.flink.RawToKeyed(key_field, fallback, cfg.max_future_ms)
    parallelism = raw._j_data_stream.getParallelism()
    keyed = DataStream(raw._j_data_stream.map(mapper, KEYED_ROW.get_java_type_info()))
    keyed.set_parallelism(parallelism)
    timed = keyed.assign_timestamps_and_watermarks(watermarks(cfg, topic_kind))
    return timed.set_parallelism(parallelism)


def settings(cfg: JobConfig) -> RecommendSettings:
    model_dir, manifest = resolve_model(cfg.model)
    ranking = RankingConfig()
    if cfg.ranking_config:
        try:
            ranking = RankingConfig.load(cfg.ranking_config)
        except (OSError, ValueError, TypeError) as e:
            raise SystemExit(f"--ranking-config {cfg.ranking_config}: {e}") from None
    # the job's flag sets the session gap (the behaviour model splits orders by it too)
    ranking = dataclasses.replace(ranking.without(*cfg.ablate), session_gap_ms=cfg.session_gap_ms)
    return RecommendSettings(
        dim=int(manifest["dim"]),
        model_id=manifest["model_id"],
        model_dir=str(model_dir),
        device=cfg.device,
        top_k=cfg.top_k,
        ranking=ranking,
        align=cfg.align == "event-time",
        max_wait_ms=cfg.max_wait_ms,
        max_future_ms=cfg.max_future_ms,
        state_ttl_days=cfg.state_ttl_days,
        blas_threads=cfg.blas_threads,
        embedding_store=str(Path(cfg.embedding_store).expanduser().resolve())
        if cfg.embedding_store
        else None,
        encoder_batch_size=cfg.encoder_batch_size,
        early_session_timers=cfg.execution_mode == "process",
    )


def pipeline(items: DataStream, events: DataStream, cfg: JobConfig):
    """The operator graph between sources and sinks: keyed, timed records in (KEYED_ROW, as the
    sources emit them), (recommendations, dead letters) out, both as Row(key, value). Shared by
    the job and the pipeline tests."""
    jvm = get_gateway().jvm
    rs = settings(cfg)
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

    # catalog: parse (invalid -> DLQ) -> embed (batched; once per item version) -> world updates
    parsed_items = (
        items.process(ParseItems(cfg.max_future_ms), output_type=Types.PICKLED_BYTE_ARRAY())
        .name("parse-items")
        .uid("parse-items")
    )
    item_updates = (
        parsed_items.key_by(lambda v: bucket_of(v[1].item_id, buckets), key_type=Types.INT())
        .process(
            EncodeItems(
                str(rs.model_dir),
                cfg.device,
                cfg.encoder_batch_size,
                cfg.encoder_max_delay_ms,
                store_path=store_path,
            ),
            output_type=UPDATE_ROW,
        )
        .name("encode-items")
        .uid("encode-items")
    )
    # every event also feeds the world model of every recommend task (a JVM step)
    event_updates = DataStream(
        events._j_data_stream.flatMap(jvm.io.streamrec.flink.BroadcastUpdates())
    )
    event_updates.name("event-updates").uid("event-updates")
    world = item_updates.union(event_updates).broadcast(WORLD_STATE)

    recs = (
        keyed_by_field(events)
        .connect(world)
        .process(Recommend(rs), output_type=KV_ROW)
        .name("recommend")
        .uid("recommend")
    )
    dead = (
        recs.get_side_output(DLQ_TAG)
        .union(parsed_items.get_side_output(DLQ_TAG), item_updates.get_side_output(DLQ_TAG))
        .map(lambda r: r, output_type=KV_ROW)
        .name("dead-letters")
        .uid("dead-letters")
    )
    return recs, dead


def build(env: StreamExecutionEnvironment, cfg: JobConfig) -> None:
    """Kafka sources -> pipeline -> Kafka sinks."""
    items = env.from_source(
        kafka_source(cfg, cfg.items_topic, "items"), watermarks(cfg, "items"), "items-source"
    ).uid("items-source")
    events = env.from_source(
        kafka_source(cfg, cfg.events_topic, "events"), watermarks(cfg, "events"), "events-source"
    ).uid("events-source")
    recs, dead = pipeline(items, events, cfg)
    recs.sink_to(kafka_sink(cfg, cfg.output_topic, "recs")).name("recommendations-sink").uid(
        "recommendations-sink"
    )
    dead.sink_to(kafka_sink(cfg, cfg.dlq_topic, "dlq")).name("dlq-sink").uid("dlq-sink")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = parse_args(argv)
    _, manifest = resolve_model(cfg.model)  # before anything starts: a bad model is one line
    if cfg.from_savepoint:
        switch = check_restore_path(cfg.from_savepoint, manifest, cfg.embedding_store)
        if switch is not None:
            print(switch, flush=True)
    # a parent that ran PyFlink in-process (loopback workers, e.g. a test session) leaves this
    # set; this process is a job driver and must be able to start its own gateway
    os.environ.pop("PYFLINK_GATEWAY_DISABLED", None)
    env = environment(cfg)
    build(env, cfg)
    log.info(
        "starting %s: %s -> %s (brokers %s, parallelism %d, model %s, %s mode)",
        cfg.job_name,
        cfg.events_topic,
        cfg.output_topic,
        cfg.bootstrap_servers,
        cfg.parallelism,
        cfg.model,
        cfg.execution_mode,
    )
    if _submitted_by_flink_cli():
        env.execute(cfg.job_name)  # `flink stop --savepointPath` stops it on a cluster
        return 0
    return run_until_stopped(env, cfg)


def run_until_stopped(env: StreamExecutionEnvironment, cfg: JobConfig) -> int:
    """Run on the local mini-cluster until the job ends, or until SIGTERM / Ctrl-C: then stop it
    with a savepoint (``--savepoint-dir``) and print its path, for ``--from-savepoint``."""
    stop = []

    def _stop(signum, frame):
        stop.append(signum)

    # before the submission: a stop that comes while the job is being submitted (or restored)
    # still ends in a savepoint, never in the default handler's kill
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    client = env.execute_async(cfg.job_name)
    _, manifest = resolve_model(cfg.model)
    job_id = str(client.get_job_id())
    write_state_info(f"{cfg.resolved_checkpoint_dir().rstrip('/')}/{job_id}", manifest)
    result = client.get_job_execution_result()
    while not stop and not result.done():
        time.sleep(0.2)
    if not stop:
        result.result()  # raises when the job failed
        return 0
    log.info("stopping with a savepoint in %s ...", cfg.resolved_savepoint_dir())
    path = _stop_with_savepoint(client, cfg.resolved_savepoint_dir())
    if path is None:
        client.cancel().result()
        print("stopped without a savepoint (cancelled; its last checkpoint is kept)", flush=True)
        return 1
    write_state_info(path, manifest)
    print(f"savepoint: {path}", flush=True)
    log.info("stopped; resume with --from-savepoint %s", path)
    return 0


def _stop_with_savepoint(client, directory: str, attempts: int = 6) -> str | None:
    """JobClient.stopWithSavepoint (PyFlink has no Python call for it): the savepoint's path,
    or None when no savepoint could be taken (retried while the job's tasks are still being
    deployed or restarted, which a savepoint needs running)."""
    from py4j.protocol import Py4JJavaError

    jvm = get_gateway().jvm
    for attempt in range(attempts):
        try:
            return client._j_job_client.stopWithSavepoint(
                False, directory, jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
            ).get()
        except Py4JJavaError as e:
            cause = e.java_exception
            while cause.getCause() is not None:
                cause = cause.getCause()
            log.warning("no savepoint (attempt %d): %s", attempt + 1, cause.getMessage())
            time.sleep(5)
    return None


def _submitted_by_flink_cli() -> bool:
    # `flink run` launches the Python driver with this set; a plain `python` run does not
    return "_PYTHON_WORKING_DIR" in os.environ or "FLINK_CONF_DIR" in os.environ


if __name__ == "__main__":
    sys.exit(main())
