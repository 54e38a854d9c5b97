"""The catalog as the world sees it: interned item ids and each item's current version.

Every item ever listed on the items topic gets a small integer, never reused, that the
behaviour model and the indexes use in place of the id string. An item is *present* while it is in the catalog (listed and not removed)
and *visible* (recommendable) while present and available. Vectors are float32, L2-normalised,
one row per interned item (zero while the item is not present).

The world applies catalog updates in event-time order, so there is one version per item: no
history is kept (a list as of event time t is computed when the world holds exactly the updates
before t).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One catalog update: an item version with its embedding (what the encoder emits).

    ``text`` is the text the embedding is of (``operators.events.Item.text``) when it is not
    the title alone (None: the title): a model switch embeds it again (operators.model_switch).
    """

    item_id: str
    embedding: bytes  # float32, L2-normalised, little-endian
    title: str
    available: bool = True
    price: float | None = None
    ts: int | None = None
    text: str | None = None

    def vector(self) -> np.ndarray:
        return np.frombuffer(self.embedding, dtype="<f4")

    @property
    def embedded_text(self) -> str:
        return self.title if self.text is None else self.text

    # pickled as the list of its fields (as a frozen slotted dataclass is); an entry pickled
    # before a field was added (logs and snapshots in Flink state) gets that field's default
    def __getstate__(self) -> list:
        return [getattr(self, name) for name in _ENTRY_FIELDS]

    def __setstate__(self, state: list) -> None:
        for name, value in zip(_ENTRY_FIELDS, state, strict=False):
            object.__setattr__(self, name, value)
        for name in _ENTRY_FIELDS[len(state) :]:
            object.__setattr__(self, name, _ENTRY_DEFAULTS[name])


_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(CatalogEntry))
_ENTRY_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(CatalogEntry) if f.default is not MISSING
}


class ItemTable:
    """Interned item ids and the catalog state of each (vector, title, present, available)."""

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.titles: list[str | None] = []
        self.texts: list[str | None] = []  # the embedded text where it is not the title
        self._vectors = np.zeros((capacity, dim), dtype=np.float32)
        self._present = np.zeros(capacity, dtype=bool)
        self._visible = np.zeros(capacity, dtype=bool)

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, item_id: str) -> int:
        idx = self.index.get(item_id)
        if idx is None:
            idx = len(self.ids)
            if idx == self._vectors.shape[0]:
                self._grow()
            self.ids.append(item_id)
            self.titles.append(None)
            self.texts.append(None)
            self.index[item_id] = idx
        return idx

    def _grow(self) -> None:
        cap = 2 * self._vectors.shape[0]
        n = len(self.ids)
        vectors = np.zeros((cap, self.dim), dtype=np.float32)
        vectors[:n] = self._vectors[:n]
        present = np.zeros(cap, dtype=bool)
        present[:n] = self._present[:n]
        visible = np.zeros(cap, dtype=bool)
        visible[:n] = self._visible[:n]
        self._vectors, self._present, self._visible = vectors, present, visible

    def upsert(self, entry: CatalogEntry) -> tuple[int, bool]:
        """Apply an item version; returns (index, whether its vector changed)."""
        vec = entry.vector()
        if vec.shape != (self.dim,):
            raise ValueError(
                f"item {entry.item_id}: embedding has shape {vec.shape}, want ({self.dim},)"
            )
        idx = self.intern(entry.item_id)
        changed = not self._present[idx] or not np.array_equal(self._vectors[idx], vec)
        self._vectors[idx] = vec
        self._present[idx] = True
        self._visible[idx] = bool(entry.available)
        self.titles[idx] = entry.title
        self.texts[idx] = entry.text
        return idx, changed

    def remove(self, item_id: str) -> int | None:
        """Take an item out of the catalog (a tombstone); returns its index if it was present."""
        idx = self.index.get(item_id)
        if idx is None or not self._present[idx]:
            return None
        self._vectors[idx] = 0.0
        self._present[idx] = False
        self._visible[idx] = False
        self.titles[idx] = None
        self.texts[idx] = None
        return idx

    @property
    def vectors(self) -> np.ndarray:
        """[items, dim] view; rows of items not present are zero."""
        return self._vectors[: len(self.ids)]

    @property
    def present(self) -> np.ndarray:
        """[items] bool view: in the catalog."""
        return self._present[: len(self.ids)]

    @property
    def visible(self) -> np.ndarray:
        """[items] bool view: present and available (recommendable)."""
        return self._visible[: len(self.ids)]

    def is_present(self, idx: int) -> bool:
        return bool(self._present[idx])

    def vector(self, idx: int) -> np.ndarray | None:
        return self._vectors[idx] if self._present[idx] else None

    def text(self, idx: int) -> str | None:
        """The text a present item's vector is of (None: not present)."""
        if not self._present[idx]:
            return None
        return self.titles[idx] if self.texts[idx] is None else self.texts[idx]

    def state(self) -> dict:
        n = len(self.ids)
        return {
            "dim": self.dim,
            "ids": list(self.ids),
            "titles": list(self.titles),
            "texts": list(self.texts),
            "vectors": self._vectors[:n].copy(),
            "present": self._present[:n].copy(),
            "visible": self._visible[:n].copy(),
        }

    @classmethod
    def from_state(cls, s: dict) -> ItemTable:
        n = len(s["ids"])
        t = cls(s["dim"], capacity=max(1024, n))
        t.ids = list(s["ids"])
        t.index = {item_id: i for i, item_id in enumerate(t.ids)}
        t.titles = list(s["titles"])
        t.texts = list(s.get("texts") or [None] * n)  # older snapshots: every text a title
        t._vectors[:n] = s["vectors"]
        t._present[:n] = s["present"]
        t._visible[:n] = s["visible"]
        return t
