"""Online features for serving: one user and a few hundred candidate items, batched."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recsys.data.io import ITEM, TS, USER
from recsys.features.store import DEFAULT_SERVICE

USER_VIEWS = ("user_profile", "user_activity")
ITEM_VIEWS = ("item_profile", "item_stats")


@dataclass
class OnlineRead:
    """The user's features and one row per requested item."""

    user: dict  # feature name -> value (None where the store has nothing)
    items: pd.DataFrame  # item_id plus the item features, in the requested order

    @property
    def known_user(self) -> bool:
        return any(v is not None for v in self.user.values())


class OnlineFeatures:
    """Reads a feature service's features from the online store (SQLite or Redis).

    Args:
        store: a ``feast.FeatureStore``.
        service: the feature service to read (its user and item views).
    """

    def __init__(self, store, service: str = DEFAULT_SERVICE) -> None:
        self.store = store
        self.service = store.get_feature_service(service)
        self.user_features, self.item_features = [], []
        for projection in self.service.feature_view_projections:
            target = self.user_features if projection.name in USER_VIEWS else self.item_features
            target.extend(f"{projection.name}:{f.name}" for f in projection.features)

    def read(self, user_id: str, item_ids: list[str] | tuple[str, ...] = ()) -> OnlineRead:
        """The user's features and those of ``item_ids``.

        Two online reads: the user's one key, then every candidate in one batched read. One
        call over (user, item) rows would return — and convert — the user's values once per
        item: 20 ms instead of 13 ms for 200 candidates on SQLite (benchmarks/features.py).
        """
        user = self.store.get_online_features(
            features=self.user_features, entity_rows={USER: [str(user_id)]}
        ).to_dict()
        user_cols = [f.split(":")[1] for f in self.user_features]
        item_cols = [f.split(":")[1] for f in self.item_features]
        features = {c: _plain(user[c][0]) for c in user_cols if c in user}
        if not item_ids:
            return OnlineRead(user=features, items=pd.DataFrame(columns=[ITEM, *item_cols]))
        items = self.store.get_online_features(
            features=self.item_features, entity_rows={ITEM: [str(i) for i in item_ids]}
        ).to_dict()
        frame = pd.DataFrame({c: items[c] for c in [ITEM, *item_cols] if c in items})
        return OnlineRead(user=features, items=frame)


def _plain(value):
    """Feast returns NaN or None for a missing value; lists come as lists or arrays."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def history_frame(user_id: str, user: dict) -> pd.DataFrame:
    """The user's ``last_items`` as interaction rows (most recent last), the shape a model's
    ``recommend(history=...)`` takes: the online features drive exclude-seen and the towers."""
    last = list(user.get("last_items") or [])[::-1]
    stamps = pd.date_range(end=pd.Timestamp("2000-01-01", tz="UTC"), periods=len(last), freq="s")
    return pd.DataFrame({USER: [str(user_id)] * len(last), ITEM: last, TS: stamps})
