"""The item index at a real catalog's size: bytes per item, build time, recall@100 against exact
fp32 search, and query time, for each kind (flat, HNSW, IVF) at each precision (fp32, fp16,
int8), at 200k and 1M items.

The embeddings stand in for a trained two-tower's: 64 dimensions, items around a few hundred
centres (genres, tastes), norms that grow with popularity; the queries are users near the
items they like. Recall is measured as ``ItemIndex.build`` measures it for the manifest, and
recounted here on separate queries.

    python benchmarks/index_precision.py [--items 200000,1000000] [--kinds flat,hnsw,ivf]

Prints a table and writes ``benchmarks/results/index_precision.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from recsys.evaluation.tables import results_header
from recsys.retrieval.index import PRECISIONS, IndexConfig, ItemIndex

RESULTS = Path(__file__).parent / "results" / "index_precision.json"
DIM, K, QUERIES = 64, 100, 1000


def embeddings(n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(items, queries)``: clustered items whose norms follow a Zipf-like popularity, and
    users near a random item each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, DIM)).astype(np.float32)
    items = centres[rng.integers(0, len(centres), n_items)]
    items += 0.5 * rng.normal(size=(n_items, DIM)).astype(np.float32)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items *= (1.0 + np.log1p(popularity[rng.permutation(n_items)] * n_items))[:, None] / 10
    liked = items[rng.integers(0, n_items, 2 * QUERIES)]
    queries = liked + 0.3 * rng.normal(size=liked.shape).astype(np.float32)
    return np.ascontiguousarray(items, np.float32), np.ascontiguousarray(queries, np.float32)


def measure(items: np.ndarray, queries: np.ndarray, truth: np.ndarray, kind: str, precision: str):
    """One index: its manifest figures, the recall recount and the query time."""
    build_queries, test_queries = queries[:QUERIES], queries[QUERIES:]
    config = IndexConfig(kind=kind, precision=precision, recall_queries=QUERIES)
    start = time.perf_counter()
    index = ItemIndex.build(items, config, query_sample=build_queries)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    _, found = index.search(test_queries, K)
    query_ms = (time.perf_counter() - start) * 1000 / len(test_queries)
    hits = [len(np.intersect1d(a, t)) for a, t in zip(found, truth, strict=True)]
    info = index.info()
    return {
        "items": len(items),
        "kind": kind,
        "precision": precision,
        "bytes_per_item": info["bytes_per_item"],
        "build_s": round(info["build_seconds"], 2),
        "build_and_recall_s": round(build_s, 2),
        "recall_at_100_manifest": round(info["recall_at_k"], 4),
        "recall_at_100": round(float(np.mean(hits)) / K, 4),
        "query_ms": round(query_ms, 3),
    }


def exact_truth(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The exact fp32 top-100 of each query (FAISS's flat inner product, in blocks)."""
    exact = ItemIndex.build(items, IndexConfig(kind="flat"))
    return exact.search(queries, K)[1]


HEADER = (
    "| items | kind | precision | bytes/item | build s | recall@100 | query ms |\n"
    "|---|---|---|---|---|---|---|"
)


def row_line(row: dict) -> str:
    if "skipped" in row:
        return f"| {row['items']:,} | {row['kind']} | skipped ({row['skipped']}) | | | | |"
    return (
        f"| {row['items']:,} | {row['kind']} | {row['precision']} | {row['bytes_per_item']} | "
        f"{row['build_s']} | {row['recall_at_100']} | {row['query_ms']} |"
    )


def table(result: dict) -> str:
    return "\n".join([HEADER, *(row_line(row) for row in result["rows"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="200000,1000000")
    parser.add_argument("--kinds", default="flat,hnsw,ivf")
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument(
        "--hnsw-max-items",
        type=int,
        default=200_000,
        help="skip HNSW above this many items (its build is minutes per precision on 2 CPUs)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = []
    print(HEADER, flush=True)
    for n in (int(s) for s in args.items.split(",")):
        items, queries = embeddings(n)
        truth = exact_truth(items, queries[QUERIES:])
        for kind in args.kinds.split(","):
            if kind == "hnsw" and n > args.hnsw_max_items:
                rows.append({"items": n, "kind": kind, "skipped": "--hnsw-max-items"})
                continue
            for precision in args.precisions.split(","):
                row = measure(items, queries, truth, kind, precision)
                rows.append(row)
                print(row_line(row), flush=True)
    result = {
        **results_header("index_precision"),
        "dim": DIM,
        "k": K,
        "hnsw_max_items": args.hnsw_max_items,
        "rows": rows,
    }
    result["table_markdown"] = table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
