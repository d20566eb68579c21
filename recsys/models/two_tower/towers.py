"""The two-tower retrieval model of the design article: z_u = f(x_u), z_i = g(x_i),
score r_ui = σ(z_u·z_i).

Each tower embeds the id plus side features through an MLP. The user tower reads age bucket,
gender, occupation and the mean of the user's recent items; the item tower reads genres, the
release-year bucket and, where the items have text, the item's content vector. Embeddings are
L2-normalised and scaled by 1/sqrt(temperature), so z_u·z_i is a cosine over the
temperature. Id 0 is "unknown": its embedding is zero, and ids are dropped at random during
training, so an unseen user or item falls back to the feature-only part of its tower; an item
of the catalog that no training interaction met is embedded as unknown too (its id embedding
was never trained).

The served module returns scores; :class:`TwoTowerLoss` owns the loss and the negatives:
in-batch sampled softmax with logQ popularity correction (optionally extra uniform negatives),
or the article's binary cross-entropy with sampled negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsys.config import RecsysError
from recsys.models.encoding import MAX_GENRES
from recsys.models.neural import DENSE_GRAD_MAX_ROWS, id_table
from recsys.retrieval import IndexConfig

Batch = dict[str, torch.Tensor]


@dataclass
class TwoTowerConfig:
    """Hyper-parameters of the two-tower model and its training."""

    dim: int = 64  # d, the output embedding size
    id_dim: int = 64
    feat_dim: int = 16
    hidden: int = 128
    history_len: int = 20
    # "profile": train on a random sample of the user's other items (random-split protocols);
    # "recent": on the items just before each interaction (next-item, temporal protocols).
    history_mode: str = "profile"
    temperature: float = 0.1
    logq_correction: bool = True  # subtract log(sampling probability) from in-batch logits
    loss: str = "softmax"  # "softmax" (in-batch, logQ-corrected) or "bce" (sampled negatives)
    extra_negatives: int = 0  # uniform negatives added to the in-batch softmax
    bce_negatives: int = 4
    id_dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 512
    lr: float = 0.003
    sparse_lr: float = 0.01
    weight_decay: float = 1e-5
    # Validation nDCG peaks by epoch 2-4 on MovieLens-100k and falls after: waiting 2 epochs
    # for a better one ends where waiting 3 did, an epoch sooner (3 seeds, docs/benchmarks.md)
    patience: int = 2
    val_share: float = 0.1
    seed: int = 42
    use_gpu: bool = False
    # The item tower's content input (recsys.content): "auto" reads it whenever the items
    # table has text, "off" never, or an encoder spec; an item nobody interacted with is then
    # embedded from its text, not from its genres and year alone.
    content: str = "auto"
    content_dim: int = 64
    # The item index: its kind and the precision each item's vector is stored at.
    index: IndexConfig = field(default_factory=IndexConfig)
    # The user id table's precision once trained, evaluated and served: "fp32", "fp16", or
    # "auto" (fp16 above DENSE_GRAD_MAX_ROWS users: a million users' table in half the bytes)
    user_table: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.index, dict):  # from a manifest or ``--param index.precision=int8``
            self.index = IndexConfig(**self.index)
        if self.user_table not in TABLE_DTYPES:
            raise RecsysError(
                f"TwoTowerConfig.user_table: {self.user_table!r} is not one of {list(TABLE_DTYPES)}"
            )


TABLE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "auto": None}


def user_table_dtype(cfg: TwoTowerConfig, rows: int) -> torch.dtype:
    """The precision a trained user id table of ``rows`` rows is stored at (``user_table``)."""
    large = rows > DENSE_GRAD_MAX_ROWS
    return TABLE_DTYPES[cfg.user_table] or (torch.float16 if large else torch.float32)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _drop_ids(ids: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p <= 0:
        return ids
    return ids.masked_fill(torch.rand(ids.shape, device=ids.device) < p, 0)


class UserTower(nn.Module):
    """f(x_u): user id, age bucket, gender, occupation, mean of the last items."""

    def __init__(self, n_users: int, n_items: int, card: dict[str, int], cfg: TwoTowerConfig):
        super().__init__()
        self.cfg = cfg
        self.id = id_table(n_users + 1, cfg.id_dim)
        self.history = id_table(n_items + 1, cfg.id_dim, bag_len=cfg.history_len)
        self.age = nn.Embedding(card["age"], cfg.feat_dim, padding_idx=0)
        self.gender = nn.Embedding(card["gender"], cfg.feat_dim, padding_idx=0)
        self.occupation = nn.Embedding(card["occupation"], cfg.feat_dim, padding_idx=0)
        self.mlp = mlp(2 * cfg.id_dim + 3 * cfg.feat_dim, cfg.hidden, cfg.dim)

    def forward(self, uid: torch.Tensor, ufeat: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        uid = _drop_ids(uid, self.cfg.id_dropout, self.training)
        x = torch.cat(
            [
                self.id(uid).float(),  # (B, id_dim); a trained table may be fp16
                self.history(hist),  # (B, id_dim); all-padding rows give zeros
                self.age(ufeat[:, 0]),
                self.gender(ufeat[:, 1]),
                self.occupation(ufeat[:, 2]),
            ],
            dim=1,
        )  # (B, 2*id_dim + 3*feat_dim)
        return F.normalize(self.mlp(x), dim=1) / self.cfg.temperature**0.5  # (B, dim)

    def store_ids(self) -> None:
        """Keep the trained id table at its precision (:func:`user_table_dtype`)."""
        dtype = user_table_dtype(self.cfg, self.id.num_embeddings)
        if self.id.weight.dtype != dtype:
            self.id.weight = nn.Parameter(self.id.weight.detach().to(dtype), requires_grad=False)


def shared_tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``array`` as a tensor on its memory (the model's array and the module's buffer are one
    copy); a copy where it is read-only (from Ray's object store) or of another dtype."""
    array = np.asarray(array)
    return torch.as_tensor(array if array.flags.writeable else array.copy(), dtype=dtype)


class ItemTower(nn.Module):
    """g(x_i): item id, genres (mean of genre embeddings), release-year bucket and, with
    ``content`` (``(n_items + 1, d)`` unit vectors, row 0 zeros), its content vector
    projected to ``feat_dim``."""

    def __init__(
        self,
        n_items: int,
        card: dict[str, int],
        item_table: np.ndarray,
        cfg: TwoTowerConfig,
        content: np.ndarray | None = None,
        trained: np.ndarray | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        # (n_items + 1,) bool: the ids training met; outside training any other id reads as
        # 0, the unknown item (its embedding was never trained: the features alone embed it)
        trained = torch.as_tensor(trained) if trained is not None else None
        self.register_buffer("trained", trained, persistent=False)
        self.id = id_table(n_items + 1, cfg.id_dim)
        self.genres = nn.EmbeddingBag(card["genre"], cfg.feat_dim, mode="mean", padding_idx=0)
        self.year = nn.Embedding(card["year"], cfg.feat_dim, padding_idx=0)
        self.register_buffer("table", shared_tensor(item_table, torch.long))
        width = cfg.id_dim + 2 * cfg.feat_dim
        self.content_proj = None
        tensor = None if content is None else shared_tensor(content, torch.float32)
        # not in the state dict: the model saves the vectors once
        self.register_buffer("content", tensor, persistent=False)
        if content is not None:
            self.content_proj = nn.Linear(content.shape[1], cfg.feat_dim)
            width += cfg.feat_dim
        self.mlp = mlp(width, cfg.hidden, cfg.dim)

    def forward(self, iid: torch.Tensor) -> torch.Tensor:
        feats = self.table.index_select(0, iid)  # (B, MAX_GENRES + 1)
        ids = _drop_ids(iid, self.cfg.id_dropout, self.training)
        if self.trained is not None and not self.training:
            ids = ids.masked_fill(~self.trained[ids], 0)
        parts = [self.id(ids), self.genres(feats[:, :MAX_GENRES]), self.year(feats[:, MAX_GENRES])]
        if self.content_proj is not None:
            parts.append(self.content_proj(self.content.index_select(0, iid)))
        x = torch.cat(parts, dim=1)  # (B, id_dim + 2*feat_dim [+ feat_dim])
        return F.normalize(self.mlp(x), dim=1) / self.cfg.temperature**0.5  # (B, dim)


class TwoTowerNet(nn.Module):
    """The served module: towers and the article's score σ(z_u·z_i)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        card: dict[str, int],
        item_table: np.ndarray,
        cfg: TwoTowerConfig,
        item_content: np.ndarray | None = None,
        trained: np.ndarray | None = None,
    ):
        super().__init__()
        self.n_items = n_items
        self.user_tower = UserTower(n_users, n_items, card, cfg)
        self.item_tower = ItemTower(n_items, card, item_table, cfg, item_content, trained)

    def user(self, batch: Batch) -> torch.Tensor:
        return self.user_tower(batch["uid"], batch["ufeat"], batch["hist"])  # (B, dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        z_u, z_i = self.user(batch), self.item_tower(batch["iid"])  # (B, dim) each
        return torch.sigmoid((z_u * z_i).sum(dim=1))  # (B,)

    def all_items_train(self) -> torch.Tensor:
        codes = torch.arange(1, self.n_items + 1, device=self.item_tower.table.device)
        return self.item_tower(codes)

    @torch.no_grad()
    def all_items(self, chunk: int = 65_536) -> torch.Tensor:
        """Embeddings of every catalog item, in vocabulary order: ``(n_items, dim)``."""
        codes = torch.arange(1, self.n_items + 1, device=self.item_tower.table.device)
        return torch.cat([self.item_tower(c) for c in codes.split(chunk)])


class TwoTowerLoss(nn.Module):
    """Training wrapper: owns the loss and the negatives, never served."""

    def __init__(self, net: TwoTowerNet, item_counts: np.ndarray, cfg: TwoTowerConfig):
        super().__init__()
        self.net, self.cfg = net, cfg
        q = (item_counts + 1.0) / (item_counts + 1.0).sum()  # sampling probability per item
        self.register_buffer("log_q", torch.as_tensor(np.r_[0.0, np.log(q)], dtype=torch.float))

    def forward(self, batch: Batch) -> torch.Tensor:
        z_u = self.net.user(batch)  # (B, dim)
        z_i = self.net.item_tower(batch["iid"])  # (B, dim)
        if self.cfg.loss == "bce":
            return self._bce(z_u, z_i)
        if self.cfg.loss == "full":
            logits = z_u @ self.net.all_items_train().T  # (B, n_items)
            return F.cross_entropy(logits, batch["iid"] - 1)
        return self._softmax(z_u, z_i, batch["iid"])

    def _softmax(self, z_u: torch.Tensor, z_i: torch.Tensor, iid: torch.Tensor) -> torch.Tensor:
        logits = z_u @ z_i.T  # (B, B); in place from here: the product's backward reads z_u, z_i
        if self.cfg.logq_correction:
            logits.sub_(self.log_q.index_select(0, iid)[None, :])
        hits = (iid[None, :] == iid[:, None]).fill_diagonal_(False)
        logits.masked_fill_(hits, float("-inf"))  # accidental hits: another row's positive
        if self.cfg.extra_negatives > 0:
            neg = self._uniform(self.cfg.extra_negatives, iid.device)
            z_n = self.net.item_tower(neg)  # (M, dim)
            correction = np.log(self.cfg.extra_negatives / self.net.n_items)
            logits = torch.cat([logits, z_u @ z_n.T - correction], dim=1)  # (B, B + M)
        target = torch.arange(len(iid), device=iid.device)
        return F.cross_entropy(logits, target)

    def _bce(self, z_u: torch.Tensor, z_i: torch.Tensor) -> torch.Tensor:
        b, m = len(z_u), self.cfg.bce_negatives
        z_n = self.net.item_tower(self._uniform(b * m, z_u.device)).view(b, m, -1)  # (B, M, d)
        pos = (z_u * z_i).sum(dim=1, keepdim=True)  # (B, 1)
        neg = torch.einsum("bd,bmd->bm", z_u, z_n)  # (B, M)
        logits = torch.cat([pos, neg], dim=1)  # (B, 1 + M)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)

    def _uniform(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randint(1, self.net.n_items + 1, (n,), device=device)
