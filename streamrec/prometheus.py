"""Reading a Prometheus endpoint (Flink's PrometheusReporter): fetch and parse the text format.

    samples = scrape("localhost:9249")
    lists = [s for s in samples if s.name == metrics.series("listsEmitted", "trigger")]

For tests and checks that need the job's metrics as it exports them; no Prometheus server needed.
"""

from __future__ import annotations

import http.client
import math
import re
import urllib.request
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str] = field(hash=False)
    value: float


def parse(text: str) -> list[Sample]:
    """Samples of the Prometheus text exposition format (comments and blank lines skipped);
    ValueError on a line that is not a sample."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"line {n} is not a Prometheus sample: {line[:120]!r}")
        labels = {
            k: re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group()], v)
            for k, v in _LABEL.findall(m.group(2) or "")
        }
        out.append(Sample(m.group(1), labels, _value(m.group(3))))
    return out


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)


def scrape(address: str, timeout: float = 5.0) -> list[Sample]:
    """The samples ``http://ADDRESS/metrics`` serves now (``address``: ``host:port``).
    OSError when nothing answers there in HTTP (not up yet, or another kind of server)."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as r:
            return parse(r.read().decode("utf-8"))
    except http.client.HTTPException as e:
        raise ConnectionError(f"no HTTP answer from {address}: {e!r}") from e
