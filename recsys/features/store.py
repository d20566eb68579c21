"""The feature store: one :class:`FeatureStore` over a Feast repository (training sets,
online reads, pushes, the build's metadata). The repository as a folder (where it is, which
configuration picks the online store, ``feast apply``) is :mod:`recsys.features.repository`.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.io import INTERACTION_COLUMNS, TS
from recsys.data.split import read_split, split_lineage
from recsys.features import offline_store
from recsys.features.build import (
    META_FILE,
    FeatureConfig,
    StoreMeta,
    build_features,
    read_store_meta,
)
from recsys.features.online_store import OnlineFeatures
from recsys.features.repository import YAML, Online, feast_apply, online_kind, store_yaml
from recsys.features.training_sets import read_training_set_meta, write_training_dir
from recsys.state.user import TICK

DEFAULT_SERVICE = "ranker_v1"


class FeatureStore:
    """The feature store of one Feast repository, as Feast's ``FeatureStore`` is one object
    for its repository: apply and materialize, point-in-time training sets, online reads,
    pushes, and the metadata the build records. Wraps one ``feast.FeatureStore``, opened on
    first use (Feast is slow to import).

    Args:
        repo: the repository folder (``feature_store*.yaml``, the definitions, ``data/``).
        online: the online store, ``sqlite`` or ``redis`` (default: ``$RECSYS_FEAST_ONLINE``,
            else ``sqlite``).
    """

    def __init__(self, repo: str | Path, online: str | None = None) -> None:
        self.repo, self._online = Path(repo), online
        self._feast, self._readers = None, {}

    @property
    def kind(self) -> Online:
        """The online store: ``sqlite`` or ``redis`` (:func:`online_kind`)."""
        return online_kind(self._online)

    @property
    def feast(self):
        """The ``feast.FeatureStore`` on the repository with the chosen online store."""
        if self._feast is None:
            os.environ.setdefault("FEAST_USAGE", "False")
            from feast import FeatureStore as FeastStore

            path = store_yaml(self.repo, self.kind)  # the repository: the YAML's own folder
            self._feast = FeastStore(repo_path=self.repo_path, fs_yaml_file=path.resolve())
        return self._feast

    def open(self) -> FeatureStore:
        """This store, its Feast store opened now: a misconfigured online store fails here,
        not at the first read."""
        _ = self.feast
        return self

    @property
    def repo_path(self) -> str:
        """The repository's absolute path (as ``feast.FeatureStore.repo_path``)."""
        return str(self.repo.resolve())

    @property
    def built(self) -> bool:
        """Whether the repository has its configuration and built tables (``data/``)."""
        return (self.repo / YAML["sqlite"]).exists() and (self.repo / "data").exists()

    # -- the registry and the online store -----------------------------------------------
    def apply(self, *, if_changed: bool = False) -> str:
        """``feast apply`` on the repository (:func:`recsys.features.repository.feast_apply`;
        with ``if_changed``, only when its definitions or configuration changed). The opened
        Feast store is dropped: the next use reads the new registry.

        Returns:
            The CLI's output (empty when skipped).
        """
        out = feast_apply(self.repo, self.kind, if_changed=if_changed)
        self._feast, self._readers = None, {}
        return out

    def materialize(self, end: datetime | None = None) -> dict:
        """Load the latest feature values up to ``end`` (default now) into the online store
        (:func:`recsys.features.offline_store.materialize`).

        Returns:
            ``{view: rows in the source up to end}``, the elapsed seconds, the online store.
        """
        done = offline_store.materialize(self.feast, end or datetime.now(UTC))
        return {**done, "online": self.kind}

    def refresh(
        self,
        interactions: pd.DataFrame,
        users: pd.DataFrame | None,
        items: pd.DataFrame | None,
        *,
        config: FeatureConfig | None = None,
        lineage: list[str] | None = None,
    ) -> dict:
        """Build the feature tables into ``repo/data``, ``feast apply``, materialize.

        Args:
            interactions: the interactions the features are computed from.
            users: the users' side table, if any.
            items: the items' side table, if any.
            config: the build's settings (recent window, engine).
            lineage: the data the interactions stand for (default: their checksum); the
                serving readiness check compares it with the served version's.

        Returns:
            Rows per table, and the seconds each step took.
        """
        t0 = time.perf_counter()
        rows = build_features(interactions, users, items, self.repo / "data", config, lineage)
        t1 = time.perf_counter()
        self.apply(if_changed=True)
        t2 = time.perf_counter()
        materialized = self.materialize()
        return {
            "rows": rows,
            "build_s": round(t1 - t0, 2),
            "apply_s": round(t2 - t1, 2),
            "materialize_s": round(materialized["seconds"], 2),
            "online": materialized["online"],
        }

    # -- the offline store: training sets ------------------------------------------------
    def training_set(
        self, interactions: pd.DataFrame, service: str = DEFAULT_SERVICE
    ) -> pd.DataFrame:
        """Interactions joined point-in-time to the features of ``service``
        (:func:`recsys.features.offline_store.training_set`)."""
        return offline_store.training_set(self.feast, interactions, service)

    def save_training_set(
        self, interactions: pd.DataFrame, path: str | Path, service: str = DEFAULT_SERVICE
    ) -> Path:
        """The training set written by the offline store's engine to ``path`` and registered
        as a Feast saved dataset (:func:`recsys.features.offline_store.save_training_set`).

        Returns:
            ``path``.
        """
        return offline_store.save_training_set(self.feast, interactions, path, service)

    def load_training_set(
        self, interactions: pd.DataFrame, service: str = DEFAULT_SERVICE
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The point-in-time training set of ``service`` for ``interactions``.

        Returns:
            ``(interactions, users, items, training_set)``: the labelled rows, the user and
            item attributes the models take (both from the joined training set, not the raw
            side tables; items are the whole catalog as of the last interaction), and the
            joined frame.
        """
        joined = self.training_set(interactions, service)
        as_of = joined[TS].max() + TICK if len(joined) else pd.Timestamp.now(tz="UTC")
        users, items = self.side_tables(joined, self.catalog(as_of))
        rows = joined[[c for c in INTERACTION_COLUMNS if c in joined]]
        return rows, users, items, joined

    def write_training_set(
        self, split_dir: str | Path, out: str | Path, service: str = DEFAULT_SERVICE
    ) -> dict[str, Any]:
        """The split's point-in-time training set of ``service`` as a training-set directory
        (:func:`recsys.features.training_sets.write_training_dir`).

        Returns:
            The directory's metadata (``training_set.json``).
        """
        return write_training_dir(
            split_dir, out, lambda rows: self.load_training_set(rows, service), service
        )

    def catalog(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """Every item with its profile as of ``as_of``
        (:func:`recsys.features.offline_store.catalog`)."""
        return offline_store.catalog(self.feast, as_of)

    side_tables = staticmethod(offline_store.side_tables)

    # -- the online store: reads and pushes ----------------------------------------------
    def online(self, service: str = DEFAULT_SERVICE) -> OnlineFeatures:
        """The online reads of ``service``'s features and the users' state (``read_user``,
        ``read_users``, ``item_context``, ``read``), made once per service."""
        if service not in self._readers:
            self._readers[service] = OnlineFeatures(self.feast, service)
        return self._readers[service]

    def get_online_features(self, features: list[str], entity_rows):
        """Feast's online read (its ``OnlineResponse``) of any ``features``
        (``view:feature``) for ``entity_rows``."""
        return self.feast.get_online_features(features=features, entity_rows=entity_rows)

    def push(self, source_name: str, frame: pd.DataFrame, to=None) -> None:
        """Write ``frame`` through the push source ``source_name``.

        Args:
            source_name: a ``PushSource`` of the repository.
            frame: its rows (entity keys, features, event timestamp).
            to: Feast's ``PushMode`` (default: the online store only).
        """
        from feast.data_source import PushMode

        self.feast.push(source_name, frame, to=PushMode.ONLINE if to is None else to)

    # -- metadata ------------------------------------------------------------------------
    def meta(self) -> StoreMeta | None:
        """What the feature build records of itself (``data/feature_meta.json``: what the
        readiness check compares with a version), or None when it was never built."""
        return read_store_meta(self.repo / "data")

    def meta_stamp(self) -> float:
        """The build metadata's modification time (-1 when there is none): a new build
        changes it."""
        try:
            return (self.repo / "data" / META_FILE).stat().st_mtime
        except OSError:
            return -1.0

    def materialized(self) -> dict[str, datetime | None]:
        """Each feature view's latest materialized end time (None: never materialized)."""
        return {v.name: v.most_recent_end_time for v in self.feast.list_feature_views()}

    training_set_meta = staticmethod(read_training_set_meta)


def write_training_set(
    split_dir: str | Path,
    out: str | Path,
    *,
    feature_repo: str | Path | None = None,
    feature_service: str = DEFAULT_SERVICE,
) -> dict[str, Any]:
    """The rows and attributes the models learn from, as a training-set directory.

    With ``feature_repo``, the point-in-time training set of ``feature_service``
    (:meth:`FeatureStore.write_training_set`); without it, the split's own side tables.

    Returns:
        The directory's metadata (``training_set.json``).
    """
    if feature_repo:
        return FeatureStore(feature_repo).write_training_set(split_dir, out, feature_service)
    return write_training_dir(split_dir, out)


def materialize_split(split_dir: str | Path, feature_repo: str | Path) -> dict[str, Any]:
    """Build the feature tables from a split's training rows only, ``feast apply``,
    materialize (:meth:`FeatureStore.refresh`).

    Returns:
        What :meth:`FeatureStore.refresh` returns, with the rows summed over the tables.
    """
    train, users, items = read_split(split_dir)
    done = FeatureStore(feature_repo).refresh(train, users, items, lineage=split_lineage(split_dir))
    return {**done, "rows": sum(done["rows"].values())}
