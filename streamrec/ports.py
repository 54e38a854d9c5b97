"""Free TCP ports for local services (broker, Flink REST, Prometheus reporters).

    port = free_port()            # one port
    port = free_port(span=10)     # port .. port + 9 all free a moment ago

Ports come from below the kernel's ephemeral range (``ip_local_port_range``). A port inside it
can be taken by any outgoing connection, and a client that polls a port nothing listens on yet
can be handed that very port as its own source port: Linux then connects the socket to itself
(a "self-connect"), the poll reads its own request back and the service can no longer bind.
Polling a port outside the range cannot do that.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000  # below: well-known and registered services people run by hand
_TRIES = 200


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default when it cannot be read)."""
    try:
        lo, hi = (int(x) for x in _RANGE_FILE.read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A port such that ``port .. port + span - 1`` could all be bound on ``host`` a moment ago,
    chosen below the ephemeral range; the OS's pick when that range leaves no room."""
    if span < 1:
        raise ValueError(f"span must be at least 1, got {span}")
    lo, _ = ephemeral_range()
    top = lo - span  # highest first port whose span stays below the range
    if top > _LOWEST:
        rng = random.Random()  # not the global generator: tests seed that one
        for _ in range(_TRIES):
            port = rng.randrange(_LOWEST, top)
            if all(_bindable(p, host) for p in range(port, port + span)):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
