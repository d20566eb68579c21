"""How much the synthetic world looks like real data: MovieLens-100k's statistics beside the
generator's at the scale benchmark's sizes.

    python -m benchmarks.data_statistics [--fit] [--sizes 1000000,20000000]
        [--worlds movielens,independent]

For each dataset (MovieLens-100k, then ``benchmarks/scale.py``'s synthetic shape at each size:
N/20 users, N/100 items):

- **popularity**: the Gini coefficient of the items' interaction counts, the share of the
  interactions on the top 1% and top 10% of items, the share of items with fewer than 5;
- **activity**: interactions per user (median, mean, 90th percentile, max) and their Gini;
- **genres**: genres per item; how concentrated a user's items are on the user's own most
  frequent genre (mean share);
- **sequence**: how a user's next item relates to the previous one: the genre overlap
  (Jaccard) of consecutive items, against the same users' items in a shuffled order (the
  ratio is the order's own signal, beyond the user's taste), and the share of next items among
  the 20 items most often consecutive to the previous one elsewhere in the data;
- **drift**: the overlap of the top 100 items of the first and the second half of the time
  span, and how far a user's genre profile moves between the halves (cosine, users active in
  both), against two random users' profiles.

With ``--fit``, first the generator's knobs (popularity curve, activity spread, sequence,
trend) that bring its statistics at MovieLens-100k's size closest to MovieLens-100k's
(:func:`fit_world`): what ``recsys.data.synthetic_config.WORLDS['movielens']`` holds.

Results: ``benchmarks/results/data_statistics.json`` and a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data import movielens
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig, config_for
from recsys.evaluation.tables import publish, results_header

RESULTS = Path(__file__).resolve().parent / "results" / "data_statistics.json"


def gini(counts: np.ndarray) -> float:
    """0: every count equal; 1: one holds everything."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum())) if n and x.sum() else 0.0


def statistics(interactions: pd.DataFrame, items: pd.DataFrame, seed: int = 0) -> dict:
    """The statistics of the module's docstring for one dataset."""
    rng = np.random.default_rng(seed)
    df = interactions[["user_id", "item_id", "timestamp"]].astype({"user_id": str, "item_id": str})
    df = df.sort_values(["user_id", "timestamp"], kind="mergesort").reset_index(drop=True)
    item_codes, item_ids = pd.factorize(df["item_id"])
    user_codes, _ = pd.factorize(df["user_id"])
    item_counts = np.bincount(item_codes)
    catalog = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    n_items = max(len(catalog), len(item_ids))
    counts_all = np.zeros(n_items)  # items never met count 0
    counts_all[: len(item_counts)] = np.sort(item_counts)[::-1]
    top = np.sort(counts_all)[::-1]
    user_counts = np.bincount(user_codes)
    genres = catalog.set_index("item_id")["genres"].reindex(item_ids).fillna("")
    names = sorted({g for v in genres for g in str(v).split("|") if g})
    member = np.zeros((len(item_ids), len(names)), dtype=bool)
    index = {g: j for j, g in enumerate(names)}
    for i, v in enumerate(genres):
        for g in str(v).split("|"):
            if g:
                member[i, index[g]] = True
    n_users = user_counts.size

    def profiles(rows: np.ndarray) -> np.ndarray:
        """``(users, genres)``: how many of each user's items (``rows`` of ``df``) carry each."""
        x = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (user_codes[rows], item_codes[rows])),
            shape=(n_users, len(item_ids)),
        )
        return np.asarray(x @ member.astype(np.float32))

    per_user = profiles(np.arange(len(df)))
    own_share = per_user.max(axis=1) / np.maximum(user_counts, 1)
    same_user = user_codes[:-1] == user_codes[1:]

    def consecutive_overlap(order_items: np.ndarray) -> float:
        a, b = member[order_items[:-1][same_user]], member[order_items[1:][same_user]]
        union = (a | b).sum(axis=1)
        return float(np.mean((a & b).sum(axis=1)[union > 0] / union[union > 0]))

    in_order = consecutive_overlap(item_codes)
    # the same users' items in a random order (user_codes are sorted: groups stay put)
    out_of_order = consecutive_overlap(item_codes[np.lexsort((rng.random(len(df)), user_codes))])
    pairs = pd.DataFrame({"a": item_codes[:-1][same_user], "b": item_codes[1:][same_user]})
    counts = pairs.value_counts().rename("n").reset_index()
    ordered = counts.sort_values(["a", "n", "b"], ascending=[True, False, True])
    counts["rank"] = ordered.groupby("a").cumcount()
    merged = pairs.merge(counts, on=["a", "b"], how="left")
    # among the previous item's 20 commonest successors, met elsewhere too (n > 1: not only
    # this pair itself)
    hits = (merged["rank"] < 20) & (merged["n"] > 1)
    ts = pd.to_datetime(df["timestamp"], utc=True).astype("int64").to_numpy()
    half = np.quantile(ts, 0.5)
    early, late = np.flatnonzero(ts < half), np.flatnonzero(ts >= half)
    top_early = set(np.argsort(-np.bincount(item_codes[early], minlength=len(item_ids)))[:100])
    top_late = set(np.argsort(-np.bincount(item_codes[late], minlength=len(item_ids)))[:100])
    e, la = profiles(early), profiles(late)
    both = (e.sum(axis=1) > 0) & (la.sum(axis=1) > 0)
    e, la = _unit(e[both]), _unit(la[both])
    same = float(np.mean((e * la).sum(axis=1))) if len(e) else float("nan")
    random_pair = float(np.mean((e * la[rng.permutation(len(la))]).sum(axis=1))) if len(e) else 0.0
    return {
        "users": int(user_counts.size),
        "items": int(n_items),
        "interactions": int(len(df)),
        "popularity_gini": round(gini(counts_all), 3),
        "top_1pct_items_share": round(float(top[: max(1, n_items // 100)].sum() / len(df)), 3),
        "top_10pct_items_share": round(float(top[: max(1, n_items // 10)].sum() / len(df)), 3),
        "items_under_5": round(float((counts_all < 5).mean()), 3),
        "user_median": float(np.median(user_counts)),
        "user_mean": round(float(user_counts.mean()), 1),
        "user_p90": round(float(np.percentile(user_counts, 90)), 1),
        "user_max": int(user_counts.max()),
        "activity_gini": round(gini(user_counts), 3),
        "genres_per_item": round(float(member.sum(axis=1).mean()), 2),
        "own_genre_share": round(float(own_share.mean()), 3),
        "next_genre_overlap": round(in_order, 4),
        "next_genre_overlap_shuffled": round(out_of_order, 4),
        "sequence_lift": round(in_order / out_of_order, 3) if out_of_order else None,
        "next_in_top20_successors": round(float(hits.mean()), 4),
        "top100_overlap_halves": round(len(top_early & top_late) / 100, 2),
        "user_profile_cosine_halves": round(same, 3),
        "random_profile_cosine": round(random_pair, 3),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


ROWS = (
    ("popularity_gini", "item popularity Gini"),
    ("top_1pct_items_share", "share of interactions on the top 1% of items"),
    ("top_10pct_items_share", "on the top 10%"),
    ("items_under_5", "items with fewer than 5 interactions"),
    ("user_median", "interactions per user: median"),
    ("user_mean", "mean"),
    ("user_p90", "90th percentile"),
    ("user_max", "max"),
    ("activity_gini", "user activity Gini"),
    ("genres_per_item", "genres per item"),
    ("own_genre_share", "a user's items in the user's top genre (mean share)"),
    ("next_genre_overlap", "genre overlap of consecutive items (Jaccard)"),
    ("sequence_lift", "the same against the user's items shuffled (ratio)"),
    ("next_in_top20_successors", "next item among the previous one's 20 commonest successors"),
    ("top100_overlap_halves", "top-100 items shared by the two halves of the time span"),
    ("user_profile_cosine_halves", "a user's genre profile, first half vs second (cosine)"),
    ("random_profile_cosine", "two random users' profiles (cosine)"),
)


def table(results: dict[str, dict]) -> str:
    names = list(results)
    lines = ["| statistic | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines.append(
        "| users × items | "
        + " | ".join(f"{r['users']:,} × {r['items']:,}" for r in results.values())
        + " |"
    )
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(str(r[key]) for r in results.values()) + " |")
    return "\n".join(lines)


# What the fit matches (MovieLens-100k's value of each), and each knob's first grid.
FIT_TARGETS = (
    "popularity_gini",
    "top_1pct_items_share",
    "top_10pct_items_share",
    "items_under_5",
    "activity_gini",
    "sequence_lift",
    "top100_overlap_halves",
)
FIT_GRID = {
    "popularity_exponent": (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0),
    "popularity_offset": (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0),
    "popularity_decay": (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0),
    "activity_sigma": (0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5),
    "sequence": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
    "trend": (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5),
}


def fit_world(target: dict, sizes: dict, work: Path, passes: int = 3) -> tuple[dict, dict, float]:
    """The generator's knobs that bring its statistics closest to ``target``'s (the sum of
    squared relative errors over :data:`FIT_TARGETS`), at the sizes ``sizes``: a coordinate
    search over :data:`FIT_GRID`, then over finer steps around the best (one seed: the same
    data for the same knobs, so the search is deterministic).

    Returns:
        The knobs, the statistics they give, the loss.
    """
    measured: dict[tuple, tuple[float, dict]] = {}

    def loss(knobs: dict) -> float:
        key = tuple(sorted(knobs.items()))
        if key not in measured:
            generate(SynthConfig(**sizes, **knobs), work, progress=False)
            got = statistics(
                pd.read_parquet(work / "interactions.parquet"),
                pd.read_parquet(work / "items.parquet"),
            )
            error = sum(((got[k] - target[k]) / target[k]) ** 2 for k in FIT_TARGETS)
            measured[key] = (error, got)
        return measured[key][0]

    best = {name: grid[2] for name, grid in FIT_GRID.items()}
    grids = dict(FIT_GRID)
    for step in range(passes + 2):
        if step >= passes:  # finer: around the best, by a quarter then an eighth
            share = 0.25 if step == passes else 0.125
            grids = {k: tuple(v * f for f in (1 - share, 1, 1 + share)) for k, v in best.items()}
        for name, grid in grids.items():
            tried = {value: loss(best | {name: round(value, 4)}) for value in grid}
            best[name] = round(min(tried, key=tried.get), 4)
        print(f"fit pass {step + 1}: loss {loss(best):.4f} {best}")
    error, got = measured[tuple(sorted(best.items()))]
    return best, got, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,20000000")
    parser.add_argument("--worlds", default="movielens,independent")
    parser.add_argument(
        "--fit", action="store_true", help="fit the generator's knobs to MovieLens-100k first"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ml = movielens.fetch()
    frame = pd.read_parquet(ml / "interactions.parquet")
    results = {"MovieLens-100k": statistics(frame, pd.read_parquet(ml / "items.parquet"))}
    print(results["MovieLens-100k"])
    extra = {}
    with tempfile.TemporaryDirectory(prefix="stats-") as tmp:
        if args.fit:
            ml_sizes = {
                "n_users": int(frame["user_id"].nunique()),
                "n_items": int(frame["item_id"].nunique()),
                "n_interactions": len(frame),
            }
            knobs, got, error = fit_world(results["MovieLens-100k"], ml_sizes, Path(tmp) / "fit")
            results["fitted world at MovieLens-100k's size"] = got
            extra["fit"] = {"knobs": knobs, "loss": round(error, 4), "sizes": ml_sizes}
            print(f"fitted knobs (WORLDS['movielens']): {knobs}, loss {error:.4f}")
        for world in (w for w in args.worlds.split(",") if w):
            for n in (int(x) for x in args.sizes.split(",") if x):
                sizes = {"n_users": n // 20, "n_items": n // 100, "n_interactions": n}
                config = (
                    SynthConfig(**sizes, **extra["fit"]["knobs"])
                    if args.fit and world == "movielens"
                    else config_for(world, **sizes)
                )
                out = Path(tmp) / f"{world}-{n}"
                generate(config, out, progress=False)
                data = pd.read_parquet(out / "interactions.parquet")
                name = f"{world} {n:,}"
                results[name] = statistics(data, pd.read_parquet(out / "items.parquet"))
                print(name, results[name])
                del data
    result = results_header("data_statistics") | {
        "datasets": results,
        **extra,
        "table_markdown": table(results),
    }
    publish(result, args.out)


if __name__ == "__main__":
    main()
