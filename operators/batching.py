"""Micro-batching for the encoder operators (pure).

Records that need the model wait in Flink keyed state (so a checkpoint keeps them) in one of a
few buckets per task, and go to the model together once ``max_size`` are waiting, when the
latency budget (processing time) runs out, or when event time is about to pass them. Records
that need no model work pass straight through unless something is already waiting in their
bucket, so per-key order never changes.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def bucket_of(key: str, buckets: int) -> int:
    """Stable bucket for a key (same in every process, unlike ``hash``)."""
    return zlib.crc32(key.encode("utf-8")) % max(buckets, 1)


@dataclass(frozen=True)
class BatchPolicy:
    max_size: int = 64
    max_delay_ms: int = 5

    def full(self, waiting: int) -> bool:
        return waiting >= self.max_size


def batch_size_summary(sizes: list[int]) -> dict[str, float]:
    if not sizes:
        return {"batches": 0, "records": 0, "mean": 0.0, "max": 0}
    return {
        "batches": len(sizes),
        "records": sum(sizes),
        "mean": round(sum(sizes) / len(sizes), 2),
        "max": max(sizes),
    }
