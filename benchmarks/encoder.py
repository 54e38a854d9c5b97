"""Encoder benchmark: PyTorch eager vs the ONNX variants, side by side on the same inputs.

    python -m benchmarks.encoder [--threads 2] [--batch 64] [--variants fp32,int8] [--json FILE]
    streamrec bench encoder ...

Inputs are Online Retail product titles (``Description``) from ``streamrec.paths.default_data_file()``
and short search-style queries cut from them, tokenised once, sorted by length and cut into
batches exactly as :class:`models.encoder.Encoder` does, so every engine runs the same padded
batches. Timed: the model call only (ONNX: ``Encoder._run``, the runtime's own path; PyTorch:
the transformers model with the same mean pooling and normalisation under ``inference_mode``),
with the same intra-op thread count. Engines are interleaved round by round so a noisy machine
hurts them alike; throughput is sequences / median round time, latency is per batch.

Under the table (CPU, with PyTorch) it prints a ceiling for each CPU ratio: the share of
PyTorch's time spent in its linear layers (torch profiler, one pass) and how fast ONNX Runtime
runs the same GEMMs (fp32 MatMul, int8 DynamicQuantizeMatMul) at the workload's tokens per
batch; no engine can beat PyTorch by more than GEMM speed-up / GEMM share, even with every
other op free. ``--no-ceiling`` skips it.

Where CUDA is usable it adds fp16 on the CUDA provider (and PyTorch fp16 on the GPU as its
baseline) and a sweep over batch sizes 1..1024 and sequence lengths 16, 32, 128, each printed
beside the FLOP-bound limit of the GPU (see ``flops_per_sequence``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import lzma
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("streamrec.bench.encoder")

DEFAULT_PEAK_TFLOPS = 989.0  # H200 SXM dense fp16/bf16 tensor-core peak
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SWEEP_SEQ_LENGTHS = (16, 32, 128)
TARGETS = {"fp32": 2.0, "int8": 3.5}  # x PyTorch eager, CPU, 2 threads, batch 64 titles
GPU_TARGET_SEQ_PER_S = 200_000  # fp16, <= 32 tokens, best batch


# --------------------------------------------------------------------------- inputs


def load_titles(path: Path, n: int) -> list[str]:
    """The first ``n`` distinct product descriptions of the Online Retail file."""
    opener = lzma.open if str(path).endswith(".xz") else open
    titles: list[str] = []
    seen: set[str] = set()
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            text = (row.get("Description") or "").strip()
            if len(text) < 3 or text in seen or not re.search(r"[A-Za-z]{3}", text):
                continue
            seen.add(text)
            titles.append(text)
            if len(titles) >= n:
                break
    if not titles:
        raise SystemExit(f"no product descriptions found in {path}")
    return titles


def make_queries(titles: list[str], n: int, seed: int = 0) -> list[str]:
    """Short, lower-case search-style queries: 1-3 consecutive words of a title."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(n * 20):
        words = re.findall(r"[a-z]{3,}", titles[int(rng.integers(len(titles)))].lower())
        if not words:
            continue
        k = int(min(len(words), rng.integers(1, 4)))
        start = int(rng.integers(0, len(words) - k + 1))
        q = " ".join(words[start : start + k])
        if q not in seen:
            seen.add(q)
            out.append(q)
            if len(out) >= n:
                break
    return out


def make_batches(tokenizer, texts: list[str], batch: int, max_length: int, use_tt: bool):
    """Sorted by token length, cut into batches, each padded to its longest (the Encoder's way)."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    encs = tokenizer.encode_batch(texts)
    order = np.argsort([len(e.ids) for e in encs], kind="stable")
    batches = []
    for start in range(0, len(texts), batch):
        idx = order[start : start + batch]
        width = max(len(encs[j].ids) for j in idx)
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, j in enumerate(idx):
            k = len(encs[j].ids)
            ids[r, :k] = encs[j].ids
            mask[r, :k] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if use_tt:
            feeds["token_type_ids"] = np.zeros_like(ids)
        batches.append((idx, feeds))
    return batches


# --------------------------------------------------------------------------- FLOPs


def flops_per_sequence(config: dict[str, int], seq_len: int) -> float:
    """Forward FLOPs of one sequence of ``seq_len`` tokens through a BERT encoder.

    2 * P * L  +  4 * layers * L^2 * H, with P = layers * (4 H^2 + 2 H I) the non-embedding
    matmul weights (Q, K, V, output projection; FFN up and down), L tokens, H hidden size,
    I intermediate size; the second term is Q K^T and attention x V. Embedding lookups,
    LayerNorm, softmax, GELU and pooling are ignored (well under 1%).
    MiniLM-L6 (H 384, I 1536, 6 layers): P = 10.6 M, L = 32 -> 0.689 GFLOP.
    """
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    params = layers * (4 * h * h + 2 * h * i)
    return 2.0 * params * seq_len + 4.0 * layers * seq_len * seq_len * h


FLOP_FORMULA = "FLOP/seq = 2*P*L + 4*layers*L^2*H, P = layers*(4H^2 + 2HI) (non-embedding weights)"


# --------------------------------------------------------------------------- engines


class TorchEngine:
    name = "torch"

    def __init__(self, checkpoint: Path, device: str = "cpu", half: bool = False):
        import torch
        from transformers import AutoModel

        from models.export import _torch_modules

        model = AutoModel.from_pretrained(checkpoint).float()  # default (SDPA) attention
        self.use_tt = True
        self.module = _torch_modules()(model, use_token_type_ids=True).eval().to(device)
        if half:
            self.module.half()
        self.device = device
        self.torch = torch
        if device != "cpu":
            self.name = "torch-cuda-fp16" if half else "torch-cuda"

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            args = {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}
            out = self.module(**args).float()
            return out.cpu().numpy()


class OnnxEngine:
    def __init__(self, model_dir: Path, provider: str, threads: int | None):
        from models.encoder import Encoder

        self.encoder = Encoder(
            model_dir, provider=provider, intra_op_threads=threads, cache_size=0, exact_rows=False
        )
        self.name = self.encoder.variant
        self.model_id = self.encoder.model_id
        self.provider = self.encoder.provider

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.encoder._run(feeds)


def ensure_export(variant: str, cache: Path, checkpoint: Path | None, name: str) -> Path:
    from models.export import export_model
    from models.manifest import load_valid_manifest

    out = cache / f"{name}-{variant}"
    manifest = load_valid_manifest(out)
    if manifest is not None and manifest.get("variant") == variant:
        return out
    print(f"exporting {name} {variant} -> {out} ...", flush=True)
    export_model(checkpoint, out, variant=variant, name=name)
    return out


# --------------------------------------------------------------------------- measurement


def run_workload(engines: dict[str, Any], batches, rounds: int, warmup: int = 1):
    """Interleave engines round by round; per engine: timings, and outputs from the first round."""
    n = sum(len(idx) for idx, _ in batches)
    res: dict[str, dict[str, Any]] = {
        k: {"round_s": [], "batch_ms": [], "out": None} for k in engines
    }
    for r in range(warmup + rounds):
        for key, engine in engines.items():
            outs, lat = [], []
            t_round = time.perf_counter()
            for _, feeds in batches:
                t = time.perf_counter()
                outs.append(engine(feeds))
                lat.append((time.perf_counter() - t) * 1e3)
            elapsed = time.perf_counter() - t_round
            if res[key]["out"] is None:
                full = np.zeros((n, outs[0].shape[1]), np.float32)
                for (idx, _), y in zip(batches, outs, strict=True):
                    full[idx] = y
                res[key]["out"] = full
            if r >= warmup:
                res[key]["round_s"].append(elapsed)
                res[key]["batch_ms"].extend(lat)
    for v in res.values():
        v["seq_per_s"] = n / float(np.median(v["round_s"]))
        v["p50_ms"] = float(np.percentile(v["batch_ms"], 50))
        v["p99_ms"] = float(np.percentile(v["batch_ms"], 99))
        v["sequences"] = n
    return res


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def gpu_sweep(engine: OnnxEngine, config: dict[str, int], peak_tflops: float, budget_s: float):
    """fp16 on CUDA over batch sizes and sequence lengths, beside the FLOP-bound limit."""
    rng = np.random.default_rng(0)
    use_tt = "token_type_ids" in engine.encoder.input_names
    points = []
    per_point = budget_s / (len(SWEEP_BATCHES) * len(SWEEP_SEQ_LENGTHS))
    for seq in SWEEP_SEQ_LENGTHS:
        flops = flops_per_sequence(config, seq)
        limit = peak_tflops * 1e12 / flops
        for b in SWEEP_BATCHES:
            ids = rng.integers(1000, 29000, size=(b, seq), dtype=np.int64)
            ids[:, 0], ids[:, -1] = 101, 102
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            if use_tt:
                feeds["token_type_ids"] = np.zeros_like(ids)
            for _ in range(3):
                engine(feeds)
            lat = []
            t_end = time.perf_counter() + per_point
            while len(lat) < 5 or (time.perf_counter() < t_end and len(lat) < 200):
                t = time.perf_counter()
                engine(feeds)
                lat.append(time.perf_counter() - t)
            med = float(np.median(lat))
            sps = b / med
            point = {
                "batch": b,
                "seq_len": seq,
                "seq_per_s": sps,
                "p50_ms": med * 1e3,
                "p99_ms": float(np.percentile(lat, 99)) * 1e3,
                "gflop_per_seq": flops / 1e9,
                "flop_limit_seq_per_s": limit,
                "fraction_of_limit": sps / limit,
                "achieved_tflops": sps * flops / 1e12,
            }
            points.append(point)
            print(
                f"  fp16 cuda  L={seq:<4d} batch={b:<5d} {sps:>12,.0f} seq/s   p50 "
                f"{med * 1e3:8.2f} ms   FLOP limit {limit:>12,.0f} seq/s "
                f"({100 * sps / limit:5.1f}%, {sps * flops / 1e12:6.1f} TFLOP/s)",
                flush=True,
            )
    return points


def cpu_seconds() -> tuple[float, float, float] | None:
    """(wall, machine busy CPU seconds from /proc/stat, this process's CPU seconds)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle, iowait
    own = os.times()
    return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_processes_cpus(before, after) -> float | None:
    """Average CPUs that other processes kept busy between two ``cpu_seconds()`` readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    others = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, others / (after[0] - before[0]))


# --------------------------------------------------------------------------- ceiling

GEMM_OPS = ("aten::addmm", "aten::mm")  # what nn.Linear runs on CPU


def torch_gemm_share(engine: TorchEngine, batches) -> float:
    """Share of PyTorch's wall time, over one pass of ``batches``, spent in its linear layers."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _, feeds in batches:
            engine(feeds)
        wall = time.perf_counter() - t
    gemm = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS)
    return min(1.0, gemm / 1e6 / wall)  # profiler times are microseconds


def _linear_model(m: int, k: int, n: int, int8: bool):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    bias = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "bias")
    if int8:  # what quantize_dynamic makes of MatMul + Add: per-channel int8 weights
        scale = np.maximum(np.abs(w).max(0), 1e-8) / 127
        inits = [
            numpy_helper.from_array(np.round(w / scale).astype(np.int8), "w"),
            numpy_helper.from_array(scale.astype(np.float32), "scale"),
            numpy_helper.from_array(np.zeros(n, np.int8), "zero"),
            bias,
        ]
        node = helper.make_node(
            "DynamicQuantizeMatMul", ["x", "w", "scale", "zero", "bias"], ["y"],
            domain="com.microsoft",
        )  # fmt: skip
        nodes = [node]
    else:
        inits = [numpy_helper.from_array(w, "w"), bias]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]),
                 helper.make_node("Add", ["xw", "bias"], ["y"])]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _per_call_s(fn, min_s: float = 0.3) -> float:
    for _ in range(3):
        fn()
    n, t = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - t < min_s:
        fn()
        n += 1
    return (time.perf_counter() - t) / n


def gemm_ceiling(config: dict[str, int], tokens_per_batch: int, threads: int) -> dict[str, float]:
    """Time one layer's linear layers (Q, K, V, output, FFN up, FFN down) at the workload's size.

    Returns seconds per layer for PyTorch fp32 (``F.linear``), ONNX Runtime fp32 (MatMul + Add)
    and ONNX Runtime int8 (DynamicQuantizeMatMul, per-channel weights), each on ``threads``
    threads, and the speed of each ONNX kind relative to PyTorch.
    """
    import onnxruntime as ort
    import torch

    h, i = config["hidden_size"], config["intermediate_size"]
    shapes = [(h, h)] * 4 + [(h, i), (i, h)]
    m = max(1, int(tokens_per_batch))
    x_of = {k: np.random.default_rng(1).standard_normal((m, k)).astype(np.float32) for k in (h, i)}
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    out = {"torch": 0.0, "fp32": 0.0, "int8": 0.0, "tokens": m}
    for k, n in shapes:
        xt, wt = torch.from_numpy(x_of[k]), torch.randn(n, k) / k**0.5
        bt = torch.randn(n)
        with torch.inference_mode():
            out["torch"] += _per_call_s(
                lambda xt=xt, wt=wt, bt=bt: torch.nn.functional.linear(xt, wt, bt)
            )
        for kind in ("fp32", "int8"):
            model = _linear_model(m, k, n, int8=(kind == "int8"))
            sess = ort.InferenceSession(
                model.SerializeToString(), so, providers=["CPUExecutionProvider"]
            )
            feeds = {"x": x_of[k]}
            out[kind] += _per_call_s(lambda sess=sess, feeds=feeds: sess.run(None, feeds))
    out["fp32_vs_torch"] = out["torch"] / out["fp32"]
    out["int8_vs_torch"] = out["torch"] / out["int8"]
    return out


def ceiling_ratios(gemm_share: float, gemm: dict[str, float]) -> dict[str, float]:
    """Best ratio to PyTorch each ONNX kind could reach if every non-GEMM op cost it nothing.

    PyTorch spends ``gemm_share`` of its time in GEMMs; ONNX Runtime runs the same GEMMs
    ``gemm[kind + "_vs_torch"]`` times as fast; so its time is at least
    ``gemm_share / that`` of PyTorch's, and the ratio at most ``that / gemm_share``.
    """
    share = max(gemm_share, 1e-9)
    return {kind: gemm[f"{kind}_vs_torch"] / share for kind in ("fp32", "int8")}


def print_ceiling(torch_engine, batches, manifest, threads: int) -> dict[str, Any]:
    """How far each CPU ratio could go at all, printed under the table (see ceiling_ratios)."""
    arch = manifest["architecture"]
    cfg = {k: arch[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers")}
    share = torch_gemm_share(torch_engine, batches)
    tokens = round(float(np.mean([f["input_ids"].size for _, f in batches])))
    gemm = gemm_ceiling(cfg, tokens, threads)
    best = ceiling_ratios(share, gemm)
    print(
        f"\nceiling: PyTorch spends {100 * share:.0f}% of its time in GEMMs (linear layers); "
        f"the same GEMMs at {tokens} tokens/batch, {threads} threads:"
    )
    for kind, target in TARGETS.items():
        print(
            f"  {kind}: ONNX Runtime's GEMMs run {gemm[f'{kind}_vs_torch']:.2f}x PyTorch's -> at "
            f"most {best[kind]:.2f}x overall even if every other op cost nothing "
            f"(target {target}x)"
        )
    return {"torch_gemm_share": share, "gemm": gemm, "max_ratio": best}


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrec bench encoder", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads, every engine")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-texts", type=int, default=512, help="titles (and queries) per workload")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up)")
    p.add_argument(
        "--variants",
        default=None,
        help="comma list of fp32,int8,fp16 (default: fp32,int8, plus fp16 where CUDA is usable)",
    )
    p.add_argument("--data", type=Path, default=None, help="Online Retail CSV (.csv or .csv.xz)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: all-MiniLM-L6-v2")
    p.add_argument("--name", default="minilm-l6")
    p.add_argument("--cache-dir", type=Path, default=None, help="exported models (reused)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch (no ratios, cosines)")
    p.add_argument("--workloads", default="titles,queries")
    p.add_argument(
        "--gpu-sweep", choices=("auto", "on", "off"), default="auto", help="auto: where CUDA works"
    )
    p.add_argument("--sweep-seconds", type=float, default=60.0, help="time budget of the sweep")
    p.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS)
    p.add_argument("--json", type=Path, default=None, help="write one object per variant")
    p.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the GEMM-bound ceiling of the CPU ratios (needs PyTorch)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the ceiling's profiler: no GPU probe noise
    import torch

    import streamrec.paths
    from models.encoder import cuda_status

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # only settable before torch's first parallel op
        torch.set_num_interop_threads(1)
    cuda_ok, cuda_why = cuda_status()
    variants = (
        [v.strip() for v in args.variants.split(",") if v.strip()]
        if args.variants
        else ["fp32", "int8"] + (["fp16"] if cuda_ok else [])
    )
    cache = args.cache_dir or streamrec.paths.model_dir()
    data = args.data or streamrec.paths.default_data_file()
    checkpoint = args.checkpoint
    if checkpoint is None:
        from models.export import default_checkpoint

        checkpoint = default_checkpoint()

    print(f"encoder benchmark: {args.name} ({checkpoint})")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"CUDA {'usable' if cuda_ok else 'not usable'} ({cuda_why})"
    )
    dirs = {v: ensure_export(v, cache, args.checkpoint, args.name) for v in variants}

    engines: dict[str, Any] = {}
    if not args.no_torch:
        engines["torch"] = TorchEngine(checkpoint)
    for v in variants:
        provider = "cuda" if v == "fp16" and cuda_ok else "cpu"
        engines[v] = OnnxEngine(dirs[v], provider, args.threads)
    if "fp16" in variants and cuda_ok and torch.cuda.is_available() and not args.no_torch:
        engines["torch-cuda-fp16"] = TorchEngine(checkpoint, device="cuda", half=True)

    from tokenizers import Tokenizer

    any_onnx = next(e for e in engines.values() if isinstance(e, OnnxEngine))
    manifest = any_onnx.encoder.manifest
    tok = Tokenizer.from_file(str(any_onnx.encoder.model_dir / "tokenizer.json"))
    titles = load_titles(data, args.n_texts)
    inputs = {"titles": titles, "queries": make_queries(titles, args.n_texts)}
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    print(
        f"inputs: {len(titles)} product titles from {data.name}, {len(inputs['queries'])} queries; "
        f"batch {args.batch}, {args.threads} threads, {args.rounds} rounds\n"
    )

    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    results: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in engines}
    batches_of = {}
    for w in workloads:
        batches = batches_of[w] = make_batches(
            tok, inputs[w], args.batch, manifest["max_length"], True
        )
        tokens = sum(int(f["attention_mask"].sum()) for _, f in batches)
        print(
            f"[{w}] {len(inputs[w])} texts, {tokens / len(inputs[w]):.1f} tokens/text, "
            f"{len(batches)} batches",
            flush=True,
        )
        res = run_workload(engines, batches, args.rounds)
        ref = res.get("torch", {}).get("out")
        for key, r in res.items():
            row = {k: r[k] for k in ("seq_per_s", "p50_ms", "p99_ms", "sequences")}
            row["tokens_per_text"] = tokens / len(inputs[w])
            base = "torch-cuda-fp16" if key == "fp16" and "torch-cuda-fp16" in res else "torch"
            if base in res:
                row["ratio_vs_torch"] = r["seq_per_s"] / res[base]["seq_per_s"]
                row["ratio_baseline"] = base
            if ref is not None:
                c = cosines(r["out"], ref)
                row["mean_cosine"], row["min_cosine"] = float(c.mean()), float(c.min())
            results[key][w] = row

    # ----- table
    hdr = (
        f"{'engine':<16} {'workload':<8} {'batch':>5} {'thr':>3} {'seq/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'x torch':>8} {'mean cos':>9} {'min cos':>9}"
    )
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for w in workloads:
        for key in engines:
            r = results[key][w]
            ratio = f"{r['ratio_vs_torch']:.2f}x" if "ratio_vs_torch" in r else "-"
            mc = f"{r['mean_cosine']:.5f}" if "mean_cosine" in r else "-"
            nc = f"{r['min_cosine']:.5f}" if "min_cosine" in r else "-"
            print(
                f"{key:<16} {w:<8} {args.batch:>5} {args.threads:>3} {r['seq_per_s']:>10.1f} "
                f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {ratio:>8} {mc:>9} {nc:>9}"
            )
    main_w = "titles" if "titles" in workloads else workloads[0]
    load = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    load["others_cpus"] = other_processes_cpus(cpu_before, cpu_seconds())
    print(
        f"\n1-min load average {load['before']:.2f} before, {load['after']:.2f} after "
        f"({load['cpus']} CPUs)"
    )
    if load["others_cpus"] is not None:
        print(f"other processes used {load['others_cpus']:.2f} CPUs on average during the run")
    # 1-min load averages lag (they still count a command that ended just before this one),
    # so contention is judged from the CPU time other processes used during the run itself
    contended = (load["others_cpus"] or 0.0) > 0.25
    if contended:
        print(
            "WARNING: other processes were competing for the CPUs; PyTorch's OpenMP threads "
            "suffer more from that than ONNX Runtime's, so the ratios overstate ONNX's lead"
        )
    for v, target in TARGETS.items():
        r = results.get(v, {}).get(main_w)
        if r and "ratio_vs_torch" in r:
            verdict = "met" if r["ratio_vs_torch"] >= target else "NOT met"
            if contended:
                verdict += " (not trustworthy: contended CPUs, rerun on a quiet machine)"
            print(
                f"target {v} >= {target}x torch on {main_w}: {r['ratio_vs_torch']:.2f}x -> {verdict}"
            )

    ceiling = None
    cpu_variants = [v for v in TARGETS if v in engines and engines[v].provider == "cpu"]
    if "torch" in engines and cpu_variants and not args.no_ceiling:
        ceiling = print_ceiling(engines["torch"], batches_of[main_w], manifest, args.threads)

    sweep = None
    if "fp16" in engines and (
        args.gpu_sweep == "on" or (args.gpu_sweep == "auto" and engines["fp16"].provider == "cuda")
    ):
        if engines["fp16"].provider != "cuda":
            print("GPU sweep asked for, but fp16 is not on CUDA: skipped", file=sys.stderr)
        else:
            arch = manifest["architecture"]
            cfg = {
                "hidden_size": arch["hidden_size"],
                "intermediate_size": arch["intermediate_size"],
                "num_hidden_layers": arch["num_hidden_layers"],
            }
            print(
                f"\nGPU sweep (fp16, CUDA provider, I/O binding); peak {args.peak_tflops} TFLOP/s"
            )
            print(f"  {FLOP_FORMULA}")
            print(
                f"  {args.name}: {flops_per_sequence(cfg, 32) / 1e9:.3f} GFLOP per 32-token sequence"
            )
            sweep = gpu_sweep(engines["fp16"], cfg, args.peak_tflops, args.sweep_seconds)
            short = [p for p in sweep if p["seq_len"] <= 32]
            best = max(short, key=lambda p: p["seq_per_s"])
            verdict = "met" if best["seq_per_s"] >= GPU_TARGET_SEQ_PER_S else "NOT met"
            print(
                f"best at <= 32 tokens: {best['seq_per_s']:,.0f} seq/s (batch {best['batch']}, "
                f"L={best['seq_len']}); target {GPU_TARGET_SEQ_PER_S:,} -> {verdict}"
            )

    if args.json:
        objs = []
        for key, per_w in results.items():
            eng = engines[key]
            r = per_w[main_w]
            obj = {
                "variant": key,
                "model_id": getattr(eng, "model_id", f"pytorch:{checkpoint.name}"),
                "provider": getattr(eng, "provider", getattr(eng, "device", "cpu")),
                "workload": main_w,
                "threads": args.threads,
                "batch": args.batch,
                "load_average": load,
                **r,
                "workloads": per_w,
            }
            if key in TARGETS and ceiling is not None:
                obj["ceiling"] = {
                    "torch_gemm_share": ceiling["torch_gemm_share"],
                    "gemm_vs_torch": ceiling["gemm"][f"{key}_vs_torch"],
                    "max_ratio_vs_torch": ceiling["max_ratio"][key],
                    "tokens_per_batch": ceiling["gemm"]["tokens"],
                }
            if key == "fp16" and sweep is not None:
                obj["gpu_sweep"] = sweep
                obj["flop_formula"] = FLOP_FORMULA
                obj["peak_tflops"] = args.peak_tflops
            objs.append(obj)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        json.dump(objs, buf, indent=2)
        args.json.write_text(buf.getvalue() + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
