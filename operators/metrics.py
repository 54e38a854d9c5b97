"""The job's own metrics: the one list of their names, shared by the operators that register them,
the Grafana dashboard and the Prometheus alert rules (``tests/unit/test_deploy_files.py`` checks
that those two name only series listed here). No Flink imports: a metric group is anything with
PyFlink's ``add_group`` / ``counter`` / ``gauge``.

How PyFlink metrics appear in Prometheus (Flink's PrometheusReporter; measured on PyFlink 2.2.1,
mini-cluster and standalone cluster alike):

- ``NAME`` registered on an operator's metric group inside the user group ``streamrec`` is the
  series ``flink_taskmanager_job_task_operator_streamrec_NAME``;
- inside a key/value user group ``add_group(KEY, VALUE)`` it is
  ``flink_taskmanager_job_task_operator_streamrec_KEY_NAME{KEY="VALUE"}`` (the key joins the name,
  the value is a label);
- every operator series also carries the labels ``job_id, job_name, task_id, task_name,
  task_attempt_id, task_attempt_num, operator_id, operator_name, subtask_index, tm_id, host``;
  in label values every character outside ``[a-zA-Z0-9:_]`` becomes ``_`` (job name
  ``streamrec-recommend`` -> ``job_name="streamrec_recommend"``);
- a counter is exported as its running count (``# TYPE ... gauge``: use ``rate``/``increase``), a
  meter as its per-second rate, a gauge as its value (PyFlink gauges must return an int);
- a PyFlink ``distribution()`` is NOT usable: Java holds it as a gauge whose value is a Beam
  ``DistributionResult``, which the reporter cannot convert and exports as ``0``. Latencies and
  sizes are therefore :class:`Histogram`: cumulative bucket counters in the key/value group
  ``le`` (Prometheus histogram semantics, so ``histogram_quantile`` works across subtasks) plus a
  ``...Sum`` counter for the mean;
- Python metrics reach Java when a bundle finishes (``python.fn-execution.bundle.time``), and a
  series exists only from its first update on (a reason that never occurred has no series).
"""

from __future__ import annotations

import bisect

GROUP = "streamrec"  # the user metric group of every metric below
OPERATOR_PREFIX = "flink_taskmanager_job_task_operator_"

# counters
LISTS_EMITTED = "listsEmitted"  # key/value group trigger=event|session_end
DEAD_LETTERS = "deadLetters"  # key/value group reason=<operators.events.REASONS>
EMBEDDING_STORE_HITS = "embeddingStoreHits"
ENCODER_CACHE_HITS = "encoderCacheHits"
# histograms (Histogram: key/value group le=<bound>, and NAME + "Sum")
LIST_LATENCY_MS = "listLatencyMs"  # emit wall clock - Kafka record timestamp
EVENT_TIME_LAG_MS = "eventTimeLagMs"  # emit wall clock - event ts
ENCODER_BATCH_SIZE = "encoderBatchSize"
ENCODER_LATENCY_MS = "encoderLatencyMs"
# gauges (registered as counters kept at the value: a PyFlink gauge is a Python callback that
# Flink's metric threads call, which crashed a TaskManager after the task had closed)
CATALOG_SIZE = "catalogSize"
HELD_EVENTS = "heldEvents"

TRIGGER_KEY = "trigger"
REASON_KEY = "reason"
BUCKET_KEY = "le"
SUM_SUFFIX = "Sum"
INF = "Inf"  # the +Inf bucket's label ("+Inf" would be exported as "_Inf"; Prometheus reads "Inf")

# bucket upper bounds of each histogram (the +Inf bucket is always added)
BUCKETS: dict[str, tuple[int, ...]] = {
    LIST_LATENCY_MS: (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000),
    EVENT_TIME_LAG_MS: (100, 1000, 10_000, 60_000, 600_000, 3_600_000, 86_400_000),
    ENCODER_BATCH_SIZE: (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    ENCODER_LATENCY_MS: (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000),
}
COUNTERS = (LISTS_EMITTED, DEAD_LETTERS, EMBEDDING_STORE_HITS, ENCODER_CACHE_HITS)
GAUGES = (CATALOG_SIZE, HELD_EVENTS)
HISTOGRAMS = tuple(BUCKETS)
# metric -> the key of the key/value group it is registered in (None: directly in GROUP)
KEYS: dict[str, str | None] = {
    LISTS_EMITTED: TRIGGER_KEY,
    DEAD_LETTERS: REASON_KEY,
    EMBEDDING_STORE_HITS: None,
    ENCODER_CACHE_HITS: None,
    CATALOG_SIZE: None,
    HELD_EVENTS: None,
}


def series(name: str, key: str | None = None) -> str:
    """The Prometheus series of metric ``name`` of group ``streamrec`` (in key/value group
    ``key``): ``series("listsEmitted", "trigger")`` ->
    ``flink_taskmanager_job_task_operator_streamrec_trigger_listsEmitted``."""
    return f"{OPERATOR_PREFIX}{GROUP}_{key + '_' if key else ''}{name}"


def project_series() -> dict[str, str]:
    """Every Prometheus series the job's own metrics produce, by role: ``{"listsEmitted": ...,
    "listLatencyMs": <bucket series>, "listLatencyMsSum": ..., ...}``."""
    out = {name: series(name, key) for name, key in KEYS.items()}
    for name in HISTOGRAMS:
        out[name] = series(name, BUCKET_KEY)
        out[name + SUM_SUFFIX] = series(name + SUM_SUFFIX)
    return out


# Flink's own series that the dashboard and the alert rules use (names as scraped from the job)
FLINK_SERIES = (
    "flink_jobmanager_job_numRestarts",
    "flink_jobmanager_job_uptime",
    "flink_jobmanager_job_lastCheckpointDuration",
    "flink_jobmanager_job_lastCheckpointSize",
    "flink_jobmanager_job_lastCheckpointCompletedTimestamp",
    "flink_jobmanager_job_numberOfFailedCheckpoints",
    "flink_jobmanager_job_numberOfCompletedCheckpoints",
    "flink_jobmanager_job_totalNumberOfCheckpoints",
    "flink_taskmanager_job_task_busyTimeMsPerSecond",
    "flink_taskmanager_job_task_backPressuredTimeMsPerSecond",
    "flink_taskmanager_job_task_operator_pendingRecords",
    "flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max",
    "flink_taskmanager_job_task_operator_numRecordsInPerSecond",
)


class Histogram:
    """A Prometheus histogram made of PyFlink counters: bucket ``le=B`` counts the values <= B
    (cumulative, ``le="Inf"`` counts all), ``NAME + "Sum"`` adds the values up (rounded to int:
    PyFlink counters are integers).

    ``group``: the ``streamrec`` metric group of an operator (``runtime_context
    .get_metrics_group().add_group("streamrec")``), or any object with ``add_group(key, value)``
    and ``counter(name)``.
    """

    def __init__(self, group, name: str, bounds: tuple[int, ...] | None = None):
        self.name = name
        self.bounds = tuple(BUCKETS[name] if bounds is None else bounds)
        if list(self.bounds) != sorted(set(self.bounds)):
            raise ValueError(f"bucket bounds of {name} must increase: {self.bounds}")
        labels = [str(b) for b in self.bounds] + [INF]
        self._buckets = [group.add_group(BUCKET_KEY, le).counter(name) for le in labels]
        self._sum = group.counter(name + SUM_SUFFIX)

    def update(self, value: float) -> None:
        for bucket in self._buckets[bisect.bisect_left(self.bounds, value) :]:
            bucket.inc()
        self._sum.inc(max(0, round(value)))
