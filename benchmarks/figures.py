"""The figures of a job benchmark, from timestamps: throughput, latency percentiles, ratios.

Pure functions (no Kafka, no Flink), so that what ``streamrec bench job`` prints can be tested:

- :func:`throughput`: lists per second in steady state, from the wall-clock times at which the
  lists of a backlog were consumed. The first ``head`` share of the lists (start-up: JIT, the
  catalog, the first checkpoint) and the last ``tail`` share (the drain) are left out.
  :func:`backlog_throughput` falls back to the lists' ``emitted_at`` when all came in one poll.
- :func:`paced_rate`: the rate of a paced phase, a share of the lower of the backlog's and the
  live rate.
- :func:`latency_stats`: percentiles of produce -> consume milliseconds.
- :func:`add_ratios`: each run's lists/s as a ratio to the baseline variant's run in the same
  alignment (these machines are noisy, so only ratios within one invocation are compared).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HEAD = 0.10  # share of the first lists left out of the steady state
TAIL = 0.10  # share of the last lists left out (a backlog's last event-time instants wait
# for --max-wait under event-time alignment: no later event moves the watermark past them)


def throughput(
    consumed_ms: Mapping[str, float] | Iterable[float],
    started_ms: float,
    head: float = HEAD,
    tail: float = TAIL,
) -> dict[str, float]:
    """Lists/s of one backlog run.

    ``consumed_ms``: when each list was consumed (wall clock, ms; a mapping's values or an
    iterable), ``started_ms``: when the job was launched. Returns ``lists``, ``lists_per_s``
    (steady state: between the lists at ``head`` and ``1 - tail`` of the run), ``lists_per_s_all``
    (first to last list), ``startup_s`` (launch -> first list) and ``steady_s`` (the seconds the
    steady rate was measured over). A rate over no time (too few lists, or all consumed in one
    poll) is NaN.
    """
    values = consumed_ms.values() if isinstance(consumed_ms, Mapping) else consumed_ms
    times = sorted(float(t) for t in values)
    n = len(times)
    nan = float("nan")
    if n == 0:
        return {
            "lists": 0,
            "lists_per_s": nan,
            "lists_per_s_all": nan,
            "startup_s": nan,
            "steady_s": 0.0,
        }
    lo = min(int(n * head), n - 1)
    hi = max(lo, n - 1 - int(n * tail))
    steady = (times[hi] - times[lo]) / 1000.0
    whole = (times[-1] - times[0]) / 1000.0
    return {
        "lists": n,
        "lists_per_s": (hi - lo) / steady if steady > 0 else nan,
        "lists_per_s_all": (n - 1) / whole if whole > 0 else nan,
        "startup_s": (times[0] - started_ms) / 1000.0,
        "steady_s": steady,
    }


def backlog_throughput(
    consumed_ms: Mapping[str, float], emitted_ms: Mapping[str, float], started_ms: float
) -> dict[str, Any]:
    """:func:`throughput` of a backlog's lists timed as they were consumed; when that gives no
    rate (all came in one poll: a short backlog, a fast variant) and every list carries the
    time it was emitted, the rates come from those instead (start-up stays the consumer's).
    ``rate_clock``: ``"consumed"`` or ``"emitted_at"``."""
    out: dict[str, Any] = {**throughput(consumed_ms, started_ms), "rate_clock": "consumed"}
    if not out["lists_per_s"] > 0 and consumed_ms and emitted_ms.keys() >= consumed_ms.keys():
        by_job = throughput([emitted_ms[k] for k in consumed_ms], started_ms)
        out.update({k: by_job[k] for k in ("lists_per_s", "lists_per_s_all", "steady_s")})
        out["rate_clock"] = "emitted_at"
    return out


def paced_rate(ratio: float, backlog_rate: float, live_rate: float | None = None) -> float:
    """Events/s of a paced phase: ``ratio`` x the maximum, the lower of the backlog's lists/s
    and the live rate (lists/s while the events are being produced) when that was measured
    (a NaN or missing one is ignored); at least 1."""
    maximum = backlog_rate
    if live_rate is not None and live_rate > 0:
        maximum = min(maximum, live_rate)
    return max(1.0, ratio * maximum)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of sorted values, by linear interpolation (numpy's
    default); NaN for no values."""
    n = len(sorted_values)
    if n == 0:
        return float("nan")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latencies_ms(produced_ms: Mapping[str, float], consumed_ms: Mapping[str, float]) -> list[float]:
    """consume - produce per event id found in both (ms)."""
    return [consumed_ms[k] - t for k, t in produced_ms.items() if k in consumed_ms]


def latency_stats(values: Iterable[float]) -> dict[str, float]:
    """``n``, ``p50``, ``p95``, ``p99``, ``max`` and ``mean`` of latencies (ms)."""
    a = sorted(float(v) for v in values)
    nan = float("nan")
    return {
        "n": len(a),
        "p50": percentile(a, 50),
        "p95": percentile(a, 95),
        "p99": percentile(a, 99),
        "max": a[-1] if a else nan,
        "mean": sum(a) / len(a) if a else nan,
    }


def add_ratios(
    runs: list[dict[str, Any]], baseline: str, key: str = "lists_per_s"
) -> list[dict[str, Any]]:
    """Set ``ratio`` on every run: its ``key`` over that of the baseline variant's run with the
    same ``align`` (or, when the baseline has no run in that alignment, its first run). NaN when
    the baseline has no figure. Returns ``runs``."""
    base_runs = [r for r in runs if r["variant"] == baseline]
    for r in runs:
        same = [b for b in base_runs if b.get("align") == r.get("align")] or base_runs
        base = same[0].get(key) if same else None
        value = r.get(key)
        ok = isinstance(base, int | float) and base > 0 and isinstance(value, int | float)
        r["ratio"] = value / base if ok else float("nan")
    return runs


def ratio(a: float | None, b: float | None) -> float:
    """``a / b``, NaN when either is missing or ``b`` is not positive."""
    if a is None or b is None or not b > 0 or math.isnan(a):
        return float("nan")
    return a / b


def fmt(value: Any, spec: str = ",.0f", missing: str = "-") -> str:
    """A number for a table cell; ``missing`` for None / NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A fixed-width text table: ``columns`` are (header, key, format spec; "" for text)."""
    cells = [
        [fmt(r.get(key), spec) if spec else fmt(r.get(key)) for _, key, spec in columns]
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in enumerate(columns)]
    head = "  ".join(
        h.ljust(w) if not spec else h.rjust(w)
        for (h, _, spec), w in zip(columns, widths, strict=True)
    )
    lines = [head, "-" * len(head)]
    for c in cells:
        lines.append(
            "  ".join(
                v.ljust(w) if not spec else v.rjust(w)
                for v, (_, _, spec), w in zip(c, columns, widths, strict=True)
            )
        )
    return "\n".join(lines)
