"""The multi-stage model's training: cross-fitting the sources, the ranker's rows, the ranker.

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

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.data.io import USER
from recsys.data.split import temporal_split
from recsys.models.content import configured_content
from recsys.models.multistage.candidates import candidate_pairs
from recsys.models.multistage.ranker_inputs import features
from recsys.models.multistage.sources import Sources
from recsys.models.neural import fit_in_memory
from recsys.models.rankers.dcn import DCNRanker
from recsys.models.rankers.gbdt import GBDTRanker, RankingRows
from recsys.models.trainable import Trainable
from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.retrieval import ItemIndex
from recsys.state.offline import item_context, states_from_interactions

# Training steps, one line each: `recsys pipeline run` and the demo show them while a model trains.
progress = logging.getLogger("recsys.progress")


class StageTrainer:
    """Where the multi-stage model's learned parts train. The model builds each part and its
    rows and calls these; a trainer owns the loop. This one trains here (small data, tests);
    ``recsys.training.train.RayStageTrainer`` runs the same parts on Ray Train."""

    def two_towers(self, parts, users, items, config: TwoTowerConfig) -> list[TwoTower]:
        """A fitted two-tower source on each of ``parts`` (a generator, consumed once): the
        training interactions, a tag (the fold's, or "all") and None, or the rows to train on
        (a bool per row) starting from the previous part's weights."""
        towers: list[TwoTower] = []
        for train, _, only in parts:
            tower = TwoTower(config)
            if only is None:
                towers.append(tower.fit(train, users, items))
            else:
                towers.append(tower.fit_continued(train, users, items, towers[-1], only))
        return towers

    def ranker(self, ranker: GBDTRanker | Trainable, fit_rows, val, tag: str):
        """The fitted ranker: the DCN's epochs, or the trees' rounds."""
        if isinstance(ranker, GBDTRanker):
            return ranker.fit_in_process(fit_rows, val)
        loss = ranker.loss_module()
        fit_in_memory(ranker, loss, fit_rows, val)
        ranker.net.eval()
        return ranker


class CrossFitting:
    """The fitting half of :class:`~recsys.models.multistage.MultiStageModel` (a mixin: it
    reads the model's vocabulary, encoding, context and ranker columns)."""

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        cfg = self.config
        self._context_tables(users, items)
        self._content_table(items)
        plan = self.source_plan()
        progress.info("sources: %s", "; ".join(f"{k} {v}" for k, v in plan.items()))
        self.fold_sources, parts = [], []
        folds = {"random": cfg.folds * cfg.draws, "time": cfg.folds - 1}.get(cfg.crossfit, 1)
        towers = self._fit_towers(train, users, items)
        for f, (history, labels) in enumerate(self._folds(train)):
            sources = self._fit_sources(history, towers[f] if towers else None)
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
        self.sources = self._fit_sources(train, towers[-1] if towers else None)  # the full fit
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
            "sources": plan,
            "ranker": self.config.ranker,
            "ranker_log": getattr(self.ranker, "training_log", None),
            # the full fit's two-tower: its epochs and (on Ray Train) the one run's timing
            "two_tower_log": getattr(self.sources.two_tower, "training_log", None),
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

    def _fit_towers(self, train: pd.DataFrame, users, items) -> list[TwoTower] | None:
        """The two-tower source of each fold and of the full fit (in that order), all trained
        by one call of the trainer (one Ray Train run), which takes the folds' interactions
        one at a time; None without a two-tower source."""
        cfg = self.config
        if cfg.n_two_tower <= 0:
            return None
        towers = self.trainer.two_towers(self._tower_parts(train), users, items, cfg.two_tower)
        for tower in towers:
            if not np.array_equal(tower.item_ids, self.item_ids):
                raise ValueError("two-tower vocabulary differs from the multi-stage model's")
        progress.info("two-tower sources: %d fits", len(towers))
        return towers

    def _tower_parts(self, train: pd.DataFrame):
        """The two-tower fits' parts (interactions, tag, rows): each fold's history; then the
        full fit, on every row, or (``two_tower_full_fit="continue"``) from the last fold's
        weights on the rows that fold did not train on."""
        cfg, last = self.config, None
        for f, (history, _) in enumerate(self._folds(train)):
            yield history, f"fold-{f}", None
            last = history.index
        continued = cfg.two_tower_full_fit == "continue"
        if continued and not train.index.is_unique:
            raise RecsysError("two_tower_full_fit='continue': the training rows' index repeats")
        yield train, "all", ~train.index.isin(last) if continued else None

    def _fit_sources(self, train: pd.DataFrame, tower: TwoTower | None) -> Sources:
        x = self.history_matrix(train, np.sort(train[USER].unique()))
        whole = self._whole_catalog_sources()
        return Sources.fit(x, whole["ease"], whole["rp3"], tower, self.content, self.content_index)

    def _content_table(self, items) -> None:
        """The catalog's content vectors when this model reads them: ``content`` ``auto``
        and an items table with text, or an encoder named."""
        cfg, self.content_index = self.config, None
        self.content, self.content_encoder = configured_content(
            items, self.item_ids, cfg.content, cfg.content_dim
        )
        if self.content is not None and len(self.item_ids) > cfg.content_exact_max_items:
            self.content_index = ItemIndex.build(self.content)

    def _whole_catalog_sources(self) -> dict[str, object]:
        """EASE's and RP3beta's settings where this model fits them at its catalog, else None:
        they score the whole catalog, so only up to their ``max_items``."""
        cfg, n, counts = self.config, len(self.item_ids), self._counts()
        return {
            name: part if counts[name] > 0 and n <= part.max_items else None
            for name, part in (("ease", cfg.ease), ("rp3", cfg.rp3))
        }

    def source_plan(self) -> dict[str, str]:
        """Which candidate sources this model fits at its catalog, and why: EASE and RP3beta
        score the whole catalog (a product with an items x items matrix), so they are fitted
        only up to their ``max_items``; the two-tower answers from its item index and the
        popular items from the catalog's order, at any size."""
        cfg, n = self.config, len(self.item_ids)
        counts, plan = self._counts(), {}
        for name, part in self._whole_catalog_sources().items():
            if part is not None:
                plan[name] = f"on: top {counts[name]} (whole-catalog, {n:,} items)"
            elif counts[name] <= 0:
                plan[name] = f"off: n_{name}=0"
            else:
                limit = getattr(cfg, name).max_items
                plan[name] = f"off: {n:,} items > {name}.max_items {limit:,} (whole-catalog)"
        index = cfg.two_tower.index
        kind, precision = index.resolve_kind(n), index.resolve_precision(n)
        plan["two_tower"] = (
            f"on: top {cfg.n_two_tower} from its {kind} index ({precision})"
            if cfg.n_two_tower > 0
            else "off: n_two_tower=0"
        )
        plan["popularity"] = f"on: top {cfg.n_popular}" if cfg.n_popular > 0 else "off: n_popular=0"
        if self.content is not None:
            encoder = self.content_encoder
            plan["content"] = f"on: top {cfg.n_content} ({encoder.name}, {encoder.dim}-d)"
            if self.content_index is not None:
                info = self.content_index.info()
                plan["content"] += f" from its {info['kind']} index ({info['precision']})"
        else:
            plan["content"] = f"off: content={cfg.content!r}" + (
                " (the items table has no text)" if cfg.content == "auto" else ""
            )
        return plan

    def _training_rows(self, sources: Sources, history, labels, fold: int):
        """The ranker's rows for one fold: its users' candidates (``ranker_users`` of them at
        most) from the other folds' fit, labelled by the fold's items. Returns (features,
        labels, query ids, users, item codes)."""
        cfg = self.config
        users = sorted(labels[USER].unique())
        if 0 < cfg.ranker_users < len(users):
            rng = np.random.default_rng([cfg.seed, fold])
            users = sorted(rng.choice(users, cfg.ranker_users, replace=False))
            labels = labels[labels[USER].isin(users)]
        states = states_from_interactions(history, users, self.state_spec().recent_n)
        # the items' context as the store would hold it then, for a ranker that reads it
        items = item_context(history, self.item_ids) if self.state_spec().context else None
        out = []
        for s in range(0, len(states), self.score_batch_users):
            batch = self.encode(states[s : s + self.score_batch_users])
            fit = sources.score_batch(
                batch, batch.seen, self._windows(), cfg.n_two_tower, content_depth=cfg.n_content
            )
            r, c = candidate_pairs(fit, batch.seen, self._counts())
            context = self._context(batch, r, c, items)
            x = features([fit], batch.seen, r, c, context, self.feature_names())[0]
            truth = self.history_matrix(labels, batch.user_ids)
            label = np.asarray(truth[r, c]).ravel() > 0
            user = np.asarray([self._user_key(u) for u in batch.user_ids])[r]
            query = fold * 10_000_000 + s + r  # unique per (fold, user)
            out.append((x, label.astype(np.float32), query, user, c))
        return tuple(np.concatenate([o[k] for o in out]) for k in range(5))

    def _train_ranker(self, rows: RankingRows, items: np.ndarray):
        cfg = self.config
        if cfg.ranker == "gbdt":
            ranker = GBDTRanker(dataclasses.replace(cfg.gbdt, seed=cfg.seed), self.feature_names())
            fit, val = ranker.split(rows)
            return self.trainer.ranker(ranker, fit, val, "ranker")
        card, table = self.encoder.cardinalities, self.encoder.item_table(self.item_ids, None)
        config = dataclasses.replace(cfg.dcn, seed=cfg.seed)
        ranker = DCNRanker(config, len(self.item_ids), card, table, self.feature_names())
        fit_rows, val = ranker.prepare(dcn_rows(rows.x, items, rows.user, rows.label))
        return self.trainer.ranker(ranker, fit_rows, val, "ranker")

    def _user_key(self, user_id: str) -> int:
        """A number per training user (the ranker's validation split is by user)."""
        if not hasattr(self, "_user_keys"):
            self._user_keys: dict[str, int] = {}
        return self._user_keys.setdefault(user_id, len(self._user_keys))


def dcn_rows(x: np.ndarray, items: np.ndarray, group, label) -> dict[str, np.ndarray]:
    """Feature rows in the DCN ranker's columns: ``iid``, the features as ``d*`` (missing
    values as 0; the user's codes are among them, so its ``f*`` embeddings stay unused)."""
    dense = np.nan_to_num(x, nan=0.0)
    rows = {"user": group if group is not None else np.zeros(len(x)), "iid": items + 1}
    rows |= {f"d{j}": dense[:, j] for j in range(dense.shape[1])}
    rows |= {f"f{j}": np.zeros(len(x), dtype=np.int64) for j in range(3)}
    if label is not None:
        rows["label"] = label
    return rows
