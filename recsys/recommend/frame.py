"""Top-k rows for many users from an interactions table: the one recommendation path over
the users' states as the training interactions give them (``recsys recommend``, the
evaluation, the monitoring reference and the benchmarks read their lists from here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, USER
from recsys.models.base import Recommender
from recsys.recommend.stages import (
    BATCH_USERS,
    FRAME_COLUMNS,
    RANK,
    SCORE,
    PreparedModel,
    Request,
    prepare,
    recommend,
)
from recsys.state.offline import item_context, states_from_interactions
from recsys.state.user import UserState


def recommend_frame(
    prepared: PreparedModel | Recommender,
    user_ids: Sequence[str],
    request: Request | None = None,
    *,
    history: pd.DataFrame | None = None,
    states: Sequence[UserState] | None = None,
) -> pd.DataFrame:
    """Top-k rows for many users: each user's state and the items' context from ``history``
    (the offline side, ``recsys.state.offline``) unless ``states`` (and the prepared
    model's ``items``) are given.

    Returns:
        ``user_id, item_id, score, rank, reason, source``, users in the order given (each
        once), ranks 1-based.
    """
    prepared = prepared if isinstance(prepared, PreparedModel) else prepare(prepared)
    request = request or Request()
    if not len(prepared.item_ids):
        raise RecsysError(f"{prepared.model.kind}: the model is not fitted")
    user_ids = list(dict.fromkeys(str(u) for u in user_ids))
    if states is None:
        states = states_from_interactions(history, user_ids, prepared.recent_n)
    items = prepared.items
    if items is None and history is not None and prepared.model.state_spec().context:
        items = item_context(history, prepared.item_ids)
    rows: list[tuple] = []
    for start in range(0, len(states), BATCH_USERS):
        for answer in recommend(prepared, states[start : start + BATCH_USERS], request, items):
            rows.extend(
                (answer.user_id, i.item_id, i.score, i.rank, i.reason, i.source)
                for i in answer.items
            )
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return frame.astype({USER: object, ITEM: object, SCORE: np.float64, RANK: np.int64})
