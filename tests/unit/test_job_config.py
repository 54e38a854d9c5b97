"""The job's command line: every flag the README and CONTRACT.md name exists, and flags land in
the JobConfig fields the job graph reads."""

from __future__ import annotations

import re

import pytest

from jobs.config import JobConfig, parse_args, parser
from streamrec import paths


def documented_flags(text: str) -> set[str]:
    return set(re.findall(r"`(--[a-z][a-z0-9-]*)", text))


def known_flags() -> set[str]:
    return {s for a in parser()._actions for s in a.option_strings}


def test_every_flag_the_readme_lists_exists():
    readme = (paths.PROJECT_ROOT / "README.md").read_text()
    section = readme.split("Job flags", 1)[1].split("\n## ", 1)[0]
    flags = documented_flags(section)
    assert len(flags) > 20
    assert flags - known_flags() == set()


def test_every_flag_the_contract_lists_exists():
    contract = paths.PROJECT_ROOT.parent / "shared" / "CONTRACT.md"
    if not contract.is_file():
        pytest.skip("../shared/CONTRACT.md not beside the checkout")
    line = contract.read_text().split("Flags of the job include:", 1)[1].split("\n\n", 1)[0]
    flags = documented_flags(line)
    assert "--delivery" in flags and flags - known_flags() == set()


def test_flags_land_in_the_config():
    cfg = parse_args(
        [
            "--align", "none", "--max-wait", "500", "--idleness", "250",
            "--out-of-orderness", "40", "--parallelism", "3", "--top-k", "7",
            "--delivery", "exactly-once", "--embedding-store", "/tmp/s",
            "--kafka-property", "security.protocol=SASL_SSL",
        ]
    )  # fmt: skip
    assert (cfg.align, cfg.max_wait_ms, cfg.idleness_ms, cfg.out_of_orderness_ms) == (
        "none",
        500,
        250,
        40,
    )
    assert (cfg.parallelism, cfg.top_k, cfg.delivery) == (3, 7, "exactly-once")
    assert cfg.embedding_store == "/tmp/s"
    assert cfg.kafka_properties == {"security.protocol": "SASL_SSL"}
    timing = parse_args(
        ["--buffer-timeout", "0", "--watermark-interval", "20", "--catalog-out-of-orderness", "5"]
    )
    assert (timing.buffer_timeout_ms, timing.watermark_interval_ms) == (0, 20)
    assert (timing.catalog_out_of_orderness_ms, timing.out_of_orderness_ms) == (5, 1_000)
    defaults = parse_args([])
    assert (defaults.align, defaults.max_wait_ms) == (JobConfig.align, JobConfig.max_wait_ms)
    with pytest.raises(SystemExit):
        parse_args(["--align", "sometimes"])
