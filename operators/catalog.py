"""The catalog as the world sees it: interned item ids and each item's current version.

Every item ever listed on the items topic gets a small integer, never reused, that the
behaviour model and the indexes use in place of the id string. An item is *present* while it is in the catalog (listed and not removed)
and *visible* (recommendable) while present and available. Vectors arrive float32, L2-normalised,
and are kept as bfloat16 (operators.half_vectors: half the memory and half the snapshot), one row
per interned item (zero while the item is not present); every read gives float32.

The world applies catalog updates in event-time order, so there is one version per item: no
history is kept (a list as of event time t is computed when the world holds exactly the updates
before t).
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import MISSING, dataclass

import numpy as np

from operators.half_vectors import HalfRows, pack, unpack


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


# rows per saved chunk (384 dimensions: 3 MB of bfloat16 vectors, and the ids and titles)
CHUNK_ROWS = 4096
# a table of up to this many rows also keeps its vectors as float32 (48 MB at 384 dimensions):
# below operators.ann.MIN_KEYS every search reads the whole catalog, and unpacking it each time
# would cost more than the search; a larger table keeps only the bits
MIRROR_MAX_ROWS = 32_768


class ItemTable:
    """Interned item ids and the catalog state of each (vector, title, present, available)."""

    def __init__(self, dim: int, capacity: int = 1024):
        self.dim = dim
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.titles: list[str | None] = []
        self.texts: list[str | None] = []  # the embedded text where it is not the title
        self._vectors = np.zeros((capacity, dim), dtype=np.uint16)  # bfloat16 bits
        # unpack(_vectors) while the table has at most MIRROR_MAX_ROWS rows (a function of its
        # length alone, so the same on every replica and after any restore), else None
        self._mirror = (
            np.zeros((capacity, dim), np.float32) if capacity <= MIRROR_MAX_ROWS else None
        )
        self._present = np.zeros(capacity, dtype=bool)
        self._visible = np.zeros(capacity, dtype=bool)
        self._changed: set[int] = set()  # chunks of rows changed since last saved

    def __len__(self) -> int:
        return len(self.ids)

    def intern(self, item_id: str) -> int:
        idx = self.index.get(item_id)
        if idx is None:
            idx = len(self.ids)
            if idx == MIRROR_MAX_ROWS:  # the table outgrows its float32 copy
                self._mirror = None
            if idx == self._vectors.shape[0]:
                self._grow()
            self.ids.append(item_id)
            self.titles.append(None)
            self.texts.append(None)
            self.index[item_id] = idx
            self._changed.add(idx // CHUNK_ROWS)
        return idx

    def _grow(self) -> None:
        cap = 2 * self._vectors.shape[0]
        n = len(self.ids)
        vectors = np.zeros((cap, self.dim), dtype=np.uint16)
        vectors[:n] = self._vectors[:n]
        present = np.zeros(cap, dtype=bool)
        present[:n] = self._present[:n]
        visible = np.zeros(cap, dtype=bool)
        visible[:n] = self._visible[:n]
        self._vectors, self._present, self._visible = vectors, present, visible
        if self._mirror is not None:
            self._mirror = unpack(vectors)

    def upsert(self, entry: CatalogEntry) -> tuple[int, bool]:
        """Apply an item version; returns (index, whether its stored vector changed)."""
        vec = entry.vector()
        if vec.shape != (self.dim,):
            raise ValueError(
                f"item {entry.item_id}: embedding has shape {vec.shape}, want ({self.dim},)"
            )
        idx = self.intern(entry.item_id)
        bits = pack(vec)
        changed = not self._present[idx] or not np.array_equal(self._vectors[idx], bits)
        if changed:
            self._vectors[idx] = bits
            if self._mirror is not None:
                self._mirror[idx] = unpack(bits)
        self._changed.add(idx // CHUNK_ROWS)  # its title or text may have changed too
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
        self._vectors[idx] = 0
        if self._mirror is not None:
            self._mirror[idx] = 0.0
        self._changed.add(idx // CHUNK_ROWS)
        self._present[idx] = False
        self._visible[idx] = False
        self.titles[idx] = None
        self.texts[idx] = None
        return idx

    @property
    def vectors(self) -> HalfRows:
        """[items, dim] rows (float32 when indexed); rows of items not present are zero."""
        n = len(self.ids)
        return HalfRows(self._vectors[:n], None if self._mirror is None else self._mirror[:n])

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
        return self.vectors[idx] if self._present[idx] else None

    def text(self, idx: int) -> str | None:
        """The text a present item's vector is of (None: not present)."""
        if not self._present[idx]:
            return None
        return self.titles[idx] if self.texts[idx] is None else self.texts[idx]

    # ---- state ---------------------------------------------------------------------------------
    # A large catalog's state is mostly its rows (id, title, text, vector of each item), and few
    # of them change between two saves. ``state(rows=False)`` leaves them out; they are then
    # saved in chunks of CHUNK_ROWS rows (:meth:`changed_chunks`), each written again only when
    # one of its rows changed.
    def state(self, rows: bool = True) -> dict:
        n = len(self.ids)
        s = {
            "dim": self.dim,
            "n": n,
            "present": self._present[:n].copy(),
            "visible": self._visible[:n].copy(),
        }
        if rows:
            s["ids"] = list(self.ids)
            s["titles"] = list(self.titles)
            s["texts"] = list(self.texts)
            s["vectors"] = self._vectors[:n].copy()  # bfloat16 bits
        return s

    def changed_chunks(self) -> dict[int, bytes]:
        """Every chunk of rows changed since the last call (all of them after :meth:`from_state`
        of a state that held its rows), by chunk number: chunk k is rows k * CHUNK_ROWS onwards,
        up to the table's length, pickled as (ids, titles, texts, vector bits)."""
        n = len(self.ids)
        out = {}
        for k in sorted(self._changed):
            a, b = k * CHUNK_ROWS, min((k + 1) * CHUNK_ROWS, n)
            if a < n:
                rows = (
                    self.ids[a:b],
                    self.titles[a:b],
                    self.texts[a:b],
                    self._vectors[a:b].tobytes(),
                )
                out[k] = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        self._changed.clear()
        return out

    @classmethod
    def from_state(cls, s: dict, chunks: dict[int, bytes] | None = None) -> ItemTable:
        """The table of :meth:`state`; without its rows in it, the rows are ``chunks`` (as
        :meth:`changed_chunks` gave them, the latest of each chunk number)."""
        n = len(s["ids"]) if "ids" in s else s["n"]
        t = cls(s["dim"], capacity=max(1024, n))
        if "ids" in s:
            t.ids, t.titles = list(s["ids"]), list(s["titles"])
            t.texts = list(s.get("texts") or [None] * n)  # older snapshots: every text a title
            vectors = np.asarray(s["vectors"])
            # snapshots before bfloat16 storage hold float32 rows
            t._vectors[:n] = vectors if vectors.dtype == np.uint16 else pack(vectors)
            t._changed = set(range(-(-n // CHUNK_ROWS)))  # none of them saved as chunks yet
        else:
            t._load_chunks(n, chunks or {})
        t.index = {item_id: i for i, item_id in enumerate(t.ids)}
        t._present[:n] = s["present"]
        t._visible[:n] = s["visible"]
        t._mirror = unpack(t._vectors) if n <= MIRROR_MAX_ROWS else None
        return t

    def _load_chunks(self, n: int, chunks: dict[int, bytes]) -> None:
        """The rows of an empty table of ``n`` rows from saved chunks, which must cover them."""
        self.ids, self.titles, self.texts = [None] * n, [None] * n, [None] * n
        covered = np.zeros(n, dtype=bool)
        for k, raw in chunks.items():
            ids, titles, texts, bits = pickle.loads(raw)
            a = k * CHUNK_ROWS
            m = len(ids)
            if k < 0 or a + m > n or m > CHUNK_ROWS or len(titles) != m or len(texts) != m:
                raise ValueError(f"catalog chunk {k} of {m} rows does not fit {n} items")
            self.ids[a : a + m], self.titles[a : a + m], self.texts[a : a + m] = ids, titles, texts
            self._vectors[a : a + m] = np.frombuffer(bits, dtype=np.uint16).reshape(m, self.dim)
            covered[a : a + m] = True
        if not covered.all():
            raise ValueError(
                f"the saved catalog chunks miss {int((~covered).sum())} of {n} items "
                f"(first: row {int(np.argmin(covered))})"
            )
