"""The recommend job's semantics in one process, without Kafka or Flink (the offline driver).

Input: contract records ``("items" | "events", key, value)`` in stream order (as
``streamrec.retail.to_contract_records`` or ``streamrec.evaluate.load_records`` give them), a
text embedder, a RankingConfig. For every event, in order:

1. fire the session ends that are due: every user whose session closed before the event's
   ``ts`` (``last_ts + session_gap_ms < ts``), in (time, user) order, and the event's own user
   if theirs closes exactly at ``ts``; each one: ``world.advance_to(at)``, ``on_session_end``;
   and, the same way, the refreshes of the lists of users still away
   (``RankingConfig.refresh_times`` of their session's end);
2. ``world.advance_to(event.ts)``, ``on_event``, then ``world.add(event)``.

Items go to ``world.add`` as they come (the world applies them in event-time order). At the end
of the input the remaining session ends fire. Output: ``(user_id, value)`` in emission order,
``value`` the record's bytes, or None for a ``forget_user`` tombstone. This is what the Flink job
must emit too (the lead's equality test), and what tuning and the reference loop run.

    from streamrec import simulate
    embed = simulate.cached_embedder(records)                 # the real default encoder
    for user, value in simulate.simulate(records, embed, RankingConfig()):
        ...

CLI: ``python -m streamrec.simulate [--csv FILE] [--weeks W] --out lists.jsonl``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from operators.catalog import CatalogEntry
from operators.config import RankingConfig
from operators.events import Event, InvalidRecord, ItemRemoved, event_from_dict, item_from_dict
from operators.recommender import Recommender, catalog_entry
from operators.user_profile import Profile
from streamrec import paths

Record = tuple[str, Any, Mapping[str, Any] | None]
Embed = Callable[[str], np.ndarray]


class Output(NamedTuple):
    user_id: str
    value: Any  # record bytes (or whatever the handler returns); None: a tombstone
    trigger: str  # "event", "session_end" or "forget_user"
    event: Event | None  # the event that triggered it (None for a session end)


class Simulation:
    """Feeds a Recommender the way the job does. ``on_event`` / ``on_session_end`` are the
    Recommender's by default; a subclass may return something else than record bytes (tuning
    returns candidate features) with the same order of calls."""

    def __init__(self, rec: Recommender):
        self.rec = rec
        self.profiles: dict[str, Profile] = {}
        self._due: dict[str, int] = {}  # user -> time their session closes
        self._heap: list[tuple[int, str]] = []  # (due, user), stale entries skipped
        # user -> (time, k, session end) of the k-th refresh of the list for their next visit
        self._refresh: dict[str, tuple[int, int, int]] = {}
        self.dead_letters = 0

    @property
    def world(self):
        return self.rec.world

    # ---- handlers (overridable) ----------------------------------------------------------------
    def on_event(self, profile, event: Event, query_vec):
        return self.rec.on_event(profile, event, query_vec)

    def on_session_end(self, profile: Profile, at: int, refresh: int = 0):
        return self.rec.on_session_end(profile, at, refresh)

    # ---- input ---------------------------------------------------------------------------------
    def item(self, update: CatalogEntry | ItemRemoved) -> None:
        self.world.add(update)

    def session_ends(
        self, ts: float, user: str | None = None, refreshes: bool = True
    ) -> list[Output]:
        """Fire the session ends (and refreshes) due before ``ts`` (and ``user``'s if due exactly
        at ``ts``), in (time, user) order. ``refreshes=False``: only session ends."""
        out = []
        heap = self._heap
        while heap and (heap[0][0] < ts or (heap[0][0] == ts and heap[0][1] == user)):
            due, u = heapq.heappop(heap)
            self._fire(u, due, out, refreshes)
        # an entry for the user due exactly at ts may sit behind others due at ts
        if user is not None:
            if self._due.get(user) == ts:
                self._fire(user, ts, out, refreshes)
            if self._refresh.get(user, (None,))[0] == ts:
                self._fire(user, ts, out, refreshes)
        return out

    def _fire(self, u: str, due: int, out: list[Output], refreshes: bool) -> None:
        """The session end or refresh of ``u`` due at ``due``, if it is still due (the heap
        keeps stale entries); the next refresh goes on the heap."""
        if self._due.get(u) == due:
            del self._due[u]
            end, k = due, 0
        elif refreshes and self._refresh.get(u, (None,))[0] == due:
            _, k, end = self._refresh.pop(u)
        else:
            return
        self.world.advance_to(due)
        profile, value = self.on_session_end(self.profiles[u], due, k)
        self.profiles[u] = profile
        if value is not None:
            out.append(Output(u, value, "session_end", None))
        times = self.rec.config.refresh_times(end) if refreshes else ()
        if k < len(times):
            self._refresh[u] = (times[k], k + 1, end)
            heapq.heappush(self._heap, (times[k], u))

    def event(
        self, ev: Event, query_vec: np.ndarray | None = None
    ) -> tuple[list[Output], Output | None]:
        """One event: (session ends fired before it, its own output or None)."""
        ends = self.session_ends(ev.ts, ev.user_id)
        self._refresh.pop(ev.user_id, None)  # the user is back: their list is refreshed no more
        self.world.advance_to(ev.ts)
        profile, value = self.on_event(self.profiles.get(ev.user_id), ev, query_vec)
        self.world.add(ev)
        user = ev.user_id
        if profile is None:  # forget_user
            self.profiles.pop(user, None)
            self._due.pop(user, None)
            return ends, Output(user, None, "forget_user", ev)
        self.profiles[user] = profile
        due = profile.last_ts + self.rec.config.session_gap_ms
        if self._due.get(user) != due:
            self._due[user] = due
            heapq.heappush(self._heap, (due, user))
        own = Output(user, value, "event", ev) if value is not None else None
        return ends, own

    def finish(self) -> list[Output]:
        """End of input: every open session closes (no refreshes: event time stops here)."""
        return self.session_ends(float("inf"), refreshes=False)

    def steps(
        self, records: Iterable[Record], embed: Embed, finish: bool = True
    ) -> Iterator[tuple[list[Output], Event | None, Output | None]]:
        """Per event: (session ends fired before it, the event, its own output or None); with
        ``finish``, at the end one more step (remaining session ends, None, None). A scorer sees
        the event between the two, as the contract's protocol wants."""
        for kind, key, value in records:
            if kind == "items":
                update = parse_item(key, value, embed)
                if update is None:
                    self.dead_letters += 1
                else:
                    self.item(update)
                continue
            try:
                ev = event_from_dict(dict(value)) if value is not None else None
            except (InvalidRecord, TypeError, ValueError):
                ev = None
            if ev is None:
                self.dead_letters += 1
                continue
            qvec = embed(ev.query) if ev.type == "search" and ev.query else None
            ends, own = self.event(ev, qvec)
            yield ends, ev, own
        if finish:
            yield self.finish(), None, None

    def feed(self, records: Iterable[Record], embed: Embed) -> Iterator[Output]:
        """Contract records in stream order -> outputs in emission order."""
        for ends, _, own in self.steps(records, embed):
            yield from ends
            if own is not None:
                yield own


def parse_item(key: Any, value: Mapping[str, Any] | None, embed: Embed):
    """An items-topic record -> CatalogEntry (embedded) or ItemRemoved; None if invalid."""
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    if value is None:
        return ItemRemoved(key_text) if key_text else None
    try:
        item = item_from_dict(dict(value), key_text)
    except (InvalidRecord, TypeError, ValueError):
        return None
    return catalog_entry(item, embed(item.text()))


def embed_dim(embed: Embed) -> int:
    """The dimension of ``embed``'s vectors: its ``.dim``, else the length of one vector."""
    return getattr(embed, "dim", None) or int(np.asarray(embed("")).shape[-1])


def simulate(
    records: Iterable[Record],
    embed: Embed,
    config: RankingConfig | None = None,
    model_id: str = "simulation",
    top_k: int = 10,
    clock: Callable[[], int] | None = None,
    dim: int | None = None,
) -> Iterator[tuple[str, bytes | None]]:
    """``(user_id, value)`` as the job would emit them (see the module doc).

    ``clock`` gives ``emitted_at`` (default: 0, so that two runs give identical bytes)."""
    rec = Recommender(dim or embed_dim(embed), model_id, top_k, config, clock=clock or (lambda: 0))
    for out in Simulation(rec).feed(records, embed):
        yield out.user_id, out.value


# ---- embeddings -----------------------------------------------------------------------------
DEFAULT_MODEL = "minilm-l6-fp32"


def item_texts(records: Iterable[Record]) -> list[str]:
    """Distinct texts of every item version in the records (what the job embeds)."""
    texts: dict[str, None] = {}
    for kind, key, value in records:
        if kind == "items" and value is not None:
            try:
                texts.setdefault(item_from_dict(dict(value), key).text())
            except (InvalidRecord, TypeError, ValueError):
                continue
    return list(texts)


def cached_embedder(
    records: Iterable[Record] = (),
    model: str = DEFAULT_MODEL,
    store_dir: Path | None = None,
) -> Embed:
    """The real encoder behind an on-disk embedding store (default .runtime/embeddings): the
    catalog's texts are encoded once, later runs read them back. Returns text -> vector, with
    ``.model_id`` and ``.dim`` attributes."""
    from models.embedding_store import EmbeddingStore
    from models.encoder import Encoder, resolve_model_dir

    enc = Encoder(resolve_model_dir(model), provider="cpu", cache_size=0)
    store = EmbeddingStore(
        store_dir or paths.runtime_dir() / "embeddings", enc.model_id, enc.dim, read_only=False
    )
    texts = item_texts(records)
    vectors: dict[str, np.ndarray] = {}
    got = store.get_many(texts)
    todo = [t for t, v in zip(texts, got, strict=True) if v is None]
    if todo:
        store.put_many(todo, enc.encode(todo))
        got = store.get_many(texts)
    vectors.update(zip(texts, got, strict=True))
    store.close()

    def embed(text: str) -> np.ndarray:
        vec = vectors.get(text)
        if vec is None:
            vec = vectors[text] = enc.encode([text])[0]
        return vec

    embed.model_id = enc.model_id  # type: ignore[attr-defined]
    embed.dim = enc.dim  # type: ignore[attr-defined]
    return embed


# ---- CLI ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    from streamrec.evaluate import load_records

    p = argparse.ArgumentParser(
        prog="python -m streamrec.simulate",
        description="the job's lists for a file, without Kafka or Flink (one JSON per line)",
    )
    p.add_argument("--csv", type=Path, default=paths.shared_data_file())
    p.add_argument("--weeks", type=float, default=None, help="first W weeks only")
    p.add_argument("--config", type=Path, default=None, help="a RankingConfig JSON file")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="JSON lines {user_id, value}")
    args = p.parse_args(argv)
    if not args.csv.exists():
        print(f"simulate: no such file {args.csv}", file=sys.stderr)
        return 2
    config = RankingConfig.load(args.config) if args.config else RankingConfig()
    records = load_records(args.csv, weeks=args.weeks)
    embed = cached_embedder(records, args.model)
    t0 = time.perf_counter()
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for user, value in simulate(records, embed, config, embed.model_id, args.top_k):
            rec = json.loads(value) if value is not None else None
            f.write(json.dumps({"user_id": user, "value": rec}, ensure_ascii=False) + "\n")
            n += 1
    print(
        f"simulate: {n} records in {time.perf_counter() - t0:.1f}s -> {args.out}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
