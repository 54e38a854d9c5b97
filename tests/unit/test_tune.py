"""Tuning re-ranks recorded candidates exactly as the job ranks them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from operators.config import RankingConfig
from streamrec import tune
from streamrec.evaluation import score_records
from streamrec.simulate import simulate
from tests.unit.streams import DIM, embedder, random_records


@pytest.mark.parametrize(
    "config",
    [
        RankingConfig(),
        dataclasses.replace(
            RankingConfig(),
            event=dataclasses.replace(RankingConfig().event, collab=0.2, repeat=2.0, similar=1.0),
            session_end=dataclasses.replace(RankingConfig().session_end, trending=1.0, bought=2.0),
        ),
        RankingConfig().without("repeat"),
    ],
)
def test_recorded_candidates_score_like_the_jobs_lists(config):
    records, texts = random_records(seed=21, n_orders=120)
    embed = embedder(texts)
    ds = tune.collect(records, embed, RankingConfig(disabled=config.disabled))
    g = tune.summary(
        ds,
        tune.gains(
            ds, tune.weight_vector(config, "event"), tune.weight_vector(config, "session_end")
        ),
    )
    events = [v for k, _, v in records if k == "events"]
    lists = (json.loads(v) for _, v in simulate(records, embed, config) if v is not None)
    real = score_records(events, lists)
    assert real["event"]["ndcg@10"] > 0 and real["basket"]["ndcg@10"] > 0
    assert g["event"] == pytest.approx(real["event"]["ndcg@10"], abs=1e-12)
    assert g["basket"] == pytest.approx(real["basket"]["ndcg@10"], abs=1e-12)
    for b in ("1st", "2-5", "6+"):
        for level in ("event", "basket"):
            want = real["by_history"][b][level]["ndcg@10"]
            assert g["by_history"][b][level] == pytest.approx(want, abs=1e-12)


def test_settings_paths_reach_the_config():
    cfg = tune.with_setting(RankingConfig(), "world.co_alpha", 0.9)
    assert tune.get_setting(cfg, "world.co_alpha") == 0.9
    for path, values in tune.SPACE:
        assert tune.get_setting(RankingConfig(), path) is not None
        assert all(type(v) is type(tune.get_setting(RankingConfig(), path)) for v in values)


def test_the_search_starts_from_valid_hand_set_values():
    start = tune.start_config()
    assert start.event.position_decay == 0.8 and start.event.bought == 0.0
    assert start != RankingConfig()  # the defaults are the search's result, not its start


def test_refitting_weights_keeps_the_structure_and_never_scores_worse():
    records, texts = random_records(seed=5, n_orders=120)
    mix = dataclasses.replace(RankingConfig().event, collab=0.0, similar=0.0, text=0.0)
    start = dataclasses.replace(RankingConfig(), event=mix)
    fitted, info = tune.refit_weights(records, embedder(texts), start, log=lambda m: None)
    before, after = info["before_refit"], info["split"]
    base = info["baselines"]
    assert after["event"] / base["event"] + after["basket"] / base["basket"] == info["objective"]
    assert info["objective"] >= before["event"] / base["event"] + before["basket"] / base["basket"]
    assert after["event"] > before["event"]  # collab switched back on
    assert fitted.event.collab > 0
    for part in ("event", "session_end"):
        for name in ("position_decay", "max_seeds", "past_orders", "mask_order", "text_rarity"):
            assert getattr(getattr(fitted, part), name) == getattr(getattr(start, part), name)
    assert (fitted.world, fitted.profile, fitted.candidates) == (
        start.world,
        start.profile,
        start.candidates,
    )


def test_the_search_runs_for_an_encoder_of_any_dimension(monkeypatch):
    records, texts = random_records(seed=8, n_orders=80)
    monkeypatch.setattr(tune, "SPACE", [("event.max_seeds", [5, 10])])
    start = tune.start_config()
    embed = embedder(texts)
    assert embed.dim == DIM != 384  # the search reads the dimension from the embedder
    config, info = tune.tune(records, embed, start, passes=1, log=lambda m: None)
    assert info["trials"] == 4  # the start, each value, the final refit
    assert config.event.max_seeds in (5, 10)
    assert config.world == start.world
