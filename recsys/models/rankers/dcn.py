"""The DCN ranker: the design article's combined user-item model, grown the way production rankers
are — side features of both sides, a DCN-v2 cross layer for explicit feature crosses, and the
candidate generators' scores as inputs — ending in σ(logit).

It scores (user, candidate) rows built by the multi-stage model; :class:`RankerLoss` owns the
binary cross-entropy against hard negatives (the other candidates of the same user).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.encoding import MAX_GENRES
from recsys.models.neural import Batch, id_table, run_epochs, seed_everything, shuffled_slices
from recsys.ndcg import mean_ndcg

WEIGHTS_FILE = "ranker.pt"
META_FILE = "ranker.json"
DENSE_FEATURES = (
    "ease",
    "ease_rank",
    "two_tower",
    "two_tower_rank",
    "log_popularity",
    "log_history",
)


@dataclass
class RankerConfig:
    """Hyper-parameters of the ranker and its training."""

    id_dim: int = 4
    feat_dim: int = 8
    hidden: int = 128
    cross_layers: int = 2
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 0.0003
    sparse_lr: float = 0.001
    weight_decay: float = 1e-5
    patience: int = 2
    val_share: float = 0.1  # share of users held out for early stopping
    loss: str = "listwise"  # "listwise" (softmax over a user's candidates) or "bce"
    users_per_batch: int = 8  # listwise batches hold whole users
    prior_feature: str = "ease_rank"  # the wide part starts as this feature's ranking
    prior_weight: float = 2.0
    seed: int = 42


class CrossLayer(nn.Module):
    """DCN-v2: x_{l+1} = x_0 ⊙ (W x_l + b) + x_l."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x  # (B, dim)


class RankerNet(nn.Module):
    """Served module: a wide linear blend of the generators' scores plus a deep part
    (embeddings ⊕ dense → cross layers → MLP), summed into one logit."""

    def __init__(
        self,
        n_items: int,
        card: dict[str, int],
        item_table: np.ndarray,
        dense_features: tuple[str, ...],
        cfg: RankerConfig,
    ):
        super().__init__()
        n_dense = len(dense_features)
        self.item_id = id_table(n_items + 1, cfg.id_dim)
        self.age = nn.Embedding(card["age"], cfg.feat_dim, padding_idx=0)
        self.gender = nn.Embedding(card["gender"], cfg.feat_dim, padding_idx=0)
        self.occupation = nn.Embedding(card["occupation"], cfg.feat_dim, padding_idx=0)
        self.genres = nn.EmbeddingBag(card["genre"], cfg.feat_dim, mode="mean", padding_idx=0)
        self.year = nn.Embedding(card["year"], cfg.feat_dim, padding_idx=0)
        self.register_buffer("table", torch.tensor(np.array(item_table), dtype=torch.long))
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))
        dim = cfg.id_dim + 5 * cfg.feat_dim + n_dense
        self.cross = nn.ModuleList(CrossLayer(dim) for _ in range(cfg.cross_layers))
        self.wide = nn.Linear(n_dense, 1)  # the generators' scores, blended linearly
        with torch.no_grad():  # start from the strongest generator's ranking, learn from there
            self.wide.weight.zero_()
            if cfg.prior_feature in dense_features:
                self.wide.weight[0, dense_features.index(cfg.prior_feature)] = cfg.prior_weight
        self.mlp = nn.Sequential(
            nn.Linear(dim, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden // 2),
            nn.ReLU(),
            nn.Linear(cfg.hidden // 2, 1),
        )
        nn.init.zeros_(self.mlp[-1].weight)  # the deep part starts as a no-op correction
        nn.init.zeros_(self.mlp[-1].bias)

    def logits(self, batch: Batch) -> torch.Tensor:
        iid, ufeat = batch["iid"], batch["ufeat"]
        feats = self.table.index_select(0, iid)  # (B, MAX_GENRES + 1)
        dense = (batch["dense"] - self.dense_mean) / self.dense_std  # (B, n_dense)
        x0 = torch.cat(
            [
                self.item_id(iid),
                self.age(ufeat[:, 0]),
                self.gender(ufeat[:, 1]),
                self.occupation(ufeat[:, 2]),
                self.genres(feats[:, :MAX_GENRES]),
                self.year(feats[:, MAX_GENRES]),
                dense,
            ],
            dim=1,
        )  # (B, dim)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return (self.wide(dense) + self.mlp(x)).squeeze(1)  # (B,) wide + deep

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.sigmoid(self.logits(batch))  # (B,)


class RankerLoss(nn.Module):
    """Training wrapper: positives against the hard negatives, the user's other candidates.

    ``listwise``: a softmax over each user's candidates, every positive against all of them
    (what ranking within a user needs); ``bce``: the article's pointwise binary cross-entropy.
    """

    def __init__(self, net: RankerNet, loss: str = "listwise"):
        super().__init__()
        self.net, self.loss = net, loss

    def forward(self, batch: Batch) -> torch.Tensor:
        logits, labels = self.net.logits(batch), batch["label"]  # (B,) each
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels)
        _, group = torch.unique(batch["group"], return_inverse=True)  # (B,)
        n = int(group.max()) + 1
        peak = torch.full((n,), float("-inf"), device=logits.device)
        peak = peak.scatter_reduce(0, group, logits.detach(), reduce="amax")  # (G,)
        sums = torch.zeros(n, device=logits.device).index_add(
            0, group, torch.exp(logits - peak[group])
        )  # (G,)
        log_softmax = logits - (peak + torch.log(sums))[group]  # (B,)
        return -(labels * log_softmax).sum() / labels.sum().clamp(min=1.0)


def to_batch(arrays: dict[str, np.ndarray], device: str | torch.device = "cpu") -> Batch:
    """Flat columns (``iid, f0..f2, d0..dN, label``) → the ranker's tensors."""
    n_dense = sum(1 for k in arrays if k.startswith("d") and k[1:].isdigit())
    as_long = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.long, device=device)  # noqa: E731
    batch = {
        "iid": as_long(arrays["iid"]),
        "ufeat": as_long(np.stack([arrays[f"f{j}"] for j in range(3)], axis=1)),  # (B, 3)
        "dense": torch.as_tensor(
            np.stack([arrays[f"d{j}"] for j in range(n_dense)], axis=1),
            dtype=torch.float32,
            device=device,
        ),  # (B, n_dense)
    }
    if "label" in arrays:
        batch["label"] = torch.as_tensor(arrays["label"], dtype=torch.float32, device=device)
    if "group" in arrays:
        batch["group"] = as_long(arrays["group"])
    return batch


class DCNRanker:
    """The DCN-v2 ranker as a :class:`~recsys.models.trainable.Trainable` (as the two-tower model
    is, so Ray Train runs either)."""

    def __init__(
        self,
        config: RankerConfig,
        n_items: int,
        card: dict[str, int],
        item_table: np.ndarray,
        features: tuple[str, ...] = DENSE_FEATURES,
    ):
        self.config, self.n_items, self.card, self.item_table = config, n_items, card, item_table
        self.features = tuple(features)
        self.net: RankerNet | None = None

    def build_net(self) -> RankerNet:
        seed_everything(self.config.seed)
        return RankerNet(self.n_items, self.card, self.item_table, self.features, self.config)

    def prepare(self, rows: dict[str, np.ndarray]) -> tuple[dict, tuple | None]:
        """Build the network with the dense features' statistics; split validation users."""
        self.net = self.build_net()
        dense = np.stack([rows[f"d{j}"] for j in range(len(self.features))], axis=1)
        self.net.dense_mean.copy_(torch.as_tensor(dense.mean(axis=0)))
        self.net.dense_std.copy_(torch.as_tensor(dense.std(axis=0) + 1e-6))
        users = np.unique(rows["user"])
        rng = np.random.default_rng(self.config.seed)
        val_users = rng.choice(users, int(len(users) * self.config.val_share), replace=False)
        is_val = np.isin(rows["user"], val_users)
        rows = {**rows, "group": np.unique(rows["user"], return_inverse=True)[1]}
        fit = {k: v[~is_val] for k, v in rows.items() if k != "user"}
        val = {k: v[is_val] for k, v in rows.items()} if is_val.any() else None
        return fit, val

    def worker_copy(self) -> DCNRanker:
        slim = copy.copy(self)
        slim._stats = (self.net.dense_mean.clone(), self.net.dense_std.clone())
        slim.net = None
        return slim

    def loss_args(self, fit_rows):
        return None

    def loss_module(self, args=None) -> RankerLoss:
        if hasattr(self, "_stats") and self.net is not None:
            self.net.dense_mean.copy_(self._stats[0])
            self.net.dense_std.copy_(self._stats[1])
        return RankerLoss(self.net, self.config.loss)

    def batch(self, arrays: dict[str, np.ndarray], device="cpu") -> Batch:
        return to_batch(arrays, device)

    def example_order(self, rows: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """Listwise: whole users, users in a random order (batches cut at most two users)."""
        if self.config.loss == "bce":
            return np.random.default_rng(seed).permutation(len(rows["iid"]))
        return np.concatenate(list(user_batches(rows["group"], 1, seed)))

    def shuffle_buffer(self) -> int | None:
        return 4 * self.config.batch_size if self.config.loss == "bce" else None

    def batch_indices(self, rows: dict[str, np.ndarray], seed: int):
        """An epoch's batches, shuffled (seeded); for the listwise loss, of whole users
        (``users_per_batch`` of them) in a shuffled user order."""
        if self.config.loss == "bce":
            return shuffled_slices(len(rows["iid"]), self.config.batch_size, seed)
        return user_batches(rows["group"], self.config.users_per_batch, seed)

    @torch.no_grad()
    def validate(self, val: dict[str, np.ndarray] | None) -> float:
        """Mean nDCG@10 of the held-out users' candidates ranked by the model."""
        if val is None:
            return float("nan")
        self.net.eval()
        device = self.net.table.device
        scores = (
            self.net.logits(to_batch({k: v for k, v in val.items() if k != "user"}, device))
            .cpu()
            .numpy()
        )
        self.net.train()
        return grouped_ndcg(val["user"], scores, val["label"], k=10)

    def run_epochs(self, batches, loss, val, **kwargs) -> dict:
        return run_epochs(self, batches, loss, val, **kwargs)

    def load_state(self, state_dict: dict) -> None:
        if self.net is None:
            self.net = self.build_net()
        self.net.load_state_dict(state_dict)
        self.net.eval()

    @torch.no_grad()
    def score(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Each row's logit, in chunks: the ranking score (σ of it is the probability, but
        σ saturates in float32 and would turn the top of a list into ties)."""
        out = [
            self.net.logits(to_batch({k: v[s : s + 65_536] for k, v in rows.items()})).numpy()
            for s in range(0, len(rows["iid"]), 65_536)
        ]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def save(self, directory: Path) -> list[str]:
        torch.save(self.net.state_dict(), directory / WEIGHTS_FILE)
        meta = {"n_items": self.n_items, "card": self.card, "features": list(self.features)}
        (directory / META_FILE).write_text(json.dumps(meta))
        np.save(directory / "ranker_item_table.npy", self.item_table)
        return [WEIGHTS_FILE, META_FILE, "ranker_item_table.npy"]

    @classmethod
    def load(cls, directory: Path, config: RankerConfig) -> DCNRanker:
        meta = json.loads((directory / META_FILE).read_text())
        table = np.load(directory / "ranker_item_table.npy")
        features = tuple(meta.get("features", DENSE_FEATURES))
        ranker = cls(config, meta["n_items"], meta["card"], table, features)
        ranker.load_state(
            torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        )
        return ranker


def user_batches(groups: np.ndarray, users_per_batch: int, seed: int):
    """Row indices of whole groups, ``users_per_batch`` groups at a time, groups shuffled."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    bounds = np.r_[start, len(g)]
    perm = np.random.default_rng(seed).permutation(len(start))
    for s in range(0, len(perm), users_per_batch):
        chosen = perm[s : s + users_per_batch]
        yield np.concatenate([order[bounds[c] : bounds[c + 1]] for c in chosen])


def grouped_ndcg(groups: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean over groups (users) of nDCG@k of the rows ranked by score (binary labels)."""
    order = np.lexsort((-scores, groups))
    g, y = groups[order], labels[order]
    start = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    sizes = np.diff(np.r_[start, len(g)])
    rank = np.arange(len(g)) - np.repeat(start, sizes)
    lists = np.repeat(np.arange(len(start)), sizes)
    hit = y > 0
    return mean_ndcg(lists[hit], rank[hit], np.add.reduceat(y, start).astype(int), k)
