"""Held-out co-purchase retrieval: does an item's text embedding find what it is bought with?

The task (:func:`build_task`), from the orders of the validation slice (after the time split):

- the **catalog** is every item with a text seen up to the end of the slice, the items first seen
  inside it included (new items are where a text model has to carry the ranking);
- each **query** is an item bought in a held-out order together with at least one other item;
  its **targets** are the distinct items bought with it in any held-out order;
- a query's top-k are its k nearest catalog items by cosine (exact search), itself left out.

:func:`recall_at_k` reports, averaged over queries (each query counts once however many orders
hold it): ``recall`` = |top-k ∩ targets| / |targets|, ``hit_rate`` = share of queries with at least
one target in the top-k, and the same for the queries first seen inside the held-out slice
(``new_items``). Plain numpy; the vectors come from whichever model is being measured.

:func:`reference_recall` scores the same task without text, as a yardstick: each query's most
frequent partners in the *training* orders (item-kNN by co-purchase counts) and the best sellers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from streamrec.behaviour_pairs import Order, same_order_counts


@dataclass
class RetrievalTask:
    catalog: list[str]  # item ids, sorted; row order of the vectors
    targets: dict[str, frozenset[str]]  # query item -> items bought with it in held-out orders
    new_items: frozenset[str]  # catalog items first seen at or after the split
    orders: int  # held-out orders with at least two items


def build_task(
    val_orders: Iterable[Order], texts: dict[str, str], first_seen: dict[str, int], split_ts: int
) -> RetrievalTask:
    end = None
    targets: dict[str, set[str]] = {}
    n_orders = 0
    for order in val_orders:
        end = order.ts if end is None else max(end, order.ts)
        if len(order.items) < 2:
            continue
        n_orders += 1
        for item in order.items:
            targets.setdefault(item, set()).update(i for i in order.items if i != item)
    catalog = sorted(i for i in texts if end is None or first_seen.get(i, end) <= end)
    in_catalog = set(catalog)
    missing = {q for q in targets if q not in in_catalog}
    if missing:
        raise ValueError(f"held-out items without a catalog text: {sorted(missing)[:5]}")
    new = frozenset(i for i in catalog if first_seen.get(i, split_ts) >= split_ts)
    return RetrievalTask(
        catalog=catalog,
        targets={q: frozenset(t) for q, t in sorted(targets.items())},
        new_items=new,
        orders=n_orders,
    )


def top_k(vectors: np.ndarray, query_rows: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` catalog vectors nearest (cosine; rows are unit length) each query row,
    the query itself excluded; ties broken by catalog order."""
    sims = vectors[query_rows] @ vectors.T
    sims[np.arange(len(query_rows)), query_rows] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def _recall(top: dict[str, list[str]], task: RetrievalTask) -> float:
    return float(np.mean([len(set(top[q]) & t) / len(t) for q, t in task.targets.items()]))


def reference_recall(
    train_orders: list[Order], task: RetrievalTask, k: int = 10
) -> dict[str, float]:
    """Recall@k of two text-free rankings fitted on the training orders: ``co_purchase_counts``
    (a query's k most frequent partners before the split) and ``popularity`` (the k items in most
    training orders, the query left out)."""
    if not task.targets:
        return {}
    partners: dict[str, Counter] = {q: Counter() for q in task.targets}
    for (a, b), n in same_order_counts(train_orders).items():
        if a in partners:
            partners[a][b] = n
        if b in partners:
            partners[b][a] = n
    by_count = {
        q: [i for i, _ in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:k]]
        for q, c in partners.items()
    }
    sold = Counter(i for order in train_orders for i in order.items)
    best = [i for i, _ in sorted(sold.items(), key=lambda x: (-x[1], x[0]))[: k + 1]]
    by_sales = {q: [i for i in best if i != q][:k] for q in task.targets}
    return {"co_purchase_counts": _recall(by_count, task), "popularity": _recall(by_sales, task)}


def recall_at_k(vectors: np.ndarray, task: RetrievalTask, k: int = 10) -> dict[str, float | int]:
    """Recall@k and hit rate@k of ``task`` with ``vectors`` (one unit row per catalog item)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(task.catalog):
        raise ValueError(f"{vectors.shape[0]} vectors for a catalog of {len(task.catalog)}")
    row = {item: i for i, item in enumerate(task.catalog)}
    queries = list(task.targets)
    if not queries:
        return {"queries": 0, "recall": float("nan"), "hit_rate": float("nan")}
    found = top_k(vectors, np.array([row[q] for q in queries]), k)
    recall = np.empty(len(queries))
    for i, q in enumerate(queries):
        got = {task.catalog[j] for j in found[i]}
        recall[i] = len(got & task.targets[q]) / len(task.targets[q])
    hit = recall > 0
    new = np.array([q in task.new_items for q in queries])
    out: dict[str, float | int] = {
        "k": k,
        "queries": len(queries),
        "catalog": len(task.catalog),
        "orders": task.orders,
        "recall": float(recall.mean()),
        "hit_rate": float(hit.mean()),
        "new_item_queries": int(new.sum()),
    }
    if new.any():
        out["new_items_recall"] = float(recall[new].mean())
        out["new_items_hit_rate"] = float(hit[new].mean())
    return out
