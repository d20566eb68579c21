"""Quality benchmark: MovieLens-100k, stratified protocol, every model we have, k = 10.

Prints a markdown table beside the published Microsoft Recommenders figures and writes
``benchmarks/results/quality_movielens.json``. Same as ``recsys benchmark quality``.

    python benchmarks/quality_movielens.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from recsys.cli.benchmark import quality_benchmark, select_models

RESULTS = Path(__file__).resolve().parent / "results" / "quality_movielens.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--models", default=None, help="comma-separated subset of the rows")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quality-") as tmp:
        result = quality_benchmark(
            args.out, args.workdir or Path(tmp), args.k, select_models(args.models)
        )
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
