"""The multi-stage recommender the server hosts: candidates → ranker → top-k.

Candidates are the union of the two-tower model's ANN top-N (FAISS), EASE's top-N (when the
catalog is small enough for EASE) and the most popular items, minus what the user has seen. The
ranker orders them from side features and the generators' scores.

Training is stacked so the ranker never learns from scores that saw its labels: the training
interactions are split (per item, as the evaluation protocol does); the generators fit on the
first part, the ranker learns to find the second part among their candidates; then the
generators are refitted on everything for serving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats

from recsys.data.io import ITEM, USER
from recsys.data.split import stratified_split
from recsys.features.state import states_from_interactions
from recsys.models.base import Candidates, Recommender, StateBatch
from recsys.models.ease import EASE, EASEConfig
from recsys.models.manifest import StateSpec
from recsys.models.ranker import DENSE_FEATURES, Ranker, RankerConfig
from recsys.models.two_tower import TwoTowerConfig
from recsys.models.two_tower_model import TwoTower, catalog_vocabulary

TwoTowerFit = Callable[
    [pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, TwoTowerConfig, str], TwoTower
]
RankerFit = Callable[[Ranker, dict, dict | None, str], Ranker]


@dataclass
class PipelineConfig:
    """Candidate counts per source, the stacking split and each stage's hyper-parameters."""

    n_two_tower: int = 100
    n_ease: int = 100
    n_popular: int = 50
    holdout_share: float = 0.2  # of training interactions, to train the ranker on
    refit_generators: bool = True  # refit the generators on all data once the ranker is trained
    ease_max_items: int = 40_000
    seed: int = 42
    ease: EASEConfig = field(default_factory=EASEConfig)
    two_tower: TwoTowerConfig = field(
        default_factory=lambda: TwoTowerConfig(history_len=100, epochs=10)
    )
    ranker: RankerConfig = field(default_factory=lambda: RankerConfig(prior_weight=0.5, lr=1e-3))

    def __post_init__(self) -> None:
        # A partial dict overrides this pipeline's defaults for the stage, not the stage class's.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                setattr(self, f.name, dataclasses.replace(f.default_factory(), **value))


def fit_two_tower_in_process(train, users, items, config: TwoTowerConfig, tag: str) -> TwoTower:
    return TwoTower(config).fit(train, users, items)


def fit_ranker_in_process(ranker: Ranker, fit_rows: dict, val, tag: str) -> Ranker:
    loss = ranker.loss_module()
    ranker.run_epochs(lambda e: ranker.batches(fit_rows, ranker.config.seed + e), loss, val)
    ranker.net.eval()
    return ranker


class PipelineModel(Recommender):
    """Two-tower + EASE + popularity candidates, ordered by the DCN ranker."""

    kind = "pipeline"
    config_type = PipelineConfig
    score_batch_users = 256

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        fit_two_tower: TwoTowerFit = fit_two_tower_in_process,
        fit_ranker: RankerFit = fit_ranker_in_process,
    ) -> None:
        super().__init__(config)
        self._fit_two_tower, self._fit_ranker = fit_two_tower, fit_ranker

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        cfg = self.config
        part_a, part_b = stratified_split(train, 1.0 - cfg.holdout_share, seed=cfg.seed)
        self._fit_generators(part_a, users, items, tag="stage-a")
        rows = self.candidate_rows(sorted(part_b[USER].unique()), part_a, labels=part_b)
        tt = self.two_tower
        self.ranker = Ranker(
            cfg.ranker, len(self.item_ids), tt.encoder.cardinalities, self._item_table
        )
        fit_rows, val = self.ranker.prepare(rows)
        self.ranker = self._fit_ranker(self.ranker, fit_rows, val, "ranker")
        self.training_log = {
            "ranker": getattr(self.ranker, "training_log", None),
            "ranker_rows": int(len(rows["iid"])),
            "ranker_positives": int(rows["label"].sum()),
            "candidate_recall": float(rows["label"].sum() / len(part_b)),
        }
        if cfg.refit_generators:
            self._fit_generators(train, users, items, tag="final")

    def _fit_generators(self, train, users, items, tag: str) -> None:
        cfg = self.config
        self.two_tower = self._fit_two_tower(train, users, items, cfg.two_tower, tag)
        self._align(self.two_tower)
        self.ease = None
        if len(self.item_ids) <= cfg.ease_max_items:
            self.ease = EASE(cfg.ease).fit(train)
        self._popularity = (
            train[ITEM].value_counts().reindex(self.item_ids).fillna(0).to_numpy(dtype=np.float64)
        )

    def _align(self, tt: TwoTower) -> None:
        """The pipeline's vocabulary is the two-tower model's (catalog items included)."""
        if not np.array_equal(tt.item_ids, self.item_ids):
            raise ValueError("two-tower vocabulary differs from the pipeline's")
        self._item_table = tt._item_table

    # -- candidates and their features ---------------------------------------------------
    def state_spec(self) -> StateSpec:
        return StateSpec(recent_n=self.config.two_tower.history_len)

    def item_vectors(self) -> np.ndarray:
        return self.two_tower.item_embeddings

    def candidate_rows(
        self,
        user_ids: Sequence[str],
        history: pd.DataFrame | None,
        labels: pd.DataFrame | None = None,
    ) -> dict[str, np.ndarray]:
        """Every (user, candidate) pair with the ranker's features (and labels when given),
        the users' states taken from ``history`` (the ranker's training rows)."""
        states = states_from_interactions(history, user_ids, self.state_spec().recent_n)
        step = self.score_batch_users
        chunks = [
            self._candidate_chunk(self.encode(states[s : s + step]), labels)[0]
            for s in range(0, len(states), step)
        ]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def candidates(self, batch: StateBatch, exclude_seen: bool = True) -> list[Candidates]:
        """Stage 1 for a batch of users: the union of the generators' candidates, each with
        the ranker's feature rows (stage 2 scores them in :meth:`rank`)."""
        rows, known = self._candidate_chunk(batch, None, exclude_seen)
        r = rows.pop("row")
        rows.pop("user")
        bounds = np.searchsorted(r, np.arange(len(batch.user_ids) + 1))  # rows are user-major
        return [
            Candidates(
                rows["iid"][a:b] - 1,
                bool(known[u]),
                rows={k: v[a:b] for k, v in rows.items()},
            )
            for u, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]

    def rank(self, candidates: Sequence[Candidates]) -> list[np.ndarray]:
        """Stage 2: the ranker's logits for several users' candidates in one forward pass."""
        sizes = [len(c.codes) for c in candidates]
        if not sum(sizes):
            return [np.zeros(0) for _ in candidates]
        joined = {k: np.concatenate([c.rows[k] for c in candidates]) for k in candidates[0].rows}
        return np.split(self.ranker.score(joined), np.cumsum(sizes)[:-1])

    def _candidate_chunk(
        self, batch: StateBatch, labels, exclude_seen: bool = True
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Candidate rows with features (and labels), and which users anything is known of.

        ``exclude_seen=False`` keeps the users' history items among the candidates (they
        still shape the user embedding and the EASE scores)."""
        cfg, n_items, users = self.config, len(self.item_ids), batch.user_ids
        x = batch.seen  # (U, items)
        seen = x.toarray() > 0
        z_u, known = self.two_tower.embed_users(users, batch.recent)  # (U, dim), (U,)
        seen_lists = [np.flatnonzero(row) for row in seen] if exclude_seen else None
        _, ann = self.two_tower.retrieve(z_u, cfg.n_two_tower, seen_lists)  # (U, n_tt), -1 pad
        cand = np.zeros((len(users), n_items), dtype=bool)
        rows_ann = np.repeat(np.arange(len(users)), ann.shape[1])
        ok = ann.ravel() >= 0
        cand[rows_ann[ok], ann.ravel()[ok]] = True
        tt_rank = np.full((len(users), n_items), 1.0 / np.log2(ann.shape[1] + 2.0))
        position = np.tile(np.arange(ann.shape[1]), len(users))
        tt_rank[rows_ann[ok], ann.ravel()[ok]] = 1.0 / np.log2(position[ok] + 2.0)
        ease = self._ease_scores(x)  # (U, items) or None
        hide = seen if exclude_seen else np.zeros_like(seen)
        if ease is not None and cfg.n_ease > 0:
            # Without a history EASE scores everything 0: no candidates from it then.
            has_history = seen.any(axis=1, keepdims=True)
            cand |= _top_mask(np.where(hide, -np.inf, ease), cfg.n_ease) & has_history
        if cfg.n_popular > 0:
            pop = np.broadcast_to(self._popularity, (len(users), n_items))
            cand |= _top_mask(np.where(hide, -np.inf, pop), cfg.n_popular)
        cand &= ~hide
        r, c = np.nonzero(cand)
        tt = np.einsum("rd,rd->r", z_u[r], self.two_tower.item_embeddings[c])  # (rows,)
        if ease is None:
            ease_score, ease_rank = np.zeros(len(r)), np.zeros(len(r))
        else:
            ease_score = ease[r, c]
            ease_rank = _rank_feature(np.where(hide, -np.inf, ease))[r, c]
        dense = np.stack(
            [
                ease_score,
                ease_rank,
                tt,
                tt_rank[r, c],
                np.log1p(self._popularity[c]),
                np.log1p(seen.sum(axis=1))[r],
            ],
            axis=1,
        ).astype(np.float32)  # (rows, n_dense)
        feats = self.two_tower.encoder.user_features(np.asarray(users, dtype=object))[r]
        rows = {"user": np.asarray(users, dtype=object)[r], "row": r, "iid": c + 1}
        rows |= {f"f{j}": feats[:, j] for j in range(3)}
        rows |= {f"d{j}": dense[:, j] for j in range(len(DENSE_FEATURES))}
        if labels is not None:
            truth = self.history_matrix(labels, users).toarray() > 0
            rows["label"] = truth[r, c].astype(np.float32)
        return rows, known

    def _ease_scores(self, x: sp.csr_matrix) -> np.ndarray | None:
        if self.ease is None:
            return None
        if getattr(self, "_ease_map_of", None) is not self.ease:  # a new EASE: map once
            pos = pd.Index(self.ease.item_ids).get_indexer(self.item_ids)  # ours → EASE's
            self._ease_ours = np.flatnonzero(pos >= 0)
            self._ease_theirs = pos[self._ease_ours]
            self._ease_map_of = self.ease
        ours, theirs = self._ease_ours, self._ease_theirs
        sub = x[:, ours].tocsr()  # (U, items EASE knows), columns renumbered to EASE's below
        xe = sp.csr_matrix(
            (sub.data, theirs[sub.indices], sub.indptr), shape=(x.shape[0], len(self.ease.item_ids))
        )
        scores = np.zeros(x.shape, dtype=np.float64)
        scores[:, ours] = np.asarray(xe @ self.ease.weights)[:, theirs]  # sparse rows of W
        return scores

    # -- scoring -----------------------------------------------------------------------
    def _score(self, batch: StateBatch) -> np.ndarray:
        """The ranker's scores on the candidates, -inf elsewhere, NaN for unknown users."""
        scores = np.full((len(batch.user_ids), len(self.item_ids)), -np.inf)
        candidates = self.candidates(batch)
        for u, (cand, score) in enumerate(zip(candidates, self.rank(candidates), strict=True)):
            scores[u, cand.codes] = score
            if not cand.known:
                scores[u] = np.nan
        return scores

    # -- persistence -------------------------------------------------------------------
    def config_dict(self) -> dict:
        return asdict(self.config)

    def _save_parts(self, directory: Path) -> list[str]:
        parts = []
        self.two_tower.save(directory / "two_tower")
        parts.append("two_tower")
        if self.ease is not None:
            self.ease.save(directory / "ease")
            parts.append("ease")
        (directory / "ranker").mkdir()
        parts += [f"ranker/{p}" for p in self.ranker.save(directory / "ranker")]
        np.save(directory / "pipeline_popularity.npy", self._popularity)
        return [*parts, "pipeline_popularity.npy"]

    def _load_parts(self, directory: Path) -> None:
        from recsys.models import load_model

        self.two_tower = load_model(directory / "two_tower")
        self._align(self.two_tower)
        if not any(self.item_genres):
            self.item_genres = list(self.two_tower.item_genres)
        self.ease = load_model(directory / "ease") if (directory / "ease").exists() else None
        self.ranker = Ranker.load(directory / "ranker", self.config.ranker)
        self._popularity = np.load(directory / "pipeline_popularity.npy")


def _top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's ``n`` highest finite scores."""
    n = min(n, scores.shape[1])
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask & np.isfinite(scores)


def _rank_feature(scores: np.ndarray) -> np.ndarray:
    """1 / log2(rank + 2) of each item within its row (rank 0 = best): robust to scale.

    Tied scores share the best rank of the tie, so no order is invented among them.
    """
    rank = scipy.stats.rankdata(-scores, method="min", axis=1) - 1
    return 1.0 / np.log2(rank + 2.0)
