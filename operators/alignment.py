"""Holding a user's events until the catalog has caught up with them in event time (pure).

Events and catalog updates travel on two topics, so which one the operator sees first depends on
timing. To make a list depend only on the data (replays at any speed give the same lists), the
recommend operator buffers each user's events and releases them, in arrival order, once the
operator's watermark (the minimum over the events *and* the catalog stream) has passed their
event time: every catalog update up to that time has then been applied. A processing-time
deadline bounds the wait when the streams go quiet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def release(
    buffered: Sequence[tuple[int, T]], watermark: int | None
) -> tuple[list[T], list[tuple[int, T]]]:
    """Split ``[(ts, item), ...]`` (arrival order) into (ready items, still held).

    Releases from the head while ``ts <= watermark``; stops at the first later event, so a
    user's events always leave in the order they came. ``watermark=None`` releases everything
    (the processing-time deadline, or alignment switched off).
    """
    if watermark is None:
        return [x for _, x in buffered], []
    n = 0
    while n < len(buffered) and buffered[n][0] <= watermark:
        n += 1
    return [x for _, x in buffered[:n]], list(buffered[n:])
