"""Item vectors in 16 bits: bfloat16 storage, float32 on every read.

A world holds one vector per item ever listed, on every recommend task, and writes them into each
snapshot of its broadcast state: at a million items of 384 dimensions that is 1.5 GB as float32.
Stored as bfloat16 (the upper half of a float32, rounded to nearest even) it is half that.

bfloat16 rather than IEEE float16: reading back is a 16-bit shift, which numpy runs at memory
speed, while its float16 -> float32 conversion is several times slower (a 3,600 x 384 catalog:
about 1 ms against 7 ms here), and every exact search reads the whole catalog. The cost is
precision: 8 significant bits, so a component's relative error is at most 2**-8. For unit
vectors a cosine moves by about 1e-4 (tests/unit/test_half_vectors.py), far below the gaps
that order a list.

- :func:`pack`: float32 (any shape) -> uint16 bits.
- :func:`unpack`: uint16 bits -> float32.
- :class:`HalfRows`: read-only [rows, dim] view over packed bits; indexing it gives float32
  rows, so code that reads ``rows[keys] @ q`` works on it unchanged. A small table also keeps
  the unpacked rows (operators.catalog.MIRROR_MAX_ROWS), and reads come from those.
"""

from __future__ import annotations

import numpy as np


def pack(x: np.ndarray) -> np.ndarray:
    """bfloat16 bits of ``x`` (rounded to nearest, ties to even), as uint16."""
    bits = np.ascontiguousarray(x, dtype="<f4").view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def unpack(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 ``bits`` (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


class HalfRows:
    """Rows of vectors stored as bfloat16 bits; ``rows[key]`` is float32, read-only. With
    ``mirror`` (``unpack(bits)``, kept by the owner) reads come from it, without unpacking."""

    __slots__ = ("bits", "mirror")

    def __init__(self, bits: np.ndarray, mirror: np.ndarray | None = None):
        self.bits = bits  # [rows, dim] uint16
        self.mirror = mirror

    @property
    def shape(self) -> tuple[int, ...]:
        return self.bits.shape

    def __getitem__(self, key) -> np.ndarray:
        if self.mirror is None:
            return unpack(self.bits[key])
        rows = self.mirror[key]
        if isinstance(rows, np.ndarray):
            rows.flags.writeable = False  # a view of the owner's mirror
        return rows
