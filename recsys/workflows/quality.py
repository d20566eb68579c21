"""The quality run behind ``recsys benchmark quality`` and ``make benchmark-quality``: per
protocol, split, train every model, recommend through the one recommendation path, score; and
the benchmark's results (the tables beside the published figures, the JSON).

It fits (``recsys.training``) and evaluates (``recsys.evaluation``), so it lives above both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys.config import RecsysError
from recsys.data import movielens
from recsys.data.io import read_side_tables
from recsys.data.split import split, write_split
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.quality import (
    BASELINE_SPECS,
    BENCHMARK_MODELS,
    OPTION_MODELS,
    PUBLISHED_MOVIELENS_100K,
    SEEDED,
    ModelSpec,
    quality_summary,
    source_recall,
)
from recsys.evaluation.tables import markdown_table, results_header
from recsys.files import write_json
from recsys.models.kinds import protocol_params
from recsys.recommend import Request, recommend_frame
from recsys.training.train import TrainArgs, fit_model


@dataclass
class QualityRun:
    """Settings of one quality run on a dataset directory."""

    workdir: Path
    dataset: Path | None = None  # default: MovieLens-100k, fetched on first use
    models: tuple[ModelSpec, ...] = BASELINE_SPECS
    protocols: tuple[str, ...] = ("stratified",)
    seeds: tuple[int, ...] = (42,)  # training seeds of the SEEDED models
    k: int = 10
    seed: int = 42  # the split's
    validation: bool = False  # also score on a validation split carved from train


def run_quality(run: QualityRun, log=print, on_rows=None) -> list[dict]:
    """Per protocol (and on a validation split carved from train, when asked): split, train
    every model, recommend through the one recommendation path, evaluate; one row per
    (protocol, model, seed), and for the multi-stage model each source's recall@100.

    Neural models and the rankers train on Ray Train (a local Ray unless ``RAY_ADDRESS``).
    ``on_rows`` receives the rows after each split.
    """
    dataset = run.dataset or movielens.fetch()
    interactions = pd.read_parquet(dataset / "interactions.parquet")
    rows = []
    for protocol in run.protocols:
        train, test = split(interactions, protocol, seed=run.seed)
        splits = [(protocol, train, test)]
        if run.validation:  # the choices are made here, never on the test split
            fit_part, val = split(train, protocol, seed=run.seed + 1, ratio=0.8)
            splits.insert(0, (f"{protocol}-validation", fit_part, val))
        for name, fit_rows, held in splits:
            rows += _quality_on_split(run, dataset, name, fit_rows, held, log)
            if on_rows is not None:  # results so far, written as they come
                on_rows(rows)
    return rows


def _quality_on_split(run: QualityRun, dataset: Path, name, train, test, log) -> list[dict]:
    workdir = run.workdir / name
    protocol = name.removesuffix("-validation")
    split_dir = write_split(
        train, test, workdir / "split", side_from=dataset, params={"protocol": protocol}
    )
    log(f"{name}: {len(train)} train / {len(test)} test rows -> {split_dir}")
    users, items = read_side_tables(split_dir)
    user_ids = sorted(set(train["user_id"]) & set(test["user_id"]))
    rows = []
    for spec in run.models:
        for seed in run.seeds if spec.label in SEEDED else (None,):
            params = protocol_params(spec.kind, protocol, spec.params)
            if seed is not None:
                params = {**params, "seed": seed}
            tag = spec.label if seed is None else f"{spec.label}-seed{seed}"
            t0 = time.perf_counter()
            args = TrainArgs(
                data=split_dir,
                model=spec.kind,
                out=workdir / "models" / tag,
                params=params,
                run_name=f"{workdir.name}-{tag}",
                storage_path=str(run.workdir / "checkpoints"),
            )
            model = fit_model(spec.kind, train, users, items, params, args=args)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            recs = recommend_frame(model, user_ids, Request(k=run.k), history=train)
            rec_s = time.perf_counter() - t0
            metrics = ranking_metrics(recs, test, run.k, train=train).as_dict()
            row = {"protocol": name, "model": spec.label, "seed": seed, **metrics}
            row |= {"fit_s": round(fit_s, 3), "recommend_s": round(rec_s, 3)}
            if spec.kind == "multistage" and seed == run.seeds[0]:
                row["sources"] = source_recall(model, train, test, user_ids)
            rows.append(row)
            log(f"{name} {tag}: nDCG@{run.k} {metrics['ndcg']:.4f}  (fit {fit_s:.1f}s)")
    return rows


def select_models(labels: str | None, available=BENCHMARK_MODELS) -> tuple:
    """The model specs named in a comma-separated list (all of ``available`` when None; the
    options, :data:`OPTION_MODELS`, only by name)."""
    if not labels:
        return tuple(available)
    by_label = {m.label: m for m in (*available, *OPTION_MODELS)}
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in wanted if label not in by_label]
    if unknown:
        raise RecsysError(f"--models: unknown {unknown}; expected some of {list(by_label)}")
    return tuple(by_label[label] for label in wanted)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quality_benchmark(
    out: Path,
    workdir: Path,
    k: int = 10,
    models: tuple | None = None,
    protocols: tuple[str, ...] = ("stratified",),
    seeds: tuple[int, ...] = (42,),
    validation: bool = False,
    log: Callable[[str], None] = _stderr,
) -> dict:
    """MovieLens-100k per protocol, every model we have (the shipped one per seed), each
    candidate source's recall, beside the published table (stratified protocol); the results
    written to ``out`` after each split.

    Returns:
        The results (the header, the rows, the summary, ``table_markdown``).
    """
    run = QualityRun(
        workdir=workdir,
        k=k,
        models=models or BENCHMARK_MODELS,
        protocols=protocols,
        seeds=seeds,
        validation=validation,
    )

    def write(rows: list[dict]) -> dict:
        return _write_quality(out, rows, k, seeds)

    rows = run_quality(run, log=log, on_rows=write)
    return write(rows)


def _write_quality(out: Path, rows: list[dict], k: int, seeds: tuple[int, ...]) -> dict:
    tables = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        mine = [
            {**r, "model": r["model"] + (f" (seed {r['seed']})" if r["seed"] is not None else "")}
            for r in rows
            if r["protocol"] == protocol
        ]
        published = PUBLISHED_MOVIELENS_100K if protocol == "stratified" else []
        table = markdown_table([*mine, *published], extra=(("fit_s", "fit s"),))
        tables.append(f"{protocol} protocol, k={k}\n\n{table}")
        sources = [(r["model"], r["sources"]) for r in mine if r.get("sources")]
        for model, recall in sources:
            figures = ", ".join(f"{name} {value}" for name, value in recall.items())
            tables.append(f"{protocol}: {model} candidate sources: {figures}")
    result = {
        **results_header("quality_movielens"),
        "dataset": "movielens-100k",
        "protocols": {
            "stratified": "per item 75/25, seed 42 (MS Recommenders python_stratified_split)",
            "temporal": "per user, the latest 25% of interactions held out (MS Recommenders "
            "python_chrono_split by user)",
            "*-validation": "the same protocol again inside the training split (80/20): "
            "where the choices are made",
        },
        "k": k,
        "seeds": list(seeds),
        "rows": rows,
        "summary": quality_summary(rows, k),
        "published": PUBLISHED_MOVIELENS_100K,
        "table_markdown": "\n\n".join(tables),
    }
    write_json(result, out)
    return result
