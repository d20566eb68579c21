"""TwoTower as a :class:`Recommender`: vocabularies, training examples, fit, score, save.

``fit`` trains in-process (small data, unit tests). ``recsys.training`` trains the same module
with the same loop inside Ray Train workers and hands the weights back through
:meth:`TwoTower.load_state`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recsys.data.io import ITEM, TS, USER
from recsys.models.base import Candidates, Items, Only, Recommender, StateBatch, seen_lists
from recsys.models.encoding import (
    FeatureEncoder,
    gather_history,
    history_windows,
    profile_samples,
)
from recsys.models.keys import Keys
from recsys.models.manifest import StateSpec
from recsys.models.neural import (
    fit_in_memory,
    ranking_ndcg,
    run_epochs,
    seed_everything,
    shuffled_slices,
)
from recsys.models.two_tower.item_side import ItemContent
from recsys.models.two_tower.towers import Batch, TwoTowerConfig, TwoTowerLoss, TwoTowerNet
from recsys.models.two_tower.warm import WarmStart
from recsys.models.vocabulary import catalog_vocabulary
from recsys.retrieval import ItemIndex
from recsys.state.offline import states_from_interactions

log = logging.getLogger(__name__)
WEIGHTS_FILE = "two_tower.pt"
USERS_FILE = "user_vocab.json"
MAX_VAL_ROWS = 5_000
VALIDATE_CELLS = 2**24  # scores computed at once by the validation (64 MB of float32)


def to_batch(arrays: dict[str, np.ndarray], device: str | torch.device = "cpu") -> Batch:
    """Flat example columns (``uid, iid, f0..f2, h0..hN``) → the towers' tensors."""
    n_hist = sum(1 for k in arrays if k.startswith("h"))
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)  # noqa: E731
    return {
        "uid": t(arrays["uid"]),
        "iid": t(arrays["iid"]),
        "ufeat": t(np.stack([arrays[f"f{j}"] for j in range(3)], axis=1)),  # (B, 3)
        "hist": t(np.stack([arrays[f"h{j}"] for j in range(n_hist)], axis=1)),  # (B, n_hist)
    }


class TwoTower(WarmStart, ItemContent, Recommender):
    """Two-tower retrieval: scores are the logits z_u·z_i (σ of them is the article's r_ui)."""

    kind = "two_tower"
    config_type = TwoTowerConfig

    # -- preparing ---------------------------------------------------------------------
    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    def prepare(
        self,
        train: pd.DataFrame,
        users: pd.DataFrame | None,
        items: pd.DataFrame | None,
        only: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Vocabularies, feature encoder and the network; returns the training examples (of
        the rows ``only`` marks, where given: :meth:`examples`)."""
        ids = np.sort(train[USER].astype(str).unique()).astype(object)
        self.user_ids = Keys.of(ids)  # a few bytes per user where a replica holds them
        self.encoder = FeatureEncoder.fit(users, items)
        self._item_table = self.encoder.item_table(self.item_ids, items)
        self._content_rows(items)
        self.net = self.build_net()
        ex = self.examples(train, pd.Index(ids), only)
        n, rng = len(ex["uid"]), np.random.default_rng(self.config.seed)
        pick = rng.choice(n, min(n, self.config.index.recall_queries), replace=False)
        self._query_rows = {k: v[pick] for k, v in ex.items()}
        return ex

    def build_net(self, seed: bool = True) -> TwoTowerNet:
        """The module at its initial weights (seeded: every worker starts from the same), or,
        with ``seed`` False, to be loaded with weights at once (no process-wide reseeding)."""
        if seed:
            seed_everything(self.config.seed)
        n_users, n_items = self.n_users, len(self._item_table) - 1
        card, content = self.encoder.cardinalities, self._item_content
        trained = None
        if self.item_popularity is not None and len(self.item_popularity) == n_items:
            trained = np.r_[False, np.asarray(self.item_popularity) > 0]
        return TwoTowerNet(n_users, n_items, card, self._item_table, self.config, content, trained)

    @property
    def n_users(self) -> int:
        return self._n_users if hasattr(self, "_n_users") else len(self.user_ids)

    def worker_copy(self) -> TwoTower:
        """What a Ray Train worker needs, without the id vocabularies (which can be large)."""
        slim = copy.copy(self)
        slim._n_users = len(self.user_ids)
        slim.user_ids = slim.item_ids = None  # the popularity stays: it says which ids trained
        slim._item_index = None
        slim.net = None
        slim.encoder = dataclasses.replace(
            self.encoder, user_keys=Keys.of([]), user_codes=np.zeros((0, 3), dtype=np.int32)
        )
        return slim

    def examples(self, train: pd.DataFrame, users: pd.Index, only: np.ndarray | None = None):
        """One row per interaction (of those ``only``, a bool per row of ``train`` with its
        unique index, marks): ids, user features and the history *before* it (of every row).
        ``users``: :attr:`user_ids` hashed (faster than :class:`Keys` for every row)."""
        order = [USER, TS] if TS in train.columns else [USER]
        df = train.sort_values(order, kind="mergesort")
        uid = users.get_indexer(df[USER].astype(str).to_numpy(dtype=object)) + 1
        iid = df[ITEM].astype(str).map(self._item_index).to_numpy(dtype=np.int64) + 1
        if self.config.history_mode == "recent":
            hist = history_windows(uid, iid, self.config.history_len)  # (rows, history_len)
        else:
            pos = profile_samples(uid, self.config.history_len, self.config.seed)
            hist = gather_history(pos, iid)  # (rows, history_len)
            del pos
        # a user's codes once, then gathered per row (every row's user is in the vocabulary)
        feats = self.encoder.codes_of_users(self.user_ids)[uid - 1]  # (rows, 3)
        # 32-bit on disk and in memory (half the bytes at 20M rows); batches widen to int64
        uid, iid, feats, hist = (a.astype(np.int32, copy=False) for a in (uid, iid, feats, hist))
        cols = {"uid": uid, "iid": iid}
        cols |= {f"f{j}": feats[:, j] for j in range(3)}
        cols |= {f"h{j}": hist[:, j] for j in range(hist.shape[1])}
        if only is not None:
            keep = np.asarray(only, dtype=bool)[train.index.get_indexer(df.index)]
            cols = {k: v[keep] for k, v in cols.items()}
        return cols

    def split_validation(self, ex: dict[str, np.ndarray]):
        """A random ``val_share`` of examples for early stopping (at most 5,000 rows)."""
        n = len(ex["uid"])
        rng = np.random.default_rng(self.config.seed)
        n_val = min(int(n * self.config.val_share), MAX_VAL_ROWS)
        if n_val == 0:
            return ex, None
        val = np.zeros(n, dtype=bool)
        val[rng.choice(n, n_val, replace=False)] = True
        train = {k: v[~val] for k, v in ex.items()}
        seen = sp.csr_matrix(
            (np.ones(int((~val).sum()), dtype=np.float32), (train["uid"], train["iid"] - 1)),
            shape=(self.n_users + 1, len(self.item_ids)),
        )
        return train, ({k: v[val] for k, v in ex.items()}, seen)

    # -- training ----------------------------------------------------------------------
    def item_counts(self, ex: dict[str, np.ndarray]) -> np.ndarray:
        """Training occurrences per item: the in-batch sampling distribution for logQ."""
        return np.bincount(ex["iid"] - 1, minlength=len(self._item_table) - 1).astype(float)

    def loss_module(self, item_counts: np.ndarray) -> TwoTowerLoss:
        return TwoTowerLoss(self.net, item_counts, self.config)

    @torch.no_grad()
    def validate(self, val) -> float:
        """nDCG@10 of each held-out interaction against all items, seen items masked."""
        if val is None:
            return float("nan")
        rows, seen = val
        self.net.eval()
        device = self.net.item_tower.table.device
        z_i = self.net.all_items()  # (n_items, dim)
        z_u = self.net.user(to_batch(rows, device))  # (V, dim)
        self.net.train()
        # a block of rows at a time: V x n_items scores at once would be 20 GB at 1M items
        step, total = max(1, VALIDATE_CELLS // z_i.shape[0]), 0.0
        for a in range(0, len(z_u), step):
            scores = (z_u[a : a + step] @ z_i.T).cpu().numpy()  # (step, n_items)
            scores[seen[rows["uid"][a : a + step]].nonzero()] = -np.inf
            total += ranking_ndcg(scores, rows["iid"][a : a + step] - 1, k=10) * len(scores)
        return total / len(z_u)

    def run_epochs(self, batches, loss, val, **kwargs) -> dict:
        """The shared epoch loop (:func:`recsys.models.neural.run_epochs`) on this model."""
        return run_epochs(self, batches, loss, val, **kwargs)

    def batch(self, arrays: dict[str, np.ndarray], device="cpu") -> Batch:
        return to_batch(arrays, device)

    def batch_indices(self, rows: dict[str, np.ndarray], seed: int):
        """An epoch's batches: the examples shuffled anew (seeded), ``batch_size`` at a time."""
        return shuffled_slices(len(rows["uid"]), self.config.batch_size, seed)

    def example_order(self, rows: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """Examples are shuffled once on disk, then anew each epoch (``batch_indices`` in memory,
        within a buffer where they are streamed)."""
        return np.random.default_rng(seed).permutation(len(rows["uid"]))

    def shuffle_buffer(self) -> int:
        return 4 * self.config.batch_size

    def loss_args(self, fit_rows: dict[str, np.ndarray]) -> np.ndarray:
        return self.item_counts(fit_rows)

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        self._train(self.prepare(train, users, items))

    def _train(self, ex: dict[str, np.ndarray], previous: WarmStart | None = None) -> None:
        if previous is not None:
            self.start_from(previous.net.state_dict(), self.user_rows(previous))
        fit_rows, val = self.split_validation(ex)
        loss = self.loss_module(self.item_counts(fit_rows))
        state = fit_in_memory(self, loss, fit_rows, val)
        self.training_log = {
            **state.get("early_stopping", {}),
            "epoch_seconds": state.get("epoch_seconds", []),
            "examples": len(fit_rows["uid"]),
        }
        self.finalize()

    @torch.no_grad()
    def finalize(self, index: ItemIndex | None = None) -> None:
        """Cache the item embeddings and index them for retrieval (after training or loading):
        an index built here measures its recall on a sample of the training examples' users
        (``prepare`` draws it), real queries, not noisy copies of items. A trained model (no
        ``index``) first keeps its user id table at its precision: what is evaluated is what
        is saved and served."""
        self.net.eval().cpu()
        if index is None:
            self.net.user_tower.store_ids()
        self.item_embeddings = self.net.all_items().numpy()  # (n_items, dim)
        if index is None:
            rows, self._query_rows = getattr(self, "_query_rows", None), None
            users = self.net.user(to_batch(rows)).numpy() if rows else None
            index = ItemIndex.build(self.item_embeddings, self.config.index, users)
        self.index = index

    # -- scoring -----------------------------------------------------------------------
    def state_spec(self) -> StateSpec:
        return StateSpec(recent_n=self.config.history_len)

    def item_vectors(self) -> np.ndarray:
        return self.item_embeddings

    @torch.no_grad()
    def embed_users(
        self, user_ids: Sequence[str], recent: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """User embeddings ``(U, dim)`` from ids, side features and the recent items (codes,
        most recent first: :attr:`StateBatch.recent`), and ``(U,)`` whether anything at all
        (id, a feature, a history item) was known."""
        ids = [str(u) for u in user_ids]
        uid = self.user_ids.positions(ids) + 1
        arrays = {"uid": uid, "iid": np.zeros_like(uid)}
        feats = self.encoder.codes_of_users(np.asarray(ids, dtype=object))
        hist = np.zeros((len(ids), self.config.history_len), dtype=np.int64)  # (U, history_len)
        window = np.asarray(recent)[:, : self.config.history_len]
        hist[:, : window.shape[1]] = window
        arrays |= {f"f{j}": feats[:, j] for j in range(3)}
        arrays |= {f"h{j}": hist[:, j] for j in range(hist.shape[1])}
        known = (uid > 0) | (feats > 0).any(axis=1) | (hist > 0).any(axis=1)
        return self.net.user(to_batch(arrays)).numpy(), known

    def user_embeddings(self, user_ids: Sequence[str], history: pd.DataFrame | None) -> np.ndarray:
        """``(len(user_ids), dim)``, each user's state taken from ``history``."""
        states = states_from_interactions(history, user_ids, self.state_spec().recent_n)
        return self.embed_users(user_ids, self.encode(states).recent)[0]

    def candidates(
        self, batch: StateBatch, exclude_seen: bool = True, items: Items = None, only: Only = None
    ) -> list[Candidates]:
        """Each user's ``n_candidates`` best unseen items from the item index (its kind and
        precision are the model's, so what is served is what the index finds); an unknown
        user gets none and ``known=False``. Restricted to ``only`` (a request's list), the
        listed items are scored exactly instead."""
        if only is not None:
            return super().candidates(batch, exclude_seen, items, only)
        z_u, known = self.embed_users(batch.user_ids, batch.recent)  # (U, dim), (U,)
        n = min(self.n_candidates, len(self.item_ids))
        scores, ids = self.retrieve(z_u, n, seen_lists(batch.seen) if exclude_seen else None)
        none = Candidates(np.zeros(0, dtype=np.int64), False, np.zeros(0))
        return [
            Candidates(ids[u][ids[u] >= 0], True, scores[u][ids[u] >= 0].astype(np.float64))
            if known[u]
            else none
            for u in range(len(ids))
        ]

    def _score(self, batch: StateBatch) -> np.ndarray:
        z_u, known = self.embed_users(batch.user_ids, batch.recent)  # (U, dim), (U,)
        scores = (z_u @ self.item_embeddings.T).astype(np.float64)  # (U, n_items)
        scores[~known] = np.nan  # nothing known about the user: popularity answers
        return scores

    def load_state(self, state_dict: dict, index: ItemIndex | None = None) -> None:
        self.net.load_state_dict(state_dict, assign=True)  # the tensors given, not copies
        self.finalize(index)

    def retrieve(self, z_u: np.ndarray, n: int, seen: list[np.ndarray] | None = None):
        """ANN top-``n`` item indices and scores for user embeddings, seen items excluded."""
        return self.index.search(z_u.astype(np.float32), n, exclude=seen)

    def index_info(self) -> dict:
        return self.index.info()

    # -- persistence -------------------------------------------------------------------
    def _save_parts(self, directory: Path) -> list[str]:
        torch.save(self.net.state_dict(), directory / WEIGHTS_FILE)
        (directory / USERS_FILE).write_text(json.dumps(self.user_ids.tolist()))
        np.save(directory / "item_table.npy", self._item_table)
        index_files = self.index.save(directory)
        return [
            WEIGHTS_FILE,
            USERS_FILE,
            "item_table.npy",
            *index_files,
            *self.encoder.save(directory),
            *self._save_content(directory),
        ]

    def _load_parts(self, directory: Path) -> None:
        self.user_ids = Keys.of(json.loads((directory / USERS_FILE).read_text()))
        self.encoder = FeatureEncoder.load(directory)
        self._item_table = np.load(directory / "item_table.npy")
        self._load_content(directory)
        if not any(self.item_genres):
            self.item_genres = self.genres_from_table()
        self.net = self.build_net()
        # Mapped, copy on write: a node's replicas share the file's pages (page cache); a
        # lookup maps the pages around its row too: random users make the whole table resident
        path = directory / WEIGHTS_FILE
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        self.load_state(state, ItemIndex.load(directory))
        table = self.net.item_tower.table.numpy()
        if np.array_equal(table, self._item_table):
            self._item_table = table  # one copy: the module's
