"""Cost of the ranking core on the shared file: per event, per profile, per world snapshot.

    python -m benchmarks.ranking [--csv FILE] [--weeks W] [--config ranking.json] [--json]
                                 [--catalog-size N | --catalog-sizes 10000,100000,1000000]

Runs the job's semantics (streamrec.simulate: world updates in event-time order, on_event per
event, on_session_end per closed session) over the file, one BLAS thread, with item embeddings
from the real default encoder (cached in the embedding store under .runtime). Prints:

- us/event: everything the recommend operator does per event, without Flink (world advance and
  add, on_event with its JSON record, session ends spread over the events), by wall clock and
  by this process's CPU time (the machine is shared: CPU time is the steadier figure);
- the parts: world work per event, on_event, on_session_end (per session end);
- profile: pickled bytes (p50 / p95 / max over users) and one pickle round trip (us);
- world snapshot: bytes, seconds to take, seconds to restore; sizes of its parts;
- fold: what the job writes to broadcast state when it folds its log after the run (the world
  without its catalog rows, and the chunks of rows that changed since the fold before, which is
  taken right after the catalog load), bytes and seconds;
- memory: this process's resident set after the run (and its peak, which includes the setup).

``--catalog-size N`` first puts N synthetic items (benchmarks.catalogs, composed vectors) into
the world, then runs the file's events and items as usual. The synthetic items are loaded in
bulk (the table, the vector index and, from operators.ann.MIN_KEYS items on, its cells), not one
by one: they get no text neighbour lists of their own (the real items, which arrive as usual,
search all of them and enter their lists). Loading a million items one by one costs a text
search each; that is the world's cost of a catalog update, not of an event.
``--catalog-sizes`` runs each size in its own process (so each resident set is its own) one
after the other and prints them side by side, with each figure's ratio to the first size's.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
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


def rss_bytes() -> int:
    """This process's resident set now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def preload_catalog(world, size: int) -> None:
    """``size`` synthetic items (composed vectors) straight into the world's table and vector
    index, present and available from the start (see the module doc)."""
    from benchmarks.catalogs import composed_catalog
    from operators.catalog import CatalogEntry

    items, vectors = composed_catalog(size)
    for it, vec in zip(items, vectors, strict=True):
        world.items.upsert(
            CatalogEntry(it["item_id"], vec.tobytes(), it["title"], True, it["price"], None)
        )
    del items, vectors
    world.together.ensure(len(world.items))
    index = world.index
    index.add_present(np.flatnonzero(world.items.present))
    if index.ann_min is not None and len(index) >= index.ann_min:
        index.restore_ann(None, build=True)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    from operators.catalog import CHUNK_ROWS
    from operators.config import RankingConfig
    from operators.recommender import Recommender
    from operators.world import World
    from operators.world_store import CATALOG, WorldStore
    from streamrec import paths
    from streamrec.evaluate import load_records
    from streamrec.simulate import Simulation, cached_embedder

    p = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__)
    p.add_argument("--csv", type=Path, default=paths.shared_data_file())
    p.add_argument("--weeks", type=float, default=None, help="first W weeks only")
    p.add_argument("--config", type=Path, default=None, help="a RankingConfig JSON file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument(
        "--catalog-size", type=int, default=0, help="N synthetic items in the world first"
    )
    p.add_argument("--catalog-sizes", default=None, help="comma-separated sizes, side by side")
    p.add_argument("--json-file", type=Path, default=None, help="write the figures there")
    args = p.parse_args(argv)
    if args.catalog_sizes:
        return compare_sizes(args, argv if argv is not None else sys.argv[1:])
    if not args.csv.exists():
        print(f"benchmarks.ranking: no such file {args.csv}", file=sys.stderr)
        return 2
    threadpool_limits(1, user_api="blas")
    config = RankingConfig.load(args.config) if args.config else RankingConfig()
    records = load_records(args.csv, weeks=args.weeks)
    embed = cached_embedder(records)
    n_events = sum(1 for k, _, _ in records if k == "events")

    rec = Recommender(embed.dim, embed.model_id, 10, config, clock=lambda: 0)
    load_s = 0.0
    if args.catalog_size:
        t = time.perf_counter()
        preload_catalog(rec.world, args.catalog_size)
        load_s = time.perf_counter() - t
    rss_loaded = rss_bytes()
    rec.world.items.changed_chunks()  # as if folded after the catalog load
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

    rss_run = rss_bytes()
    world = rec.world
    t = time.perf_counter()
    puts, _ = WorldStore().fold(world)
    fold_s = time.perf_counter() - t
    fold_bytes = sum(len(v) for _, v in puts if isinstance(v, bytes))
    fold_chunks = sum(k.startswith(CATALOG) for k, _ in puts)
    del puts
    snaps, restores = [], []
    for _ in range(1 if args.catalog_size else 3):
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
        "fold_bytes": fold_bytes,
        "fold_s": fold_s,
        "fold_chunks": fold_chunks,
        "chunks_total": -(-len(world.items) // CHUNK_ROWS),
        "catalog_size": args.catalog_size,
        "catalog_load_s": load_s,
        "ann": world.index.ann is not None,
        "rss_after_load_bytes": rss_loaded,
        "rss_after_run_bytes": rss_run,
        "rss_peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
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
        f"{len(world.together):,} co-occurrence entries, {len(world.users):,} user contexts)\n"
        f"  fold:        {fold_bytes / 1e6:.1f} MB in {fold_s:.2f} s (the world without its catalog rows, "
        f"and {fold_chunks} of {figures['chunks_total']} catalog chunks: those the run changed)\n"
        f"  memory:      {rss_run / 2**30:.2f} GiB resident after the run "
        f"({rss_loaded / 2**30:.2f} GiB after the catalog load, "
        f"{figures['rss_peak_bytes'] / 2**30:.2f} GiB peak with setup and snapshots)"
        + (
            f"\n  catalog:     {args.catalog_size:,} synthetic items loaded in {load_s:.0f} s; "
            f"vector search {'approximate (IVF)' if figures['ann'] else 'exact'}"
            if args.catalog_size
            else ""
        )
    )
    if args.json:
        print(json.dumps(figures, indent=1))
    if args.json_file:
        args.json_file.write_text(json.dumps(figures, indent=1))
    return 0


COMPARED = (
    ("us_per_event_cpu", "us/event CPU", "{:.0f}"),
    ("us_per_event_wall", "us/event wall", "{:.0f}"),
    ("world_us_per_event", "world us/event", "{:.0f}"),
    ("on_event_us", "on_event us", "{:.0f}"),
    ("rss_after_run_bytes", "RSS GiB", "{:.2f}"),
    ("snapshot_bytes", "snapshot MB", "{:.0f}"),
    ("snapshot_s", "snapshot s", "{:.1f}"),
    ("restore_s", "restore s", "{:.1f}"),
    ("fold_bytes", "fold MB", "{:.0f}"),
    ("fold_s", "fold s", "{:.2f}"),
)


def compare_sizes(args, argv: list[str]) -> int:
    """Each of ``--catalog-sizes`` in a child process; a table of the figures and ratios."""
    import subprocess
    import tempfile

    sizes = [int(x) for x in args.catalog_sizes.split(",")]
    rest, skip = [], False
    for a in argv:  # the same options, without the sizes
        if skip:
            skip = False
        elif a in ("--catalog-sizes", "--json-file"):
            skip = True
        elif not a.startswith(("--catalog-sizes=", "--json-file=")):
            rest.append(a)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            out = Path(tmp) / f"{n}.json"
            cmd = [sys.executable, "-m", "benchmarks.ranking", *rest, "--catalog-size", str(n)]
            code = subprocess.call([*cmd, "--json-file", str(out)])
            if code:
                print(f"benchmarks.ranking: the run with {n:,} items failed", file=sys.stderr)
                return code
            runs.append(json.loads(out.read_text()))
    scale = {"rss_after_run_bytes": 2**30, "snapshot_bytes": 1e6, "fold_bytes": 1e6}
    print("\ncatalog size      " + "".join(f"{n:>14,}" for n in sizes) + "   ratio last/first")
    for key, label, fmt in COMPARED:
        vals = [r[key] / scale.get(key, 1) for r in runs]
        ratio = vals[-1] / vals[0] if vals[0] else float("nan")
        print(f"{label:<18}" + "".join(f"{fmt.format(v):>14}" for v in vals) + f"   {ratio:.2f}x")
    if args.json_file:
        args.json_file.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
