"""The online half of :class:`recsys.features.store.FeatureStore`: reads for serving, the
user's state and features in one read, candidates' features in one batched read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, USER
from recsys.state.activity import USER_CONTEXT
from recsys.state.items import ITEM_CONTEXT
from recsys.state.user import RECENT, SEEN, UserState, from_row

USER_VIEWS = ("user_profile", "user_activity")
ITEM_VIEWS = ("item_profile", "item_stats")
STATE_FEATURES = (f"user_state:{SEEN}", f"user_state:{RECENT}")


@dataclass
class OnlineRead:
    """The user's state, the user's other features, and one row per requested item."""

    state: UserState
    user: dict  # feature name -> value (None where the store has nothing)
    items: pd.DataFrame  # item_id plus the item features, in the requested order

    @property
    def known_user(self) -> bool:
        return not self.state.empty or any(v is not None for v in self.user.values())


class OnlineFeatures:
    """Reads a feature service's features and the user state from the online store (SQLite
    or Redis). Made by :meth:`recsys.features.store.FeatureStore.online`.

    Args:
        store: a ``feast.FeatureStore``.
        service: the feature service whose user and item views to read.
    """

    def __init__(self, store, service: str) -> None:
        self.store = store
        self.service = store.get_feature_service(service)
        self.user_features: list[str] = []
        self.item_features: list[str] = []
        for projection in self.service.feature_view_projections:
            target = self.user_features if projection.name in USER_VIEWS else self.item_features
            target.extend(f"{projection.name}:{f.name}" for f in projection.features)
        self._user_read = [*STATE_FEATURES, *self.user_features]

    def read_user(self, user_id: str) -> tuple[UserState, dict]:
        """One online read of the user's key: the state and the other user features."""
        return self.read_users([user_id])[0]

    def read_users(self, user_ids) -> list[tuple[UserState, dict]]:
        """One online read of several users' keys (a batch of requests): each state and the
        other user features, in order."""
        ids = [str(u) for u in user_ids]
        if not ids:
            return []
        read = self.store.get_online_features(
            features=self._user_read, entity_rows=[{USER: u} for u in ids]
        ).to_dict()
        out = []
        for n, user in enumerate(ids):
            values = {name: _plain(column[n]) for name, column in read.items() if name != USER}
            features = {k: v for k, v in values.items() if k not in (SEEN, RECENT)}
            out.append((from_row(user, values, USER_CONTEXT), features))
        return out

    def item_context(self, item_ids) -> dict[str, np.ndarray]:
        """``ITEM_CONTEXT`` of ``item_ids`` as float arrays (NaN where the store has none), in
        one batched read: what a replica caches per feature build for the ranker."""
        ids = [str(i) for i in item_ids]
        read = self.store.get_online_features(
            features=[f"item_stats:{k}" for k in ITEM_CONTEXT], entity_rows={ITEM: ids}
        ).to_dict()
        return {k: np.asarray(read[k], dtype=np.float64) for k in ITEM_CONTEXT}  # None → NaN

    def read(self, user_id: str, item_ids: list[str] | tuple[str, ...] = ()) -> OnlineRead:
        """The user's state and features, and those of ``item_ids``.

        Two online reads: the user's one key, then every candidate in one batched read. One
        call over (user, item) rows would return — and convert — the user's values once per
        item, slower (``benchmarks/features.py``).
        """
        state, user = self.read_user(user_id)
        item_cols = [f.split(":")[1] for f in self.item_features]
        if not item_ids:
            return OnlineRead(state, user, pd.DataFrame(columns=[ITEM, *item_cols]))
        items = self.store.get_online_features(
            features=self.item_features, entity_rows={ITEM: [str(i) for i in item_ids]}
        ).to_dict()
        frame = pd.DataFrame({c: items[c] for c in [ITEM, *item_cols] if c in items})
        return OnlineRead(state, user, frame)


def _plain(value):
    """Feast returns NaN or None for a missing value; lists come as lists or arrays."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
