"""What the neural models share: seeding, optimisers split sparse/dense, the epoch loop,
early stopping. The same helpers run in-process (small data, unit tests) and inside a Ray Train
worker (``recsys.training``), so the two paths cannot drift apart.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from recsys.ndcg import mean_ndcg

if TYPE_CHECKING:
    from recsys.models.trainable import Trainable

Batch = dict[str, torch.Tensor]
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds libraries that use the global generator
    torch.manual_seed(seed)


# An id table of up to this many rows takes dense gradients, a larger one sparse gradients;
# :class:`RowAdam` updates only the rows a batch looked up on either. On a small table the dense
# gradient skips the sparse one's coalescing: faster up to tens of thousands of rows, slower on
# a large table (a 20-item history bag, timed a step at each size).
DENSE_GRAD_MAX_ROWS = 16_384


# A mean bag of ``bag_len`` ids over a small table is a product: the batch's (rows × table)
# id shares times the table. Its cost grows with the table, the bag's with the ids a row holds
# (the bag's backward sorts them); the product is the cheaper one up to this many table rows
# per id of a bag (benchmarks/history_bag.py).
SHARES_BAG_ROWS_PER_ID = 20


def id_table(rows: int, dim: int, bag_len: int = 0) -> nn.Module:
    """An id embedding table (row 0, padding, is "unknown"), trained row by row; with
    ``bag_len``, a bag that takes the mean of up to ``bag_len`` ids per row (:class:`SharesBag`
    on a table small for that length, :class:`MeanBag` on a large one, else
    ``nn.EmbeddingBag``). Marked ``row_sparse`` for :func:`make_optimizers`."""
    sparse = rows > DENSE_GRAD_MAX_ROWS
    if bag_len and not sparse and rows <= SHARES_BAG_ROWS_PER_ID * bag_len:
        table = SharesBag(rows, dim)
    elif bag_len and sparse:
        table = MeanBag(rows, dim, sparse=True)
    elif bag_len:
        table = nn.EmbeddingBag(rows, dim, mode="mean", padding_idx=0)
    else:
        table = nn.Embedding(rows, dim, padding_idx=0, sparse=sparse)
    table.row_sparse = True
    return table


class SharesBag(nn.Module):
    """``nn.EmbeddingBag(rows, dim, mode="mean", padding_idx=0)`` as a matrix product: each
    row's id shares (an id's count over the row's non-padding ids) times the table. The same
    initial weights for the same seed, the same means up to float rounding; its gradient is
    dense, and zero on every row no id of the batch named (what :class:`RowAdam` reads)."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, dim))
        nn.init.normal_(self.weight)  # as nn.EmbeddingBag: N(0, 1), the padding row zero
        with torch.no_grad():
            self.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids``: ``(B, L)`` → ``(B, dim)`` means (zeros for a row of padding only)."""
        shares = self.weight.new_zeros(ids.shape[0], self.weight.shape[0])
        shares.scatter_add_(1, ids, self.weight.new_ones(ids.shape))
        shares[:, 0] = 0
        shares /= shares.sum(dim=1, keepdim=True).clamp(min=1)
        return shares @ self.weight


class MeanBag(nn.EmbeddingBag):
    """``nn.EmbeddingBag(rows, dim, mode="mean", padding_idx=0)`` as a weighted sum: each id
    weighs 1 / (the row's non-padding ids), padding 0. The same initial weights for the same
    seed, the same means; the padding row's gradient is zero. Its sparse backward skips the
    padding mask that ``padding_idx`` costs (a boolean index over every id of the batch: the
    costliest op of a step on a large catalog, benchmarks/train_step.py)."""

    def __init__(self, rows: int, dim: int, sparse: bool = False):
        super().__init__(rows, dim, mode="sum", sparse=sparse)
        with torch.no_grad():
            self.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``ids``: ``(B, L)`` → ``(B, dim)`` means (zeros for a row of padding only)."""
        weights = (ids != 0).to(self.weight.dtype)
        weights /= weights.sum(dim=1, keepdim=True).clamp(min=1)
        return super().forward(ids, per_sample_weights=weights)


class RowAdam(torch.optim.Optimizer):
    """SparseAdam's update, row by row: the moments and weights of the rows the batch looked up
    move; the other rows stay as they are. On a dense gradient (small id tables, where it is
    cheaper than a sparse one) those are the rows whose gradient is not zero; on a sparse one,
    the rows it names, its values summed per row (SparseAdam's coalescing, without its
    whole-table ``sparse_mask`` and ``add_``)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002 - the Optimizer signature
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                rows, grad = _grad_rows(p.grad)
                if rows.numel() == 0:
                    continue
                exp_avg = state["exp_avg"].index_select(0, rows)
                exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
                exp_avg.add_((grad - exp_avg).mul_(1 - beta1))
                exp_avg_sq.add_((grad * grad - exp_avg_sq).mul_(1 - beta2))
                state["exp_avg"].index_copy_(0, rows, exp_avg)
                state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
                step = state["step"]
                size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                update = exp_avg.div_(exp_avg_sq.sqrt_().add_(group["eps"]))
                p.index_add_(0, rows, update, alpha=-size)


def _grad_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a gradient updates and their gradient: ``(rows,)``, ``(rows, dim)``."""
    if grad.is_sparse:
        ids, values = grad._indices()[0], grad._values()
        rows, where = torch.unique(ids, return_inverse=True)
        return rows, values.new_zeros(len(rows), values.shape[1]).index_add_(0, where, values)
    rows = grad.any(dim=1).nonzero().squeeze(1)
    return rows, grad.index_select(0, rows)


def make_optimizers(
    module: nn.Module, lr: float, sparse_lr: float, weight_decay: float = 0.0
) -> list[torch.optim.Optimizer]:
    """Row-wise Adam for the id tables (:func:`id_table`, sparse gradients or dense:
    :class:`RowAdam`) at ``sparse_lr``, AdamW for everything else.

    Dense Adam over a million-row table touches every row every step; a row-wise update
    touches only the rows a batch looked up, which is what makes recommender training fast.
    """
    rows = [p for m in module.modules() if getattr(m, "row_sparse", False) for p in m.parameters()]
    row_ids = {id(p) for p in rows}
    dense = [p for p in module.parameters() if id(p) not in row_ids and p.requires_grad]
    opts: list[torch.optim.Optimizer] = []
    if rows:
        opts.append(RowAdam(rows, lr=sparse_lr))
    if dense:
        opts.append(torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay))
    return opts


def train_epoch(
    loss_fn: Callable[[Batch], torch.Tensor],
    batches: Iterable[Batch],
    optimizers: list[torch.optim.Optimizer],
) -> tuple[float, int]:
    """One pass over ``batches``; returns (mean loss, examples seen). On CUDA the forward
    pass runs in mixed precision (:func:`mixed_precision`); the loss is summed on the device
    and read once, at the end (a read per step would wait for the GPU at every step)."""
    total, n = None, 0
    for batch in batches:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        first = next(iter(batch.values()))
        with mixed_precision(first.device):
            loss = loss_fn(batch)
        loss.backward()
        for opt in optimizers:
            opt.step()
        step_total = loss.detach().float() * len(first)
        total = step_total if total is None else total + step_total
        n += len(first)
    return (float(total) / n if n else float("nan")), n


def mixed_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA (the matrix products in bfloat16; the weights, the optimiser
    state and the loss's softmax in float32: no loss scaling needed); nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class EarlyStopping:
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    patience: int
    best: float = float("-inf")
    best_epoch: int = -1
    history: list[float] = field(default_factory=list)

    def update(self, epoch: int, metric: float) -> bool:
        """Record ``metric``; True when it is a new best."""
        self.history.append(metric)
        if metric > self.best:
            self.best, self.best_epoch = metric, epoch
            return True
        return False

    def should_stop(self, epoch: int) -> bool:
        return self.patience > 0 and epoch - self.best_epoch >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "history": self.history}


def shuffled_slices(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Row indices of an epoch's batches: a seeded permutation of ``n`` rows, cut in order."""
    order = np.random.default_rng(seed).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def epoch_batches(
    model, rows: dict[str, np.ndarray], seed: int, device="cpu", limit: int | None = None
) -> Iterator[Batch]:
    """One epoch's batches of in-memory example columns: the rows ``model.batch_indices``
    picks for each (at most ``limit`` batches), as ``model.batch`` tensors on ``device``. The
    in-process fit and a Ray Train worker holding its shard in memory both iterate this."""
    for idx in itertools.islice(model.batch_indices(rows, seed), limit):
        yield model.batch({k: v[idx] for k, v in rows.items()}, device)


def fit_in_memory(model, loss: nn.Module, rows: dict[str, np.ndarray], val) -> dict:
    """``model``'s epochs in this process over in-memory ``rows`` (epoch e seeded seed + e),
    put first in the order Ray Train stages them (``model.example_order``): one worker's run
    sees the same batches and ends with the same weights."""
    order = model.example_order(rows, model.config.seed)
    rows = {k: v[order] for k, v in rows.items()}
    return model.run_epochs(lambda e: epoch_batches(model, rows, model.config.seed + e), loss, val)


def ranking_ndcg(scores: np.ndarray, positives: np.ndarray, k: int = 10) -> float:
    """Mean nDCG@k of one held-out item per row, given the row's scores (seen items masked)."""
    pos_scores = scores[np.arange(len(positives)), positives]
    rank = (scores > pos_scores[:, None]).sum(axis=1)  # 0-based rank of the held-out item
    return mean_ndcg(np.arange(len(rank)), rank, np.ones(len(rank), dtype=np.int64), k)


def run_epochs(
    model: Trainable,
    batches: Callable[[int], Iterable[Batch]],
    loss: nn.Module,
    val: Any,
    *,
    start_epoch: int = 0,
    state: dict | None = None,
    on_epoch: Callable[[int, dict, dict, bool], None] | None = None,
) -> dict:
    """The epoch loop shared by every neural model, in-process and in Ray Train workers.

    Args:
        model: has ``config`` (epochs, patience, lr, sparse_lr, weight_decay, seed), ``net``
            and ``validate(val) -> float`` (higher is better).
        batches: epoch -> iterable of batches.
        loss: the training wrapper around ``model.net``.
        val: validation data for ``model.validate``, or None (no early stopping).
        start_epoch: the first epoch to run (after a resume).
        state: a checkpoint's state to continue from (optimisers, early stopping, best).
        on_epoch: called after each epoch with (epoch, metrics, checkpoint state, whether it
            is the last epoch this run trains).

    Returns:
        The final state; ``state["best_model"]`` holds the best weights.
    """
    cfg = model.config
    opts = make_optimizers(loss, cfg.lr, cfg.sparse_lr, cfg.weight_decay)
    stopper = EarlyStopping(cfg.patience)
    # Without validation the best weights are the last epoch's: the network's own tensors, no
    # copy (a copy of a million-user table per epoch, held to the end, for nothing).
    best, seconds = (copy.deepcopy(model.net.state_dict()) if val is not None else None), []
    if state:
        loss.load_state_dict(state["loss"])
        for opt, s in zip(opts, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        stopper = EarlyStopping(cfg.patience, **state["early_stopping"])
        best, seconds = state["best_model"], state.get("epoch_seconds", [])
    elif val is not None:
        # The untrained model is a candidate too: a ranker that starts from a generator's
        # ordering must never end up worse than it on held-out users.
        stopper.best, stopper.best_epoch = model.validate(val), -1
    for epoch in range(start_epoch, cfg.epochs):
        seed_everything(cfg.seed + epoch)
        t0 = time.perf_counter()
        mean_loss, n = train_epoch(loss, batches(epoch), opts)
        epoch_s = time.perf_counter() - t0
        seconds = [*seconds[:epoch], epoch_s]
        metric = model.validate(val)
        improved = val is None or stopper.update(epoch, metric)
        if improved:
            best = model.net.state_dict() if val is None else copy.deepcopy(model.net.state_dict())
        state = {
            "loss": loss.state_dict(),
            "optimizers": [o.state_dict() for o in opts],
            "early_stopping": stopper.state(),
            "best_model": best,
            "epoch": epoch,
            "epoch_seconds": seconds,  # each epoch's training, resumed epochs included
        }
        metrics = {
            "epoch": epoch,
            "loss": mean_loss,
            "val_metric": metric,
            "examples": n,
            "epoch_s": epoch_s,
            "examples_per_s": n / epoch_s if epoch_s else 0.0,
        }
        log.info("%s epoch %d: %s", type(model).__name__, epoch, metrics)
        stop = val is not None and stopper.should_stop(epoch)
        if on_epoch:
            on_epoch(epoch, metrics, state, stop or epoch == cfg.epochs - 1)
        if stop:
            break
    if best is not None:
        model.net.load_state_dict(best)
    return state or {}
