"""operators/metrics.py: the Prometheus series names of the job's metrics, and Histogram on
PyFlink's own Python metric groups (counted by Beam's metrics container, as in a Python worker);
streamrec/prometheus.py: parsing what Flink's Prometheus reporter serves."""

from __future__ import annotations

import json

import pytest
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.runners.common import NameContext
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory
from pyflink.fn_execution.metrics.process.metric_impl import GenericMetricGroup

from operators import metrics
from operators.events import REASONS
from streamrec.prometheus import parse

# Served by PrometheusReporter (PyFlink 2.2.1 standalone cluster) for a probe job whose Python
# operator registered group("streamrec").add_group("trigger", t).counter("listsEmitted"), a gauge
# catalogSize and add_group("le", b).counter("listLatencyMs"); lines cut to the labels kept here.
SCRAPED = """\
# HELP flink_taskmanager_job_task_operator_streamrec_catalogSize catalogSize (scope: taskmanager_job_task_operator_streamrec)
# TYPE flink_taskmanager_job_task_operator_streamrec_catalogSize gauge
flink_taskmanager_job_task_operator_streamrec_catalogSize{host="localhost",operator_name="probe",job_name="metrics_probe",subtask_index="0",} 1234.0
# TYPE flink_taskmanager_job_task_operator_streamrec_le_listLatencyMs gauge
flink_taskmanager_job_task_operator_streamrec_le_listLatencyMs{le="10",operator_name="probe",job_name="metrics_probe",subtask_index="0",} 20.0
flink_taskmanager_job_task_operator_streamrec_le_listLatencyMs{le="Inf",operator_name="probe",job_name="metrics_probe",subtask_index="0",} 110.0
# TYPE flink_taskmanager_job_task_operator_streamrec_trigger_listsEmitted gauge
flink_taskmanager_job_task_operator_streamrec_trigger_listsEmitted{trigger="session_end",task_name="Source:_Collection_Source____probe____Sink:_Print_to_Std__Out",job_name="metrics_probe",} 28.0
flink_taskmanager_job_task_operator_streamrec_trigger_listsEmitted{trigger="event",job_name="metrics_probe",} 82.0
flink_taskmanager_job_task_operator_KafkaSourceReader_KafkaConsumer_records_lag_max{operator_name="Source:_events_source",} NaN
flink_jobmanager_job_numRestarts{job_id="7de4c80668b5e61ed15129cb446adcda",host="localhost",job_name="metrics_probe",} 0.0
"""


def test_series_names_follow_what_the_reporter_serves():
    got = {s.name for s in parse(SCRAPED)}
    assert metrics.series(metrics.LISTS_EMITTED, metrics.TRIGGER_KEY) in got
    assert metrics.series(metrics.CATALOG_SIZE) in got
    assert metrics.series(metrics.LIST_LATENCY_MS, metrics.BUCKET_KEY) in got
    assert "flink_jobmanager_job_numRestarts" in metrics.FLINK_SERIES


def test_parse_reads_labels_values_and_specials():
    samples = parse(SCRAPED)
    assert len(samples) == 7
    by_trigger = {
        s.labels["trigger"]: s.value for s in samples if s.name.endswith("trigger_listsEmitted")
    }
    assert by_trigger == {"session_end": 28.0, "event": 82.0}
    first = samples[0]
    assert first.labels == {
        "host": "localhost",
        "operator_name": "probe",
        "job_name": "metrics_probe",
        "subtask_index": "0",
    }
    assert samples[-2].value != samples[-2].value  # NaN
    assert parse('m{a="x\\"y\\\\z"} +Inf 123\n')[0].labels == {"a": 'x"y\\z'}
    with pytest.raises(ValueError, match="line 1"):
        parse("not a sample line {\n")


def test_project_series_cover_every_metric_once():
    s = metrics.project_series()
    names = set(metrics.COUNTERS) | set(metrics.GAUGES) | set(metrics.HISTOGRAMS)
    assert names | {h + metrics.SUM_SUFFIX for h in metrics.HISTOGRAMS} == set(s)
    assert len(set(s.values())) == len(s)
    assert s["deadLetters"] == "flink_taskmanager_job_task_operator_streamrec_reason_deadLetters"
    assert s["listLatencyMs"] == "flink_taskmanager_job_task_operator_streamrec_le_listLatencyMs"
    assert s["listLatencyMsSum"] == "flink_taskmanager_job_task_operator_streamrec_listLatencyMsSum"
    # dead-letter reasons are label values as they are: nothing for the reporter to rewrite
    assert all(r.replace("_", "").isalnum() for r in REASONS)


@pytest.fixture
def worker_metrics():
    """Beam's metrics container as a PyFlink Python worker has it while processing a bundle:
    yields a function returning {(namespace groups, name): count}."""
    sampler = statesampler.StateSampler("", CounterFactory())
    statesampler.set_current_tracker(sampler)
    container = MetricsContainer("step")
    state = sampler.scoped_state(NameContext("step"), "process", metrics_container=container)
    sampler.start()

    def counts() -> dict:
        out = {}
        for key, value in container.get_cumulative().counters.items():
            groups = [g for g in json.loads(key.metric.namespace) if "MetricGroupType" not in g]
            out[(tuple(groups), key.metric.name)] = value
        return out

    with state:
        yield counts
    sampler.stop()
    statesampler.set_current_tracker(None)


def test_histogram_counts_cumulative_buckets(worker_metrics):
    group = GenericMetricGroup(None, None).add_group(metrics.GROUP)
    h = metrics.Histogram(group, "latency", bounds=(10, 100))
    for v in (3, 10, 11, 100, 5000, -7, 99.6):
        h.update(v)
    assert worker_metrics() == {
        (("streamrec", "le", "10"), "latency"): 3,  # 3, 10, -7
        (("streamrec", "le", "100"), "latency"): 6,  # ... and 11, 100, 99.6
        (("streamrec", "le", "Inf"), "latency"): 7,
        (("streamrec",), "latencySum"): 3 + 10 + 11 + 100 + 5000 + 0 + 100,  # negative -> 0
    }


def test_histograms_of_the_job_have_their_buckets(worker_metrics):
    group = GenericMetricGroup(None, None).add_group(metrics.GROUP)
    for name in metrics.HISTOGRAMS:
        metrics.Histogram(group, name).update(1)
    counts = worker_metrics()
    for name in metrics.HISTOGRAMS:
        les = {g[2] for g, n in counts if n == name}
        assert les == {str(b) for b in metrics.BUCKETS[name]} | {"Inf"}
    with pytest.raises(ValueError, match="must increase"):
        metrics.Histogram(group, "x", bounds=(5, 1))
