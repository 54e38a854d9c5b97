"""Flink functions of the recommend job: thin shells that move records in and out of Flink
state and call the pure logic in this package. No scoring, parsing or model math lives here.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import (
    KeyedBroadcastProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    RuntimeContext,
    TimeDomain,
)
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from operators.alignment import release
from operators.batching import BatchPolicy, batch_size_summary
from operators.catalog import CatalogEntry
from operators.events import DeadLetter, Event, Item, ItemRemoved, parse_event, parse_item
from operators.recommender import Recommender, catalog_entry

log = logging.getLogger("streamrec.operators")

# Row(key, value) as written by io.streamrec.flink.KeyValueRowSerializer
KV_ROW = Types.ROW_NAMED(
    ["key", "value"], [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.PRIMITIVE_ARRAY(Types.BYTE())]
)
DLQ_TAG = OutputTag("dead-letters", KV_ROW)

# how long the catalog must have been quiet, once, before held events are answered (start-up)
CATALOG_SETTLE_MS = 1000

# an event-time timer that only the final watermark of a bounded input reaches
END_OF_INPUT = 2**62

CATALOG_STATE = MapStateDescriptor("catalog", Types.STRING(), Types.PICKLED_BYTE_ARRAY())


def dead_letter_row(dl: DeadLetter) -> Row:
    return Row(None, dl.to_json())


class ParseEvents(ProcessFunction):
    """Raw Kafka record -> Event; anything invalid -> dead-letter side output."""

    def process_element(self, value, ctx):
        parsed = parse_event(value[5], topic=value[0], partition=value[1], offset=value[2])
        if isinstance(parsed, DeadLetter):
            yield DLQ_TAG, dead_letter_row(parsed)
        else:
            yield parsed


def limit_blas_threads(threads: int) -> None:
    """BLAS threads of this Python worker (0: leave the library's default). Flink scales by
    slots, and OpenBLAS's threaded sgemv on a catalog-sized matrix was measured ~15x slower
    than one thread on a 2-core machine (3-4 ms vs 0.25 ms for 3,600 x 384)."""
    if threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


class ParseItems(ProcessFunction):
    """Raw Kafka record of the items topic -> Item / ItemRemoved; invalid -> dead letters."""

    def process_element(self, value, ctx):
        parsed = parse_item(value[4], value[5], topic=value[0], partition=value[1], offset=value[2])
        if isinstance(parsed, DeadLetter):
            yield DLQ_TAG, dead_letter_row(parsed)
        else:
            yield parsed


class EventTimestamps(TimestampAssigner):
    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return value.ts


class ItemTimestamps(TimestampAssigner):
    """Catalog updates carry their own event time (``ts``); one without it does not move time."""

    def extract_timestamp(self, value, record_timestamp: int) -> int:
        return getattr(value, "ts", None) or 0


class _BatchEncoder(KeyedProcessFunction):
    """Encoder operator with micro-batching (see operators.batching), keyed by a bucket.

    The ONNX encoder is loaded once per task in open() (file verified, provider chosen, warmed
    up). Records that need the model wait in keyed state until ``max_size`` are waiting, the
    latency budget (processing-time timer) runs out, or, with ``event_time_flush``, the watermark
    reaches them (they leave before event time passes them, so alignment holds). Subclasses
    say which records need the model (``text``) and what to emit (``emit``).
    """

    def __init__(
        self,
        model_dir: str,
        provider: str,
        batch_size: int,
        max_delay_ms: int,
        event_time_flush: bool = False,
        store_path: str | None = None,
    ):
        self.model_dir = model_dir
        self.store_path = store_path
        self.provider = provider
        self.policy = BatchPolicy(batch_size, max_delay_ms)
        self.event_time_flush = event_time_flush
        self.encoder = None
        self.waiting = None
        self.batch_sizes = None

    def open(self, runtime_context: RuntimeContext):
        from models.encoder import Encoder

        self.encoder = Encoder(
            self.model_dir, provider=self.provider, batch_size=self.policy.max_size
        )
        self.encoder.warmup()
        if self.store_path:  # read-only: every task (and a writer) may have it open at once
            from models.embedding_store import EmbeddingStore

            self.encoder.attach_store(
                EmbeddingStore(self.store_path, self.encoder.model_id, self.encoder.dim)
            )
        self.waiting = runtime_context.get_state(
            ValueStateDescriptor("waiting", Types.PICKLED_BYTE_ARRAY())
        )
        self.batch_sizes = runtime_context.get_metrics_group().distribution("encoderBatchSize")
        self._task = runtime_context.get_task_name_with_subtasks()
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

    def text(self, value) -> str | None:
        raise NotImplementedError

    def emit(self, value, vector):
        raise NotImplementedError

    def process_element(self, value, ctx):
        waiting = self.waiting.value() or []
        if not waiting and self.text(value) is None:
            yield self.emit(value, None)  # nothing to encode, nothing ahead of it: pass through
            return
        if not waiting:
            now = ctx.timer_service().current_processing_time()
            ctx.timer_service().register_processing_time_timer(now + self.policy.max_delay_ms)
        waiting.append(value)
        if self.event_time_flush and ctx.timestamp() is not None:
            ctx.timer_service().register_event_time_timer(ctx.timestamp())
        else:  # one timer per bucket (deduplicated): flushes at the end of a bounded input
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
        if self.policy.full(sum(self.text(v) is not None for v in waiting)):
            yield from self._flush(waiting)
        else:
            self.waiting.update(waiting)

    def on_timer(self, timestamp: int, ctx):
        waiting = self.waiting.value()
        if waiting:
            yield from self._flush(waiting)

    def _flush(self, waiting):
        self.waiting.clear()
        texts = [t for t in map(self.text, waiting) if t is not None]
        vectors = iter(self.encoder.encode(texts)) if texts else iter(())
        self.batch_sizes.update(len(texts))
        self.last_batch_size = len(texts)
        self._sizes.append(len(texts))
        if len(self._sizes) >= 100:
            log.info("%s: encoder batches %s", self._task, batch_size_summary(self._sizes))
            self._sizes = []
        for v in waiting:
            yield self.emit(v, next(vectors) if self.text(v) is not None else None)

    def close(self):
        if getattr(self, "_sizes", None):
            log.info("%s: encoder batches %s", self._task, batch_size_summary(self._sizes))
        store = self.encoder and self.encoder.store
        if store is not None:
            log.info("%s: %s", self._task, self.encoder.stats.as_dict())
            store.close()


class EncodeItems(_BatchEncoder):
    """Item -> CatalogEntry with its embedding (text encoded once per item version)."""

    def text(self, value):
        return None if isinstance(value, ItemRemoved) else value.text()

    def emit(self, value, vector):
        return value if vector is None else catalog_entry(value, vector)


class EmbedQueries(_BatchEncoder):
    """Event -> (Event, query vector bytes or None): search queries embedded by the same encoder."""

    def text(self, value: Event):
        return value.query if value.type == "search" and value.query else None

    def emit(self, value, vector):
        if vector is None:
            return value, None
        return value, np.ascontiguousarray(vector, dtype="<f4").tobytes()


class Recommend(KeyedBroadcastProcessFunction):
    """Keyed by user_id; the catalog arrives as broadcast state.

    Per user, one ValueState holds the profile (operators.user_profile.Profile, pickled by
    PyFlink into the RocksDB backend, with TTL). The catalog lives in broadcast state
    (checkpointed) and, for speed, in an in-memory matrix that is rebuilt from broadcast state
    after a restore.

    With ``align`` on, a user's events wait in keyed state (so a checkpoint keeps them) until the
    watermark, which the catalog stream holds back too, passes their event time, or until
    ``max_wait_ms`` of processing time (see operators.alignment).
    """

    def __init__(
        self,
        dim: int,
        model_id: str,
        top_k: int,
        state_ttl_days: float,
        align: bool = True,
        max_wait_ms: int = 2000,
        params=None,
        blas_threads: int = 1,
    ):
        self.dim = dim
        self.blas_threads = blas_threads
        self.model_id = model_id
        self.top_k = top_k
        self.state_ttl_days = state_ttl_days
        self.align = align
        self.max_wait_ms = max_wait_ms
        self.params = params or {}
        self.core: Recommender | None = None
        self.profile_state = None
        self.held_state = None
        self._synced = False

    def open(self, runtime_context: RuntimeContext):
        from pyflink.common.time import Time

        limit_blas_threads(self.blas_threads)

        desc = ValueStateDescriptor("profile", Types.PICKLED_BYTE_ARRAY())
        if self.state_ttl_days and self.state_ttl_days > 0:
            ttl = (
                StateTtlConfig.new_builder(Time.milliseconds(int(self.state_ttl_days * 86400000)))
                .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
                .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
                .build()
            )
            desc.enable_time_to_live(ttl)
        self.profile_state = runtime_context.get_state(desc)
        self.held_state = runtime_context.get_state(
            ValueStateDescriptor("held-events", Types.PICKLED_BYTE_ARRAY())
        )
        self.held_since = runtime_context.get_state(
            ValueStateDescriptor("held-since", Types.LONG())
        )
        self.core = Recommender(
            self.dim, self.model_id, self.top_k, as_of_event_time=self.align, **self.params
        )
        self._synced = False
        self._last_catalog_ms = None  # wall clock of the latest catalog update seen
        self._settled = False

    def _sync(self, broadcast_state) -> None:
        """After a (re)start, rebuild the in-memory catalog from restored broadcast state."""
        if self._synced:
            return
        n = 0
        for _, entry in broadcast_state.items():
            self.core.upsert_item(entry)
            n += 1
        self._synced = True
        if n:  # a restored catalog counts as an update: settled a moment later
            self._last_catalog_ms = int(time.time() * 1000)
            log.info("catalog of %d items restored from broadcast state", n)

    def process_broadcast_element(self, value, ctx):
        self._last_catalog_ms = int(time.time() * 1000)
        state = ctx.get_broadcast_state(CATALOG_STATE)
        self._sync(state)
        if isinstance(value, CatalogEntry):
            state.put(value.item_id, value)
            self.core.upsert_item(value)
        elif isinstance(value, ItemRemoved):
            state.remove(value.item_id)
            self.core.remove_item(value.item_id)

    def process_element(self, value, ctx):
        self._sync(ctx.get_broadcast_state(CATALOG_STATE))
        if not self.align:
            yield from self._apply(value)
            return
        held = self.held_state.value() or []
        if not held:  # bound the wait when nothing moves the watermark
            now = ctx.timer_service().current_processing_time()
            self.held_since.update(int(time.time() * 1000))
            ctx.timer_service().register_processing_time_timer(now + self.max_wait_ms)
        held.append((value[0].ts, value))
        ctx.timer_service().register_event_time_timer(value[0].ts)
        yield from self._release(held, ctx.timer_service().current_watermark(), ctx)

    def on_timer(self, timestamp: int, ctx):
        self._sync(ctx.get_broadcast_state(CATALOG_STATE))
        held = self.held_state.value() or []
        if not held:
            return
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            yield from self._release(held, None, ctx)
        else:
            watermark = max(timestamp, ctx.timer_service().current_watermark())
            yield from self._release(held, watermark, ctx)

    def _catalog_settled(self, now: int) -> bool:
        """At start the catalog topic is read (and embedded) from the beginning while event time
        may already run ahead on the events side (an input with no records yet counts as idle).
        Until the catalog has been quiet for CATALOG_SETTLE_MS once, events keep waiting."""
        if not self._settled and self._last_catalog_ms is not None:
            self._settled = now - self._last_catalog_ms >= CATALOG_SETTLE_MS
        return self._settled

    def _held_for(self, now: int) -> int:
        """How long this user's oldest held event has waited (one state read; only asked while
        the catalog has not settled, not on every event)."""
        return now - (self.held_since.value() or now)

    def _release(self, held, watermark, ctx):
        now = int(time.time() * 1000)
        final = watermark is not None and watermark >= END_OF_INPUT  # a bounded input ended
        if (
            not final
            and not self._catalog_settled(now)
            and self._held_for(now) < 6 * self.max_wait_ms
        ):
            self.held_state.update(held)
            ctx.timer_service().register_processing_time_timer(
                ctx.timer_service().current_processing_time() + CATALOG_SETTLE_MS // 2
            )
            # the event-time timers of these events may have fired already: if a bounded input
            # ends before the catalog settles, the final watermark must still release them
            # (pending processing-time timers do not fire once the inputs have ended)
            ctx.timer_service().register_event_time_timer(END_OF_INPUT)
            return
        ready, rest = release(held, watermark)
        if rest:
            self.held_state.update(rest)
        else:
            self.held_state.clear()
            self.held_since.clear()
        for value in ready:
            yield from self._apply(value)

    def _apply(self, value):
        event, qbytes = value
        qvec = np.frombuffer(qbytes, dtype="<f4") if qbytes is not None else None
        profile, out = self.core.on_event(self.profile_state.value(), event, qvec)
        key = event.user_id.encode("utf-8")
        if profile is None:  # forget_user: erase everything held for the user, emit a tombstone
            self.profile_state.clear()
            yield Row(key, None)
            return
        self.profile_state.update(profile)
        if out is not None:
            yield Row(key, out)


__all__ = [
    "CATALOG_STATE",
    "DLQ_TAG",
    "KV_ROW",
    "EmbedQueries",
    "EncodeItems",
    "EventTimestamps",
    "Item",
    "ItemTimestamps",
    "ParseEvents",
    "ParseItems",
    "Recommend",
]
