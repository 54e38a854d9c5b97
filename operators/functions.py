"""Flink functions of the catalog branch, and what every Python operator of the job shares:
thin shells that move records in and out of Flink state and call the pure logic in this package.

Records arrive keyed and timed by the JVM (io.streamrec.flink.KeyedRecords):
``Row(key, Row(topic, partition, offset, ts, created, kafka_key, value))``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, ProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from operators import metrics as m
from operators.batching import BatchPolicy, batch_size_summary
from operators.events import DeadLetter, Item, ItemRemoved, parse_item, raw_text
from operators.recommender import catalog_entry
from operators.world_store import encode_item_update

log = logging.getLogger("streamrec.operators")

# Row(key, value) as written by io.streamrec.flink.KeyValueRowSerializer
KV_ROW = Types.ROW_NAMED(
    ["key", "value"], [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.PRIMITIVE_ARRAY(Types.BYTE())]
)
DLQ_TAG = OutputTag("dead-letters", KV_ROW)

# one Kafka record, keyed and timed in the JVM (io.streamrec.flink.KeyedRecords.type())
RECORD_ROW = Types.ROW_NAMED(
    ["topic", "partition", "offset", "ts", "created", "kafka_key", "value"],
    [
        Types.STRING(),
        Types.INT(),
        Types.LONG(),
        Types.LONG(),
        Types.LONG(),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
        Types.PRIMITIVE_ARRAY(Types.BYTE()),
    ],
)
KEYED_ROW = Types.ROW_NAMED(["key", "record"], [Types.STRING(), RECORD_ROW])

# what every recommend task receives on its broadcast input (io.streamrec.flink.BroadcastUpdates)
UPDATE_ROW = Types.ROW_NAMED(
    ["kind", "id", "payload"], [Types.STRING(), Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())]
)

# an event-time timer that only the final watermark of a bounded input reaches
END_OF_INPUT = 2**62


def dead_letter_row(dl: DeadLetter) -> Row:
    return Row(None, dl.to_json())


def record_id(record) -> str:
    """The Kafka coordinates of a record: a unique id for what the job logs in state."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def _task_info(runtime_context: RuntimeContext):
    """The Java task info in thread mode (PyFlink 2.2's embedded RuntimeContext lacks the calls
    that Flink 2 moved there, and raises), else None."""
    if ".embedded." not in type(runtime_context).__module__:
        return None
    return runtime_context._runtime_context.getTaskInfo()


def task_label(runtime_context: RuntimeContext, fallback: str) -> str:
    """ "name (i/n)" of the task, for logs."""
    try:
        info = _task_info(runtime_context)
        if info is not None:
            return str(info.getTaskNameWithSubtasks())
        return runtime_context.get_task_name_with_subtasks()
    except Exception:  # noqa: BLE001 - pemja raises its own exception type
        return fallback


def subtask_index(runtime_context: RuntimeContext) -> int:
    """This task's index (0-based)."""
    info = _task_info(runtime_context)
    if info is not None:
        return int(info.getIndexOfThisSubtask())
    return runtime_context.get_index_of_this_subtask()


def import_native_modules() -> None:
    """Import ONNX Runtime and tokenizers on a Python thread of their own (once per process).

    In thread mode the operators run on TaskManager threads that PEMJA attaches to the embedded
    interpreter; onnxruntime's module init takes the GIL through PyGILState_Ensure, which on such
    a thread can pick another thread state than the one running and wait for the GIL this thread
    holds: the task stayed INITIALIZING forever (seen on the mini-cluster, stacks taken with
    gdb and py-spy). A thread started by Python has a consistent thread state."""
    if "onnxruntime" in sys.modules and "tokenizers" in sys.modules:
        return
    failed: list[BaseException] = []

    def load() -> None:
        try:
            import onnxruntime  # noqa: F401
            import tokenizers  # noqa: F401
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
            failed.append(e)

    t = threading.Thread(target=load, name="streamrec-native-imports", daemon=True)
    t.start()
    t.join()
    if failed:
        raise failed[0]


def limit_blas_threads(threads: int) -> None:
    """BLAS threads of this Python worker (0: leave the library's default). Flink scales by
    slots, and OpenBLAS's threaded sgemv on a catalog-sized matrix was measured ~15x slower
    than one thread on a 2-core machine (3-4 ms vs 0.25 ms for 3,600 x 384)."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


class ParseItems(ProcessFunction):
    """A record of the items topic -> (record id, Item or ItemRemoved); invalid -> dead letters.

    The JVM has read the record's ts already (it is its event time); a ts it refused (outside
    [0, now + max_future]) makes the item a dead letter here too, whatever the clock says now.
    """

    def __init__(self, max_future_ms: int):
        self.max_future_ms = max_future_ms

    def process_element(self, value, ctx):
        rec = value.record
        parsed = parse_item(
            rec.kafka_key,
            rec.value,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            now_ms=int(time.time() * 1000),
            max_future_ms=self.max_future_ms,
        )
        if isinstance(parsed, Item) and parsed.ts is not None and rec.ts is None:
            parsed = DeadLetter(
                "field 'ts' is outside [0, now + max-future]",
                rec.topic,
                rec.partition,
                rec.offset,
                raw_text(rec.value),
                "ts_out_of_range",
            )
        if isinstance(parsed, DeadLetter):
            yield DLQ_TAG, dead_letter_row(parsed)
        else:
            yield record_id(rec), parsed


class EncodeItems(KeyedProcessFunction):
    """(id, Item) -> Row(kind "item", id, pickled CatalogEntry with its embedding), with
    micro-batching (operators.batching), keyed by a bucket; removals pass through.

    The ONNX encoder is loaded once per task in open() (file verified, provider chosen, warmed
    up). Items wait in keyed state until ``max_size`` are waiting, the latency budget
    (processing-time timer) runs out, or the watermark reaches them: they leave before event time
    passes them, so the recommend operator has every catalog update before its time.
    """

    def __init__(
        self,
        model_dir: str,
        provider: str,
        batch_size: int,
        max_delay_ms: int,
        store_path: str | None = None,
    ):
        self.model_dir = model_dir
        self.store_path = store_path
        self.provider = provider
        self.policy = BatchPolicy(batch_size, max_delay_ms)
        self.encoder = None
        self.waiting = None
        self.batch_sizes = None

    def open(self, runtime_context: RuntimeContext):
        from models.encoder import Encoder

        import_native_modules()
        self.refused = None
        self._task = "encode-items"
        try:
            self.encoder = Encoder(
                self.model_dir, provider=self.provider, batch_size=self.policy.max_size
            )
        except (OSError, RuntimeError, ValueError) as e:  # ManifestError: a changed model file
            # every item becomes a dead letter; failing would restart the task into the same
            # error, forever
            self.refused = f"cannot load the model in {self.model_dir}: {e}"
            log.error("%s refuses to embed: %s", self._task, self.refused)
            return
        self.encoder.warmup()
        if self.store_path:  # read-only: every task (and a writer) may have it open at once
            from models.embedding_store import EmbeddingStore

            self.encoder.attach_store(
                EmbeddingStore(self.store_path, self.encoder.model_id, self.encoder.dim)
            )
        self._task = task_label(runtime_context, "encode-items")
        self.waiting = runtime_context.get_state(
            ValueStateDescriptor("waiting", Types.PICKLED_BYTE_ARRAY())
        )
        group = runtime_context.get_metrics_group().add_group(m.GROUP)
        self.batch_sizes = m.Histogram(group, m.ENCODER_BATCH_SIZE)
        self.batch_latency = m.Histogram(group, m.ENCODER_LATENCY_MS)
        self.cache_hits = group.counter(m.ENCODER_CACHE_HITS)
        self.store_hits = group.counter(m.EMBEDDING_STORE_HITS)
        self._hits = (0, 0)
        self._sizes: list[int] = []
        log.info(
            "%s: encoder %s on %s (batches of up to %d, %d ms budget, embedding store %s)",
            self._task,
            self.encoder.model_id,
            self.encoder.provider,
            self.policy.max_size,
            self.policy.max_delay_ms,
            self.store_path or "none",
        )

    @staticmethod
    def _text(value) -> str | None:
        item = value[1]
        return None if isinstance(item, ItemRemoved) else item.text()

    def _row(self, value, vector) -> Row:
        update_id, item = value
        update = item if vector is None else catalog_entry(item, vector)
        return Row("item", update_id, encode_item_update(update, self.encoder.model_id))

    def process_element(self, value, ctx):
        if self.refused is not None:
            topic, partition, offset = value[0].rsplit("/", 2)
            raw = json.dumps(dataclasses.asdict(value[1]), ensure_ascii=False)
            dl = DeadLetter(self.refused, topic, int(partition), int(offset), raw, "model_mismatch")
            yield DLQ_TAG, dead_letter_row(dl)
            return
        waiting = self.waiting.value() or []
        if not waiting and self._text(value) is None:
            yield self._row(value, None)  # nothing to encode, nothing ahead of it: pass through
            return
        if not waiting:
            now = ctx.timer_service().current_processing_time()
            ctx.timer_service().register_processing_time_timer(now + self.policy.max_delay_ms)
        waiting.append(value)
        ts = ctx.timestamp()
        # leave before the watermark passes the item; one without time flushes at the latest
        # at the end of a bounded input
        has_time = ts is not None and ts > -(2**63)
        ctx.timer_service().register_event_time_timer(ts if has_time else END_OF_INPUT)
        if self.policy.full(sum(self._text(v) is not None for v in waiting)):
            yield from self._flush(waiting)
        else:
            self.waiting.update(waiting)

    def on_timer(self, timestamp: int, ctx):
        waiting = self.waiting.value()
        if waiting:
            yield from self._flush(waiting)

    def _flush(self, waiting):
        self.waiting.clear()
        texts = [t for t in map(self._text, waiting) if t is not None]
        t0 = time.perf_counter()
        vectors = iter(self.encoder.encode(texts)) if texts else iter(())
        self.batch_latency.update((time.perf_counter() - t0) * 1000)
        self.batch_sizes.update(len(texts))
        stats = self.encoder.stats
        self.cache_hits.inc(stats.cache_hits - self._hits[0])
        self.store_hits.inc(stats.store_hits - self._hits[1])
        self._hits = (stats.cache_hits, stats.store_hits)
        self.last_batch_size = len(texts)
        self._sizes.append(len(texts))
        if len(self._sizes) >= 100:
            log.info("%s: encoder batches %s", self._task, batch_size_summary(self._sizes))
            self._sizes = []
        for v in waiting:
            yield self._row(v, next(vectors) if self._text(v) is not None else None)

    def close(self):
        if getattr(self, "_sizes", None):
            log.info("%s: encoder batches %s", self._task, batch_size_summary(self._sizes))
        store = self.encoder is not None and self.encoder.store
        if store is not None:
            log.info("%s: %s", self._task, self.encoder.stats.as_dict())
            store.close()
