"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

import pandas as pd

from recsys.config import ensure_ray
from recsys.models.towers import TwoTowerConfig
from recsys.models.two_tower import TwoTower
from recsys.training.ray_trainer import FAIL_AT_EPOCH_ENV, RayRun, fit_on_ray

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
    train = model.prepare_base(train, items)
    examples = model.prepare(train, users, items)
    fit_rows, val = model.split_validation(examples)
    return fit_on_ray(model, fit_rows, val, run)
