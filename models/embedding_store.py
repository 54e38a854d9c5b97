"""On-disk embedding store: text -> vector for one exported encoder, in RocksDB (``rocksdict``).

The offline catalog encoder (``streamrec encode-catalog``) fills it; the job bootstraps from it
(``--embedding-store PATH``): a catalog item whose text is in the store under the job's model is
not run through the encoder again, so a restart or a second job on a large catalog does not pay
for the whole catalog's embeddings before its first list.

Layout (raw RocksDB, readable from any language):

    key   model_id 0x1F sha256(text)     value  float32 little-endian vector (dim values)
    key   0x00 "meta" 0x1F model_id      value  JSON {"model_id", "dim", "created"}

Keys carry the full model id (name, variant and the ONNX file's sha256 prefix), so vectors of
another export are never served, and one store can hold several models side by side. The job
opens the store read-only (any number of tasks and processes at once, also while a writer runs;
each reader sees the store as of its open).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("streamrec.embedding_store")

SEP = b"\x1f"
META = b"\x00meta" + SEP


class StoreError(RuntimeError):
    """The store is missing, unreadable, or holds vectors of another size for this model."""


def text_key(model_id: str, text: str) -> bytes:
    return model_id.encode() + SEP + hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingStore:
    """Vectors of one model (``model_id``, ``dim``) in the RocksDB folder ``path``.

    ``read_only`` (the job's way) needs an existing store; otherwise the folder is created.
    """

    def __init__(self, path: str | Path, model_id: str, dim: int, *, read_only: bool = True):
        from rocksdict import AccessType, Options, Rdict

        self.path = Path(path)
        self.model_id = model_id
        self.dim = int(dim)
        self.read_only = read_only
        self._prefix = model_id.encode() + SEP
        if read_only and not (self.path / "CURRENT").is_file():
            raise StoreError(
                f"no embedding store at {self.path} "
                f"(create one with `streamrec encode-catalog --store {self.path}`)"
            )
        opts = Options(raw_mode=True)
        opts.create_if_missing(not read_only)
        access = AccessType.read_only() if read_only else AccessType.read_write()
        try:
            self._db = Rdict(str(self.path), opts, access_type=access)
        except Exception as e:  # rocksdict raises plain Exception for RocksDB status errors
            raise StoreError(f"cannot open the embedding store at {self.path}: {e}") from e
        meta = self._db.get(META + model_id.encode())
        if meta is not None:
            stored_dim = int(json.loads(meta)["dim"])
            if stored_dim != self.dim:
                self.close()
                raise StoreError(
                    f"{self.path} holds {stored_dim}-dim vectors for {model_id}, not {self.dim}"
                )
        elif not read_only:
            info = {"model_id": model_id, "dim": self.dim, "created": int(time.time())}
            self._db[META + model_id.encode()] = json.dumps(info).encode()
        else:
            others = [m["model_id"] for m in self.models()]
            log.warning(
                "embedding store %s has no vectors for %s (it has: %s); every text goes to "
                "the encoder",
                self.path,
                model_id,
                ", ".join(others) or "none",
            )

    # ------------------------------------------------------------------ reading
    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """One vector (a fresh float32 array) or None per text."""
        if not texts:
            return []
        raw = self._db[[text_key(self.model_id, t) for t in texts]]
        out: list[np.ndarray | None] = []
        for value in raw:
            if value is None or len(value) != 4 * self.dim:
                out.append(None)
            else:
                out.append(np.frombuffer(value, dtype="<f4").astype(np.float32))
        return out

    def __len__(self) -> int:
        """Vectors stored for this model (walks its key range)."""
        it = self._db.iter()
        it.seek(self._prefix)
        n = 0
        while it.valid() and bytes(it.key()).startswith(self._prefix):
            n += 1
            it.next()
        return n

    def models(self) -> list[dict]:
        """The meta record of every model in the store."""
        it = self._db.iter()
        it.seek(META)
        out = []
        while it.valid() and bytes(it.key()).startswith(META):
            out.append(json.loads(bytes(it.value())))
            it.next()
        return out

    # ------------------------------------------------------------------ writing
    def put_many(self, texts: Iterable[str], vectors: np.ndarray) -> int:
        """Store one vector per text in one atomic write batch; returns how many."""
        from rocksdict import WriteBatch

        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")
        vectors = np.asarray(vectors, dtype="<f4")
        texts = list(texts)
        if vectors.shape != (len(texts), self.dim):
            raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
        batch = WriteBatch(raw_mode=True)
        for text, vec in zip(texts, vectors, strict=True):
            batch.put(text_key(self.model_id, text), np.ascontiguousarray(vec).tobytes())
        self._db.write(batch)
        return len(texts)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        db, self._db = getattr(self, "_db", None), None
        if db is not None:
            db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"EmbeddingStore({str(self.path)!r}, {self.model_id!r}, dim={self.dim}, {mode})"
