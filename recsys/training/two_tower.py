"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

import pandas as pd

from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training.ray_trainer import FAIL_AT_EPOCH_ENV, fit_staged, stage_examples
from recsys.training.runs import RayRun

__all__ = ["FAIL_AT_EPOCH_ENV", "RayRun", "fit_staged", "train_two_tower"]


def train_two_tower(
    train: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    config: TwoTowerConfig,
    run: RayRun,
) -> TwoTower:
    """Fit a :class:`TwoTower` with Ray Train and return it ready to recommend.

    The model's vocabularies are built and its examples written for the workers first
    (Ray starts with the run, not before the staging); the examples in memory are let go
    before the run.

    Args:
        train: training interactions.
        users, items: side tables (optional).
        config: hyper-parameters.
        run: storage, run name, resume and scaling.

    Returns:
        The fitted model, with the best epoch's weights.
    """
    model = TwoTower(config)
    examples = model.prepare(model.prepare_base(train, items), users, items)
    fit_rows, val = model.split_validation(examples)
    del examples
    staged = stage_examples(model, fit_rows, run)
    del fit_rows
    return fit_staged(model, staged, val, run)
