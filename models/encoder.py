"""The runtime encoder: an exported ONNX model folder (see models/export.py) behind ONNX Runtime.

Constructed once per task in a Flink operator's ``open()``; no torch, no global state::

    enc = Encoder(resolve_model_dir("minilm-l6-fp32"), batch_size=64, intra_op_threads=1)
    enc.warmup()
    vectors = enc.encode(["red retrospot lunch bag", ...])   # float32 [n, dim], unit rows
    enc.model_id                                             # "minilm-l6-onnx-fp32@3f2a9c1e"
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import ManifestError, read_manifest, verify_model_file

log = logging.getLogger("streamrec.encoder")

PROVIDERS = ("auto", "cpu", "cuda")


@dataclass
class EncoderStats:
    """Counters since construction (or ``reset``): texts served from cache, sent to the model."""

    cache_hits: int = 0
    cache_misses: int = 0
    store_hits: int = 0  # cache misses served by the on-disk embedding store
    batches: int = 0
    sequences: int = 0
    tokens: int = 0  # real tokens run through the model
    padded_tokens: int = 0  # batch * padded length summed over batches

    @property
    def padding_ratio(self) -> float:
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "padding_ratio": self.padding_ratio}

    def reset(self) -> None:
        for k in asdict(self):
            setattr(self, k, 0)


def _gpu_visible() -> tuple[bool, str]:
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip() in ("", "-1", "none", "NoDevFiles"):
        return False, f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU"
    if glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/proc/driver/nvidia/version"):
        return True, "an NVIDIA device is visible"
    if shutil.which("nvidia-smi"):
        return True, "nvidia-smi is present"
    return False, "no NVIDIA device visible (/dev/nvidia*, nvidia-smi)"


_CUDA_STATUS: tuple[bool, str] | None = None


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether ONNX Runtime's CUDA provider can actually run here.

    onnxruntime-gpu lists CUDAExecutionProvider as available on machines without a GPU, so
    beyond that list this needs a visible NVIDIA device and a session that really gets CUDA.
    """
    global _CUDA_STATUS
    if _CUDA_STATUS is not None:
        return _CUDA_STATUS
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        _CUDA_STATUS = (False, f"onnxruntime {ort.__version__} has no CUDA provider")
        return _CUDA_STATUS
    visible, why = _gpu_visible()
    if not visible:
        _CUDA_STATUS = (False, why)
        return _CUDA_STATUS
    try:
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        probe.ir_version = min(probe.ir_version, 9)
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(
            probe.SerializeToString(),
            so,
            providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        )
        got = sess.get_providers()
    except Exception as e:  # noqa: BLE001 - any failure means: no usable CUDA
        _CUDA_STATUS = (False, f"a CUDA session could not be created: {e}")
        return _CUDA_STATUS
    if got and got[0] == "CUDAExecutionProvider":
        _CUDA_STATUS = (True, f"{why} and an ONNX Runtime CUDA session starts")
    else:
        _CUDA_STATUS = (
            False,
            f"{why} but ONNX Runtime fell back to {got} (CUDA libraries missing?)",
        )
    return _CUDA_STATUS


def resolve_model_dir(model: str | Path) -> Path:
    """A model folder from a path, a cache name (``minilm-l6-fp32``) or a model id.

    Model ids (``minilm-l6-onnx-fp32@3f2a9c1e``) map to the cache folder ``minilm-l6-fp32``; the
    sha256 prefix, when given, must match that folder's manifest.
    """
    import streamrec.paths

    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    base = streamrec.paths.model_dir()
    name, _, sha_prefix = text.partition("@")
    m = re.fullmatch(r"(?P<name>.+)-onnx-(?P<variant>fp32|fp16|int8)", name)
    folder = f"{m['name']}-{m['variant']}" if m else name
    candidate = base / folder
    if not candidate.is_dir():
        raise FileNotFoundError(
            f"model {text!r}: neither a folder nor an export under {base} "
            f"(export it with `streamrec export-model --variant ... --out {candidate}`)"
        )
    if sha_prefix:
        manifest = read_manifest(candidate)
        if not manifest["sha256"].startswith(sha_prefix):
            raise ManifestError(
                f"model {text!r}: {candidate} holds {manifest['model_id']}, not sha256 {sha_prefix}"
            )
    return candidate.resolve()


class Encoder:
    """Text -> unit-length float32 vectors with an exported ONNX model.

    ``provider``: "auto" (CUDA when a GPU is usable, else CPU), "cpu" or "cuda" (required).
    ``batch_size``: texts per model call; texts are sorted by token length first so each batch
    pads little. ``intra_op_threads``: ONNX Runtime's intra-op threads (None: its default).
    ``cache_size``: LRU entries keyed by the exact text (0 disables the cache).
    ``exact_rows`` (default): each text runs alone at its own token length, so its vector never
    depends on what it was batched with. ONNX Runtime's kernels round differently for other batch
    shapes (other padding, other rows: last-bit differences in most vectors, measured), and the
    job's catalog batches depend on arrival timing, so two runs of the same input would otherwise
    hold different vectors and emit different lists. It costs about 2.5x in CPU encoding
    throughput; ``exact_rows=False`` batches by length buckets (benchmarks, throwaway vectors).
    ``store``: an on-disk :class:`models.embedding_store.EmbeddingStore` of this model, asked for
    texts the cache does not hold before they go to the model (see ``attach_store``).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        provider: str = "auto",
        batch_size: int = 64,
        intra_op_threads: int | None = None,
        cache_size: int = 20000,
        verify_sha256: bool = True,
        store=None,
        exact_rows: bool = True,
    ):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {PROVIDERS}, not {provider!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        if verify_sha256:
            verify_model_file(self.model_dir, self.manifest)
        self.model_id: str = self.manifest["model_id"]
        self.variant: str = self.manifest["variant"]
        self.dim: int = int(self.manifest["dim"])
        self.max_length: int = int(self.manifest.get("max_length", 128))
        self.input_names: list[str] = list(self.manifest["inputs"])
        self.output_name: str = self.manifest["output"]
        self.batch_size = int(batch_size)
        self.exact_rows = bool(exact_rows)
        self.cache_size = max(0, int(cache_size))
        self.stats = EncoderStats()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.store = None

        tok_path = self.model_dir / "tokenizer.json"
        if not tok_path.is_file():
            raise ManifestError(f"{tok_path} not found: the export has no fast tokenizer")
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        padding = self.tokenizer.padding or {}
        pad = padding.get("pad_id")
        if pad is None:
            pad = self.tokenizer.token_to_id("[PAD]") or self.tokenizer.token_to_id("<pad>")
        self.pad_id = int(pad or 0)
        self.tokenizer.no_padding()  # padding is per length bucket, below
        self.tokenizer.enable_truncation(max_length=self.max_length)

        self.provider, reason = self._choose_provider(provider)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        so.inter_op_num_threads = 1
        self.intra_op_threads = intra_op_threads
        if self.provider == "cuda":
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": 0}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        model_path = self.model_dir / self.manifest.get("model_file", "model.onnx")
        self.session = ort.InferenceSession(
            str(model_path),
            so,
            providers=providers,
            disabled_optimizers=list(self.manifest.get("ort_disabled_optimizers") or []),
        )
        active = self.session.get_providers()
        if self.provider == "cuda" and active[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"CUDA was chosen ({reason}) but ONNX Runtime gave {active}")
        self._io_binding = self.provider == "cuda"
        log.info(
            "encoder %s on %s (%s); variant %s, dim %d, max_length %d, batch %d, threads %s",
            self.model_id,
            self.provider.upper(),
            reason,
            self.variant,
            self.dim,
            self.max_length,
            self.batch_size,
            intra_op_threads or "ort-default",
        )
        if store is not None:
            self.attach_store(store)
        if self.provider == "cpu" and self.variant == "fp16":
            log.warning("fp16 export on the CPU provider: slow or unsupported; use fp32 or int8")
        if self.provider == "cuda" and self.variant == "int8":
            log.warning("int8 (dynamic quantisation) export on CUDA: use fp16 for the GPU")

    # ------------------------------------------------------------------ provider
    def _choose_provider(self, requested: str) -> tuple[str, str]:
        if requested == "cpu":
            return "cpu", "forced by provider='cpu'"
        usable, why = cuda_status()
        if requested == "cuda":
            if not usable:
                raise RuntimeError(f"provider='cuda' requested but CUDA is not usable: {why}")
            return "cuda", f"forced by provider='cuda'; {why}"
        if usable:
            return "cuda", why
        return "cpu", f"CUDA not usable: {why}"

    def attach_store(self, store) -> None:
        """Serve cache misses from ``store`` (an EmbeddingStore) when it holds the text."""
        if store.model_id != self.model_id or store.dim != self.dim:
            raise ValueError(
                f"embedding store is for {store.model_id} ({store.dim} dims), "
                f"this encoder is {self.model_id} ({self.dim} dims)"
            )
        self.store = store

    # ------------------------------------------------------------------ encoding
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), dim], each row L2-normalised; cached texts skip the model."""
        n = len(texts)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str")
            vec = self._cache.get(text) if self.cache_size else None
            if vec is not None:
                self._cache.move_to_end(text)
                out[i] = vec
                self.stats.cache_hits += 1
            elif text in todo:
                todo[text].append(i)  # a duplicate inside this call: encoded once
                self.stats.cache_hits += 1
            else:
                todo[text] = [i]
                self.stats.cache_misses += 1
        if todo and self.store is not None:
            asked = list(todo)
            for text, vec in zip(asked, self.store.get_many(asked), strict=True):
                if vec is not None:
                    out[todo[text]] = vec
                    self.stats.store_hits += 1
                    self._remember(text, vec)
                    del todo[text]
        if todo:
            unique = list(todo)
            vectors = self._encode_uncached(unique)
            for text, vec in zip(unique, vectors, strict=True):
                out[todo[text]] = vec
                self._remember(text, vec.copy())
        return out

    def _remember(self, text: str, vec: np.ndarray) -> None:
        if not self.cache_size:
            return
        self._cache[text] = vec
        self._cache.move_to_end(text)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _encode_uncached(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        order = np.argsort(lengths, kind="stable")  # length buckets: little padding per batch
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        use_tt = "token_type_ids" in self.input_names
        step = 1 if self.exact_rows else self.batch_size
        for start in range(0, len(texts), step):
            idx = order[start : start + step]
            width = max(1, int(lengths[idx].max()))
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            tt = np.zeros((len(idx), width), dtype=np.int64) if use_tt else None
            for row, j in enumerate(idx):
                e = encodings[j]
                k = len(e.ids)
                ids[row, :k] = e.ids
                mask[row, :k] = 1
                if tt is not None:
                    tt[row, :k] = e.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask}
            if tt is not None:
                feeds["token_type_ids"] = tt
            result[idx] = self._run(feeds)
            self.stats.batches += 1
            self.stats.sequences += len(idx)
            self.stats.tokens += int(lengths[idx].sum())
            self.stats.padded_tokens += len(idx) * width
        return result

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {k: v for k, v in feeds.items() if k in self.input_names}
        if self._io_binding:
            out = self._run_io_binding(feeds)
        else:
            out = self.session.run([self.output_name], feeds)[0]
        out = np.asarray(out, dtype=np.float32)
        # The graph normalises already; this only removes fp16 rounding from the norms.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _run_io_binding(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """CUDA path: inputs copied to the device once, output left on the device until read."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, arr in feeds.items():
            binding.bind_ortvalue_input(
                name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cuda", 0)
            )
        binding.bind_output(self.output_name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def warmup(self) -> None:
        """Run a tiny batch (not cached, not counted) so the first real call is not slow."""
        saved = EncoderStats(**asdict(self.stats))
        self._encode_uncached(["warm up", "a slightly longer warm up text for the encoder"])
        self.stats = saved

    def clear_cache(self) -> None:
        self._cache.clear()

    def __repr__(self) -> str:
        return f"Encoder({self.model_id!r}, provider={self.provider!r}, dim={self.dim})"
