"""The recommender contract that training, evaluation and serving depend on.

A model scores every item of its vocabulary for a batch of users given their history;
:meth:`Recommender.recommend` turns scores into top-k rows, masks what a user has seen and
answers users it cannot score (cold start) from item popularity. A model version is a directory
(``manifest.json`` plus the parts the model writes); :func:`load_model` needs nothing else.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recsys.config import RecsysError, code_version
from recsys.data.io import ITEM, USER, read_json_model, require_columns

MANIFEST = "manifest.json"
ITEMS_FILE = "item_vocab.json"
POPULARITY_FILE = "item_popularity.npy"
BATCH_USERS = 1024


class Manifest(BaseModel):
    """``manifest.json`` of a model version."""

    model_config = ConfigDict(extra="forbid")

    version: str
    kind: str
    created: str
    data_checksum: str | None = None
    feature_service: str | None = None
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    code_version: str
    n_items: int
    n_train_users: int
    parts: list[str] = []


class Recommender(ABC):
    """Fit on interactions, recommend top-k, save to and load from a model directory."""

    kind: ClassVar[str]
    config_type: ClassVar[type]  # the model's hyper-parameter dataclass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_type()
        self.item_ids: np.ndarray = np.array([], dtype=object)  # the item vocabulary
        self.item_popularity: np.ndarray = np.array([], dtype=np.float32)  # training counts
        self.n_train_users = 0
        self._item_index: dict[str, int] = {}

    # -- the parts each model provides -------------------------------------------------
    @abstractmethod
    def _fit(
        self,
        train: pd.DataFrame,
        x: sp.csr_matrix,
        users: pd.DataFrame | None,
        items: pd.DataFrame | None,
    ) -> None:
        """Learn from ``train`` (its users × item-vocabulary matrix is ``x``)."""

    @abstractmethod
    def _score(
        self, user_ids: Sequence[str], x: sp.csr_matrix, history: pd.DataFrame | None
    ) -> np.ndarray:
        """Scores ``(n_users, n_items)``; rows of users the model cannot score are all NaN.

        ``x`` is the users' binary history over the item vocabulary; ``history`` the raw rows
        (with timestamps) for models that read the order of events.
        """

    @abstractmethod
    def _save_parts(self, directory: Path) -> list[str]:
        """Write the model's own files; return their names."""

    @abstractmethod
    def _load_parts(self, directory: Path) -> None:
        """Read what :meth:`_save_parts` wrote."""

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    # -- the shared machinery ----------------------------------------------------------
    def fit(
        self,
        train: pd.DataFrame,
        users: pd.DataFrame | None = None,
        items: pd.DataFrame | None = None,
    ) -> Self:
        """Fit on interactions (``user_id``, ``item_id``; ratings and side tables optional)."""
        train = self.prepare_base(train, items)
        x = self.history_matrix(train, np.sort(train[USER].unique()))
        self._fit(train, x, users, items)
        return self

    def prepare_base(self, train: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
        """Check the input, set the item vocabulary and popularity; return ids as strings."""
        require_columns(train, (USER, ITEM), "training interactions")
        if train.empty:
            raise RecsysError("training interactions: the table is empty")
        train = train.assign(**{USER: train[USER].astype(str), ITEM: train[ITEM].astype(str)})
        self._set_items(self._item_vocabulary(train, items))
        counts = train[ITEM].value_counts()
        self.item_popularity = counts.reindex(self.item_ids).fillna(0).to_numpy(dtype=np.float32)
        self.n_train_users = int(train[USER].nunique())
        return train

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        """The items this model can recommend: by default those seen in training."""
        return np.sort(train[ITEM].unique())

    def _set_items(self, item_ids: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self._item_index = {item: i for i, item in enumerate(self.item_ids)}
        self._item_lookup = pd.Index(self.item_ids)  # hashed once; get_indexer per call

    def history_matrix(
        self, history: pd.DataFrame | None, user_ids: Sequence[str]
    ) -> sp.csr_matrix:
        """Binary ``(len(user_ids), n_items)`` matrix of what each user interacted with."""
        n_users, n_items = len(user_ids), len(self.item_ids)
        if history is None or history.empty:
            return sp.csr_matrix((n_users, n_items), dtype=np.float32)
        users = pd.Index(np.asarray(user_ids, dtype=object))
        rows = users.get_indexer(history[USER].astype(str).to_numpy())
        cols = self._item_lookup.get_indexer(history[ITEM].astype(str).to_numpy())
        keep = (rows >= 0) & (cols >= 0)  # other users; items the model never saw
        data = np.ones(int(keep.sum()), dtype=np.float32)
        x = sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(n_users, n_items))
        x.data[:] = 1.0  # duplicates summed above; the matrix is binary
        return x

    def recommend(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        history: pd.DataFrame | None = None,
        exclude_seen: bool = True,
    ) -> pd.DataFrame:
        """Top-``k`` items for each user, as ``user_id, item_id, score, rank`` rows.

        Args:
            user_ids: the users to answer; ids the model has never seen are cold-start users.
            k: items per user. A user gets fewer only when fewer unseen items exist.
            history: interactions used as each user's known items (seen items, model input).
            exclude_seen: drop items in ``history`` from that user's list.

        Returns:
            A DataFrame ordered by user (as given) and rank (1-based); cold-start rows come from
            popularity and keep the popularity count as their score.
        """
        if k < 1:
            raise RecsysError(f"k must be at least 1, got {k}")
        if not len(self.item_ids):
            raise RecsysError(f"{self.kind}: the model is not fitted")
        user_ids = list(dict.fromkeys(str(u) for u in user_ids))
        frames = []
        for start in range(0, len(user_ids), BATCH_USERS):
            batch = user_ids[start : start + BATCH_USERS]
            frames.append(self._recommend_batch(batch, k, history, exclude_seen))
        if not frames:
            return pd.DataFrame({USER: [], ITEM: [], "score": [], "rank": []})
        return pd.concat(frames, ignore_index=True)

    def _recommend_batch(
        self, batch: list[str], k: int, history: pd.DataFrame | None, exclude_seen: bool
    ) -> pd.DataFrame:
        x = self.history_matrix(history, batch)
        scores = np.asarray(self._score(batch, x, history), dtype=np.float64)  # (batch, items)
        cold = np.isnan(scores).all(axis=1)
        scores[cold] = self.item_popularity
        if exclude_seen:
            rows, cols = x.nonzero()
            scores[rows, cols] = -np.inf
        kk = min(k, scores.shape[1])
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]  # (batch, kk), unordered
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top = np.take_along_axis(part, order, axis=1)  # (batch, kk)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        keep = np.isfinite(top_scores)
        n = keep.sum(axis=1)
        return pd.DataFrame(
            {
                USER: np.repeat(np.asarray(batch, dtype=object), n),
                ITEM: self.item_ids[top[keep]],
                "score": top_scores[keep].astype(np.float32),
                "rank": np.concatenate([np.arange(1, c + 1) for c in n]) if len(n) else [],
            }
        )

    # -- persistence -------------------------------------------------------------------
    def save(
        self,
        directory: str | Path,
        *,
        data_checksum: str | None = None,
        metrics: dict[str, Any] | None = None,
        version: str | None = None,
        feature_service: str | None = None,
    ) -> Path:
        """Write the model directory; it replaces ``directory`` only once complete.

        ``feature_service`` names the Feast feature service the training set came from.
        """
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            (tmp / ITEMS_FILE).write_text(json.dumps(list(self.item_ids)))
            np.save(tmp / POPULARITY_FILE, self.item_popularity)
            parts = [ITEMS_FILE, POPULARITY_FILE, *self._save_parts(tmp)]
            now = datetime.now(UTC)
            manifest = Manifest(
                version=version or f"{self.kind}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
                kind=self.kind,
                created=now.isoformat(timespec="seconds"),
                data_checksum=data_checksum,
                feature_service=feature_service,
                config=self.config_dict(),
                metrics=metrics or {},
                code_version=code_version(),
                n_items=len(self.item_ids),
                n_train_users=self.n_train_users,
                parts=parts,
            )
            (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:6]}")
                directory.rename(old)
                tmp.rename(directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return directory

    @classmethod
    def _from_directory(cls, directory: Path, manifest: Manifest) -> Self:
        model = cls.__new__(cls)
        Recommender.__init__(model, cls.config_type(**manifest.config))
        model._set_items(np.asarray(json.loads((directory / ITEMS_FILE).read_text()), dtype=object))
        model.item_popularity = np.load(directory / POPULARITY_FILE)
        model.n_train_users = manifest.n_train_users
        model._load_parts(directory)
        return model


def read_manifest(directory: str | Path) -> Manifest:
    """Read and check a model directory's manifest."""
    return read_json_model(Path(directory) / MANIFEST, Manifest, "model")
