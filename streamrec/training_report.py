"""The report of a ``streamrec train-encoder`` run: loss curve PNG, loss summary, markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_loss_plot(losses: list[float], path: Path) -> str | None:
    """Loss per step and its running mean as a PNG; its file name, or None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, len(losses) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
    w = min(25, len(losses))
    if w > 1:
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, lw=1.8, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (symmetric MNR)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def loss_summary(losses: list[float]) -> dict[str, float]:
    w = max(1, min(50, len(losses) // 4 or 1))
    return {
        "first": losses[0],
        "last": losses[-1],
        f"mean_first_{w}": float(np.mean(losses[:w])),
        f"mean_last_{w}": float(np.mean(losses[-w:])),
    }


def relative_change(before: float, after: float) -> float | None:
    if not before or not np.isfinite(before) or not np.isfinite(after):
        return None
    return (after - before) / before


def write_markdown(report: dict[str, Any], path: Path) -> None:
    v, d, t = report["validation"], report["data"], report["training"]
    k = v["before"]["k"]
    lines = [
        "# Encoder fine-tuning",
        "",
        f"`{report['command']}`",
        "",
        f"Base `{report['lineage']['base_model']['name']}` -> `{report['lineage']['name']}`, "
        f"seed {report['settings']['seed']}, {t['steps']} steps of {t['batch_size']} pairs on "
        f"{t['device']} ({t['torch_threads']} threads), {t['train_seconds']:.0f}s training, "
        f"{report['seconds_this_invocation']:.0f}s this invocation.",
        "",
        f"## Validation: item -> co-purchased items, recall@{k}",
        "",
        f"Held-out orders from {d['validation_from']} to {d['last_order']} "
        f"({v['before']['orders']} with 2+ items); {v['before']['queries']} query items over "
        f"a catalog of {v['before']['catalog']} ({v['before']['new_item_queries']} first seen "
        "in the held-out slice).",
        "",
        "| model | recall | hit rate | new items: recall | new items: hit rate |",
        "|---|---|---|---|---|",
    ]
    rows = ["before", "trained", "after"] if "trained" in v else ["before", "after"]
    for name in rows:
        r = v[name]
        if name == "after" and "trained" in v:
            a = t["interpolate"]
            name = f"after: {a:g} x trained + {1 - a:g} x base (--interpolate)"
        lines.append(
            f"| {name} | {r['recall']:.4f} | {r['hit_rate']:.4f} | "
            f"{r.get('new_items_recall', float('nan')):.4f} | "
            f"{r.get('new_items_hit_rate', float('nan')):.4f} |"
        )
    rel = v.get("recall_relative_change")
    ref = d.get(f"reference_recall@{k}") or {}
    lines += [
        "",
        "Without text, from the training orders alone (yardsticks): "
        + ", ".join(f"{name.replace('_', ' ')} recall {x:.4f}" for name, x in ref.items()),
        "",
        f"Relative change of recall@{k}: "
        + (f"{rel:+.1%}" if rel is not None else "n/a (no base recall)"),
        "",
        "## Data",
        "",
        f"- source: `{json.dumps(report['lineage']['data'])}`",
        f"- orders {d['first_order']} .. {d['last_order']}: {d['orders_train']} for training, "
        f"{d['orders_validation']} held out (from {d['validation_from']})",
        f"- pairs: `{json.dumps(d['pair_stats'])}`",
        f"- skipped: `{json.dumps(d['skipped'])}`",
        "",
        "## Training",
        "",
        f"- loss: `{json.dumps({k2: round(x, 4) for k2, x in t['loss'].items()})}`",
        f"- settings: `{json.dumps(report['settings'], sort_keys=True)}`",
        f"- {t['pairs_seen']} pairs seen, {t['epochs']:.2f} epochs of {d['pair_stats']['pairs']}",
        f"- checkpoint: `{report['checkpoint']}`",
    ]
    if report.get("loss_plot"):
        lines += ["", f"![loss]({report['loss_plot']})"]
    path.write_text("\n".join(lines) + "\n")
