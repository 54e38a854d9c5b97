"""Job benchmark: the job's ways of running side by side, on one broker, on the same records.

    streamrec bench job                                   # everything (the lead's full run)
    streamrec bench job --only old,new                    # some variants only
    streamrec bench job --catalog-sizes 10000             # one catalog size only
    streamrec bench job --only all --catalog-sizes 10000  # every variant and one size
    python -m benchmarks.job --events 2000 --paced-events 1000 --only new,loop --json out.json

**Variants** (benchmarks.variants): ``old`` (the job before issue 9, from a temporary git
worktree), ``new`` (this job, defaults: thread mode), ``process`` (``--execution-mode
process``), ``cluster-p1`` / ``cluster-p2`` (``flink run`` on a standalone cluster of two
TaskManagers of one slot, parallelism 1 and 2), ``loop`` (benchmarks.reference_loop: one
Python process, no Flink). ``--variant NAME='[RUNNER:]FLAGS'`` adds one. Each runs once per
alignment (``--align-modes``, default event-time and none; see benchmarks.job_run):

- lists/s in steady state on a backlog of ``--events`` Online Retail purchases, produced
  before the job starts;
- the live rate (``live/s``): the next ``--live-events`` events produced at that rate while
  the job runs, and the rate their lists come at. A backlog has the producer and the broker's
  write path idle; live traffic shares the machine with them, so this is the maximum the job
  sustains on live traffic (the maximum sustainable throughput of stream-benchmark practice);
- then p50/p95/p99 latency (produce -> list consumed) of the next ``--paced-events`` events,
  produced at ``--paced-ratio`` (0.5) x the maximum: the lower of lists/s and live/s (lists/s
  alone with ``--live-events 0``);
- peak RSS of the JVM(s), the Python workers and the driver (or the loop).

Ratios are to ``--baseline`` (default ``old``) in the same alignment; the targets of issue 9
are checked at the end.

**Catalog sizes** (``--catalog-sizes``, default 10k, 100k, 1M): the ``new`` job (plus
``--catalog-flags``) reads a synthetic catalog of that many items (benchmarks.catalogs) until
its recommend operator has received all of it (``catalog in s``, from the job's launch; read
from its Prometheus reporter), then gets the same backlog: lists/s, the first list (after the
backlog is produced: the world applies the catalog at the first event), RSS, the size of the
first checkpoint after the backlog, the savepoint, and the restore time (restart from the
savepoint -> first list). Embeddings come from an embedding store (``--catalog-embeddings``:
exact vectors of the real encoder, or composed ones for sizes above ``--exact-max``).

Parts: with neither ``--only``/``--variant`` nor ``--catalog-sizes`` both parts run; with one
of them, only that part (give both for both). ``--json FILE`` writes every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import figures
from benchmarks.job_run import TAIL_EVENTS, OpenLoop
from benchmarks.variants import (
    ALIGNS,
    LOOP_ALIGN,
    OLD_COMMIT,
    Variant,
    parse_aligns,
    parse_names,
    parse_variant,
    select,
    split_parallelism,  # noqa: F401 - part of this module's interface (older callers)
)

Record = tuple[str, str, dict | None]
GIB = 2**30


def throughput(consumed_ms: dict[str, float], started_ms: float) -> dict[str, float]:
    """Steady-state lists/s and start-up of one run (see benchmarks.figures.throughput)."""
    return figures.throughput(consumed_ms, started_ms)


def parse_sizes(text: str) -> list[int]:
    """``"10000,100k,1M"`` -> ``[10000, 100000, 1000000]``; ``"none"`` -> ``[]``."""
    if text.strip().lower() in ("none", "0", ""):
        return []
    out = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        mult = {"k": 1_000, "m": 1_000_000}.get(tok[-1:], 1)
        try:
            n = int(float(tok[:-1] if mult > 1 else tok) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {tok!r}") from None
        if n <= 0:
            raise argparse.ArgumentTypeError(f"not a size: {tok!r}")
        out.append(n)
    return out


def split_records(records: list[Record], n_backlog: int) -> tuple[list[Record], list[Record]]:
    """(the records up to the ``n_backlog``-th event, the rest)."""
    n = 0
    for i, (kind, _, value) in enumerate(records):
        if kind == "events" and value is not None:
            if n == n_backlog:
                return records[:i], records[i:]
            n += 1
    return records, []


def _parser() -> argparse.ArgumentParser:
    from benchmarks.catalogs import DEFAULT_SIZES

    p = argparse.ArgumentParser(prog="streamrec bench job", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--events", type=int, default=20_000, help="backlog events per run (default %(default)s)")
    a("--paced-events", type=int, default=5_000, help="events of the paced phase (0: none)")
    a(
        "--live-events",
        type=int,
        default=2_000,
        help="events produced at the backlog's rate while the job runs (live/s; 0: none)",
    )
    a(
        "--paced-ratio",
        type=float,
        default=0.5,
        help="paced rate / the run's maximum (the lower of lists/s and live/s)",
    )
    a(
        "--paced-time",
        choices=["wall", "original"],
        default="wall",
        help="paced events' ts: continue at wall-clock speed (default) or the file's",
    )
    a("--csv", type=Path, default=None, help="Online Retail CSV (.csv or .csv.xz)")
    a("--model", default=None, help="exported encoder (default: the job's)")
    a(
        "--only",
        type=parse_names,
        default=None,
        metavar="NAME[,NAME]",
        help="variants to run (all: every one; none: no variant)",
    )
    a(
        "--variant",
        type=parse_variant,
        action="append",
        default=None,
        metavar="NAME='[RUNNER:]FLAGS'",
        help="an extra variant; RUNNER: local (default), old, cluster, loop (repeatable)",
    )
    a("--align-modes", type=parse_aligns, default=ALIGNS, metavar="MODE[,MODE]")
    a("--baseline", default=None, help="ratios are to this variant (default: old, else the first)")
    a("--old-commit", default=OLD_COMMIT, help="the commit of the old variant (%(default)s)")
    a(
        "--catalog-sizes",
        type=parse_sizes,
        default=None,
        metavar="N[,N]",
        help="synthetic catalog sizes (default: " + ",".join(map(str, DEFAULT_SIZES)) + ")",
    )
    a("--catalog-events", type=int, default=None, help="backlog events of a catalog run")
    a("--catalog-flags", default="", help="extra job flags of the catalog runs")
    a(
        "--catalog-embeddings",
        choices=["auto", "exact", "composed"],
        default="auto",
        help="auto: exact up to --exact-max items, composed above",
    )
    a("--exact-max", type=int, default=100_000)
    a(
        "--embedding-store",
        default=None,
        metavar="DIR|none",
        help="the store every run reads (default: .runtime/bench-embeddings, filled with the "
        "records' catalog first); none: each job encodes its catalog itself",
    )
    a("--bootstrap-servers", default=None, help="default: a private broker")
    a("--timeout", type=float, default=1800, help="seconds per run")
    a("--max-rss-gib", type=float, default=10.0, help="abort a run whose processes pass this")
    a("--out", type=Path, default=None, help="logs (default .runtime/bench-job-TIMESTAMP)")
    a("--json", type=Path, default=None, help="write the figures as JSON")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the benchmark as Ctrl-C does: jobs, cluster, broker


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if threading.current_thread() is not threading.main_thread():
        return _run(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from streamrec import evaluate, kafka_broker, paths, ports

    want_variants = args.only is not None or args.variant is not None
    want_catalogs = args.catalog_sizes is not None
    if not want_variants and not want_catalogs:
        want_variants = want_catalogs = True
    try:
        variants = select(args.variant, args.only) if want_variants else []
    except ValueError as e:
        print(f"streamrec bench job: {e}", file=sys.stderr)
        return 2
    from benchmarks.catalogs import DEFAULT_SIZES

    sizes = (
        (args.catalog_sizes if args.catalog_sizes is not None else list(DEFAULT_SIZES))
        if want_catalogs
        else []
    )
    csv = args.csv or paths.default_data_file()
    n_cat = args.catalog_events if args.catalog_events is not None else args.events
    probe = bool(variants and args.paced_events and args.live_events)  # the live probe runs
    n_more = (
        (args.live_events + TAIL_EVENTS if probe else 0) + args.paced_events + TAIL_EVENTS
        if variants and args.paced_events
        else 0
    )
    n_total = max(args.events + n_more, n_cat if sizes else 0)
    t0 = time.monotonic()
    records = evaluate.load_records(csv, max_events=n_total)
    backlog, rest = split_records(records, args.events)
    live, rest = split_records(rest, args.live_events) if probe else ([], rest)
    live_tail, rest = split_records(rest, TAIL_EVENTS) if live else ([], rest)
    paced, rest = split_records(rest, args.paced_events) if variants else ([], [])
    tail, _ = split_records(rest, TAIL_EVENTS) if paced else ([], [])
    out = args.out or paths.runtime_dir() / f"bench-job-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    n_backlog = sum(1 for k, _, v in backlog if k == "events" and v is not None)
    n_paced = sum(1 for k, _, v in paced if k == "events" and v is not None)
    n_live = sum(1 for k, _, v in live if k == "events" and v is not None)
    print(
        f"job benchmark: {n_backlog:,} backlog events"
        + (f" + {n_live:,} live + {n_paced:,} paced events" if variants else "")
        + f" from {csv.name}; {os.cpu_count()} CPUs; logs in {out}",
        flush=True,
    )
    report: dict[str, Any] = {
        "events": n_backlog,
        "live_events": n_live,
        "paced_events": n_paced,
        "cpus": os.cpu_count(),
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "variant"
        },
        "variants": [vars(v) for v in variants],
        "runs": [],
        "catalogs": [],
    }
    failed = False
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers
        if bootstrap is None:
            data_dir = out / "broker"
            stack.callback(shutil.rmtree, data_dir, True)  # after the broker has stopped
            bootstrap = stack.enter_context(
                kafka_broker.running_broker(ports.free_port(), data_dir)
            )
        store = None
        if (args.embedding_store or "").lower() != "none":
            from benchmarks.catalogs import exact_store_dir

            store = Path(args.embedding_store) if args.embedding_store else exact_store_dir()
            fill_store(records, store, args.model)
        if variants:
            runs = run_variants(
                variants,
                args,
                backlog,
                OpenLoop(live, live_tail),
                OpenLoop(paced, tail),
                bootstrap,
                store,
                out,
                stack,
            )
            report["runs"] = runs
            failed |= any("error" in r for r in runs)
        if sizes:
            cats = run_catalogs(sizes, args, records, n_cat, bootstrap, store, out)
            report["catalogs"] = cats
            failed |= any("error" in r for r in cats)
    report["seconds"] = round(time.monotonic() - t0, 1)
    print_report(report, args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


def fill_store(records: list[Record], store: Path, model: str | None) -> None:
    """Encode the records' catalog texts the store lacks (``streamrec encode-catalog``'s code)."""
    from benchmarks.catalogs import encoder
    from models.embedding_store import EmbeddingStore
    from operators.events import InvalidRecord, item_from_dict
    from streamrec.encode_catalog import encode_catalog

    items = []
    for kind, key, value in records:
        if kind == "items" and value is not None:
            with contextlib.suppress(InvalidRecord, TypeError, ValueError):
                items.append(item_from_dict(dict(value), key))
    enc = encoder(model)
    with EmbeddingStore(store, enc.model_id, enc.dim, read_only=False) as s:
        stats = encode_catalog(items, s, enc, out=open(os.devnull, "w"))  # noqa: SIM115
    if stats["encoded"]:
        print(
            f"embedding store {store}: {stats['encoded']:,} catalog texts encoded "
            f"({stats['texts_per_s'] or 0:,.0f} texts/s)",
            flush=True,
        )


def _launcher(variant: Variant, args, stack: contextlib.ExitStack, cache: dict):
    from benchmarks import launchers

    if variant.runner in cache:
        return cache[variant.runner]
    if variant.runner == "local":
        launcher = launchers.new_job()
    elif variant.runner == "loop":
        launcher = launchers.reference_loop()
    elif variant.runner == "old":
        checkout = stack.enter_context(launchers.old_checkout(args.old_commit))
        launcher = launchers.old_job(checkout)
    else:
        launcher = launchers.ClusterLauncher(taskmanagers=2, slots=1)
        stack.callback(launcher.close)
    cache[variant.runner] = launcher
    return launcher


def run_variants(
    variants, args, backlog, live: OpenLoop, paced: OpenLoop, bootstrap, store, out, stack
) -> list[dict]:
    """Every variant in every alignment: the backlog, then the ``live`` and ``paced`` phases."""
    from benchmarks.job_run import RunError, RunOptions, run_once
    from benchmarks.launchers import LaunchError

    opts = RunOptions(
        bootstrap=bootstrap,
        model=args.model,
        embedding_store=str(store) if store else None,
        timeout=args.timeout,
        paced_ratio=args.paced_ratio,
        paced_time=args.paced_time,
        max_rss_bytes=int(args.max_rss_gib * GIB) if args.max_rss_gib else None,
    )
    cache: dict = {}
    runs = []
    for v in variants:
        for align in v.aligns(args.align_modes):
            label = f"{v.name}/{align}" if align != LOOP_ALIGN else v.name
            flags = list(v.job_args) + ["--parallelism", str(v.parallelism)]
            if align != LOOP_ALIGN and "--align" not in v.flags:
                flags += ["--align", align]
            row: dict[str, Any] = {
                "variant": v.name,
                "runner": v.runner,
                "flags": v.flags,
                "align": align,
                "parallelism": v.parallelism,
            }
            print(f"[{label}] {v.runner}: {' '.join(flags)}", flush=True)
            run_dir = out / label.replace("/", "-")
            try:
                launcher = _launcher(v, args, stack, cache)
                row.update(
                    run_once(
                        launcher,
                        flags,
                        v.parallelism,
                        backlog,
                        opts,
                        run_dir,
                        paced=paced,
                        live=live,
                    )
                )
            except (RunError, LaunchError) as e:
                row.update(getattr(e, "partial", None) or {})
                row["error"] = str(e)[:4000]
                print(f"[{label}] FAILED: {e}", file=sys.stderr, flush=True)
            finally:
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            runs.append(row)
            if "error" not in row:
                lat = row.get("latency_ms") or {}
                nan = float("nan")
                print(
                    f"[{label}] {row['lists_per_s']:,.0f} lists/s steady, first list after "
                    f"{row['startup_s']:.1f}s; live {row.get('live_lists_per_s', nan):,.0f}/s; "
                    f"paced at {row.get('paced_rate', nan):,.0f}/s: "
                    f"p50 {lat.get('p50', nan):,.0f} ms, p99 {lat.get('p99', nan):,.0f} ms",
                    flush=True,
                )
    base = args.baseline or (
        "old" if any(r["variant"] == "old" for r in runs) else runs[0]["variant"] if runs else None
    )
    if base:
        figures.add_ratios(runs, base)
    return runs


def run_catalogs(sizes, args, records, n_events, bootstrap, store, out) -> list[dict]:
    from benchmarks import catalogs, launchers
    from benchmarks.job_run import RunError, RunOptions, run_once

    backlog, _ = split_records(records, n_events)
    first_ts = min(int(v["ts"]) for k, _, v in backlog if k == "events" and v is not None)
    vocab = catalogs.vocabulary(args.csv)
    rows = []
    for size in sizes:
        method = args.catalog_embeddings
        if method == "auto":
            method = "exact" if size <= args.exact_max else "composed"
        row: dict[str, Any] = {"size": size, "embeddings": method}
        print(f"[catalog {size:,}] building ({method} embeddings)", flush=True)
        t0 = time.monotonic()
        items, sources = catalogs.synthetic_catalog(vocab, size, first_ts - 86_400_000)
        if method == "exact":
            cat_store = store or catalogs.exact_store_dir()
            if store is None:
                fill_store(records, cat_store, args.model)
            jsonl = catalogs.write_jsonl(items, out / f"catalog-{size}.jsonl")
            if catalogs.encode_exact(jsonl, cat_store, args.model) != 0:
                row["error"] = "encode-catalog failed"
                rows.append(row)
                continue
            jsonl.unlink(missing_ok=True)
        else:
            cat_store = catalogs.composed_store_dir()
            titles = [v["title"] for k, _, v in records if k == "items" and v is not None]
            row["composed"] = catalogs.fill_composed(items, sources, titles, cat_store, args.model)
        row["embed_s"] = round(time.monotonic() - t0, 1)
        opts = RunOptions(
            bootstrap=bootstrap,
            model=args.model,
            embedding_store=str(cat_store),
            timeout=args.timeout,
            max_rss_bytes=int(args.max_rss_gib * GIB) if args.max_rss_gib else None,
        )
        catalog = [("items", it["item_id"], it) for it in items]
        del items, sources
        run_dir = out / f"catalog-{size}"
        job_flags = [*args.catalog_flags.split(), "--parallelism", "1"]
        try:
            row.update(
                run_once(
                    launchers.new_job(),
                    job_flags,
                    1,
                    backlog,
                    opts,
                    run_dir,
                    catalog_checks=True,
                    catalog=catalog,
                )
            )
        except RunError as e:
            row.update(e.partial or {})
            row["error"] = str(e)[:4000]
            print(f"[catalog {size:,}] FAILED: {e}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(run_dir / "savepoints", ignore_errors=True)
        rows.append(row)
        if "error" not in row:
            print(
                f"[catalog {size:,}] in after {row.get('catalog_load_s', float('nan')):.0f}s; "
                f"{row['lists_per_s']:,.0f} lists/s, first list after "
                f"{row['startup_s']:.1f}s, checkpoint {row.get('checkpoint_mib', float('nan')):,.1f} MiB, "
                f"restore {row.get('restore_s', float('nan')):.1f}s",
                flush=True,
            )
    ok = [r for r in rows if r.get("lists_per_s", 0) > 0]
    if ok:
        base = min(ok, key=lambda r: r["size"])
        for r in rows:
            r["ratio"] = figures.ratio(r.get("lists_per_s"), base["lists_per_s"])
    return rows


# ---- printing -------------------------------------------------------------------------------
def _flat(row: dict[str, Any]) -> dict[str, Any]:
    flat = dict(row)
    for k, v in (row.get("latency_ms") or {}).items():
        flat[f"lat_{k}"] = v
    if "error" in row:
        flat["status"] = "FAILED"
    return flat


def targets(runs: list[dict], cats: list[dict], ooo_ms: float = 1000.0) -> list[dict[str, Any]]:
    """Issue 9's targets, from the figures that are there: (name, value, target, met)."""

    def run(variant: str, align: str) -> dict | None:
        found = [
            r
            for r in runs
            if r["variant"] == variant and r["align"] in (align, LOOP_ALIGN) and "error" not in r
        ]
        return found[0] if found else None

    out = []

    def add(name: str, value: float, target: str, met: bool) -> None:
        if not math.isnan(value):
            out.append({"name": name, "value": value, "target": target, "met": met})

    new, old, loop = run("new", "event-time"), run("old", "event-time"), run("loop", LOOP_ALIGN)
    if new and old:
        x = figures.ratio(new["lists_per_s"], old["lists_per_s"])
        add("new / old lists/s (event-time, p1)", x, ">= 6 (aim 15)", x >= 6)
    job = new or run("new", "none")
    if job and loop:
        x = figures.ratio(job["lists_per_s"], loop["lists_per_s"])
        add(f"new / loop lists/s ({job['align']})", x, ">= 0.5", x >= 0.5)
    proc, p1, p2 = (
        run("process", "event-time"),
        run("cluster-p1", "event-time"),
        run("cluster-p2", "event-time"),
    )
    if new and proc:
        x = figures.ratio(new["lists_per_s"], proc["lists_per_s"])
        add("thread / process lists/s", x, "(measured)", True)
    if p1 and p2:
        x = figures.ratio(p2["lists_per_s"], p1["lists_per_s"])
        add("cluster p2 / p1 lists/s", x, "(measured)", True)
    none = run("new", "none")
    if none and none.get("latency_ms"):
        x = none["latency_ms"]["p99"]
        add("new p99 ms, --align none", x, "<= 250", x <= 250)
    if new and new.get("latency_ms"):
        x = new["latency_ms"]["p99"]
        add("new p99 ms, event-time", x, f"<= {ooo_ms + 300:.0f}", x <= ooo_ms + 300)
    ok = sorted((c for c in cats if c.get("lists_per_s", 0) > 0), key=lambda c: c["size"])
    if len(ok) >= 2:
        x = figures.ratio(ok[0]["lists_per_s"], ok[-1]["lists_per_s"])
        add(f"per-event cost {ok[-1]['size']:,} / {ok[0]['size']:,} items", x, "<= 3", x <= 3)
    for c in ok:
        mem = max(c.get("rss_jvm_mib_peak", 0) + c.get("rss_python_workers_mib_peak", 0), 0)
        add(f"memory per task MiB, {c['size']:,} items", mem, "<= 2048", mem <= 2048)
    return out


def print_report(report: dict[str, Any], args) -> None:
    runs, cats = report["runs"], report["catalogs"]
    if runs:
        cols = [
            ("variant", "variant", ""),
            ("runner", "runner", ""),
            ("par", "parallelism", "d"),
            ("align", "align", ""),
            ("lists/s", "lists_per_s", ",.0f"),
            ("x base", "ratio", ".2f"),
            ("startup s", "startup_s", ".1f"),
            ("live/s", "live_lists_per_s", ",.0f"),
            ("paced/s", "paced_rate", ",.0f"),
            ("p50 ms", "lat_p50", ",.0f"),
            ("p95 ms", "lat_p95", ",.0f"),
            ("p99 ms", "lat_p99", ",.0f"),
            ("JVM MiB", "rss_jvm_mib_peak", ",.0f"),
            ("py workers MiB", "rss_python_workers_mib_peak", ",.0f"),
            ("driver/loop MiB", "rss_driver_mib_peak", ",.0f"),
            ("", "status", ""),
        ]
        rows = [_flat(r) for r in runs]
        for r in rows:
            if r.get("runner") == "loop":
                r["rss_driver_mib_peak"] = r.get("rss_loop_mib_peak")
        print(
            f"\nVariants ({report['events']:,} backlog events, "
            f"{report.get('live_events', 0):,} live, {report['paced_events']:,} paced)"
        )
        print(figures.table(rows, cols))
    if cats:
        cols = [
            ("items", "size", ",d"),
            ("embeddings", "embeddings", ""),
            ("lists/s", "lists_per_s", ",.0f"),
            ("x smallest", "ratio", ".2f"),
            ("catalog in s", "catalog_load_s", ".0f"),
            ("first list s", "startup_s", ".1f"),
            ("JVM MiB", "rss_jvm_mib_peak", ",.0f"),
            ("py workers MiB", "rss_python_workers_mib_peak", ",.0f"),
            ("checkpoint MiB", "checkpoint_mib", ",.1f"),
            ("savepoint MiB", "savepoint_mib", ",.1f"),
            ("savepoint s", "savepoint_s", ".1f"),
            ("restore s", "restore_s", ".1f"),
            ("", "status", ""),
        ]
        print("\nCatalog sizes (the new job, parallelism 1)")
        print(figures.table([_flat(c) for c in cats], cols))
    checks = targets(runs, cats)
    report["targets"] = checks
    if checks:
        print("\nIssue 9 targets (ratios within this run)")
        for c in checks:
            print(
                f"  {c['name']:<44} {c['value']:>9.2f}   target {c['target']:<14} {'met' if c['met'] else 'NOT met'}"
            )
    failed = [r for r in runs + cats if "error" in r]
    for r in failed:
        name = r.get("variant", r.get("size"))
        print(f"\n{name} {r.get('align', '')} failed: {r['error'][:1500]}")
    print(f"\ntotal {report['seconds']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
