"""The recommender contract that training, evaluation and serving depend on.

A model reads users' states (:class:`recsys.state.user.UserState`: the seen set and the
recent window, encoded into its vocabulary as a :class:`StateBatch`) and proposes scored
candidates; a multi-stage model proposes feature rows that its ranker scores in
:meth:`Recommender.rank`. Turning candidates into a list (exclude seen, filters, diversity,
reasons, cold start, padding) is :mod:`recsys.recommend`'s, the one recommendation path.
A model version is a directory (``manifest.json`` plus the parts the model writes);
:func:`load_model` needs nothing else.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError, code_version
from recsys.data.io import ITEM, USER, require_columns
from recsys.files import atomic_dir
from recsys.models.manifest import MANIFEST, Manifest, StateSpec, read_manifest
from recsys.models.vocabulary import genres_of, indexed, read_vocabulary, shared_file
from recsys.state.user import UserState

ITEMS_FILE = "item_vocab.json"
POPULARITY_FILE = "item_popularity.npy"
GENRES_FILE = "item_genres.json"
REASON_WINDOW = 20  # recent items a model without a history input reads (for its reasons)


@dataclass
class StateBatch:
    """Users' states in a model's vocabulary.

    Attributes:
        user_ids: the users, in request order.
        seen: ``(U, n_items)`` binary: each user's complete seen set.
        recent: ``(U, recent_n)`` item codes (vocabulary index + 1), most recent first, 0 pad.
    """

    user_ids: list[str]
    seen: sp.csr_matrix
    recent: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)  # (U,) each; NaN unknown


@dataclass
class Candidates:
    """One user's candidates: vocabulary positions and either the model's own scores
    (single-stage models) or the feature rows its ranker scores (multi-stage)."""

    codes: np.ndarray  # (C,) int64
    known: bool  # False: nothing is known of the user (the path gives the cold-start answer)
    scores: np.ndarray | None = None  # (C,) float64
    rows: dict[str, np.ndarray] | None = None  # ranker features, C rows each


Items = dict | None  # the items' context features (ITEM_CONTEXT, vocabulary order), if read
Only = np.ndarray | None  # the positions a request restricts the candidates to, if any


class Recommender(ABC):
    """Fit on interactions, recommend top-k, save to and load from a model directory."""

    kind: ClassVar[str]
    config_type: ClassVar[type]  # the model's hyper-parameter dataclass
    n_candidates: ClassVar[int] = 1000  # a single-stage model's candidates per user
    unexplained: ClassVar[str] = "matches your profile"  # the reason when explain finds none
    takes_new_items: bool = False  # scores items added after training (recsys.models.extend)

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_type()
        self.item_ids: np.ndarray = np.array([], dtype=object)  # the item vocabulary
        self.item_popularity: np.ndarray = np.array([], dtype=np.float32)  # training counts
        self.item_genres: list[str] = []  # "a|b" per vocabulary item ("" unknown)
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
    def _score(self, batch: StateBatch) -> np.ndarray:
        """Scores ``(n_users, n_items)``; rows of users the model cannot score are all NaN."""

    @abstractmethod
    def _save_parts(self, directory: Path) -> list[str]:
        """Write the model's own files; return their names."""

    @abstractmethod
    def _load_parts(self, directory: Path) -> None:
        """Read what :meth:`_save_parts` wrote."""

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def state_spec(self) -> StateSpec:
        """The user state this model reads (its recent window)."""
        return StateSpec(recent_n=REASON_WINDOW)

    def item_vectors(self) -> np.ndarray | None:
        """``(n_items, dim)`` item vectors for diversity and reasons, or None."""
        return None

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
        self.item_genres = genres_of(self.item_ids, items)
        self.n_train_users = int(train[USER].nunique())
        return train

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        """The items this model can recommend: by default those seen in training."""
        return np.sort(train[ITEM].unique())

    def _set_items(self, item_ids: np.ndarray) -> None:
        self.item_ids, self._item_index, self._item_lookup = indexed(item_ids)

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

    # -- the stages the recommendation path runs -----------------------------------------
    def encode(self, states: Sequence[UserState]) -> StateBatch:
        """States → this model's inputs: ids the vocabulary lacks are dropped (after the
        recent window is cut to ``recent_n``, the same cut offline and online)."""
        n = self.state_spec().recent_n
        lookup = self._item_index
        rows, cols = [], []
        recent = np.zeros((len(states), n), dtype=np.int64)
        for r, state in enumerate(states):
            codes = [lookup[i] for i in state.seen if i in lookup]
            rows.extend([r] * len(codes))
            cols.extend(codes)
            window = [lookup[i] + 1 for i in state.recent[:n] if i in lookup]
            recent[r, : len(window)] = window
        seen = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(states), len(self.item_ids)),
        )
        names = {name for s in states for name in s.features}
        features = {
            name: np.asarray(
                [np.nan if s.features.get(name) is None else s.features[name] for s in states],
                dtype=np.float64,
            )
            for name in names
        }
        return StateBatch([s.user_id for s in states], seen, recent, features)

    def candidates(
        self, batch: StateBatch, exclude_seen: bool = True, items: Items = None, only: Only = None
    ) -> list[Candidates]:
        """Each user's ``n_candidates`` best items by the model's own scores (seen items out
        when excluded); an unknown user gets none and ``known=False``. ``items``: the items'
        context features (``ITEM_CONTEXT``, vocabulary order), for models that read them.
        ``only``: the positions the candidates are restricted to (a request's list)."""
        scores = np.asarray(self._score(batch), dtype=np.float64)  # (U, n_items)
        known = ~np.isnan(scores).all(axis=1)
        if exclude_seen:
            r, c = batch.seen.nonzero()
            scores[r, c] = -np.inf
        if only is not None:
            listed = np.zeros(scores.shape[1], dtype=bool)
            listed[only] = True
            scores[:, ~listed] = -np.inf
        n = min(self.n_candidates, scores.shape[1])
        top = np.argpartition(-np.nan_to_num(scores, nan=-np.inf), n - 1, axis=1)[:, :n]
        out = []
        for u in range(len(batch.user_ids)):
            if not known[u]:
                out.append(Candidates(np.zeros(0, dtype=np.int64), False, np.zeros(0)))
                continue
            codes = top[u][np.isfinite(scores[u, top[u]])]
            out.append(Candidates(codes.astype(np.int64), True, scores[u, codes]))
        return out

    def rank(self, candidates: Sequence[Candidates]) -> list[np.ndarray]:
        """The final score of every candidate; a single-stage model's own scores."""
        return [c.scores if c.scores is not None else np.zeros(len(c.codes)) for c in candidates]

    def explain(self, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """For each picked position, the recent item (position) that explains it best, or -1.

        The default: the recent item nearest in :meth:`item_vectors` (cosine)."""
        unit = self.unit_vectors()
        if unit is None or not len(recent) or not len(picks):
            return np.full(len(picks), -1, dtype=np.int64)
        sims = unit[picks] @ unit[recent].T  # (picks, recent)
        return np.asarray(recent)[np.argmax(sims, axis=1)]

    def unit_vectors(self) -> UnitRows | None:
        """:meth:`item_vectors` scaled to length 1, float32, as rows are read (the reasons and
        the diversity of the recommendation path share it; its norms computed once)."""
        vectors = self.item_vectors()
        if vectors is None:
            return None
        if getattr(self, "_unit_of", None) is not vectors:
            self._unit, self._unit_of = UnitRows(vectors), vectors
        return self._unit

    # -- persistence -------------------------------------------------------------------
    def save(
        self,
        directory: str | Path,
        *,
        data_checksum: str | None = None,
        metrics: dict[str, Any] | None = None,
        version: str | None = None,
        feature_service: str | None = None,
        data_lineage: list[str] | None = None,
    ) -> Path:
        """Write the model directory; it replaces ``directory`` only once complete.

        ``feature_service`` names the Feast feature service the training set came from;
        ``data_lineage`` the checksums the training data stands for (default: its own).
        """
        directory = Path(directory)
        with atomic_dir(directory) as tmp:
            (tmp / ITEMS_FILE).write_text(json.dumps(list(self.item_ids)))
            np.save(tmp / POPULARITY_FILE, self.item_popularity)
            (tmp / GENRES_FILE).write_text(json.dumps(self.item_genres))
            parts = [ITEMS_FILE, POPULARITY_FILE, GENRES_FILE, *self._save_parts(tmp)]
            now = datetime.now(UTC)
            manifest = Manifest(
                version=version or f"{self.kind}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
                kind=self.kind,
                created=now.isoformat(timespec="seconds"),
                data_checksum=data_checksum,
                data_lineage=data_lineage or ([data_checksum] if data_checksum else []),
                feature_service=feature_service,
                state=self.state_spec(),
                config=self.config_dict(),
                metrics=metrics or {},
                code_version=code_version(),
                n_items=len(self.item_ids),
                n_train_users=self.n_train_users,
                parts=parts,
            )
            (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """A model of this class from its directory (``recsys.models.kinds.load_model`` loads
        any kind by its manifest)."""
        return cls._from_directory(Path(directory), read_manifest(directory))

    @classmethod
    def _from_directory(cls, directory: Path, manifest: Manifest) -> Self:
        model = cls.__new__(cls)
        Recommender.__init__(model, cls.config_type(**manifest.config))
        model.item_ids, model._item_index, model._item_lookup = shared_file(
            directory / ITEMS_FILE, read_vocabulary
        )  # what _set_items sets, shared with the other models loaded from an equal file
        model.item_popularity = np.load(directory / POPULARITY_FILE)
        if (directory / GENRES_FILE).exists():
            model.item_genres = shared_file(directory / GENRES_FILE, json.loads)
        model.n_train_users = manifest.n_train_users
        model._load_parts(directory)
        return model


def strongest_recent(weights, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """For each pick, the recent item whose item-item weight towards it is largest (its term
    of ``x @ weights``), or -1 without recent items; ``weights`` dense or sparse."""
    if not len(recent) or not len(picks):
        return np.full(len(picks), -1, dtype=np.int64)
    w = weights[np.asarray(recent)][:, np.asarray(picks)]  # (recent, picks)
    w = w.toarray() if sp.issparse(w) else w
    return np.asarray(recent)[np.argmax(w, axis=0)]


def seen_lists(seen: sp.csr_matrix) -> list[np.ndarray]:
    """Each row's item positions (a user's seen set as the index's ``exclude`` takes it)."""
    seen = seen.tocsr()
    return [
        seen.indices[a:b][seen.data[a:b] != 0]
        for a, b in zip(seen.indptr[:-1], seen.indptr[1:], strict=True)
    ]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (cosine geometry); a zero row stays zero."""
    return vectors / _norms(vectors)


def _norms(vectors: np.ndarray) -> np.ndarray:
    return np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)  # (n, 1)


class UnitRows:
    """``unit_rows(vectors)`` row by row as read: ``unit[idx]`` is the same float32 rows,
    with no scaled copy of a large catalog's vectors kept (only their norms)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.norms = _norms(self.vectors)  # (n, 1)

    def __getitem__(self, rows) -> np.ndarray:
        return self.vectors[rows] / self.norms[rows]

    def __len__(self) -> int:
        return len(self.vectors)


__all__ = [
    "MANIFEST",
    "Candidates",
    "Items",
    "Manifest",
    "Only",
    "Recommender",
    "StateBatch",
    "UnitRows",
    "read_manifest",
    "seen_lists",
    "unit_rows",
]
