"""``recsys evaluate``: ranking metrics of a recommendations file against a test set."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from recsys.cli.options import k_option, path_option
from recsys.data.io import ITEM, USER, read_table, resolve_interactions
from recsys.data.validate import ids_to_str
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.tables import markdown_table
from recsys.files import write_json


def _read_ids(path: Path) -> pd.DataFrame:
    """A table whose id columns are strings, as the contract says, whatever the file held."""
    df = read_table(path)
    for col in (USER, ITEM):
        if col in df.columns:
            df[col] = ids_to_str(df[col])
    return df


@click.command()
@path_option("--recs", required=True, help="Recommendations: user_id, item_id, score, rank.")
@path_option(
    "--test",
    required=True,
    help="Held-out interactions (file or split directory with test.parquet).",
)
@path_option("--train", help="Training interactions, for coverage, novelty and ARP.")
@k_option
@path_option("--out", help="Metrics JSON (default: beside --recs, *.metrics.json).")
def evaluate(recs, test, train, k, out) -> None:
    """Print precision, recall, nDCG, MAP, F1, hit rate, MRR (and beyond-accuracy) at k."""
    test_file = test / "test.parquet" if test.is_dir() else test
    train_df = _read_ids(resolve_interactions(train)[0]) if train else None
    metrics = ranking_metrics(_read_ids(recs), _read_ids(test_file), k, train=train_df)
    row = {"model": recs.stem, **metrics.as_dict()}
    click.echo(markdown_table([row]))
    out = out or recs.with_suffix(".metrics.json")
    write_json(row, out)
    click.echo(f"metrics -> {out}")
