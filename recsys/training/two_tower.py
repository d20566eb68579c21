"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

import pandas as pd

from recsys.config import ensure_ray
from recsys.models.towers import TwoTowerConfig
from recsys.models.two_tower import TwoTower
from recsys.training.ray_trainer import FAIL_AT_EPOCH_ENV, RayRun, fit_staged, stage_examples

__all__ = ["FAIL_AT_EPOCH_ENV", "RayRun", "train_two_tower"]


def train_two_tower(
    train: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    config: TwoTowerConfig,
    run: RayRun,
) -> TwoTower:
    """Fit a :class:`TwoTower` with Ray Train and return it ready to recommend.

    Args:
        train: training interactions.
        users, items: side tables (optional).
        config: hyper-parameters.
        run: storage, run name, resume and scaling.

    Returns:
        The fitted model, with the best epoch's weights.
    """
    ensure_ray()
    model = TwoTower(config)
    staged, val = _stage(model, train, users, items, run)  # the examples are on disk only
    return fit_staged(model, staged, val, run)


def _stage(model: TwoTower, train, users, items, run: RayRun):
    """The model's vocabularies and its examples written for the workers; the examples in
    memory are freed on return."""
    fit_rows, val = model.split_validation(
        model.prepare(model.prepare_base(train, items), users, items)
    )
    return stage_examples(model, fit_rows, run), val
