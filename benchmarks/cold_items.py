"""Cold items on MovieLens-100k: ColdRec's protocol (a seeded 20% of the items is cold: all
their interactions leave the training data; the test holds the interactions with them), for
several seeds, each model ranked through the one recommendation path:

- **cold**: among the cold items only (a request's candidate list), nDCG@10 and recall@50;
- **mixed**: over the whole catalog, the hits on cold items counted.

Rows: random (the floor), genre affinity, content kNN (the item's content vector against the
user's history's: TF-IDF → SVD of title, genres and year, the built-in encoder) and the
multi-stage model as it ships.

    python -m benchmarks.cold_items [--seeds 42,43,44] [--models genre,content,multistage]
        [--out PATH]   # a model: kind, or kind:name=value;... (two_tower:content=off)

Prints a table and writes ``benchmarks/results/cold_items.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from recsys.cli.options import parse_params
from recsys.data import movielens
from recsys.data.split import COLD_SHARE, cold_items_split
from recsys.evaluation.cold import cold_metrics, evaluate_cold, random_lists
from recsys.evaluation.tables import markdown_table, publish, results_header
from recsys.models.kinds import create_model

RESULTS = Path(__file__).resolve().parent / "results" / "cold_items.json"
MODELS = ("genre", "content", "multistage")
EXTRA = [
    ("seed", "seed"),
    ("cold_ndcg_at_10", "cold nDCG@10"),
    ("cold_recall_at_50", "cold R@50"),
    ("mixed_ndcg_at_10", "mixed nDCG@10"),
    ("mixed_recall_at_50", "mixed R@50"),
    ("fit_s", "fit s"),
]


def flat(figures: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"{where}_{name}": v for where, row in figures.items() for name, v in row.items()}


def run_seed(seed: int, models: list[str], data: Path) -> list[dict]:
    interactions = pd.read_parquet(data / "interactions.parquet")
    items = pd.read_parquet(data / "items.parquet")
    users = pd.read_parquet(data / "users.parquet")
    train, test = cold_items_split(interactions, COLD_SHARE, seed=seed)
    rows = [
        {
            "model": "random",
            "seed": seed,
            **flat({"cold": cold_metrics(random_lists(test, seed), test)}),
        }
    ]
    for spec in models:
        kind, params = model_spec(spec)
        t0 = time.perf_counter()
        model = create_model(kind, params).fit(train, users, items)
        fit_s = round(time.perf_counter() - t0, 1)
        rows.append(
            {"model": spec, "seed": seed, **flat(evaluate_cold(model, train, test)), "fit_s": fit_s}
        )
        print(f"seed {seed}: {spec} fitted in {fit_s} s", flush=True)
    return rows


def model_spec(spec: str) -> tuple[str, dict]:
    """``kind`` or ``kind:name=value;name=value`` (e.g. ``two_tower:content=off``)."""
    kind, _, params = spec.partition(":")
    return kind, parse_params(tuple(p for p in params.split(";") if p))


def means(rows: list[dict]) -> list[dict]:
    """Each model's mean over the seeds."""
    frame = pd.DataFrame(rows).drop(columns=["seed"])
    mean = frame.groupby("model", sort=False).mean(numeric_only=True).reset_index()
    return [
        {k: v for k, v in r.items() if pd.notna(v)} | {"seed": "mean"}
        for r in mean.to_dict("records")
    ]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = [m for m in args.models.split(",") if m]
    data = movielens.fetch()
    rows = [row for seed in seeds for row in run_seed(seed, models, data)]
    summary = means(rows)
    result = {
        **results_header("cold_items"),
        "config": {
            "seeds": seeds,
            "models": models,
            "cold_share": COLD_SHARE,
            "dataset": movielens.NAME,
        },
        "rows": rows,
        "means": summary,
        "table_markdown": markdown_table(rows + summary, extra=EXTRA),
    }
    publish(result, args.out)
    return result


if __name__ == "__main__":
    main()
