"""The feature store: one :class:`FeatureStore` over a Feast repository (training sets,
online reads, pushes, the build's metadata), and the repository folder's helpers.

The online store is chosen by configuration only: ``feature_store.yaml`` (SQLite, the embedded
default) or ``feature_store.redis.yaml`` (Redis at ``$REDIS_CONNECTION_STRING``), picked with
``online="redis"`` or ``RECSYS_FEAST_ONLINE=redis``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import INTERACTION_COLUMNS, TS
from recsys.data.split import read_split, split_lineage
from recsys.features import offline_store
from recsys.features.build import (
    META_FILE,
    TABLES,
    FeatureConfig,
    StoreMeta,
    build_features,
    read_store_meta,
)
from recsys.features.online_store import OnlineFeatures
from recsys.features.training_sets import read_training_set_meta, write_training_dir
from recsys.files import atomic_path
from recsys.state.user import TICK

Online = Literal["sqlite", "redis"]
YAML = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
DEFAULT_SERVICE = "ranker_v1"


def default_repo() -> Path:
    """``$RECSYS_FEATURE_REPO``, else ``./feature_repo``."""
    return Path(os.environ.get("RECSYS_FEATURE_REPO", "feature_repo"))


def copy_definitions(
    source: str | Path, dest: str | Path, overrides: dict[str, Path] | None = None
) -> Path:
    """A repository at ``dest`` with the definitions of ``source`` (its ``.py`` and ``.yaml``
    files) and ``overrides`` (``{name: file}``, added or replacing); ``data/`` is left as it
    is. Each file is written to a temporary name and renamed, so concurrent copies (one per
    pod) never expose a half-written definition to a reader."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in Path(source).iterdir() if p.suffix in (".py", ".yaml")}
    for name, path in {**files, **(overrides or {})}.items():
        with atomic_path(dest / name) as tmp:
            shutil.copyfile(path, tmp)
    return dest


def init_repo(source: str | Path, dest: str | Path, store_yaml: str | Path | None = None) -> Path:
    """Make ``dest`` a repository with the definitions of ``source``, and with ``store_yaml``
    (when given) as its Redis configuration; ``data/`` is created or kept."""
    source = Path(source)
    if not any(source.glob("*.py")):
        raise RecsysError(f"{source}: no Feast definitions (*.py) to copy")
    overrides = None
    if store_yaml is not None:
        if not Path(store_yaml).is_file():
            raise RecsysError(f"{store_yaml}: no such store configuration")
        overrides = {YAML["redis"]: Path(store_yaml)}
    dest = copy_definitions(source, dest, overrides)
    (dest / "data").mkdir(exist_ok=True)
    return dest


def online_kind(online: str | None = None) -> Online:
    """``online``, else ``$RECSYS_FEAST_ONLINE``, else ``sqlite``; checked."""
    kind = online or os.environ.get("RECSYS_FEAST_ONLINE", "sqlite")
    if kind not in YAML:
        raise RecsysError(f"online store {kind!r}: expected one of {sorted(YAML)}")
    return kind  # type: ignore[return-value]


def store_yaml(repo: str | Path, online: str | None = None) -> Path:
    """The ``feature_store*.yaml`` of ``repo`` for the chosen online store."""
    repo = Path(repo)
    path = repo / YAML[online_kind(online)]
    if not path.exists():
        raise RecsysError(f"{repo}: not a Feast repository (no {path.name})")
    if online_kind(online) == "redis" and not os.environ.get("REDIS_CONNECTION_STRING"):
        raise RecsysError("the Redis online store needs REDIS_CONNECTION_STRING (host:port)")
    return path


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
    def apply(self) -> str:
        """``feast apply`` on the repository (the real CLI, in a child process: Feast imports
        the repository's modules, and a fresh process keeps one repository's modules from
        another's). The opened Feast store is dropped: the next use reads the new registry.

        Returns:
            The CLI's output.
        """
        repo = self.repo.resolve()
        missing = [t for t in TABLES if not (repo / "data" / f"{t}.parquet").exists()]
        if missing:
            raise RecsysError(
                f"{repo}/data: no {', '.join(missing)} table(s); run `recsys features build` first"
            )
        env = {**os.environ, "FEAST_USAGE": "False"}
        config = str(store_yaml(repo, self.kind))
        cmd = [sys.executable, "-m", "feast.cli.cli", "-f", config, "apply"]
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RecsysError(f"feast apply in {repo} failed:\n{proc.stderr[-3000:]}")
        self._feast, self._readers = None, {}
        return proc.stdout

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
        self.apply()
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
