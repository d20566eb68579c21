"""How much the synthetic world looks like real data: MovieLens-100k's statistics beside the
generator's at the scale benchmark's sizes.

    python -m benchmarks.data_statistics [--sizes 1000000,20000000]

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
from recsys.data.synthetic_config import SynthConfig
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


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,20000000")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    ml = movielens.fetch()
    results = {
        "MovieLens-100k": statistics(
            pd.read_parquet(ml / "interactions.parquet"), pd.read_parquet(ml / "items.parquet")
        )
    }
    print(results["MovieLens-100k"])
    with tempfile.TemporaryDirectory(prefix="stats-") as tmp:
        for n in (int(x) for x in args.sizes.split(",") if x):
            config = SynthConfig(n_users=n // 20, n_items=n // 100, n_interactions=n)
            out = Path(tmp) / f"n{n}"
            generate(config, out, progress=False)
            frame = pd.read_parquet(out / "interactions.parquet")
            name = f"synthetic {n:,}"
            results[name] = statistics(frame, pd.read_parquet(out / "items.parquet"))
            print(name, results[name])
            del frame
    result = results_header("data_statistics") | {
        "datasets": results,
        "table_markdown": table(results),
    }
    publish(result, args.out)


if __name__ == "__main__":
    main()
