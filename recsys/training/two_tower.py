"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

import pandas as pd

from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training.ray_trainer import (
    FAIL_AT_EPOCH_ENV,
    StagedExamples,
    fit_staged,
    stage_examples,
)
from recsys.training.runs import RayRun

__all__ = ["FAIL_AT_EPOCH_ENV", "RayRun", "fit_staged", "stage_two_tower", "train_two_tower"]


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
    return fit_staged(*stage_two_tower(train, users, items, config, run), run)


def stage_two_tower(
    train: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    config: TwoTowerConfig,
    run: RayRun,
) -> tuple[TwoTower, StagedExamples, object]:
    """The first half of :func:`train_two_tower`: the model's vocabularies, and its examples
    written for the workers (freed here on return). A caller that lets go of ``train`` before
    :func:`~recsys.training.ray_trainer.fit_staged` does not hold it through the run.

    Returns:
        The model, the staged examples and the validation rows.
    """
    model = TwoTower(config)  # Ray starts with the run (fit_staged), not before the staging
    examples = model.prepare(model.prepare_base(train, items), users, items)
    fit_rows, val = model.split_validation(examples)
    del examples
    return model, stage_examples(model, fit_rows, run), val
