"""Cost of the ranking core on the shared file: per event, per profile, per world snapshot.

    python -m benchmarks.ranking [--csv FILE] [--weeks W] [--config ranking.json] [--json]

Runs the job's semantics (streamrec.simulate: world updates in event-time order, on_event per
event, on_session_end per closed session) over the file, one BLAS thread, with item embeddings
from the real default encoder (cached in the embedding store under .runtime). Prints:

- us/event: everything the recommend operator does per event, without Flink (world advance and
  add, on_event with its JSON record, session ends spread over the events), by wall clock and
  by this process's CPU time (the machine is shared: CPU time is the steadier figure);
- the parts: world work per event, on_event, on_session_end (per session end);
- profile: pickled bytes (p50 / p95 / max over users) and one pickle round trip (us);
- world snapshot: bytes, seconds to take, seconds to restore; sizes of its parts.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np


class _Timer:
    def __init__(self) -> None:
        self.ns = 0
        self.n = 0

    def wrap(self, fn):
        def timed(*a, **kw):
            t = time.perf_counter_ns()
            try:
                return fn(*a, **kw)
            finally:
                self.ns += time.perf_counter_ns() - t
                self.n += 1

        return timed

    def us(self, per: int | None = None) -> float:
        d = per if per is not None else self.n
        return self.ns / 1000 / d if d else float("nan")


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    from operators.config import RankingConfig
    from operators.recommender import Recommender
    from operators.world import World
    from streamrec import paths
    from streamrec.evaluate import load_records
    from streamrec.simulate import Simulation, cached_embedder

    p = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__)
    p.add_argument("--csv", type=Path, default=paths.shared_data_file())
    p.add_argument("--weeks", type=float, default=None, help="first W weeks only")
    p.add_argument("--config", type=Path, default=None, help="a RankingConfig JSON file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args(argv)
    if not args.csv.exists():
        print(f"benchmarks.ranking: no such file {args.csv}", file=sys.stderr)
        return 2
    threadpool_limits(1, user_api="blas")
    config = RankingConfig.load(args.config) if args.config else RankingConfig()
    records = load_records(args.csv, weeks=args.weeks)
    embed = cached_embedder(records)
    n_events = sum(1 for k, _, _ in records if k == "events")

    rec = Recommender(embed.dim, embed.model_id, 10, config, clock=lambda: 0)
    sim = Simulation(rec)
    world_t, event_t, end_t = _Timer(), _Timer(), _Timer()
    rec.world.advance_to = world_t.wrap(rec.world.advance_to)
    rec.world.add = world_t.wrap(rec.world.add)
    rec.on_event = event_t.wrap(rec.on_event)
    rec.on_session_end = end_t.wrap(rec.on_session_end)
    load0 = os.getloadavg()[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    n_out = sum(1 for _ in sim.feed(records, embed))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    # (item entries are embedded by the cached embedder inside feed: a dict lookup each)

    profiles = list(sim.profiles.values())
    sizes = np.array([len(pickle.dumps(pr)) for pr in profiles])
    t = time.perf_counter()
    for pr in profiles:
        pickle.loads(pickle.dumps(pr))
    pickle_us = (time.perf_counter() - t) / max(1, len(profiles)) * 1e6

    world = rec.world
    snaps, restores = [], []
    for _ in range(3):
        t = time.perf_counter()
        snap = world.snapshot()
        snaps.append(time.perf_counter() - t)
        t = time.perf_counter()
        World.restore(snap)
        restores.append(time.perf_counter() - t)

    figures = {
        "file": str(args.csv),
        "weeks": args.weeks,
        "events": n_events,
        "records_out": n_out,
        "session_ends": end_t.n,
        "load_average_at_start": round(load0, 2),
        "us_per_event_wall": wall / n_events * 1e6,
        "us_per_event_cpu": cpu / n_events * 1e6,
        "world_us_per_event": world_t.us(n_events),
        "on_event_us": event_t.us(),
        "on_session_end_us": end_t.us(),
        "profile_bytes_p50": int(np.percentile(sizes, 50)),
        "profile_bytes_p95": int(np.percentile(sizes, 95)),
        "profile_bytes_max": int(sizes.max()),
        "profile_pickle_round_trip_us": pickle_us,
        "snapshot_bytes": len(snap),
        "snapshot_s": min(snaps),
        "restore_s": min(restores),
        "world_items": len(world.items),
        "world_cooccurrence_entries": len(world.together),
        "world_users": len(world.users),
    }
    print(
        f"ranking core on {n_events:,} events ({args.csv.name}"
        + (f", first {args.weeks} weeks" if args.weeks else "")
        + f"), load average {load0:.1f} at start\n"
        f"  per event:   {figures['us_per_event_wall']:.0f} us wall, "
        f"{figures['us_per_event_cpu']:.0f} us CPU (world, on_event, session ends, driver)\n"
        f"  parts:       world {figures['world_us_per_event']:.0f} us/event, "
        f"on_event {figures['on_event_us']:.0f} us, "
        f"on_session_end {figures['on_session_end_us']:.0f} us ({end_t.n:,} session ends)\n"
        f"  profile:     {figures['profile_bytes_p50']:,} B p50, "
        f"{figures['profile_bytes_p95']:,} B p95, {figures['profile_bytes_max']:,} B max; "
        f"pickle round trip {pickle_us:.0f} us\n"
        f"  snapshot:    {len(snap) / 1e6:.1f} MB, {min(snaps):.2f} s to take, "
        f"{min(restores):.2f} s to restore ({len(world.items):,} items, "
        f"{len(world.together):,} co-occurrence entries, {len(world.users):,} user contexts)"
    )
    if args.json:
        print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
