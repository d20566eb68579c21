"""Online features for serving: one user and a few hundred candidate items in one read."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recsys.data.io import ITEM, TS, USER
from recsys.features.store import DEFAULT_SERVICE

USER_VIEWS = ("user_profile", "user_activity")
ITEM_VIEWS = ("item_profile", "item_stats")


@dataclass
class OnlineRead:
    """What one read returns: the user's features and one row per requested item."""

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
        """The user's features and those of ``item_ids``, in one batched online read.

        Every entity row carries the user and one item; Feast reads each distinct key of each
        view once, so the user's row is fetched once however many items there are.
        """
        items = [str(i) for i in item_ids] or [""]
        rows = [{USER: str(user_id), ITEM: i} for i in items]
        frame = self.store.get_online_features(features=self.service, entity_rows=rows).to_df()
        user_cols = [f.split(":")[1] for f in self.user_features]
        item_cols = [f.split(":")[1] for f in self.item_features]
        first = frame.iloc[0]
        user = {c: _plain(first[c]) for c in user_cols if c in frame}
        item_frame = frame[[ITEM, *[c for c in item_cols if c in frame]]] if item_ids else None
        if item_frame is None:
            item_frame = pd.DataFrame(columns=[ITEM, *item_cols])
        return OnlineRead(user=user, items=item_frame.reset_index(drop=True))


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
