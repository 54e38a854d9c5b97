"""The encoder benchmark's pieces and a tiny end-to-end run (tiny BERT, a handful of titles)."""

from __future__ import annotations

import json
import lzma

import pytest

from benchmarks import cli as bench_cli
from benchmarks import encoder as bench
from models.testing import TINY_BERT_NAME, make_tiny_bert

MINILM = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}


def test_flop_formula_matches_minilm_figure():
    assert bench.flops_per_sequence(MINILM, 32) == pytest.approx(0.69e9, rel=0.01)
    # linear in tokens plus the quadratic attention term
    assert bench.flops_per_sequence(MINILM, 128) > 4 * bench.flops_per_sequence(MINILM, 32)


@pytest.fixture(scope="module")
def retail_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "retail.csv.xz"
    rows = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    titles = [
        "WHITE HANGING HEART T-LIGHT HOLDER",
        "WHITE METAL LANTERN",
        "CREAM CUPID HEARTS COAT HANGER",
        "KNITTED UNION FLAG HOT WATER BOTTLE",
        "RED WOOLLY HOTTIE WHITE HEART.",
        "SET 7 BABUSHKA NESTING BOXES",
        "GLASS STAR FROSTED T-LIGHT HOLDER",
        "HAND WARMER UNION JACK",
        "?",
    ]
    for i in range(40):
        title = titles[i % len(titles)] if i < 20 else f"{titles[i % 8]} NO {i}"
        rows.append(f"5363{i:02d},85123A,{title},6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom")
    with lzma.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    return path


def test_inputs(retail_csv):
    titles = bench.load_titles(retail_csv, 25)
    assert len(titles) == len(set(titles)) == 25
    assert "?" not in titles and titles[0] == "WHITE HANGING HEART T-LIGHT HOLDER"
    queries = bench.make_queries(titles, 20)
    assert len(queries) == len(set(queries)) > 5
    assert all(q == q.lower() and 1 <= len(q.split()) <= 3 for q in queries)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("ckpt") / TINY_BERT_NAME)


def test_benchmark_end_to_end(tmp_path, tiny_ckpt, retail_csv, capsys):
    out = tmp_path / "enc.json"
    args = ["--checkpoint", str(tiny_ckpt), "--name", TINY_BERT_NAME, "--data", str(retail_csv)]
    args += ["--cache-dir", str(tmp_path / "models"), "--n-texts", "24", "--batch", "8"]
    args += ["--rounds", "1", "--variants", "fp32,int8", "--json", str(out)]
    assert bench_cli.main(["encoder", *args]) == 0
    table = capsys.readouterr().out
    assert "x torch" in table and "target int8 >= 3.5x" in table
    objs = json.loads(out.read_text())
    assert [o["variant"] for o in objs] == ["torch", "fp32", "int8"]
    for o in objs:
        for key in ("seq_per_s", "ratio_vs_torch", "mean_cosine", "min_cosine", "threads", "batch"):
            assert key in o, (o["variant"], key)
        assert o["threads"] == 2 and o["batch"] == 8 and o["seq_per_s"] > 0
        assert set(o["workloads"]) == {"titles", "queries"}
    assert objs[0]["ratio_vs_torch"] == 1.0
    assert objs[1]["mean_cosine"] > 0.9999 and objs[1]["model_id"].startswith(
        "tiny-bert-onnx-fp32@"
    )
    assert objs[2]["mean_cosine"] > 0.99
    assert "ceiling: PyTorch spends" in table
    for o in objs[1:]:
        c = o["ceiling"]
        assert 0 < c["torch_gemm_share"] <= 1 and c["gemm_vs_torch"] > 0
        assert c["max_ratio_vs_torch"] == pytest.approx(c["gemm_vs_torch"] / c["torch_gemm_share"])
    # the exports are cached: a second run does not export again
    assert bench.main([*args, "--no-torch", "--workloads", "queries"]) == 0
    assert "exporting" not in capsys.readouterr().out


def test_sweep_reports_flop_limit(tmp_path, tiny_ckpt, monkeypatch):
    from models.export import export_model

    export_model(tiny_ckpt, tmp_path / "fp32", variant="fp32", name=TINY_BERT_NAME)
    engine = bench.OnnxEngine(tmp_path / "fp32", "cpu", 2)
    monkeypatch.setattr(bench, "SWEEP_BATCHES", (1, 4))
    monkeypatch.setattr(bench, "SWEEP_SEQ_LENGTHS", (16, 32))
    cfg = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    points = bench.gpu_sweep(engine, cfg, peak_tflops=1.0, budget_s=0.2)
    assert [(p["seq_len"], p["batch"]) for p in points] == [(16, 1), (16, 4), (32, 1), (32, 4)]
    for p in points:
        assert p["flop_limit_seq_per_s"] == pytest.approx(
            1e12 / bench.flops_per_sequence(cfg, p["seq_len"])
        )
        assert p["fraction_of_limit"] > 0 and p["p99_ms"] >= p["p50_ms"] > 0


def test_bench_cli_dispatch(capsys):
    assert bench_cli.main([]) == 0
    assert "encoder" in capsys.readouterr().out
    assert bench_cli.main(["nope"]) == 2
    with pytest.raises(SystemExit) as info:
        bench_cli.main(["encoder", "--help"])
    assert info.value.code == 0


def test_ceiling_is_gemm_speed_over_gemm_share():
    gemm = {"fp32_vs_torch": 1.0, "int8_vs_torch": 4.0}
    best = bench.ceiling_ratios(0.7, gemm)
    # fp32 GEMMs as fast as PyTorch's, 70% of PyTorch's time in GEMMs: 1/0.7 at best
    assert best["fp32"] == pytest.approx(1 / 0.7) and best["int8"] == pytest.approx(4 / 0.7)


def test_gemm_ceiling_times_every_kind():
    cfg = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    g = bench.gemm_ceiling(cfg, tokens_per_batch=16, threads=1)
    assert g["tokens"] == 16
    for kind in ("torch", "fp32", "int8"):
        assert g[kind] > 0
    assert g["fp32_vs_torch"] == pytest.approx(g["torch"] / g["fp32"])


def test_other_processes_cpu_share():
    # 10 s of wall, the machine busy for 25 CPU-seconds, 15 of them this process's own
    assert bench.other_processes_cpus((0.0, 100.0, 5.0), (10.0, 125.0, 20.0)) == 1.0
    assert bench.other_processes_cpus((0.0, 100.0, 5.0), (10.0, 110.0, 20.0)) == 0.0
    assert bench.other_processes_cpus(None, (1.0, 1.0, 1.0)) is None
    wall, busy, own = bench.cpu_seconds()
    assert wall > 0 and busy > 0 and own > 0
