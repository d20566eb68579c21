"""The multi-stage recommender: candidate sources → a learned ranker → the list.

Candidates are the union of EASE's, RP3beta's and the most popular items' top-N (and, when
enabled, the two-tower model's ANN top-N), minus what the user has seen. A ranker — LightGBM
with a listwise objective by default, the DCN-v2 network as the option — orders them from the
sources' scores and ranks and the user's and item's context.

The ranker must learn from the scores it meets at serving, so training is cross-fitted: the
training interactions are cut into folds; for each fold the sources are fitted on the other
folds and the ranker learns to find that fold's items among their candidates. Every training
interaction is a label once. At serving the candidates come from the sources fitted on all the
data, and each candidate's features are computed with every fold's sources, as in training;
the ranker's scores are averaged over the folds. (Features from sources refitted on all the
data would be stronger than anything the ranker saw, and it would trust them wrongly: on
MovieLens-100k that cost the whole gain over EASE.)

``crossfit="user-time"`` holds out each user's latest interactions instead (the temporal
protocol again, inside the training data): their items are the labels for sources fitted on
everyone's earlier interactions, so the ranker learns to predict what a user does next, as a
temporal split asks. ``crossfit="time"`` cuts the training span at global time quantiles: each
window's items are the labels for sources fitted on everything before it. In both the full
fit alone gives the features at serving.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.data.io import ITEM, USER
from recsys.data.split import temporal_split
from recsys.features.offline import item_context, states_from_interactions
from recsys.models.base import (
    REASON_WINDOW,
    Candidates,
    Recommender,
    StateBatch,
    strongest_recent,
)
from recsys.models.ease import EASEConfig
from recsys.models.encoding import FeatureEncoder
from recsys.models.gbdt import GBDTConfig, GBDTRanker, RankingRows
from recsys.models.manifest import StateSpec
from recsys.models.ranker import Ranker, RankerConfig
from recsys.models.rp3beta import RP3betaConfig
from recsys.models.sources import (
    FEATURES,
    FEATURES_WITH_STORE,
    RECENT_FEATURES,
    RECENT_WINDOWS,
    STORE_CONTEXT,
    Sources,
    candidate_mask,
    features,
)
from recsys.models.towers import TwoTowerConfig
from recsys.models.two_tower import TwoTower, catalog_vocabulary

RANKERS = ("gbdt", "dcn")
# Training steps, one line each: `recsys pipeline run` and the demo show them while a model trains.
progress = logging.getLogger("recsys.progress")
CROSSFITS = ("random", "time", "user-time")


@dataclass
class MultiStageConfig:
    """Candidate counts per source, the cross-fitting, the ranker and each part's settings."""

    n_ease: int = 100
    n_rp3: int = 100
    n_popular: int = 50
    n_two_tower: int = 0  # 0: no two-tower source (measured: it does not pay here, README)
    # The users' and items' mean ratings from the feature store as ranker features (measured
    # on the validation split: no gain, more spread over seeds; README).
    store_context: bool = False
    folds: int = 5
    # ``random`` cross-fitting draws the folds this many times over, with other seeds: the
    # ranker learns from every draw's rows (draws x folds fits of the sources at training);
    # the first draw's fits alone score the candidates at serving, so a request costs the same.
    draws: int = 1
    # "random": folds drawn at random, every fold's fit scores the candidates at serving (what
    # a random held-out item looks like: the stratified protocol);
    # "user-time": each user's latest 1/folds of interactions labelled from the sources fitted
    # on everyone's earlier ones (what the user does next: the temporal protocol); its ranker
    # also reads the user's recent window (RECENT_FEATURES);
    # "time": the training span cut at global time quantiles, each window's items labelled
    # from the sources fitted on everything before it.
    # With "user-time" and "time" the full fit alone scores the candidates at serving.
    crossfit: str = "random"
    # The ranker learns from at most this many users per fold, a seeded sample (0: every
    # user): at 1M users every user's candidates would be 150M rows (benchmarks/scale.py
    # samples 30,000).
    ranker_users: int = 0
    ranker: str = "gbdt"  # "gbdt" (LightGBM, listwise) or "dcn" (DCN-v2 on Ray Train)
    seed: int = 42
    ease: EASEConfig = field(default_factory=EASEConfig)
    rp3: RP3betaConfig = field(default_factory=RP3betaConfig)
    two_tower: TwoTowerConfig = field(
        default_factory=lambda: TwoTowerConfig(history_len=100, epochs=10)
    )
    gbdt: GBDTConfig = field(default_factory=GBDTConfig)
    dcn: RankerConfig = field(default_factory=lambda: RankerConfig(prior_weight=0.5, lr=1e-3))

    def __post_init__(self) -> None:
        # A partial dict overrides this model's defaults for the stage, not the stage class's.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, dataclasses.replace(f.default_factory(), **value))
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {RANKERS}, got {self.ranker!r}")
        if self.draws < 1:
            raise ValueError(f"draws must be at least 1, got {self.draws}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.ranker_users < 0:
            raise ValueError(f"ranker_users must be 0 (every user) or more: {self.ranker_users}")
        if self.crossfit not in CROSSFITS:
            raise ValueError(f"crossfit must be one of {CROSSFITS}, got {self.crossfit!r}")


class StageTrainer:
    """Where the multi-stage model's learned parts train. The model builds each part and its
    rows and calls these; a trainer owns the loop. This one trains here (small data, tests);
    ``recsys.training.api.RayStageTrainer`` runs the same parts on Ray Train."""

    def two_tower(self, train, users, items, config: TwoTowerConfig, tag: str) -> TwoTower:
        """A fitted two-tower source on ``train`` (``tag``: the fold, or "all")."""
        return TwoTower(config).fit(train, users, items)

    def ranker(self, ranker, fit_rows, val, tag: str):
        """The fitted ranker: the DCN's epochs, or the trees' rounds."""
        if isinstance(ranker, GBDTRanker):
            return ranker.fit_in_process(fit_rows, val)
        loss = ranker.loss_module()
        ranker.run_epochs(lambda e: ranker.batches(fit_rows, ranker.config.seed + e), loss, val)
        ranker.net.eval()
        return ranker


class MultiStageModel(Recommender):
    """EASE + RP3beta + popular (+ two-tower) candidates, ordered by a cross-fitted ranker."""

    kind = "multistage"
    config_type = MultiStageConfig
    score_batch_users = 256

    def __init__(
        self, config: MultiStageConfig | None = None, *, trainer: StageTrainer | None = None
    ) -> None:
        super().__init__(config)
        self.trainer = trainer or StageTrainer()

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    def state_spec(self) -> StateSpec:
        n = self.config.two_tower.history_len if self.config.n_two_tower > 0 else REASON_WINDOW
        context = list(STORE_CONTEXT.values()) if self.config.store_context else []
        return StateSpec(recent_n=max(n, REASON_WINDOW, *self._windows()), context=context)

    def feature_names(self) -> tuple[str, ...]:
        """The ranker's columns: the sources', the context's (the store's with
        ``store_context``) and, for the ranker that learns what a user does next
        (``user-time``), the item-item weights from the user's latest items."""
        names = FEATURES_WITH_STORE if self.config.store_context else FEATURES
        return (*names, *RECENT_FEATURES) if self._windows() else names

    def _windows(self) -> tuple[int, ...]:
        """The recent windows the ranker reads: with ``user-time`` (temporal validation, seed
        42: 0.2053 without them, 0.2388 with); with random folds they change nothing on either
        protocol, so that ranker does not read them (README, Benchmarks)."""
        return RECENT_WINDOWS if self.config.crossfit == "user-time" else ()

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        cfg = self.config
        self._context_tables(users, items)
        self.fold_sources, parts = [], []
        folds = {"random": cfg.folds * cfg.draws, "time": cfg.folds - 1}.get(cfg.crossfit, 1)
        for f, (history, labels) in enumerate(self._folds(train)):
            sources = self._fit_sources(history, users, items, tag=f"fold-{f}")
            if cfg.crossfit == "random" and f < cfg.folds:  # the first draw's fits serve
                self.fold_sources.append(sources)  # (their features averaged)
            progress.info("fold %d/%d: sources fitted on %d rows", f + 1, folds, len(history))
            if len(labels):
                parts.append(self._training_rows(sources, history, labels, f))
                progress.info("fold %d/%d: %d ranker rows", f + 1, folds, len(parts[-1][1]))
        if not parts:
            raise RecsysError(
                f"crossfit={cfg.crossfit!r}: no fold has a user with history before it, so the "
                "ranker has nothing to learn from (too little data, or use crossfit='random')"
            )
        del history, labels, sources  # the last fold's rows and fit: not held through
        self.sources = self._fit_sources(train, users, items, tag="all")  # the full fit
        progress.info("full fit: sources fitted on %d rows", len(train))
        rows = RankingRows(*(np.concatenate([p[k] for p in parts]) for k in range(4)))
        progress.info(
            "%s ranker: %d candidate rows, %d positives",
            cfg.ranker,
            len(rows.label),
            int(rows.label.sum()),
        )
        self.ranker = self._train_ranker(rows, np.concatenate([p[4] for p in parts]))
        progress.info("%s ranker trained", cfg.ranker)
        self.training_log = {
            "ranker": self.config.ranker,
            "ranker_log": getattr(self.ranker, "training_log", None),
            "ranker_rows": int(len(rows.label)),
            "ranker_positives": int(rows.label.sum()),
            "candidate_recall": float(rows.label.sum() / len(train)),
        }

    def _folds(self, train: pd.DataFrame):
        """(history, labels) per fold: the other folds' rows and the fold's (``random``, for
        each of ``draws`` draws of the folds); each user's earlier and latest 1/``folds`` of
        interactions (``user-time``: one fold); or everything before a time window and the
        window's rows of users seen before it (``time``: ``folds - 1`` windows)."""
        cfg = self.config
        if cfg.crossfit == "user-time":
            yield temporal_split(train, 1 - 1 / cfg.folds)
            return
        if cfg.crossfit == "random":
            for draw in range(cfg.draws):
                rng = np.random.default_rng(cfg.seed if draw == 0 else [cfg.seed, draw])
                fold = rng.integers(0, cfg.folds, len(train))
                for f in range(cfg.folds):
                    yield train[fold != f], train[fold == f]
            return
        ts = train["timestamp"]
        edges = [ts.quantile(q) for q in np.linspace(0, 1, cfg.folds + 1)[1:-1]]
        for start, end in zip(edges, [*edges[1:], None], strict=True):
            history = train[ts < start]
            window = train[(ts >= start) & (ts < end)] if end is not None else train[ts >= start]
            yield history, window[window[USER].isin(history[USER].unique())]

    def serving_fits(self) -> list[Sources]:
        """The fits whose features the ranker scores at serving (averaged)."""
        return self.fold_sources or [self.sources]

    def _fit_sources(self, train: pd.DataFrame, users, items, tag: str) -> Sources:
        cfg = self.config
        x = self.history_matrix(train, np.sort(train[USER].unique()))
        tower = None
        if cfg.n_two_tower > 0:
            tower = self.trainer.two_tower(train, users, items, cfg.two_tower, tag)
            if not np.array_equal(tower.item_ids, self.item_ids):
                raise ValueError("two-tower vocabulary differs from the multi-stage model's")
        big = len(self.item_ids) > cfg.ease.max_items
        ease = cfg.ease if cfg.n_ease > 0 and not big else None
        rp3 = cfg.rp3 if cfg.n_rp3 > 0 and len(self.item_ids) <= cfg.rp3.max_items else None
        return Sources.fit(x, ease, rp3, tower)

    def _training_rows(self, sources: Sources, history, labels, fold: int):
        """The ranker's rows for one fold: its users' candidates (``ranker_users`` of them at
        most) from the other folds' fit, labelled by the fold's items. Returns (features,
        labels, query ids, users, item codes)."""
        users = sorted(labels[USER].unique())
        if 0 < self.config.ranker_users < len(users):
            rng = np.random.default_rng([self.config.seed, fold])
            users = sorted(rng.choice(users, self.config.ranker_users, replace=False))
            labels = labels[labels[USER].isin(users)]
        states = states_from_interactions(history, users, self.state_spec().recent_n)
        # the items' context as the store would hold it then, for a ranker that reads it
        items = item_context(history, self.item_ids) if self.state_spec().context else None
        out = []
        for s in range(0, len(states), self.score_batch_users):
            batch = self.encode(states[s : s + self.score_batch_users])
            hide = batch.seen.toarray() > 0
            scores = sources.scores(batch.seen, batch.recent, batch.user_ids, self._windows())
            r, c = np.nonzero(candidate_mask(scores, hide, self._counts()))
            context = self._context(batch, r, c, items)
            x = features([scores], hide, r, c, context, self.feature_names())[0]
            truth = self.history_matrix(labels, batch.user_ids).toarray() > 0
            user = np.asarray([self._user_key(u) for u in batch.user_ids])[r]
            query = fold * 10_000_000 + s + r  # unique per (fold, user)
            out.append((x, truth[r, c].astype(np.float32), query, user, c))
        return tuple(np.concatenate([o[k] for o in out]) for k in range(5))

    def _train_ranker(self, rows: RankingRows, items: np.ndarray):
        cfg = self.config
        if cfg.ranker == "gbdt":
            ranker = GBDTRanker(dataclasses.replace(cfg.gbdt, seed=cfg.seed), self.feature_names())
            fit, val = ranker.split(rows)
            return self.trainer.ranker(ranker, fit, val, "ranker")
        card, table = self.encoder.cardinalities, self.encoder.item_table(self.item_ids, None)
        config = dataclasses.replace(cfg.dcn, seed=cfg.seed)
        ranker = Ranker(config, len(self.item_ids), card, table, self.feature_names())
        fit_rows, val = ranker.prepare(_dcn_rows(rows.x, items, rows.user, rows.label))
        return self.trainer.ranker(ranker, fit_rows, val, "ranker")

    def _user_key(self, user_id: str) -> int:
        """A number per training user (the ranker's validation split is by user)."""
        if not hasattr(self, "_user_keys"):
            self._user_keys: dict[str, int] = {}
        return self._user_keys.setdefault(user_id, len(self._user_keys))

    def _counts(self) -> dict[str, int]:
        cfg = self.config
        return {
            "ease": cfg.n_ease,
            "rp3": cfg.n_rp3,
            "popularity": cfg.n_popular,
            "two_tower": cfg.n_two_tower,
        }

    # -- context: the user's and the item's side ----------------------------------------
    def _context_tables(self, users: pd.DataFrame | None, items: pd.DataFrame | None) -> None:
        self.encoder = FeatureEncoder.fit(users, items)
        genres = [g.split("|") if g else [] for g in self.item_genres]
        names = sorted({g for row in genres for g in row})
        index = {g: j for j, g in enumerate(names)}
        member = np.zeros((len(self.item_ids), max(len(names), 1)), dtype=np.float32)
        for row, gs in enumerate(genres):
            member[row, [index[g] for g in gs]] = 1.0
        self.item_genre_matrix = member
        year = pd.Series(np.nan, index=pd.Index(self.item_ids))
        if items is not None and "release_year" in items:
            side = items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)
            year = pd.to_numeric(side.set_index(ITEM)["release_year"], errors="coerce")
        self.item_year = year.reindex(self.item_ids).to_numpy(dtype=np.float32)

    def _context(
        self, batch: StateBatch, r: np.ndarray, c: np.ndarray, items: dict | None
    ) -> dict[str, np.ndarray]:
        seen = batch.seen
        profile = np.asarray(seen @ self.item_genre_matrix)  # (U, genres)
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-9)
        genre = self.item_genre_matrix / np.maximum(
            np.linalg.norm(self.item_genre_matrix, axis=1, keepdims=True), 1e-9
        )
        codes = self.encoder.codes_of_users(np.asarray(batch.user_ids, dtype=object))  # (U, 3)
        return {
            "log_history": np.log1p(np.asarray(seen.sum(axis=1)).ravel())[r],
            "genre_match": np.einsum("rg,rg->r", profile[r], genre[c]),
            "age": codes[r, 0],
            "gender": codes[r, 1],
            "occupation": codes[r, 2],
            "release_year": self.item_year[c],
        } | self._store_context(batch, r, c, items)

    def _store_context(self, batch: StateBatch, r, c, items: dict | None) -> dict:
        """The feature store's user and item features the ranker reads (``store_context``)."""
        if not self.config.store_context:
            return {}
        if items is None:
            raise RecsysError(
                "multistage model: the items' context (item_stats) is missing: read it from the "
                "feature store, or compute it from the interactions"
            )
        users = _column(batch.features, "user_mean_rating", len(batch.user_ids))
        return {"user_mean_rating": users[r], "item_mean_rating": items["item_mean_rating"][c]}

    # -- the stages the recommendation path runs -----------------------------------------
    def candidates(
        self, batch: StateBatch, exclude_seen: bool = True, items: dict | None = None
    ) -> list[Candidates]:
        """Stage 1: the full fit's candidates, each with its features under every fold's fit
        (``rows["x"]``: ``(folds, C, features)``). ``items``: the items' context from the
        feature store (offline: ``recsys.features.offline.item_context``)."""
        seen = batch.seen.toarray() > 0
        hide = seen if exclude_seen else np.zeros_like(seen)
        windows = self._windows()
        full = self.sources.scores(batch.seen, batch.recent, batch.user_ids, windows)
        r, c = np.nonzero(candidate_mask(full, hide, self._counts()))
        context = self._context(batch, r, c, items)
        fits = [
            full
            if s is self.sources
            else s.scores(batch.seen, batch.recent, batch.user_ids, windows)
            for s in self.serving_fits()
        ]
        x = features(fits, hide, r, c, context, self.feature_names())  # (fits, rows, features)
        codes = self.encoder.codes_of_users(np.asarray(batch.user_ids, dtype=object))
        known = seen.any(axis=1) | (codes > 0).any(axis=1)
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
            rows = _dcn_rows(x.reshape(folds * n, width), np.tile(iid - 1, folds), None, None)
            rows.pop("user")
            scores = self.ranker.score(rows)
        mean = scores.reshape(folds, n).mean(axis=0)
        return np.split(mean, np.cumsum(sizes)[:-1])

    def explain(self, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """The recent item with the largest EASE (else RP3beta) weight towards each pick."""
        weights = self.sources.ease if self.sources.ease is not None else self.sources.rp3
        if weights is None:
            return super().explain(picks, recent)
        return strongest_recent(weights, picks, recent)

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
        return [*parts, "item_genre_matrix.npy", "item_year.npy"]

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
        if self.config.ranker == "gbdt":
            self.ranker = GBDTRanker.load(directory / "ranker")
        else:
            self.ranker = Ranker.load(directory / "ranker", self.config.dcn)


def _column(features: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    return features[name] if name in features else np.full(n, np.nan)


def _dcn_rows(x: np.ndarray, items: np.ndarray, group, label) -> dict[str, np.ndarray]:
    """Feature rows in the DCN ranker's columns: ``iid``, the features as ``d*`` (missing
    values as 0; the user's codes are among them, so its ``f*`` embeddings stay unused)."""
    dense = np.nan_to_num(x, nan=0.0)
    rows = {"user": group if group is not None else np.zeros(len(x)), "iid": items + 1}
    rows |= {f"d{j}": dense[:, j] for j in range(dense.shape[1])}
    rows |= {f"f{j}": np.zeros(len(x), dtype=np.int64) for j in range(3)}
    if label is not None:
        rows["label"] = label
    return rows
