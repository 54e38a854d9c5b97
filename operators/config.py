"""Every knob of the ranking core in one frozen configuration (``RankingConfig``).

- :class:`WorldConfig`: the global behaviour model every task replicates (co-occurrence,
  trending, text neighbours, per-user context for cross-order pairs).
- :class:`ProfileConfig`: what a user's profile keeps (bounded sizes, repeat decay, queries).
- :class:`Mix`: how one list is made from the signals: seeds and weights. There are two mixes,
  ``event`` (the list after an event: the next item of the same order) and ``session_end``
  (the list in force when the user comes back: the next order).

The defaults are the frozen result of ``python -m streamrec.tune`` (tuned on 2010-12-01 to
2011-03-01 of the shared file only; see streamrec/tune.py). ``without(...)`` switches signal
families off for ablations; ``to_dict``/``from_dict`` round-trip a configuration through JSON.

Signals: ``collab`` (co-occurrence neighbours of the seeds), ``repeat`` (the user's decayed
purchase frequency), ``bought`` (1 for an item the user bought before: with a large weight,
every past purchase ranks above every other item), ``trending`` (recent distinct buyers), ``text`` (text neighbours of the
seeds, stronger for rare items), ``similar`` (cosine of a candidate to the seeds' mean vector),
``query`` (nearest items to recent search queries). Families for ablations: ``collaborative``
= collab, ``repeat`` = repeat + bought, ``trending``, ``content`` = text + similar + query.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MINUTE_MS = 60 * 1000
DAY_MS = 24 * 3600 * 1000

SIGNALS = ("collab", "repeat", "trending", "text", "similar", "query", "bought")
FAMILIES = {
    "collaborative": ("collab",),
    "repeat": ("repeat", "bought"),
    "trending": ("trending",),
    "content": ("text", "similar", "query"),
}
TRIGGERS = ("event", "session_end")


# 1.5^k days, k = 0..11: about 1, 1.5, 2.3, ... 58, 86 days after the session's end (a plain
# class-level default: a configuration pickled before the field existed still reads it)
REFRESH_DAYS = tuple(round(1.5**k, 3) for k in range(12))
# refreshes fall on whole hours of event time (RankingConfig.refresh_times)
REFRESH_GRID_MS = 3600 * 1000


def _type_weights() -> dict[str, float]:
    return {"purchase": 1.0, "add_to_cart": 0.7, "click": 0.4, "view": 0.25}


@dataclass(frozen=True)
class WorldConfig:
    co_half_life_days: float = 90.0  # decay of co-occurrence counts
    co_row_cap: int = 200  # co-occurring items kept per item
    co_neighbours: int = 80  # neighbours per item in its list
    co_alpha: float = 0.7  # asymmetric cosine exponent (0.5 = cosine, 1 = P(j | i))
    co_refresh: float = 0.2  # recompute an item's neighbours when its row grew by this
    co_shrink: float = 2.0  # similarity x co / (co + shrink): pairs seen in few orders count less
    order_context: int = 50  # items of the current order a new item is paired with
    order_distance_decay: float = 0.8  # pair weight per line further apart in the order
    cross_weight: float = 0.3  # weight of pairs with the user's previous orders (0: off)
    cross_orders: int = 1  # previous orders paired with
    cross_context: int = 30  # items of those orders paired with
    cross_window_days: float = 60.0  # previous orders older than this are not paired
    trending_half_life_days: float = 2.0
    trending_dedup_days: float = 7.0  # a user counts once per item in this window
    trending_size: int = 200  # top list kept
    text_neighbours: int = 20  # text neighbours per item
    text_probe: int = 40  # neighbours searched when an item arrives
    user_ttl_days: float = 120.0  # a user's context is dropped after this long idle
    user_max: int = 1_000_000  # user contexts kept (the least recently active go first)
    type_weights: dict[str, float] = field(default_factory=_type_weights)


@dataclass(frozen=True)
class ProfileConfig:
    session_max: int = 50  # items of the current session kept
    orders_max: int = 5  # recent orders kept (their items: orders_items_max each)
    order_items_max: int = 50
    repeat_half_life_days: float = 1000.0  # decay of the repeat frequency (0: orders counted)
    repeat_max: int = 200  # distinct items in the repeat frequency
    query_max: int = 3
    query_window_ms: int = DAY_MS
    query_half_life_ms: int = 2 * 3600 * 1000


@dataclass(frozen=True)
class Mix:
    collab: float = 1.0
    repeat: float = 0.5
    trending: float = 0.05
    text: float = 0.1
    similar: float = 0.0
    query: float = 1.0
    bought: float = 0.0
    position_decay: float = 0.8  # seed weight per step back in the current session
    past_orders: int = 0  # previous orders whose items are seeds too
    past_weight: float = 0.3  # weight of the latest previous order's items as seeds
    order_decay: float = 0.5  # per order further back
    max_seeds: int = 20
    mask_order: bool = True  # never recommend items already in the current order
    text_rarity: float = 10.0  # text weight h / (h + orders of the rarer item)


# The defaults below (and WorldConfig's, ProfileConfig's) are frozen from `python -m
# streamrec.tune` on 2010-12-01..2011-03-01 of the shared file only (one pass of its coordinate
# search over the structural settings, each trial's two mixes fitted; Mix's own field defaults
# are the search's hand-set start). Nothing after 2011-03-01 was looked at.
def _event_mix() -> Mix:
    return Mix(
        trending=0.5,
        text=0.02,
        similar=2.0,
        bought=0.05,
        position_decay=0.45,
        max_seeds=5,
        text_rarity=30.0,
    )


def _session_end_mix() -> Mix:
    # refitted (streamrec.tune.optimise_weights, same split) once the lists of users away were
    # refreshed (RankingConfig.refresh_days): the list now serves a visit about when it comes
    return Mix(
        collab=0.02,
        repeat=0.7,
        trending=0.5,
        text=0.0,
        similar=0.1,
        bought=0.3,
        position_decay=1.0,
        past_orders=2,
        mask_order=False,
    )


@dataclass(frozen=True)
class RankingConfig:
    session_gap_ms: int = 30 * MINUTE_MS
    # while the user stays away, the list for their next visit is scored again this long (days)
    # after the session's end: the list in force when they come back sees the world of about
    # then (trending, the catalog), not of the day they left. Empty: never.
    refresh_days: tuple[float, ...] = REFRESH_DAYS
    candidates: int = 50  # top N of each signal that enter the union of candidates
    trending_floor: float = 1e-3  # least trending weight: trending always fills short lists
    world: WorldConfig = field(default_factory=WorldConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    event: Mix = field(default_factory=_event_mix)
    session_end: Mix = field(default_factory=_session_end_mix)
    seed_type_weights: dict[str, float] = field(default_factory=_type_weights)
    disabled: frozenset[str] = frozenset()  # signal families switched off (ablations)

    def __post_init__(self):
        days = tuple(float(d) for d in self.refresh_days)
        if any(d <= 0 for d in days) or list(days) != sorted(set(days)):
            raise ValueError(f"refresh_days must be increasing and positive, got {days}")
        object.__setattr__(self, "refresh_days", days)

    def refresh_times(self, end: int) -> tuple[int, ...]:
        """When the list for the next visit of a session that closed at ``end`` (ms) is scored
        again: ``refresh_days`` after ``end``, each rounded up to a whole hour."""
        g = REFRESH_GRID_MS
        return tuple(-(-(end + round(d * DAY_MS)) // g) * g for d in self.refresh_days)

    def mix(self, trigger: str) -> Mix:
        return self.event if trigger == "event" else self.session_end

    def enabled(self, signal: str) -> bool:
        return not any(signal in FAMILIES[f] for f in self.disabled)

    def without(self, *families: str) -> RankingConfig:
        """The same configuration with these signal families off (for ablations)."""
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown signal families {sorted(unknown)}; known: {list(FAMILIES)}")
        return dataclasses.replace(self, disabled=self.disabled | frozenset(families))

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["disabled"] = sorted(self.disabled)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankingConfig:
        """A configuration from (part of) ``to_dict()``'s output; missing keys keep defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ranking settings {sorted(unknown)}")
        kw: dict[str, Any] = {}
        nested = {"world": WorldConfig, "profile": ProfileConfig, "event": Mix, "session_end": Mix}
        for key, value in d.items():
            if key in nested:
                sub = nested[key]
                names = {f.name for f in dataclasses.fields(sub)}
                bad = set(value) - names
                if bad:
                    raise ValueError(f"unknown {key} settings {sorted(bad)}")
                kw[key] = dataclasses.replace(getattr(cls(), key), **value)
            elif key == "disabled":
                kw[key] = frozenset(value)
            else:
                kw[key] = value
        cfg = cls(**kw)
        unknown_fam = set(cfg.disabled) - set(FAMILIES)
        if unknown_fam:
            raise ValueError(f"unknown signal families {sorted(unknown_fam)}")
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> RankingConfig:
        """A JSON file of ``to_dict()``'s output, or of ``streamrec.tune --out`` (the same under
        ``"config"``, beside the tuning's figures)."""
        d = json.loads(Path(path).read_text())
        if isinstance(d, dict) and isinstance(d.get("config"), dict):
            d = d["config"]
        return cls.from_dict(d)
