"""Approximate against exact vector search on a synthetic catalog: recall@10 and cost.

    python -m benchmarks.ann --size 100000 [--queries 300] [--probe 16] [--budget 8000] [--libs]

Builds N synthetic items with composed vectors (benchmarks.catalogs), takes ``--queries`` of
them as queries (seeded), and prints, one BLAS thread:

- exact search (every row, what ContentIndex does below operators.ann.MIN_KEYS): ms/search;
- operators.ann.IVFIndex as the world builds it: build seconds, cells, ms/search, recall@10
  (share of the exact 10 nearest found, the query itself excluded);
- exact search over float16 copies of the vectors: recall@10 against float32 (what storing the
  vectors as float16 would change);
- with ``--libs``: HNSW from hnswlib and faiss-cpu (when importable; neither is a dependency of
  the project) on the same vectors, single-threaded, for comparison.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def recall(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return float(
        np.mean(
            [len(set(g.tolist()) & set(w.tolist())) / 10 for g, w in zip(got, want, strict=True)]
        )
    )


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    import operators.ann as ann
    from benchmarks.catalogs import composed_catalog
    from operators.content import best_first

    p = argparse.ArgumentParser(prog="python -m benchmarks.ann", description=__doc__)
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--probe", type=int, default=ann.PROBE)
    p.add_argument("--budget", type=int, default=ann.BUDGET)
    p.add_argument("--libs", action="store_true", help="hnswlib and faiss HNSW too")
    args = p.parse_args(argv)
    threadpool_limits(1)
    t = time.perf_counter()
    _, rows = composed_catalog(args.size)
    print(f"{args.size:,} synthetic items composed in {time.perf_counter() - t:.0f} s")
    keys = np.arange(args.size)
    queries = np.random.default_rng(0).choice(args.size, args.queries, replace=False).tolist()

    t = time.perf_counter()
    exact = []
    for q in queries:
        sims = rows @ rows[q]
        sims[q] = -np.inf
        exact.append(best_first(keys, sims, 10)[0])
    print(f"exact:      {(time.perf_counter() - t) / len(queries) * 1e3:7.2f} ms/search")

    t = time.perf_counter()
    ivf = ann.IVFIndex.build(keys, rows, probe=args.probe)
    ivf.budget = args.budget
    build = time.perf_counter() - t
    t = time.perf_counter()
    got = [ivf.search(rows[q], 10, rows, exclude=q)[0] for q in queries]
    ms = (time.perf_counter() - t) / len(queries) * 1e3
    print(
        f"IVF:        {ms:7.2f} ms/search, recall@10 {recall(got, exact):.3f} "
        f"({ivf.n_cells:,} cells, probe {ivf.probe}, budget {ivf.budget:,} rows; "
        f"built in {build:.1f} s)"
    )

    half = rows.astype(np.float16)
    got = []
    for q in queries:
        sims = (half @ half[q]).astype(np.float32)
        sims[q] = -np.inf
        got.append(best_first(keys, sims, 10)[0])
    print(f"float16:    exact search over float16 vectors, recall@10 {recall(got, exact):.3f}")
    del half

    if args.libs:
        _libraries(rows, queries, exact)
    return 0


def _libraries(rows: np.ndarray, queries: list[int], exact: list[np.ndarray]) -> None:
    n, dim = rows.shape
    try:
        import hnswlib
    except ImportError:
        print("hnswlib:    not installed")
    else:
        t = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=dim)
        h.init_index(max_elements=n, M=16, ef_construction=100, random_seed=1)
        h.add_items(rows, np.arange(n), num_threads=1)
        build = time.perf_counter() - t
        h.set_ef(50)
        t = time.perf_counter()
        got = [h.knn_query(rows[q], k=11)[0][0] for q in queries]
        ms = (time.perf_counter() - t) / len(queries) * 1e3
        got = [g[g != q][:10] for g, q in zip(got, queries, strict=True)]
        print(
            f"hnswlib:    {ms:7.2f} ms/search, recall@10 {recall(got, exact):.3f} "
            f"(M 16, ef 50; built in {build:.1f} s)"
        )
    try:
        import faiss
    except ImportError:
        print("faiss:      not installed")
    else:
        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        f = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = 100
        f.add(rows)
        build = time.perf_counter() - t
        f.hnsw.efSearch = 50
        t = time.perf_counter()
        got = [f.search(rows[q : q + 1], 11)[1][0] for q in queries]
        ms = (time.perf_counter() - t) / len(queries) * 1e3
        got = [g[g != q][:10] for g, q in zip(got, queries, strict=True)]
        print(
            f"faiss HNSW: {ms:7.2f} ms/search, recall@10 {recall(got, exact):.3f} "
            f"(M 16, efSearch 50; built in {build:.1f} s)"
        )


if __name__ == "__main__":
    sys.exit(main())
