"""The multi-stage model's gradient-boosted ranker trained by Ray Train's ``LightGBMTrainer``.

Each worker takes whole query groups (a user's candidates: a listwise objective cannot split
one) and LightGBM's own network joins the workers (``get_network_params``); the booster is
reported as the run's checkpoint under ``storage_path/run_name``. One worker on a laptop, as
many as the cluster's RayJob gives on Kubernetes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from recsys.config import ensure_ray
from recsys.models.rankers.gbdt import MODEL_FILE, GBDTRanker, RankingRows, train_booster
from recsys.training.runs import RayRun, delete_dir, storage_filesystem


def _train_loop(cfg: dict) -> None:
    """``train_loop_per_worker``: this worker's queries → LightGBM → the run's checkpoint."""
    import lightgbm as lgb
    import ray
    import ray.train
    from ray.train.lightgbm import get_network_params

    ranker: GBDTRanker = cfg["ranker"]
    fit, val = ray.get(cfg["rows"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    mine = fit.take(np.unique(fit.group, return_inverse=True)[1] % world == rank)
    booster, log = train_booster(
        lgb, ranker.config, ranker.features, mine, val, params=get_network_params()
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            booster.save_model(str(Path(tmp) / MODEL_FILE))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({k: v for k, v in log.items() if v is not None}, checkpoint=checkpoint)


def fit_gbdt_on_ray(
    ranker: GBDTRanker, fit: RankingRows, val: RankingRows | None, run: RayRun
) -> GBDTRanker:
    """Train ``ranker`` on Ray Train; load the booster the run reported into it."""
    import lightgbm as lgb
    import ray
    import ray.train
    from ray.train.lightgbm import LightGBMTrainer

    ensure_ray()
    fs, base = storage_filesystem(run.storage_path)
    delete_dir(fs, f"{base}/{run.name}")  # boosting restarts from nothing: no resume
    trainer = LightGBMTrainer(
        _train_loop,
        train_loop_config={"ranker": ranker, "rows": ray.put((fit, val))},
        scaling_config=run.scaling(),
        run_config=ray.train.RunConfig(
            storage_path=base,
            storage_filesystem=fs,
            name=run.name,
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        ranker.booster = lgb.Booster(model_file=str(Path(d) / MODEL_FILE))
    ranker.training_log = {**result.metrics, "workers": run.num_workers}
    return ranker
