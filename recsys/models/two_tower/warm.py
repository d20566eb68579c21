"""A two-tower fit that starts from another one's weights: the multi-stage model's full fit
continued from its last fold's (``MultiStageConfig.two_tower_full_fit="continue"``), in this
process or in a Ray Train worker (``recsys.training.ray_trainer``)."""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
import torch

from recsys.models.two_tower.towers import user_table_dtype

USER_IDS = "user_tower.id.weight"


class WarmStart:
    """:class:`~recsys.models.two_tower.TwoTower`'s warm start (a mixin: it reads the model's
    vocabulary, network and training)."""

    def fit_continued(self, train: pd.DataFrame, users, items, previous, only) -> Self:
        """Fit from ``previous``'s weights (:meth:`start_from`) on the rows of ``train`` that
        ``only`` marks (a bool per row); the examples' histories read every row."""
        self._train(self.prepare(self.prepare_base(train, items), users, items, only), previous)
        return self

    def start_from(self, state: dict, user_rows: np.ndarray) -> None:
        """Load another two-tower's weights over the same catalog, ``state``, into the network:
        each user's id row from ``user_rows`` (:meth:`user_rows`)."""
        stored = user_table_dtype(self.config, len(state[USER_IDS]))
        self.net.load_state_dict(warm_state(state, self.net.state_dict(), user_rows, stored))

    def user_rows(self, previous) -> np.ndarray:
        """``(n_users + 1,)``: each id row of this model in ``previous``'s user table (0, the
        unknown user's zeros, for a user ``previous`` did not have)."""
        return np.r_[0, previous.user_ids.positions(self.user_ids) + 1]


def warm_state(state: dict, own: dict, user_rows: np.ndarray, stored: torch.dtype) -> dict:
    """``state`` (a two-tower's weights) for a network whose own weights are ``own``: the user
    id table's rows picked by ``user_rows`` (another vocabulary of users) and rounded to the
    precision a trained table is ``stored`` at (as the model it comes from keeps them, in this
    process or not), the rest as they are; any other difference of shape is an error (another
    catalog or feature encoding)."""
    out = dict(state)
    rows = torch.as_tensor(user_rows, dtype=torch.long)
    out[USER_IDS] = state[USER_IDS].index_select(0, rows).to(stored)
    for name, tensor in own.items():
        if name not in out or out[name].shape != tensor.shape:
            got = tuple(out[name].shape) if name in out else "missing"
            raise ValueError(
                f"two-tower warm start: {name} is {got}, the network's {tuple(tensor.shape)} "
                "(the two models must share the catalog and the feature encoding)"
            )
    return out
