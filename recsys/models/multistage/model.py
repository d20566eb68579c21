"""The multi-stage recommender: candidate sources → a learned ranker → the list.

Candidates are the union of EASE's, RP3beta's and the most popular items' top-N (and, when
enabled, the two-tower model's ANN top-N), minus what the user has seen. A ranker — LightGBM
with a listwise objective by default, the DCN-v2 network as the option — orders them from the
sources' scores and ranks and the user's and item's context.

Training is cross-fitted (:mod:`recsys.models.multistage.crossfit`); the ranker reads the
sources' scores and ranks (:mod:`recsys.models.multistage.sources`) and the context
(:mod:`recsys.models.multistage.context`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.content import encode_items, load_encoder
from recsys.data.io import genre_membership
from recsys.models.base import (
    REASON_WINDOW,
    Candidates,
    Items,
    Only,
    Recommender,
    StateBatch,
    strongest_recent,
)
from recsys.models.content import ENCODER_DIR as CONTENT_ENCODER
from recsys.models.content import VECTORS_FILE as CONTENT_VECTORS
from recsys.models.encoding import FeatureEncoder
from recsys.models.manifest import StateSpec
from recsys.models.multistage.candidates import candidate_pairs, listed_pairs
from recsys.models.multistage.config import MultiStageConfig
from recsys.models.multistage.context import ContextFeatures, genre_rows, release_years
from recsys.models.multistage.crossfit import CrossFitting, StageTrainer, dcn_rows
from recsys.models.multistage.ranker_inputs import (
    CONTENT_FEATURES,
    FEATURES,
    FEATURES_WITH_STORE,
    RECENT_FEATURES,
    STORE_CONTEXT,
    features,
)
from recsys.models.multistage.sources import CONTENT, RECENT_WINDOWS, Sources
from recsys.models.rankers.dcn import DCNRanker
from recsys.models.rankers.gbdt import GBDTRanker
from recsys.models.vocabulary import catalog_vocabulary
from recsys.retrieval import ItemIndex

CONTENT_INDEX = "content_index"  # a large catalog's content index (content_exact_max_items)


class MultiStageModel(CrossFitting, ContextFeatures, Recommender):
    """EASE + RP3beta + popular (+ two-tower) candidates, ordered by a cross-fitted ranker."""

    kind = "multistage"
    config_type = MultiStageConfig
    score_batch_users = 256

    def __init__(
        self, config: MultiStageConfig | None = None, *, trainer: StageTrainer | None = None
    ) -> None:
        super().__init__(config)
        self.trainer = trainer or StageTrainer()
        self.content: np.ndarray | None = None  # (n_items, dim) unit vectors, when it reads them
        self.content_encoder = None  # the fitted encoder (items added later encode with it)
        self.content_index: ItemIndex | None = None  # a large catalog's (content_exact_max_items)

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    @property
    def takes_new_items(self) -> bool:
        """A version that reads content scores a new item from its text (its content source
        and features; its item-item rows and popularity are zero), and a two-tower source
        that reads content embeds it and indexes it; one whose tower reads no content waits
        for its next training."""
        tower = self.sources.two_tower
        return self.content is not None and (tower is None or tower.takes_new_items)

    def _add_items(self, fresh: pd.DataFrame) -> None:
        """Append ``fresh`` (new items, in order) to every per-item part: a copy of each
        array, never the loaded version's (see :mod:`recsys.models.extend`)."""
        old = len(self.item_ids) - len(fresh)
        if "_genre_names" not in self.__dict__:  # the genres it learned, kept across folds
            self._genre_names = genre_membership(self.item_genres[:old])[0]
        names = self._genre_names
        self.item_genre_matrix = np.vstack(
            [self.item_genre_matrix, genre_rows(self.item_genres[old:], names)]
        )
        years = release_years(fresh, self.item_ids[old:])
        self.item_year = np.concatenate([self.item_year, years])
        vectors = encode_items(fresh, self.content_encoder)
        self.content = np.vstack([self.content, vectors])
        if self.content_index is not None:
            self.content_index = self.content_index.with_added(vectors)
        parts = (fresh, self.content, self.content_index)
        self.sources = self.sources.widened(*parts)
        self.fold_sources = [s.widened(*parts) for s in self.fold_sources]

    def state_spec(self) -> StateSpec:
        n = self.config.two_tower.history_len if self.config.n_two_tower > 0 else REASON_WINDOW
        context = list(STORE_CONTEXT.values()) if self.config.store_context else []
        return StateSpec(recent_n=max(n, REASON_WINDOW, *self._windows()), context=context)

    def feature_names(self) -> tuple[str, ...]:
        """The ranker's columns: the sources', the context's (the store's with
        ``store_context``) and, for the ranker that learns what a user does next
        (``user-time``), the item-item weights from the user's latest items."""
        names = FEATURES_WITH_STORE if self.config.store_context else FEATURES
        names = (*names, *RECENT_FEATURES) if self._windows() else names
        return (*names, *CONTENT_FEATURES) if self.content is not None else names

    def _windows(self) -> tuple[int, ...]:
        """The recent windows the ranker reads: with ``user-time`` (they raise temporal
        validation nDCG@10); with random folds they change nothing on either protocol, so that
        ranker does not read them (``benchmarks/quality_movielens.py``)."""
        return RECENT_WINDOWS if self.config.crossfit == "user-time" else ()

    def _counts(self) -> dict[str, int]:
        cfg = self.config
        return {
            "ease": cfg.n_ease,
            "rp3": cfg.n_rp3,
            "popularity": cfg.n_popular,
            "two_tower": cfg.n_two_tower,
            CONTENT: cfg.n_content if self.content is not None else 0,
        }

    # -- the stages the recommendation path runs -----------------------------------------
    def candidates(
        self, batch: StateBatch, exclude_seen: bool = True, items: Items = None, only: Only = None
    ) -> list[Candidates]:
        """Stage 1: the full fit's candidates, each with its features under every fold's fit
        (``rows["x"]``: ``(folds, C, features)``). ``items``: the items' context from the
        feature store (offline: ``recsys.state.offline.item_context``). ``only``: a
        request's list, every listed item a candidate (the ranker orders them all)."""
        hidden = batch.seen if exclude_seen else sp.csr_matrix(batch.seen.shape)
        windows, depth = self._windows(), self.config.n_two_tower
        content = None  # once for every fit: they share the vectors
        if self.content is not None:
            content = self.sources.content_view(batch, hidden, self.config.n_content)
        full = self.sources.score_batch(batch, hidden, windows, depth, content)
        if only is None:
            r, c = candidate_pairs(full, hidden, self._counts())
        else:
            r, c = listed_pairs(only, hidden)
        codes = self.encoder.codes_of_users(np.asarray(batch.user_ids, dtype=object))  # (U, 3)
        context = self._context(batch, r, c, items, codes)
        fits = [
            full if s is self.sources else s.score_batch(batch, hidden, windows, depth, content)
            for s in self.serving_fits()
        ]
        x = features(fits, hidden, r, c, context, self.feature_names())  # (fits, rows, features)
        known = (batch.seen.getnnz(axis=1) > 0) | (codes > 0).any(axis=1)
        bounds = np.searchsorted(r, np.arange(len(batch.user_ids) + 1))  # rows are user-major
        return [
            Candidates(
                c[a:b].astype(np.int64),
                bool(known[u]),
                rows={"x": x[:, a:b], "iid": c[a:b] + 1},
            )
            for u, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]

    def rank(self, candidates: Sequence[Candidates]) -> list[np.ndarray]:
        """Stage 2: the ranker's score of every candidate, averaged over the folds' features;
        one pass for the whole batch."""
        sizes = [len(c.codes) for c in candidates]
        if not sum(sizes):
            return [np.zeros(0) for _ in candidates]
        x = np.concatenate([c.rows["x"] for c in candidates], axis=1)  # (folds, rows, features)
        folds, n, width = x.shape
        if isinstance(self.ranker, GBDTRanker):
            scores = self.ranker.score(x.reshape(folds * n, width))
        else:
            iid = np.concatenate([c.rows["iid"] for c in candidates])
            iid = np.where(iid > self.ranker.n_items, 0, iid)  # an item added since: no id
            rows = dcn_rows(x.reshape(folds * n, width), np.tile(iid - 1, folds), None, None)
            rows.pop("user")
            scores = self.ranker.score(rows)
        mean = scores.reshape(folds, n).mean(axis=0)
        return np.split(mean, np.cumsum(sizes)[:-1])

    def explain(self, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """The recent item with the largest EASE (else RP3beta) weight towards each pick; for
        an item nobody met in training (a cold or new item), the recent item nearest in
        content."""
        weights = self.sources.ease if self.sources.ease is not None else self.sources.rp3
        if weights is None:
            return super().explain(picks, recent)
        out = strongest_recent(weights, picks, recent)
        cold = self.sources.popularity[picks] == 0  # no item-item weight: its nearest in text
        if self.content is not None and cold.any() and len(recent):
            sims = self.content[picks[cold]] @ self.content[np.asarray(recent)].T
            out[cold] = np.asarray(recent)[np.argmax(sims, axis=1)]
        return out

    def item_vectors(self) -> np.ndarray | None:
        tower = self.sources.two_tower
        return tower.item_embeddings if tower is not None else None

    def _score(self, batch: StateBatch, items: dict | None = None) -> np.ndarray:
        """The ranker's scores on the candidates, -inf elsewhere, NaN for unknown users."""
        scores = np.full((len(batch.user_ids), len(self.item_ids)), -np.inf)
        candidates = self.candidates(batch, items=items)
        for u, (cand, score) in enumerate(zip(candidates, self.rank(candidates), strict=True)):
            scores[u, cand.codes] = score
            if not cand.known:
                scores[u] = np.nan
        return scores

    # -- persistence -------------------------------------------------------------------
    def config_dict(self) -> dict:
        return asdict(self.config)

    def _save_parts(self, directory: Path) -> list[str]:
        parts = self.sources.save(directory / "sources")
        for f, sources in enumerate(self.fold_sources):
            parts += [f"folds/{p}" for p in sources.save(directory / "folds" / f"fold-{f}")]
        (directory / "ranker").mkdir()
        parts += [f"ranker/{p}" for p in self.ranker.save(directory / "ranker")]
        parts += self.encoder.save(directory)
        np.save(directory / "item_genre_matrix.npy", self.item_genre_matrix)
        np.save(directory / "item_year.npy", self.item_year)
        parts += ["item_genre_matrix.npy", "item_year.npy"]
        if self.content is not None:
            np.save(directory / CONTENT_VECTORS, self.content)
            self.content_encoder.save(directory / CONTENT_ENCODER)
            parts += [CONTENT_VECTORS, CONTENT_ENCODER]
        if self.content_index is not None:
            (directory / CONTENT_INDEX).mkdir()
            saved = self.content_index.save(directory / CONTENT_INDEX)
            parts += [f"{CONTENT_INDEX}/{p}" for p in saved]
        return parts

    def _one_content_copy(self, content: np.ndarray) -> np.ndarray:
        """``content``, or the same vectors as the two-tower source holds them (its item
        tower's input, row 0 the unknown item): one copy in a replica, not two."""
        tower = self.sources.two_tower
        held = getattr(tower, "_item_content", None)
        if held is not None and np.array_equal(held[1:], content):
            return held[1:]
        return content

    def _load_parts(self, directory: Path) -> None:
        if not (directory / "sources").exists():
            raise RecsysError(
                f"{directory}: a multi-stage model written by an earlier version (no cross-fitted "
                "sources): train it again"
            )
        self.sources = Sources.load(directory / "sources")
        folds = (directory / "folds").iterdir() if (directory / "folds").exists() else ()
        folds = sorted(folds, key=lambda p: int(p.name.split("-")[1]))
        self.fold_sources = [Sources.load(p) for p in folds]
        self.encoder = FeatureEncoder.load(directory)
        self.item_genre_matrix = np.load(directory / "item_genre_matrix.npy")
        self.item_year = np.load(directory / "item_year.npy")
        self.content = self.content_encoder = self.content_index = None  # reads no content
        if (directory / CONTENT_VECTORS).exists():
            self.content = self._one_content_copy(np.load(directory / CONTENT_VECTORS))
            self.content_encoder = load_encoder(directory / CONTENT_ENCODER)
            if (directory / CONTENT_INDEX).exists():
                self.content_index = ItemIndex.load(directory / CONTENT_INDEX)
            for sources in (self.sources, *self.fold_sources):
                sources.content, sources.content_index = self.content, self.content_index
        if self.config.ranker == "gbdt":
            self.ranker = GBDTRanker.load(directory / "ranker")
        else:
            self.ranker = DCNRanker.load(directory / "ranker", self.config.dcn)
