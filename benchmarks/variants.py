"""What ``streamrec bench job`` runs side by side: variants, each a way of running the job (or
the plain-loop reference) plus job flags.

A variant's runner says how it is started:

- ``local``: this checkout's job on the local mini-cluster (``python -m jobs.recommend``);
- ``old``: the job as of :data:`OLD_COMMIT` (before issue 9: four Python operators per event,
  process mode), from a temporary ``git worktree`` of this repository, on the mini-cluster;
- ``cluster``: this checkout's job submitted with ``flink run -py jobs/recommend.py`` to a local
  standalone cluster of two TaskManagers with one slot each;
- ``loop``: :mod:`benchmarks.reference_loop`, one Python process, no Flink.

``--variant NAME='FLAGS'`` adds a variant; FLAGS may start with ``RUNNER:`` (default ``local``),
e.g. ``--variant 'old-p2=old:--parallelism 2'``. A variant's ``--parallelism N`` also gives its
events and output topics N partitions. A variant that sets ``--align`` runs in that alignment
only; the others run once per alignment asked for (``--align-modes``); the loop has no
alignment and runs once (it applies the catalog before the events it precedes, which is what
event-time alignment achieves, and holds nothing back, which is what ``--align none`` does).
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

OLD_COMMIT = "bb22613"  # the job before issue 9's work
RUNNERS = ("local", "old", "cluster", "loop")
ALIGNS = ("event-time", "none")
LOOP_ALIGN = "-"  # the loop's one run, in tables and JSON


@dataclass(frozen=True)
class Variant:
    name: str
    runner: str = "local"
    flags: str = ""

    @property
    def parallelism(self) -> int:
        return split_parallelism(self.flags)[0]

    @property
    def job_args(self) -> list[str]:
        """The flags without ``--parallelism`` (the harness passes that itself)."""
        return split_parallelism(self.flags)[1]

    def aligns(self, requested: tuple[str, ...] = ALIGNS) -> tuple[str, ...]:
        """The alignments this variant runs in."""
        if self.runner == "loop":
            return (LOOP_ALIGN,)
        own = _flag_value(self.flags, "--align")
        return (own,) if own else tuple(requested)


BUILTIN: tuple[Variant, ...] = (
    Variant("old", "old"),
    Variant("new", "local"),
    Variant("process", "local", "--execution-mode process"),
    Variant("cluster-p1", "cluster", "--parallelism 1"),
    Variant("cluster-p2", "cluster", "--parallelism 2"),
    Variant("loop", "loop"),
)


def split_parallelism(flags: str) -> tuple[int, list[str]]:
    """``--parallelism N`` out of a variant's flags (it also sets the topics' partitions)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--parallelism", type=int, default=1)
    ns, rest = p.parse_known_args(shlex.split(flags))
    return ns.parallelism, rest


def _flag_value(flags: str, name: str) -> str | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(name, default=None)
    ns, _ = p.parse_known_args(shlex.split(flags))
    return getattr(ns, name.lstrip("-").replace("-", "_"))


def parse_variant(text: str) -> Variant:
    """``NAME=FLAGS`` or ``NAME=RUNNER:FLAGS`` -> Variant (argparse type)."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or "," in name:
        raise argparse.ArgumentTypeError(f"variant {text!r} is not NAME='FLAGS' (NAME without ',')")
    runner, colon, flags = rest.partition(":")
    if colon and runner.strip() in RUNNERS:
        runner = runner.strip()
    else:
        runner, flags = "local", rest
    try:
        shlex.split(flags)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"variant {name}: {e}") from None
    return Variant(name, runner, flags.strip())


def parse_names(text: str) -> list[str]:
    """``"old,new"`` -> ``["old", "new"]`` (argparse type)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected NAME[,NAME...]")
    return names


def parse_aligns(text: str) -> tuple[str, ...]:
    names = tuple(parse_names(text))
    bad = [n for n in names if n not in ALIGNS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown alignment {bad}; choose from {ALIGNS}")
    return names


def select(extra: list[Variant] | None, only: list[str] | None) -> list[Variant]:
    """The variants to run, in order.

    No ``only``: the ``extra`` variants if any were given (as the benchmark always did), else
    the built-in ones. With ``only``: those names, from the built-in and the extra variants
    (``all``: every one of them; ``none``: no variant).
    ValueError for an unknown name or a name defined twice.
    """
    extra = list(extra or [])
    names = [v.name for v in extra]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"variant names given twice: {dup}")
    pool = {v.name: v for v in BUILTIN}
    pool.update({v.name: v for v in extra})
    if only is None:
        return extra or list(BUILTIN)
    if only == ["none"]:
        return []
    if "all" in only:  # every built-in variant and every extra one
        only = [n for n in only if n != "all"] + list(pool)
    unknown = [n for n in only if n not in pool]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {', '.join(pool)}")
    return [pool[n] for n in dict.fromkeys(only)]
