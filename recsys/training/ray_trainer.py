"""Neural models trained by Ray Train's ``TorchTrainer`` (two-tower, ranker).

Examples reach the workers as Ray Data shards (``read_parquet`` → ``iter_torch_batches``); each
epoch reports its metrics and a checkpoint (current weights, optimiser and early-stopping state,
the best weights so far) to ``storage_path/run_name``. Launching again with ``resume=True``
and the same run name continues from the latest checkpoint: Ray Train V2 restores the run's
checkpoint manager from storage and ``ray.train.get_checkpoint()`` hands it to the loop.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from recsys.config import RecsysError, ensure_ray
from recsys.models.trainable import Trainable
from recsys.training.runs import RayRun, delete_dir, storage_filesystem

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
FAIL_AT_EPOCH_ENV = "RECSYS_FAIL_AT_EPOCH"  # crash injection, for the resume test
WRITE_ROWS = 1 << 20  # examples reordered and written per slice


def _train_loop(cfg: dict) -> None:
    """``train_loop_per_worker``: the shared epoch loop fed by this worker's data shard."""
    import ray.train
    import ray.train.torch

    model: Trainable = cfg["model"]
    device = ray.train.torch.get_device()
    model.net = model.build_net()
    loss = model.loss_module(cfg["loss_args"])
    start, state = 0, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        model.net.load_state_dict(saved["model"])
        start, state = saved["state"]["epoch"] + 1, saved["state"]
    loss = loss.to(device)
    trained = ray.train.torch.prepare_model(loss, move_to_device=False)
    shard = ray.train.get_dataset_shard("train")
    rank = ray.train.get_context().get_world_rank()
    fail_at = cfg["fail_at_epoch"]

    shuffle = model.shuffle_buffer()

    def batches(epoch: int):
        return shard.iter_torch_batches(
            batch_size=model.config.batch_size,
            local_shuffle_buffer_size=shuffle,
            local_shuffle_seed=model.config.seed + epoch if shuffle else None,
            collate_fn=lambda arrays: model.batch(arrays, device),
        )

    def on_epoch(epoch: int, metrics: dict, st: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                torch.save({"model": model.net.state_dict(), "state": st}, Path(tmp) / STATE_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        if epoch == fail_at:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_AT_EPOCH_ENV})")

    model.run_epochs(
        batches, trained, cfg["val"], start_epoch=start, state=state, on_epoch=on_epoch
    )


def require_room_for_data(num_workers: int) -> None:
    """Each worker holds a CPU for the whole run and Ray Data's reads need one more: on a
    local Ray without it the run waits for ever. Fail at once instead, naming the numbers. (A
    cluster joined through ``RAY_ADDRESS`` may autoscale: it is left to grow.)"""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if not os.environ.get("RAY_ADDRESS") and cpus < num_workers + 1:
        raise RecsysError(
            f"num_workers={num_workers} needs at least {num_workers + 1} CPUs in the local Ray "
            f"(one per worker and one for Ray Data's reads); it has {cpus:g}: use fewer workers "
            "or a Ray cluster (RAY_ADDRESS)"
        )


@dataclass
class StagedExamples:
    """Training examples written where every worker can read them, in the model's order."""

    path: str  # the parquet file
    directory: str  # removed once the run is over
    filesystem: pafs.FileSystem
    base: str  # the storage path in that filesystem (the run's checkpoints go under it)
    loss_args: object  # what the model's loss needs from the whole set (e.g. item counts)


def stage_examples(
    model: Trainable, fit_rows: dict[str, np.ndarray], run: RayRun
) -> StagedExamples:
    """Write ``fit_rows`` in ``model.example_order`` for the workers. The caller may drop its
    rows afterwards: the run reads only the file (at 20M interactions the rows are gigabytes,
    and a driver that kept them through training held them twice)."""
    fs, base = storage_filesystem(run.storage_path)
    if not run.resume:
        delete_dir(fs, f"{base}/{run.name}")  # a fresh run must not pick up old checkpoints
    directory = f"{base}/{run.name}-examples"
    order = model.example_order(fit_rows, model.config.seed)
    path = _write_examples(fit_rows, order, fs, directory)
    return StagedExamples(path, directory, fs, base, model.loss_args(fit_rows))


def fit_on_ray(model: Trainable, fit_rows: dict[str, np.ndarray], val, run: RayRun) -> Trainable:
    """Train a prepared neural model on Ray Train; load the best weights into it.

    ``model`` is a :class:`~recsys.models.trainable.Trainable`: the two-tower model and the
    DCN ranker are.
    """
    return fit_staged(model, stage_examples(model, fit_rows, run), val, run)


def fit_staged(model: Trainable, staged: StagedExamples, val, run: RayRun) -> Trainable:
    """:func:`fit_on_ray` on examples already staged by :func:`stage_examples`."""
    import ray.train
    from ray.train.torch import TorchTrainer

    ensure_ray()
    require_room_for_data(run.num_workers)
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "model": model.worker_copy(),
            "val": val,
            "loss_args": staged.loss_args,
            # Read on the driver: workers keep the environment Ray started with.
            "fail_at_epoch": int(os.environ.get(FAIL_AT_EPOCH_ENV, "-1")),
        },
        scaling_config=run.scaling(),
        run_config=ray.train.RunConfig(
            storage_path=staged.base,
            storage_filesystem=staged.filesystem,
            name=run.name,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
        datasets={"train": _read_examples(staged)},
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
    model.training_log = {"metrics": result.metrics, **saved["state"]["early_stopping"]}
    model.load_state(saved["state"]["best_model"])
    delete_dir(staged.filesystem, staged.directory)
    return model


def _read_examples(staged: StagedExamples):
    """The staged examples as a Ray Data dataset. Its read task runs in a worker of its own
    that exits when the task is done (``max_calls=1``: a reused worker stayed idle through the
    run holding what the read allocated, 2.2 GiB at 20M interactions), and allocates from the
    system allocator, which returns freed buffers to the OS (Arrow's default pool kept them:
    the reader held 0.64 GiB at 1M interactions, 0.16 with the system pool)."""
    import ray.data

    return ray.data.read_parquet(
        staged.path,
        filesystem=staged.filesystem,
        max_calls=1,
        runtime_env={"env_vars": {"ARROW_DEFAULT_MEMORY_POOL": "system"}},
    )


def _write_examples(
    rows: dict[str, np.ndarray], order: np.ndarray, fs: pafs.FileSystem, directory: str
) -> str:
    """Write the examples in ``order`` as parquet where every worker can read them, a slice of
    the order at a time (never a reordered copy of every column at once)."""
    fs.create_dir(directory, recursive=True)
    path = f"{directory}/examples.parquet"
    schema = pa.schema([(k, pa.from_numpy_dtype(v.dtype)) for k, v in rows.items()])
    with pq.ParquetWriter(path, schema, filesystem=fs) as writer:
        for start in range(0, max(len(order), 1), WRITE_ROWS):
            part = order[start : start + WRITE_ROWS]
            table = pa.table({k: v[part] for k, v in rows.items()}, schema=schema)
            writer.write_table(table, row_group_size=65_536)
    return path
