"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training.ray_trainer import FAIL_AT_EPOCH_ENV, fit_jobs
from recsys.training.runs import RayRun
from recsys.training.staging import stage_examples

__all__ = ["FAIL_AT_EPOCH_ENV", "RayRun", "train_two_tower", "train_two_towers"]


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
    return train_two_towers([(train, "")], users, items, config, run)[0]


def train_two_towers(
    parts: Iterable[tuple[pd.DataFrame, str]],
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    config: TwoTowerConfig,
    run: RayRun,
) -> list[TwoTower]:
    """A :class:`TwoTower` fitted on each of ``parts`` (training interactions and a tag),
    all in one Ray Train run: the cross-fitted model's folds pay Ray Train's start once.

    Each part's examples are staged as it comes and let go (``parts`` may be a generator:
    the driver holds one part's interactions at a time).
    """
    jobs = []
    for train, tag in parts:
        model = TwoTower(config)
        examples = model.prepare(model.prepare_base(train, items), users, items)
        fit_rows, val = model.split_validation(examples)
        del examples
        jobs.append((model, stage_examples(model, fit_rows, run, tag), val))
        del fit_rows
    return fit_jobs(jobs, run)
