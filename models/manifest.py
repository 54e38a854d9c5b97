"""The manifest written beside every exported model, and the checks shared by export and runtime.

No torch or onnxruntime imports here: the job's runtime reads manifests too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
LINEAGE_NAME = "lineage.json"  # beside a fine-tuned checkpoint; copied into the manifest
MODEL_NAME = "model.onnx"
MANIFEST_VERSION = 1
VARIANTS = ("fp32", "fp16", "int8")


class ManifestError(RuntimeError):
    """An exported model folder is missing, incomplete, or does not match its manifest."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def make_model_id(name: str, variant: str, sha256: str) -> str:
    """``minilm-l6-onnx-fp32@3f2a9c1e``: the encoder, its variant and the ONNX file's sha256 prefix."""
    return f"{name}-onnx-{variant}@{sha256[:8]}"


def read_lineage(checkpoint_dir: str | Path) -> dict[str, Any] | None:
    """The ``lineage.json`` of a checkpoint folder (written by ``streamrec train-encoder``), or None.

    It says where a fine-tuned checkpoint came from (base model, data, time range, seed,
    validation recall, training steps); the export copies it into the manifest and names the model
    after its ``name``. Raises ManifestError when the file exists but is not a JSON object.
    """
    path = Path(checkpoint_dir) / LINEAGE_NAME
    if not path.is_file():
        return None
    try:
        lineage = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(lineage, dict) or not isinstance(lineage.get("name"), str):
        raise ManifestError(f"{path} is not a lineage record (a JSON object with a name)")
    return lineage


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path} not found: not an exported model folder")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from e
    missing = [
        k for k in ("model_id", "sha256", "variant", "dim", "inputs", "output") if k not in manifest
    ]
    if missing:
        raise ManifestError(f"{path} lacks {', '.join(missing)}")
    return manifest


def verify_model_file(model_dir: str | Path, manifest: dict[str, Any]) -> str:
    """Check model.onnx against the manifest's sha256; return the digest or raise ManifestError."""
    onnx_path = Path(model_dir) / manifest.get("model_file", MODEL_NAME)
    if not onnx_path.is_file():
        raise ManifestError(f"{onnx_path} not found")
    digest = sha256_file(onnx_path)
    if digest != manifest["sha256"]:
        raise ManifestError(
            f"sha256 mismatch for {onnx_path}: file has {digest}, manifest says "
            f"{manifest['sha256']} (model {manifest['model_id']}); re-export it with "
            "`streamrec export-model --force`"
        )
    return digest


def load_valid_manifest(model_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a complete, intact export in ``model_dir``, else None (used for caching)."""
    try:
        manifest = read_manifest(model_dir)
        verify_model_file(model_dir, manifest)
    except ManifestError:
        return None
    if not (Path(model_dir) / "tokenizer.json").is_file():
        return None
    return manifest
