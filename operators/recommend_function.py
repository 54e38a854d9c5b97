"""The recommend operator: the job's one Python step per event (a KeyedBroadcastProcessFunction).

Keyed input (keyed by user_id in the JVM): ``Row(topic, partition, offset, ts, created,
kafka_key, value)`` of the events topic. It parses and validates the event (invalid ->
dead-letter side output), holds it until event time has passed it (``align``), applies it to the
user's profile (keyed state, RocksDB) and emits the user's new top-K list.

Broadcast input: ``Row(kind, id, payload)``, every catalog update (kind "item", embedded) and
every event (kind "event", raw JSON) of every user: each task keeps the same world (catalog,
item vectors, behaviour model; operators.world), applied in event-time order and stored in
broadcast state (operators.world_store), so any task scores any user against the same model, as
of the event's time, at any parallelism and after any restore.

Model switch: resumed from a savepoint with another ``--model`` than the one its state was
built with, each task re-embeds the restored world with its model (operators.model_switch;
catalog texts from ``--embedding-store`` first, the encoder for the rest) before it scores
anything, and a user's search queries when their profile is first read (the profile records
its model). Every list names the model it was scored with.

Timers (event time, per user): one at each held event's ts (release), one at last event +
session gap (the user's list for the next visit, ``trigger: session_end``), then, while the
user stays away, one at each refresh of that list (``RankingConfig.refresh_times`` of the
session's end; each registers the next, a user's next event ends the series, and a timer of an
ended series finds the profile moved on and does nothing); a processing-time timer bounds the
hold when event time stands still (``max_wait_ms``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedBroadcastProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import (
    ListStateDescriptor,
    MapStateDescriptor,
    ValueStateDescriptor,
)

from operators import metrics as m
from operators.config import RankingConfig
from operators.events import DeadLetter, Event, parse_event, raw_text
from operators.functions import (
    DLQ_TAG,
    dead_letter_row,
    import_native_modules,
    limit_blas_threads,
    subtask_index,
)
from operators.keyed_state import UserState, pack_held, pack_user, unpack_held, unpack_user
from operators.world_store import (
    WORLD_EVENT,
    WorldStore,
    advance,
    decode_update,
    world_event_payload,
)

log = logging.getLogger("streamrec.recommend")

WORLD_STATE = MapStateDescriptor("world", Types.STRING(), Types.PICKLED_BYTE_ARRAY())

NO_WATERMARK = -(2**63)  # an operator's watermark before its inputs have sent any
END_OF_INPUT = 2**63 - 1  # the watermark of a bounded input that has ended

# processing-time timers of the max-wait bound are rounded up to this grain, so a user's events
# arriving together share one timer
WAIT_GRAIN_MS = 1000


@dataclass(frozen=True)
class RecommendSettings:
    """What the recommend operator needs from the job's flags (see jobs/config.py)."""

    dim: int
    model_id: str
    model_dir: str
    device: str = "cpu"
    top_k: int = 10
    ranking: RankingConfig = field(default_factory=RankingConfig)  # incl. the session gap
    align: bool = True
    max_wait_ms: int = 10_000
    max_future_ms: int = 86_400_000
    state_ttl_days: float = 90.0
    blas_threads: int = 1
    compact_every: int = 20_000
    embedding_store: str | None = None  # catalog vectors by model (streamrec encode-catalog)
    encoder_batch_size: int = 64  # texts per model call when the restored world is re-embedded
    # register each held event's session-end timer when it arrives, not only when it is applied
    # (process mode, where a timer registered while timers fire reaches the JVM too late)
    early_session_timers: bool = False


class Recommend(KeyedBroadcastProcessFunction):
    def __init__(self, settings: RecommendSettings):
        self.s = settings
        self.rec = None
        self.store = None

    # ---- life cycle ---------------------------------------------------------------------------
    def open(self, runtime_context: RuntimeContext):
        from models.encoder import Encoder
        from operators.recommender import Recommender

        import_native_modules()
        s = self.s
        limit_blas_threads(s.blas_threads)
        # profiles expire in event time (an event-time timer, below), not with Flink's state TTL:
        # a replay then drops the same profiles at any speed, and PyFlink 2.2's thread mode cannot
        # build a TTL config inside a TaskManager (it asks for a client gateway)
        self.ttl_ms = int(s.state_ttl_days * 86_400_000) if s.state_ttl_days > 0 else 0
        self.profiles = runtime_context.get_state(
            ValueStateDescriptor("profile", Types.PICKLED_BYTE_ARRAY())
        )
        self.held = runtime_context.get_list_state(
            ListStateDescriptor("held", Types.PICKLED_BYTE_ARRAY())
        )
        self.rec = Recommender(s.dim, s.model_id, s.top_k, config=s.ranking)
        self.gap = s.ranking.session_gap_ms
        self.latest_event_ts = NO_WATERMARK  # of every user (broadcast side), since this start
        self.store = WorldStore(compact_every=s.compact_every, model_id=s.model_id, dim=s.dim)
        self._world_ready = False
        # why this task refuses to score (a model that is not the catalog's): every event is
        # then a dead letter, and the task keeps running (a failure would restart it into the
        # same refusal, forever)
        self.refused: str | None = None
        self._refused_items: set[str] = set()
        # search queries are embedded here, one at a time (they are rare; nothing else needs the
        # model on this path); no cache: query text is personal data (forget_user)
        why = None
        try:
            self.queries = Encoder(
                s.model_dir, provider=s.device, batch_size=1, intra_op_threads=1, cache_size=0
            )
            self.queries.warmup()
            if self.queries.model_id != s.model_id or self.queries.dim != s.dim:
                why = (
                    f"model {self.queries.model_id} (dim {self.queries.dim}) is not the "
                    f"catalog's {s.model_id} (dim {s.dim})"
                )
        except (OSError, RuntimeError, ValueError) as e:  # ManifestError: a changed model file
            self.queries = None
            why = f"cannot load the model in {s.model_dir}: {e}"
        self.subtask = subtask_index(runtime_context)
        self._metrics(runtime_context.get_metrics_group().add_group("streamrec"))
        if why is not None:
            self._refuse(why)

    def _refuse(self, why: str) -> None:
        if self.refused is None:
            self.refused = why
            log.error("recommend task %d refuses to score: %s", self.subtask, why)

    def _metrics(self, group) -> None:
        """The operator's metrics (operators.metrics: names shared with the dashboard)."""
        self.lists = {
            trigger: group.add_group(m.TRIGGER_KEY, trigger).counter(m.LISTS_EMITTED)
            for trigger in ("event", "session_end")
        }
        self._group = group
        self.dead = {}
        self.latency = m.Histogram(group, m.LIST_LATENCY_MS)
        self.lag = m.Histogram(group, m.EVENT_TIME_LAG_MS)
        # the two gauges are counters kept at the value: a PyFlink gauge is a Python callback
        # that Flink's metric threads call (thread mode), and one called after the task had
        # closed crashed the TaskManager JVM (SIGSEGV in take_gil; a REST metrics query at a
        # job's cancel in the faults harness)
        self._held_n = 0
        self._held_gauge = group.counter(m.HELD_EVENTS)
        self._catalog_n = 0
        self._catalog_gauge = group.counter(m.CATALOG_SIZE)

    def _dead_letter(self, dl: DeadLetter):
        counter = self.dead.get(dl.reason)
        if counter is None:
            group = self._group.add_group(m.REASON_KEY, dl.reason)
            counter = self.dead[dl.reason] = group.counter(m.DEAD_LETTERS)
        counter.inc()
        return DLQ_TAG, dead_letter_row(dl)

    def _world(self, broadcast_state):
        """The world, restored from broadcast state on the first call after a (re)start."""
        if not self._world_ready:
            self._world_ready = True
            snapshot, chunks, updates = self.store.restore(broadcast_state.items(), self._decode)
            old_model = self.store.switch_from()
            if self.refused is not None:
                return self.rec.world  # left empty: nothing of the restored state is used
            if snapshot is not None:
                self.rec.restore_world(snapshot, chunks)
            for u in updates:
                self.rec.world.add(u if isinstance(u, Event) else u[1])
            self.store.count_forgets_from(self.rec.world.applied)
            if snapshot is not None or updates:
                log.info(
                    "world restored: snapshot %s, %d logged updates",
                    "yes" if snapshot is not None else "no",
                    len(updates),
                )
            if old_model is not None:
                self._switch_world(old_model)
        return self.rec.world

    def _switch_world(self, old_model: str) -> None:
        """The restored world was built with ``old_model``: re-embed it with this task's model
        (all or nothing), before anything is scored; refuse to score if that fails."""
        from models.encoder import Encoder
        from operators.model_switch import reembed_world

        s = self.s
        t0 = time.perf_counter()
        encoder = store = None
        try:
            encoder = Encoder(
                s.model_dir, provider=s.device, batch_size=s.encoder_batch_size, cache_size=0
            )
            if s.embedding_store:
                from models.embedding_store import EmbeddingStore, StoreError

                try:
                    store = EmbeddingStore(s.embedding_store, encoder.model_id, encoder.dim)
                    encoder.attach_store(store)
                except StoreError as e:  # the store only saves work: the encoder does it all
                    log.warning("recommend task %d: %s; re-embedding without it", self.subtask, e)
            world, stats = reembed_world(self.rec.world, encoder.encode, s.dim)
        except (OSError, RuntimeError, ValueError) as e:  # StoreError, ManifestError
            self._refuse(f"the restored state was built with {old_model}; re-embedding it with "
                         f"{s.model_id} failed: {e}")  # fmt: skip
            return
        finally:
            if store is not None:
                store.close()
        self.rec.use_world(world)
        self.store.switched()
        log.info(
            "recommend task %d switched from model %s to %s (dim %d): %d items and %d waiting "
            "catalog updates re-embedded (%d texts, %d from the embedding store %s) in %.1fs",
            self.subtask,
            old_model,
            s.model_id,
            s.dim,
            stats.items,
            stats.pending,
            stats.texts,
            encoder.stats.store_hits,
            s.embedding_store or "(none)",
            time.perf_counter() - t0,
        )

    def _user(self) -> UserState | None:
        """The current user's state, its query vectors of this task's model: a profile of
        another model (a switch; None: unknown) has its queries embedded again."""
        user = unpack_user(self.profiles.value())
        if user is None or user.model == self.s.model_id:
            return user
        from operators.model_switch import reembed_queries

        p = user.profile
        if p.queries:
            p.queries = reembed_queries(p.queries, lambda q: self.queries.encode([q])[0])
        user.model = self.s.model_id
        return user

    def _decode(self, kind: str, payload: bytes):
        return decode_update(kind, payload, self.s.max_future_ms)

    def _foreign_item(self, model_id, update, value):
        """A catalog update embedded by another model than this task's: never applied (its
        vector would be scored against this model's); one dead letter (from subtask 0)."""
        vector_dim = len(getattr(update, "embedding", b"")) // 4 or self.s.dim
        if model_id in (None, self.s.model_id) and vector_dim == self.s.dim:
            return None
        why = (
            f"catalog update {value.id} was embedded by {model_id} (dim {vector_dim}); this job "
            f"scores with {self.s.model_id} (dim {self.s.dim})"
        )
        if model_id not in self._refused_items:
            self._refused_items.add(model_id)
            log.error("recommend task %d: %s; such updates are not applied", self.subtask, why)
        if self.subtask != 0:
            return None
        topic, partition, offset = (value.id.rsplit("/", 2) + ["", "", ""])[:3]
        return self._dead_letter(
            DeadLetter(why, topic, _int(partition), _int(offset), "", "model_mismatch")
        )

    # ---- broadcast side: every catalog update and every event --------------------------------
    def process_broadcast_element(self, value, ctx):
        state = ctx.get_broadcast_state(WORLD_STATE)
        world = self._world(state)
        if self.refused is not None:
            return  # the state stays as it was, for a job with the right model
        update = self._decode(value.kind, value.payload)
        if update is None:
            return
        kind = value.kind
        if isinstance(update, Event):
            self.latest_event_ts = max(self.latest_event_ts, update.ts)
            kind, payload = WORLD_EVENT, world_event_payload(update)  # the log keeps no query text
            forget_ts = update.ts if update.type == "forget_user" else None
        else:
            model_id, update = update
            dead = self._foreign_item(model_id, update, value)
            if dead is not None:
                yield dead
                return
            if update is None:
                return
            payload, forget_ts = value.payload, None
        applied = world.applied
        world.add(update)
        for k, v in self.store.log_entry(value.id, kind, payload, forget_ts, applied):
            state.put(k, v)
        if self.store.due(world.bound, world.applied):
            puts, removes = self.store.fold(world)
            for k, v in puts:
                state.put(k, v)
            for k in removes:
                state.remove(k)

    # ---- keyed side: the user's events -------------------------------------------------------
    def process_element(self, value, ctx):
        self._world(ctx.get_broadcast_state(WORLD_STATE))
        parsed = parse_event(
            value.value,
            topic=value.topic,
            partition=value.partition,
            offset=value.offset,
            now_ms=int(time.time() * 1000),
            max_future_ms=self.s.max_future_ms,
        )
        if isinstance(parsed, Event) and value.ts is None:
            parsed = DeadLetter(
                "field 'ts' is outside [0, now + max-future]",
                value.topic,
                value.partition,
                value.offset,
                raw_text(value.value),
                "ts_out_of_range",
            )
        elif isinstance(parsed, Event) and parsed.user_id != ctx.get_current_key():
            parsed = DeadLetter(  # only if the JVM's scan and the parser ever disagree
                "user_id differs from the key the record was routed by",
                value.topic,
                value.partition,
                value.offset,
                raw_text(value.value),
                "bad_key",
            )
        elif isinstance(parsed, Event) and self.refused is not None:
            parsed = DeadLetter(
                f"not scored: {self.refused}",
                value.topic,
                value.partition,
                value.offset,
                raw_text(value.value),
                "model_mismatch",
            )
        if isinstance(parsed, DeadLetter):
            yield self._dead_letter(parsed)
            return
        created = value.created
        if not self.s.align:
            yield from self._apply(parsed, created, ctx)
            return
        timers = ctx.timer_service()
        self.held.add(pack_held(parsed, created))
        self._held_n += 1
        self._held_gauge.inc()
        timers.register_event_time_timer(parsed.ts)
        if self.s.early_session_timers:
            # In process mode PyFlink sends the timers a function registers to the JVM after
            # the bundle: one registered while timers fire (as when this event is released) takes
            # effect at the next watermark, after later timers of other users, and its list
            # would see a later world. Registered now, before event time reaches the event, it
            # fires in order; if a later event moves the session's end, on_timer ignores it.
            timers.register_event_time_timer(parsed.ts + self.gap)
        watermark = timers.current_watermark()
        if parsed.ts <= watermark:  # late: event time has passed it already
            yield from self._release(watermark, ctx)
        else:  # bound the wait in processing time
            due = timers.current_processing_time() + self.s.max_wait_ms
            timers.register_processing_time_timer(math.ceil(due / WAIT_GRAIN_MS) * WAIT_GRAIN_MS)

    def on_timer(self, timestamp: int, ctx):
        self._world(ctx.get_broadcast_state(WORLD_STATE))
        if self.refused is not None:
            return  # nothing is scored; held events stay in state
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            timers = ctx.timer_service()
            if timers.current_watermark() == NO_WATERMARK:
                # event time has not started (at start: the catalog is still being read, see
                # --catalog-wait): the wait is for it, not for a stream that stands still
                due = timers.current_processing_time() + self.s.max_wait_ms
                timers.register_processing_time_timer(due)
                return
            yield from self._release(None, ctx)  # max-wait: everything held goes now
            return
        user = self._user()
        profile = None if user is None else user.profile
        if profile is not None and profile.last_ts is not None:
            end = profile.last_ts + self.gap
            if end == timestamp:
                if user.closed is not True:  # not emitted by the user's next event already
                    yield from self._session_end(user, timestamp, ctx.get_current_key(), ctx)
                    self._schedule_refresh(end, 0, ctx)
            elif self.ttl_ms and profile.last_ts + self.ttl_ms == timestamp:
                self.profiles.clear()
            elif user.closed is True and timestamp in (times := self.s.ranking.refresh_times(end)):
                # once a bounded input has ended, event time stops at its last event (as in
                # streamrec.simulate): no refresh after it
                ended = ctx.timer_service().current_watermark() >= END_OF_INPUT
                if not ended or timestamp <= self.latest_event_ts:
                    k = times.index(timestamp) + 1
                    yield from self._session_end(user, timestamp, ctx.get_current_key(), ctx, k)
                    self._schedule_refresh(end, k, ctx)
        yield from self._release(timestamp, ctx)

    # ---- what happens to a user ----------------------------------------------------------------
    def _session_end_at(self, profile) -> int | None:
        return None if profile.last_ts is None else profile.last_ts + self.gap

    def _release(self, bound: int | None, ctx):
        """Apply held events in arrival order while their ts <= bound (None: all of them)."""
        held = list(self.held.get() or ())
        if not held:
            return
        held = [unpack_held(h) for h in held]
        n = 0
        while n < len(held) and (bound is None or held[n][0].ts <= bound):
            n += 1
        if n == 0:
            return
        if n == len(held):
            self.held.clear()
        else:
            self.held.update([pack_held(e, c) for e, c in held[n:]])
        self._held_n -= n
        self._held_gauge.dec(n)
        for event, created in held[:n]:
            yield from self._apply(event, created, ctx)

    def _apply(self, event: Event, created: int | None, ctx):
        qvec = None
        if event.type == "search" and event.query:
            qvec = self.queries.encode([event.query])[0]
        user = self._user()
        before = None if user is None else user.profile
        key = event.user_id.encode("utf-8")
        timers = ctx.timer_service()
        old_end = None if before is None else self._session_end_at(before)
        if old_end is not None and (old_end <= event.ts or event.type == "forget_user"):
            # the user is back (or forgotten): the last session's list is refreshed no more
            self._delete_refreshes(old_end, ctx)
        if (
            old_end is not None
            and old_end <= event.ts
            and user.session_end_pending(old_end, timers.current_watermark())
        ):
            # the session closed before this event, whose timer has not emitted its list (see
            # UserState.session_end_pending): that list comes first
            yield from self._session_end(user, old_end, event.user_id, ctx)
            timers.delete_event_time_timer(old_end)
            old_end = None
            user = self._user()  # with the timer the session end set
        self._advance(event.ts)
        profile, out = self.rec.on_event(before, event, qvec)
        if profile is None:  # forget_user: erase the user's profile and timers, emit a tombstone
            # (events held before it were applied first; the world forgets the user when its
            # time comes, and the broadcast state's log of their events is folded away then)
            self.profiles.clear()
            if old_end is not None:
                timers.delete_event_time_timer(old_end)
            if user is not None and user.ttl_timer is not None:
                timers.delete_event_time_timer(user.ttl_timer)
            yield Row(key, None)
            return
        # the event opens a session or extends it: its end is to come
        user = UserState(profile, None if user is None else user.ttl_timer, self.s.model_id, False)
        self.profiles.update(pack_user(user))
        new_end = self._session_end_at(profile)
        if new_end != old_end:
            if old_end is not None:
                timers.delete_event_time_timer(old_end)
            if new_end is not None:
                timers.register_event_time_timer(new_end)
        if out is not None:
            yield self._emit(key, out, "event", event.ts, created)

    def _schedule_refresh(self, end: int, done: int, ctx) -> None:
        """After the session end (``done`` 0) or the ``done``-th refresh of the list of the
        session that closed at ``end``: the next refresh's timer. In process mode all of them
        at the session end: a timer registered while timers fire reaches the JVM only after
        the bundle there, and fires at the next watermark; one at a time, each refresh would
        be that late again. (So in process mode a refresh can come one watermark late in a
        backlog, against a later world; the session end itself is registered early, see
        process_element.) None at or past the profile's expiry."""
        if self.s.early_session_timers and done > 0:
            return
        times = self.s.ranking.refresh_times(end)[done:]
        if not self.s.early_session_timers:
            times = times[:1]
        timers = ctx.timer_service()
        for at in times:
            if self.ttl_ms and at >= end - self.gap + self.ttl_ms:
                break
            timers.register_event_time_timer(at)

    def _delete_refreshes(self, end: int, ctx) -> None:
        """Delete the refresh timers of the session that closed at ``end`` (those not
        registered are no-ops): a timer keyed by a forgotten user must not outlive them."""
        timers = ctx.timer_service()
        for at in self.s.ranking.refresh_times(end):
            timers.delete_event_time_timer(at)

    def _session_end(self, user: UserState, at_ts: int, user_id: str, ctx, refresh: int = 0):
        self._advance(at_ts)
        profile, out = self.rec.on_session_end(user.profile, at_ts, refresh)
        user = UserState(profile, user.ttl_timer, self.s.model_id, closed=True)
        if self.ttl_ms and profile.last_ts is not None:
            # the profile expires this long after the user's last event (one timer per user)
            expiry = profile.last_ts + self.ttl_ms
            if user.ttl_timer != expiry:
                timers = ctx.timer_service()
                if user.ttl_timer is not None:
                    timers.delete_event_time_timer(user.ttl_timer)
                timers.register_event_time_timer(expiry)
                user.ttl_timer = expiry
        self.profiles.update(pack_user(user))
        if out is not None:
            yield self._emit(user_id.encode("utf-8"), out, "session_end", at_ts, None)

    def _advance(self, t: int) -> None:
        """The world as of ``t`` (operators.world_store.advance); the catalog-size metric."""
        if advance(self.rec.world, t):
            n = int(self.rec.world.items.visible.sum())
            if n > self._catalog_n:
                self._catalog_gauge.inc(n - self._catalog_n)
            elif n < self._catalog_n:
                self._catalog_gauge.dec(self._catalog_n - n)
            self._catalog_n = n

    def _emit(self, key: bytes, out: bytes, trigger: str, event_ts: int, created: int | None):
        now = time.time() * 1000
        self.lists[trigger].inc()
        self.lag.update(now - event_ts)
        if created is not None and created > 0:
            self.latency.update(now - created)
        return Row(key, out)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


__all__ = ["WORLD_STATE", "Recommend", "RecommendSettings"]
