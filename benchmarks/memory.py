"""Resident memory of a job's processes, sampled from ``/proc`` (Linux), by role.

A role is a set of processes: ``jvm`` (the Flink JVMs: the mini-cluster of a local job, or the
TaskManagers of a standalone cluster; in thread mode they also hold the Python interpreter that
runs the operators), ``python_workers`` (process mode: the Python worker processes the JVM
starts), ``driver`` (``python -m jobs.recommend``, which only submits and waits) and ``loop``
(the reference loop). :class:`Sampler` records each role's peak and last total RSS in a
background thread, and can call back when the whole tree passes a limit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MIB = 1024 * 1024


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, rss bytes) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, rss (pages) field 24
    return comm, int(fields[1]), int(fields[21]) * PAGE


def process_table() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (comm, ppid, rss bytes)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                out[int(entry.name)] = st
    return out


def descendants(table: dict[int, tuple[str, int, int]], roots: list[int]) -> set[int]:
    """``roots`` (those alive) and every process below them."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return seen


def classify(table: dict[int, tuple[str, int, int]], pid: int, driver: int | None) -> str:
    """The role of one process of a job's tree (see the module doc)."""
    comm = table[pid][0]
    if pid == driver:
        return "driver"
    if comm == "java":
        return "jvm"
    if comm.startswith("python"):
        return "python_workers"
    return "other"


def rss_by_role(
    roots: list[int], driver: int | None = None, role_of_root: str | None = None
) -> dict[str, int]:
    """Total RSS (bytes) per role of the process trees under ``roots``. ``driver``: the pid of a
    local job's driver; ``role_of_root``: a role for the roots themselves (``"loop"``)."""
    table = process_table()
    out: dict[str, int] = {}
    for pid in descendants(table, roots):
        role = role_of_root if role_of_root and pid in roots else classify(table, pid, driver)
        out[role] = out.get(role, 0) + table[pid][2]
    return out


class Sampler:
    """Samples :func:`rss_by_role` every ``interval`` seconds until stopped.

    ``roots``: a callable returning ``(roots, driver, role_of_root)`` (the processes can change,
    e.g. a restarted job). ``limit_bytes``: when the tree's total passes it, ``on_limit(total)``
    is called once."""

    def __init__(
        self,
        roots: Callable[[], tuple[list[int], int | None, str | None]],
        interval: float = 1.0,
        limit_bytes: int | None = None,
        on_limit: Callable[[int], None] | None = None,
    ):
        self.roots = roots
        self.interval = interval
        self.limit = limit_bytes
        self.on_limit = on_limit
        self.peak: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def sample(self) -> dict[str, int]:
        roots, driver, role = self.roots()
        now = rss_by_role(roots, driver, role) if roots else {}
        self.last = now
        for k, v in now.items():
            self.peak[k] = max(self.peak.get(k, 0), v)
        total = sum(now.values())
        if self.limit and total > self.limit and self.on_limit is not None:
            cb, self.on_limit = self.on_limit, None
            cb(total)
        self.peak_total = max(self.peak_total, total)
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a process vanished mid-read: next sample
                continue

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def figures(self, prefix: str = "rss") -> dict[str, float]:
        """``{prefix}_{role}_peak_mib`` and ``{prefix}_{role}_last_mib`` per role seen."""
        out: dict[str, float] = {}
        for k, v in sorted(self.peak.items()):
            out[f"{prefix}_{k}_peak_mib"] = round(v / MIB, 1)
        for k, v in sorted(self.last.items()):
            out[f"{prefix}_{k}_last_mib"] = round(v / MIB, 1)
        return out
