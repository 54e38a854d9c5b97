"""The report's segment bookkeeping agrees with the project's Scorer and adds up."""

from __future__ import annotations

import json

import pytest

from operators.config import RankingConfig
from streamrec.evaluation import score_records
from streamrec.ranking_report import SEGMENTS, markdown, score_baselines, score_job
from streamrec.simulate import simulate
from tests.unit.streams import T0, embedder, random_records


def test_job_and_baselines_are_scored_like_score_records_with_segments_that_add_up():
    records, texts = random_records(seed=31, n_orders=150)
    embed = embedder(texts)
    embed.model_id = "m@1"
    score_from = T0 + 24 * 3600 * 1000
    job = score_job(records, embed, RankingConfig(), score_from)
    events = [v for k, _, v in records if k == "events"]
    lists = (json.loads(v) for _, v in simulate(records, embed, RankingConfig()) if v)
    ref = score_records(events, lists)
    for level in ("event", "basket"):
        assert abs(job["whole"][level]["all"]["ndcg"] - ref[level]["ndcg@10"]) < 1e-12
        for period in ("whole", "rest"):
            seg = job[period][level]
            n = seg["all"]["n"]
            assert n == seg["1st"]["n"] + seg["2-5"]["n"] + seg["6+"]["n"]
            assert n == seg["repeat"]["n"] + seg["new"]["n"]
            assert seg["fresh7d"]["n"] <= n
        assert 0 < job["rest"][level]["all"]["n"] < job["whole"][level]["all"]["n"]
    bases = score_baselines(records, score_from)
    assert set(bases) == {"popularity", "recent_popularity", "repeat_history", "item_knn", "blend"}
    report = {
        "run": {
            "csv": "x",
            "events": len(events),
            "model": "m@1",
            "score_from": "2010-12-02",
            "tuned_on": ["a", "b"],
            "config_sha": "0",
        },  # fmt: skip
        "job": job,
        "ablations": {"content": job},
        "baselines": bases,
    }
    md = markdown(report)
    assert "| **job** |" in md and "| job without content |" in md and "| item_knn |" in md
    assert len(SEGMENTS) == 7


def test_ablations_parse_to_configs_with_the_named_families_off():
    from operators.config import FAMILIES
    from streamrec.ranking_report import ablation_config, ablation_label, parse_ablations

    assert parse_ablations("none") == []
    assert parse_ablations("repeat, content-only") == ["repeat", "content-only"]
    with pytest.raises(SystemExit, match="unknown ablation"):
        parse_ablations("repeat,colaborative")
    base = RankingConfig()
    only = ablation_config(base, "content-only")
    assert only.disabled == frozenset(FAMILIES) - {"content"}
    assert ablation_config(base, "repeat").disabled == {"repeat"}
    assert ablation_label("content-only") == "content only"
    assert ablation_label("trending") == "without trending"
