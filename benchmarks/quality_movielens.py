"""Quality benchmark: MovieLens-100k, the stratified and the temporal protocols, every model
we have (each candidate source alone, the two-tower, the shipped multi-stage model for three
training seeds, its DCN option), each source's recall@100, and the same on a validation split
carved from train (where the ranker and its settings were chosen), k = 10.

Prints markdown tables (the stratified one beside the published Microsoft Recommenders figures)
and writes ``benchmarks/results/quality_movielens.json``. Same as ``recsys benchmark quality``
with every option on.

    python benchmarks/quality_movielens.py [--workdir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from recsys.workflows.quality import quality_benchmark, select_models

RESULTS = Path(__file__).resolve().parent / "results" / "quality_movielens.json"
SEEDS = (42, 7, 2024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--models", default=None, help="comma-separated subset of the rows")
    parser.add_argument("--quick", action="store_true", help="stratified only, one seed")
    args = parser.parse_args()
    protocols = ("stratified",) if args.quick else ("stratified", "temporal")
    seeds = (42,) if args.quick else SEEDS
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        result = quality_benchmark(
            args.out,
            args.workdir or Path(tmp),
            args.k,
            select_models(args.models),
            protocols,
            seeds,
            validation=not args.quick,
        )
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
