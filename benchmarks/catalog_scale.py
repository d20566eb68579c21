"""What a request's model stages cost as the catalog grows: 10k, 200k and 1M items.

    python -m benchmarks.catalog_scale [--items 10000,200000,1000000] [--baseline-tree DIR]
        [--content-variants] [--out PATH]

Per catalog size, one synthetic dataset (20,000 users, 200,000 interactions, the catalog table
holding every item, most of them cold: the two-tower's item tower embeds them all) and the
scale benchmark's multi-stage model on it (the two-tower's top 100 and the 50 most popular,
cross-fitted in time, the LightGBM ranker; ``benchmarks/scale.py``), trained here in-process
and saved. Then, in a fresh process per code tree, the saved model is loaded and
``recsys.recommend.recommend`` (the one path: candidates, rank, order) answers the same users
in batches of 1 and 16, one thread as a Serve replica has (``OMP_NUM_THREADS=1``, what Ray
sets for a replica): milliseconds per user (median over batches) and the process's memory
after loading and at its peak. ``--baseline-tree`` times an older checkout of the code on the
same saved models in the same run (a ``git worktree`` of the commit before), so the ratio is
measured on one machine at one time.

``--content-variants`` measures what item content costs a replica: per catalog size, from the
same generated dataset, two models are trained and saved, one with ``content="auto"`` (the
synthetic items table has text, so it reads the content vectors) and one with
``content="off"``, and each is timed in a fresh process on this tree; a row per variant, with
the saved ``content_vectors.npy`` and ``content_encoder/`` in MiB (where present), the model
directory's size and the fit time.

Results: ``benchmarks/results/catalog_scale.json`` (``--out`` writes elsewhere: the content
variants' run went to ``benchmarks/results/catalog_scale_content.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.scale import scalable_multistage
from recsys.data.io import read_side_tables
from recsys.data.split import split, write_split
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.data.validate import load_interactions
from recsys.evaluation.tables import publish, results_header
from recsys.models.content import ENCODER_DIR, VECTORS_FILE
from recsys.models.kinds import load_model
from recsys.models.two_tower import TwoTowerConfig
from recsys.recommend import Request, prepare, recommend
from recsys.state.offline import states_from_interactions

RESULTS = Path(__file__).resolve().parent / "results" / "catalog_scale.json"
ROOT = Path(__file__).resolve().parent.parent
USERS, INTERACTIONS = 20_000, 200_000
BATCHES = (1, 16)
CONTENT_VARIANTS = ("auto", "off")  # MultiStageConfig.content: read the items' text, or not
MIB = 2**20


def generate_split(n_items: int, work: Path) -> tuple:
    """Generate the dataset and split it in time: the training interactions, the side tables
    and where the split is."""
    data, split_dir = work / "data", work / "split"
    generate(
        SynthConfig(n_users=USERS, n_items=n_items, n_interactions=INTERACTIONS),
        data,
        progress=False,
    )
    clean, _ = load_interactions(data, rating_range=(1.0, 5.0))
    train, test = split(clean, "global-time")
    write_split(train, test, split_dir, params={"protocol": "global-time"}, side_from=data)
    return train, *read_side_tables(split_dir), split_dir


def fit_and_save(data: tuple, index_kind: str, model_dir: Path, content: str | None) -> dict:
    """Train the model on ``data`` (:func:`generate_split`'s) and save it to ``model_dir``;
    ``content`` sets ``MultiStageConfig.content`` (None: the default). Where the model is,
    how long it took, its index, and (with ``content``) what its files hold."""
    train, users, items, split_dir = data
    tower = TwoTowerConfig(epochs=1, history_len=20, index={"kind": index_kind})
    model = scalable_multistage(tower, ranker_users=2_000)
    if content is not None:
        model.config = dataclasses.replace(model.config, content=content)
    start = time.perf_counter()
    model.fit(train, users, items)
    fit_s = time.perf_counter() - start
    model.save(model_dir)
    index = model.sources.two_tower.index_info()
    built = {
        "catalog": len(model.item_ids),
        "fit_s": round(fit_s, 1),
        "index": {k: index[k] for k in ("kind", "precision", "recall_at_k", "build_seconds")},
        "model": str(model_dir),
        "history": str(split_dir / "train.parquet"),
    }
    if content is not None:
        built |= {"content": content, **model_files_mib(model_dir)}
        if model.content_index is not None:  # a large catalog's content source: its index
            info = model.content_index.info()
            built["content_index"] = {k: info[k] for k in ("kind", "precision", "recall_at_k")}
    return built


def build(n_items: int, work: Path, index_kind: str) -> dict:
    """Generate the dataset, train and save the model; return where they are and how long."""
    data = generate_split(n_items, work)
    return {"items": n_items} | fit_and_save(data, index_kind, work / "model", None)


def build_variants(n_items: int, work: Path, index_kind: str) -> list[dict]:
    """One dataset, a model per :data:`CONTENT_VARIANTS`, each saved to its own folder."""
    data = generate_split(n_items, work)
    return [
        {"items": n_items} | fit_and_save(data, index_kind, work / f"model-content-{v}", v)
        for v in CONTENT_VARIANTS
    ]


def model_files_mib(model_dir: Path) -> dict:
    """The saved model's size and its content files' (None where absent), in MiB."""

    def mib(path: Path) -> float | None:
        if not path.exists():
            return None
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
        return round(sum(f.stat().st_size for f in files) / MIB, 2)

    return {
        "model_mib": mib(model_dir),
        "content_vectors_mib": mib(model_dir / VECTORS_FILE),
        "content_encoder_mib": mib(model_dir / ENCODER_DIR),
    }


def time_path(model_dir: str, history: str, repeats: int) -> dict:
    """In this process: load the model, answer the sample's users; ms per user, memory."""
    import pandas as pd

    train = pd.read_parquet(history)
    users = sorted(train.user_id.astype(str).unique())[:: max(1, train.user_id.nunique() // 256)]
    users = users[:256]
    before = _memory_mib()
    model = load_model(model_dir)
    prepared = prepare(model)
    loaded = _memory_mib()
    states = states_from_interactions(train, users, prepared.recent_n)
    del train
    out = {"rss_before_load_mib": before["rss"], "rss_loaded_mib": loaded["rss"]}
    for size in BATCHES:
        recommend(prepared, states[:size], Request())  # warm
        per_user = []
        for _ in range(repeats):
            for a in range(0, min(len(states), 16 * size if size > 1 else 64), size):
                batch = states[a : a + size]
                start = time.perf_counter()
                recommend(prepared, batch, Request())
                per_user.append((time.perf_counter() - start) * 1000 / len(batch))
        out[f"ms_per_user_batch_{size}"] = round(float(np.median(per_user)), 3)
    out["rss_peak_mib"] = _memory_mib()["hwm"]
    return out


def _memory_mib() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields["rss" if name == "VmRSS" else "hwm"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def time_in_tree(tree: Path, built: dict, repeats: int) -> dict:
    """:func:`time_path` in a fresh Python whose ``recsys`` is the checkout at ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "FEAST_USAGE": "False", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--time", built["model"], built["history"]]
    done = subprocess.run(
        [*command, "--repeats", str(repeats)], env=env, capture_output=True, text=True, cwd=tree
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """The rows as markdown; with content variants, a column per variant's content and its
    files' size (vectors + encoder, MiB) and fit time."""
    variants = any("content" in row for row in rows)
    head = (
        "| catalog | code | ms/user, batch 1 | ms/user, batch 16 | RSS loaded MiB | RSS peak MiB |"
    )
    if variants:
        head = head.replace("| code |", "| code | content | content files MiB | fit s |")
    lines = [head, "|" + "---|" * head.count(" |")]
    for row in rows:
        extra = ""
        if variants:
            sizes = [row.get(k) for k in ("content_vectors_mib", "content_encoder_mib")]
            files = round(sum(x for x in sizes if x), 2) if any(sizes) else "-"
            extra = f" {row.get('content', '')} | {files} | {row['fit_s']} |"
        for tree, t in row["timings"].items():
            if "error" in t:
                lines.append(f"| {row['catalog']:,} | {tree} |{extra} {t['error']} | | | |")
                continue
            lines.append(
                f"| {row['catalog']:,} | {tree} |{extra} {t['ms_per_user_batch_1']} | "
                f"{t['ms_per_user_batch_16']} | {t['rss_loaded_mib']} | {t['rss_peak_mib']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="10000,200000,1000000")
    parser.add_argument("--index", default="ivf", help="the item index kind above 50k items")
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--content-variants",
        action="store_true",
        help="per size, a model with content=auto and one with content=off (this tree only)",
    )
    parser.add_argument("--time", nargs=2, metavar=("MODEL", "HISTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:  # the child of time_in_tree
        print(json.dumps(time_path(*args.time, args.repeats)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="catalog-") as tmp:
        for n in (int(x) for x in args.items.split(",")):
            work = (args.workdir or Path(tmp)) / f"items-{n}"
            index = args.index if n > 50_000 else "auto"
            trees = {"this": ROOT}
            if args.content_variants:  # the variants are this tree's: no baseline
                built_rows = build_variants(n, work, index)
            else:
                built_rows = [build(n, work, index)]
                trees |= {"baseline": args.baseline_tree} if args.baseline_tree else {}
            for built in built_rows:
                built["timings"] = {
                    name: time_in_tree(t, built, args.repeats) for name, t in trees.items()
                }
                rows.append(built)
            result = results_header("catalog_scale") | {
                "users": USERS,
                "interactions": INTERACTIONS,
                "rows": [_recorded(r) for r in rows],
                "table_markdown": table(rows),
            }
            publish(result, args.out)  # after each size: a later one may not finish


def _recorded(row: dict) -> dict:
    """A catalog's row as the results file keeps it (not the run's temporary paths)."""
    return {k: v for k, v in row.items() if k not in ("model", "history")}


if __name__ == "__main__":
    main()
