"""``train(args) -> model directory``: the one training entry point for every model kind.

The CLI, the benchmarks and the pipeline components call this module; it holds the only
fit-and-save. Closed-form and counting models
fit in-process; the neural models train on Ray Train (a local Ray by default, ``RAY_ADDRESS``
for a cluster).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.config import RecsysError, recsys_home
from recsys.data.io import (
    interactions_checksum,
    read_side_tables,
    resolve_interactions,
)
from recsys.data.split import read_split, split_lineage, split_protocol
from recsys.data.validate import load_interactions
from recsys.features.store import FeatureStore
from recsys.models.base import Recommender
from recsys.models.kinds import create_model, protocol_params
from recsys.models.manifest import read_manifest
from recsys.models.multistage.crossfit import StageTrainer
from recsys.models.names import NEURAL_KINDS
from recsys.models.rankers.gbdt import GBDTRanker
from recsys.models.trainable import Trainable
from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training.args import TrainArgs
from recsys.training.gbdt import fit_gbdt_on_ray
from recsys.training.ray_trainer import fit_on_ray
from recsys.training.runs import CHECKPOINT_EVERY_S, RayRun
from recsys.training.two_tower import train_two_tower, train_two_towers

log = logging.getLogger(__name__)


def fit_model(
    kind: str,
    train: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    params: dict[str, Any] | None = None,
    *,
    args: TrainArgs | None = None,
) -> Recommender:
    """Fit one model of ``kind``: neural kinds through Ray Train, the others in-process."""
    if kind not in NEURAL_KINDS:
        if args is not None and (args.gpu or args.resume):
            raise RecsysError(f"--gpu and --resume apply to neural models, not {kind!r}")
        return create_model(kind, params).fit(train, users, items)
    params = dict(params or {})
    gpu = bool(args is not None and args.gpu)
    if gpu:
        _require_gpu()
        if kind == "multistage":  # the network parts train on the GPU; the trees on CPUs
            params["two_tower"] = {**params.get("two_tower", {}), "use_gpu": True}
        else:
            params["use_gpu"] = True
    storage = (
        args.storage_path if args and args.storage_path else str(recsys_home() / "checkpoints")
    )
    name = args.run_name if args and args.run_name else (args.out.name if args else kind)

    def run(tag: str, use_gpu: bool = False) -> RayRun:
        return RayRun(
            storage_path=storage,
            name=f"{name}-{tag}" if tag else name,
            resume=bool(args and args.resume),
            num_workers=args.num_workers if args else 1,
            use_gpu=use_gpu,
            checkpoint_every_s=args.checkpoint_every_s if args else CHECKPOINT_EVERY_S,
        )

    model = create_model(kind, params)
    if kind == "two_tower":
        return train_two_tower(train, users, items, model.config, run("", model.config.use_gpu))
    config = model.config
    if gpu and config.n_two_tower == 0 and config.ranker == "gbdt":
        log.warning("--gpu: this multi-stage model has no network part (gbdt ranker, no two-tower)")
    model.trainer = RayStageTrainer(run, gpu)
    return model.fit(train, users, items)


class RayStageTrainer(StageTrainer):
    """The multi-stage model's learned parts on Ray Train: the two-tower sources and the DCN
    on ``TorchTrainer`` (on the GPU with ``gpu``), the LightGBM ranker on ``LightGBMTrainer``.

    Args:
        run: the Ray Train run settings for a part, by its tag.
        gpu: train the DCN ranker on a GPU.
    """

    def __init__(self, run: Callable[..., RayRun], gpu: bool = False) -> None:
        self.run, self.gpu = run, gpu

    def two_towers(self, parts, users, items, config: TwoTowerConfig) -> list[TwoTower]:
        return train_two_towers(parts, users, items, config, self.run("two-towers", config.use_gpu))

    def ranker(self, ranker: GBDTRanker | Trainable, fit_rows, val, tag: str):
        if isinstance(ranker, GBDTRanker):  # LightGBM on Ray Train's LightGBMTrainer
            return fit_gbdt_on_ray(ranker, fit_rows, val, self.run(tag))
        return fit_on_ray(ranker, fit_rows, val, self.run(tag, self.gpu))  # the DCN


def _require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise RecsysError("--gpu: no CUDA device is visible on this machine")


def train(args: TrainArgs) -> Path:
    """Fit a model on validated interactions (a file or a dataset directory) and save it.

    Returns:
        The model directory (``args.out``).
    """
    file, side_dir = resolve_interactions(args.data)
    interactions, _ = load_interactions(
        file,
        quarantine_to=args.out.with_name(args.out.name + ".quarantine.parquet"),
        max_bad_share=args.max_bad_share,
        rating_range=None,
    )
    service = None
    if args.features is not None:  # side features from Feast's point-in-time join
        service = args.feature_service
        store = FeatureStore(args.features)
        interactions, users, items, _ = store.load_training_set(interactions, service)
    else:
        users, items = read_side_tables(side_dir)
    lineage = split_lineage(args.data) if args.data.is_dir() else None
    protocol = split_protocol(args.data) if args.data.is_dir() else None
    return _fit_and_save(
        args, interactions, users, items, service=service, lineage=lineage, protocol=protocol
    )


def train_from_set(
    data_dir: str | Path,
    out: str | Path,
    *,
    kind: str = "multistage",
    params: dict[str, Any] | None = None,
    gpu: bool = False,
    num_workers: int = 1,
    storage_path: str | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Fit ``kind`` on a training-set directory (``FeatureStore.write_training_set``:
    rows already validated, the feature service and lineage in its metadata) and save it.

    Returns:
        The new model version's id, its kind and the number of training rows.
    """
    show_progress()
    data_dir = Path(data_dir)
    rows, users, items = read_split(data_dir)
    meta = FeatureStore.training_set_meta(data_dir)
    args = TrainArgs(
        data=data_dir,
        model=kind,
        out=Path(out),
        params=params or {},
        gpu=gpu,
        num_workers=num_workers,
        storage_path=storage_path,
        run_name=run_name,
    )
    service, lineage = meta.get("feature_service"), meta.get("lineage")
    protocol = meta.get("protocol")
    _fit_and_save(args, rows, users, items, service=service, lineage=lineage, protocol=protocol)
    return {"version": read_manifest(args.out).version, "kind": kind, "rows": len(rows)}


def show_progress() -> None:
    """Print the training's progress lines (``recsys.progress``) on stdout, once per process:
    a pipeline task's stdout is its log, and ``recsys pipeline run`` echoes these lines."""
    logger = logging.getLogger("recsys.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("progress: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _fit_and_save(
    args: TrainArgs,
    rows: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    *,
    service: str | None,
    lineage: list[str] | None,
    protocol: str | None = None,
) -> Path:
    """The one fit-and-save: fit (with what the kind learns for the split's ``protocol``
    under the given parameters), then write the model directory with the rows' checksum,
    the training metrics, the feature service read and the data lineage."""
    params = protocol_params(args.model, protocol, args.params)
    if params != args.params:
        added = {k: v for k, v in params.items() if args.params.get(k) != v}
        logging.getLogger("recsys.progress").info(
            "%s split: %s trains with %s", protocol, args.model, added
        )
    model = fit_model(args.model, rows, users, items, params, args=args)
    return model.save(
        args.out,
        data_checksum=interactions_checksum(rows),
        metrics=training_metrics(model),
        feature_service=service,
        data_lineage=lineage,
    )


def training_metrics(model: Recommender) -> dict[str, Any]:
    """What a fit leaves for the manifest: the training log and the ANN index's recall."""
    metrics: dict[str, Any] = {}
    if log := getattr(model, "training_log", None):
        metrics["training"] = log
    sources = getattr(model, "sources", None)
    two_tower = model if hasattr(model, "index_info") else getattr(sources, "two_tower", None)
    if two_tower is not None:
        metrics["index"] = two_tower.index_info()
    return metrics
