"""One kill -9 of the TaskManager in the middle of a real slice, exactly-once delivery on a
standalone cluster: nothing lost, nothing duplicated, no list changed against an uninterrupted run
(the small version of `streamrec bench faults`, which prints the figures)."""

from __future__ import annotations

import json

import pytest

from benchmarks import faults
from streamrec import paths

pytestmark = pytest.mark.integration


def test_a_taskmanager_killed_mid_stream_changes_no_list(kafka_bootstrap, tiny_model_dir, tmp_path):
    out = tmp_path / "faults.json"
    rc = faults.main([
        "--events", "400", "--kills", "1", "--worker-kills", "0", "--seed", "7", "--feed-s", "30",
        "--csv", str(paths.sample_data_file()), "--model", str(tiny_model_dir),
        "--bootstrap-servers", kafka_bootstrap, "--checkpoint-interval", "1000",
        "--timeout", "600", "--json", str(out),
    ])  # fmt: skip
    reference, run = json.loads(out.read_text())["runs"]
    assert reference["events_without_list"] == 0 and reference["triggers_expected"] > 400
    assert run["kills"] == run["kills_noticed"] == run["kills_survived"] == 1, run
    assert run["restarts"] >= 1, run  # the kill did make the job recover
    assert run["kills_during_feed"] == [True], run  # mid-stream: the input was still coming
    assert (run["lists_lost"], run["lists_duplicated"], run["lists_changed"]) == (0, 0, 0), run
    assert run["unexpected_lists"] == 0 and run["events_without_list"] == 0, run
    assert rc == 0
