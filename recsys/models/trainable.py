"""What a Ray Train stage trains: the protocol the neural models (the two-tower model, the DCN
ranker) follow so that one epoch loop runs them in-process and inside Ray Train's workers alike
(``recsys.training.ray_trainer``). Light: nothing here imports torch at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


class TrainableConfig(Protocol):
    """The hyper-parameters the loop reads (the epoch loop reads more: epochs, patience,
    learning rates; ``recsys.models.neural.run_epochs``)."""

    batch_size: int
    seed: int


class Trainable(Protocol):
    """A model whose network Ray Train fits.

    The driver stages the examples (``example_order``, ``loss_args``), sends a
    ``worker_copy`` to each worker, which builds the network, wraps it in its loss and runs
    the shared epoch loop on its share's batches (``batch_indices`` in memory, as in-process;
    ``shuffle_buffer`` where the share is streamed); the best weights come back through
    ``load_state``, the run's metrics as ``training_log``.
    """

    config: TrainableConfig
    net: nn.Module | None
    training_log: dict | None

    def worker_copy(self) -> Trainable:
        """What a worker needs (no large vocabularies, no network: it builds its own)."""

    def build_net(self) -> nn.Module:
        """A fresh network, seeded."""

    def loss_args(self, fit_rows: dict[str, np.ndarray], /) -> Any:
        """What the loss needs from the whole training set (e.g. item counts), or None."""

    def loss_module(self, args: Any, /) -> nn.Module:
        """The training wrapper around ``net`` that returns the loss (loss outside the model)."""

    def batch(self, arrays: dict[str, np.ndarray], device: str | torch.device = "cpu") -> Any:
        """A batch of tensors on ``device`` from a dict of example columns."""

    def batch_indices(self, rows: dict[str, np.ndarray], seed: int, /) -> Iterable[np.ndarray]:
        """The row indices of each of an epoch's batches over in-memory ``rows`` (seeded)."""

    def example_order(self, rows: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """The order the examples are staged in (a shuffle; whole users for a listwise loss)."""

    def shuffle_buffer(self) -> int | None:
        """The local shuffle buffer of a worker's streamed batches (None: keep the staged
        order)."""

    def validate(self, val: Any, /) -> float:
        """The early-stopping metric on the validation rows (higher is better)."""

    def run_epochs(
        self, batches: Callable[[int], Iterable[Any]], loss: nn.Module, val: Any, **kwargs: Any
    ) -> dict:
        """The shared epoch loop (``recsys.models.neural.run_epochs``) on this model."""

    def load_state(self, state_dict: dict, /) -> None:
        """Load the best weights into the network (building it when absent)."""
