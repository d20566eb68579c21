"""The two-tower model trained on Ray Train (see ``ray_trainer`` for the loop)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
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
    return train_two_towers([(train, "", None)], users, items, config, run)[0]


def train_two_towers(
    parts: Iterable[tuple[pd.DataFrame, str, np.ndarray | None]],
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    config: TwoTowerConfig,
    run: RayRun,
) -> list[TwoTower]:
    """A :class:`TwoTower` fitted on each of ``parts`` (training interactions, a tag, and None
    or the rows to train on starting from the previous part's weights), all in one Ray Train
    run: the cross-fitted model's folds pay Ray Train's start once.

    Each part's examples are staged as it comes and let go (``parts`` may be a generator:
    the driver holds one part's interactions at a time). A part that continues the previous
    one trains after it, in the same worker (the run is then one job after another).
    """
    jobs, starts = [], {}
    previous = None
    for train, tag, only in parts:
        model = TwoTower(config)
        examples = model.prepare(model.prepare_base(train, items), users, items, only)
        if only is not None:  # the previous job's weights, each user's id row mapped
            starts[len(jobs)] = (len(jobs) - 1, model.user_rows(previous))
        fit_rows, val = model.split_validation(examples)
        del examples
        jobs.append((model, stage_examples(model, fit_rows, run, tag), val))
        del fit_rows
        previous = model
    return fit_jobs(jobs, run, starts)
