"""Neural models trained by Ray Train's ``TorchTrainer`` (two-tower, ranker).

The driver stages the examples as one parquet file; each worker reads its share into memory and
iterates it as the in-process fit does (``recsys.models.neural.epoch_batches``), or, where a
share is larger than ``IN_MEMORY_MAX_BYTES``, streams it as a Ray Data shard
(``read_parquet`` → ``iter_torch_batches``). Each epoch reports its metrics and a checkpoint
(current weights, optimiser and early-stopping state, the best weights so far) to
``storage_path/run_name``. Launching again with ``resume=True`` and the same run name continues
from the latest checkpoint: Ray Train V2 restores the run's checkpoint manager from storage and
``ray.train.get_checkpoint()`` hands it to the loop.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from recsys.config import RecsysError, ensure_ray
from recsys.models.neural import epoch_batches
from recsys.models.trainable import Trainable
from recsys.training.runs import RayRun, delete_dir, storage_filesystem

log = logging.getLogger(__name__)
STATE_FILE = "state.pt"
FAIL_AT_EPOCH_ENV = "RECSYS_FAIL_AT_EPOCH"  # crash injection, for the resume test
WRITE_ROWS = 1 << 20  # examples reordered and written per slice
ROW_GROUP_ROWS = 65_536
# A worker holds its share of the examples in memory up to this size; past it Ray Data streams
# them (20M interactions of the two-tower's examples are 1.5 GiB: held).
IN_MEMORY_MAX_BYTES = 4 << 30


def _train_loop(cfg: dict) -> None:
    """``train_loop_per_worker``: each job's epochs in turn, the shared epoch loop fed by this
    worker's share of the job's examples. A checkpoint holds the job under way (its weights
    and loop state) and what the jobs before it left (best weights, logs): a resumed run
    continues the job it was in."""
    import ray.train

    entered = time.time()  # the driver reads the worker group's start from it
    finished, saved = [], None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        finished = _jobs_done(saved)
        saved = None if saved["done"] else saved  # else the job it holds goes on from it
    report = _EpochReport(cfg, entered)
    for job in range(len(finished), len(cfg["jobs"])):
        model, staged, val = cfg["jobs"][job]
        report.job, report.model, report.finished = job, model, finished
        state = _train_job(model, staged, val, job, saved, report)
        finished, saved = [*finished, _summary(state, report.last_metrics)], None


def _train_job(model: Trainable, staged, val, job: int, saved: dict | None, report) -> dict:
    """One job's epochs in this worker (from ``saved``, a checkpoint of it, when given)."""
    import ray.train
    import ray.train.torch

    device = ray.train.torch.get_device()
    model.net = model.build_net()
    loss = model.loss_module(staged.loss_args)
    start, state = 0, None
    if saved is not None:
        model.net.load_state_dict(saved["model"])
        start, state = saved["state"]["epoch"] + 1, saved["state"]
    loss = loss.to(device)
    trained = ray.train.torch.prepare_model(loss, move_to_device=False)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if staged.in_memory:
        rows = read_share(staged, rank, world)
        steps = _common_steps(model, rows, world)

        def batches(epoch: int):
            return epoch_batches(model, rows, model.config.seed + epoch, device, steps)
    else:
        batches = _streamed_batches(model, device, f"job{job}")
    return model.run_epochs(batches, trained, val, start_epoch=start, state=state, on_epoch=report)


class _EpochReport:
    """The epoch callback of a run's jobs (``job``, ``model`` and the jobs ``finished`` before
    it are the one under way's): every epoch reports; a checkpoint goes with a job's last
    epoch and once ``checkpoint_every_s`` is over since the run's last checkpoint."""

    def __init__(self, cfg: dict, entered: float):
        self.cfg, self.entered, self.saved_at = cfg, entered, time.monotonic()
        self.job, self.model, self.finished = 0, None, []
        self.last_metrics: dict = {}

    def __call__(self, epoch: int, metrics: dict, state: dict, last: bool) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        due = last or time.monotonic() - self.saved_at >= self.cfg["checkpoint_every_s"]
        metrics = {**metrics, "job": self.job}
        metrics |= {"loop_entered_at": self.entered, "reported_at": time.time()}
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0 and due:
                payload = {"job": self.job, "done": last, "model": self.model.net.state_dict()}
                payload |= {"state": state, "metrics": metrics, "finished": self.finished}
                torch.save(payload, Path(tmp) / STATE_FILE)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        self.last_metrics = metrics
        self.saved_at = time.monotonic() if due else self.saved_at
        if epoch == self.cfg["fail_at_epoch"]:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_AT_EPOCH_ENV})")


def _jobs_done(saved: dict) -> list[dict]:
    """The finished jobs a checkpoint accounts for: those before its job, and its job when the
    checkpoint was written after that job's last epoch."""
    done = [_summary(saved["state"], saved["metrics"])] if saved["done"] else []
    return [*saved["finished"], *done]


def _summary(state: dict, metrics: dict) -> dict:
    """What a finished job leaves: its best weights, its early stopping, its last metrics."""
    keep = ("best_model", "early_stopping", "epoch", "epoch_seconds")
    return {**{k: state.get(k) for k in keep}, "metrics": metrics}


def _streamed_batches(model: Trainable, device, dataset: str):
    """Epoch → this worker's batches from its Ray Data shard (examples too large to hold)."""
    import ray.train

    shard = ray.train.get_dataset_shard(dataset)
    shuffle = model.shuffle_buffer()

    def batches(epoch: int):
        return shard.iter_torch_batches(
            batch_size=model.config.batch_size,
            local_shuffle_buffer_size=shuffle,
            local_shuffle_seed=model.config.seed + epoch if shuffle else None,
            collate_fn=lambda arrays: model.batch(arrays, device),
        )

    return batches


def read_share(staged: StagedExamples, rank: int, world: int) -> dict[str, np.ndarray]:
    """Worker ``rank``'s share of the staged examples, in memory: ``rows // world`` rows in
    a row, the staged order's ``rank``-th slice (the last ``rows % world`` rows are left out,
    so that every worker holds as many)."""
    file = pq.ParquetFile(staged.filesystem.open_input_file(staged.path))
    share = file.metadata.num_rows // world
    lo, hi = rank * share, (rank + 1) * share
    parts, start = [], 0
    for group in range(file.num_row_groups):
        end = start + file.metadata.row_group(group).num_rows
        if start < hi and end > lo:
            table = file.read_row_group(group)
            parts.append(table.slice(max(lo - start, 0), min(hi, end) - max(lo, start)))
        start = end
    table = pa.concat_tables(parts) if parts else file.schema_arrow.empty_table()
    return {name: table.column(name).to_numpy() for name in table.column_names}


def _common_steps(model: Trainable, rows: dict[str, np.ndarray], world: int) -> int | None:
    """The batches every worker runs in an epoch: the fewest any worker's share makes (DDP
    waits on every worker at every step; listwise batches of whole users vary in number)."""
    if world == 1:
        return None
    import torch.distributed as dist

    mine = torch.tensor(sum(1 for _ in model.batch_indices(rows, model.config.seed)))
    dist.all_reduce(mine, op=dist.ReduceOp.MIN)
    return int(mine)


def require_room_for_data(num_workers: int, reads: bool = True) -> None:
    """Each worker holds a CPU for the whole run and Ray Data's reads (``reads``: the examples
    are streamed) need one more: on a local Ray without them the run waits for ever. Fail at
    once instead, naming the numbers. (A cluster joined through ``RAY_ADDRESS`` may autoscale:
    it is left to grow.)"""
    import ray

    cpus, needed = ray.cluster_resources().get("CPU", 0), num_workers + int(reads)
    if not os.environ.get("RAY_ADDRESS") and cpus < needed:
        why = "one per worker and one for Ray Data's reads" if reads else "one per worker"
        raise RecsysError(
            f"num_workers={num_workers} needs at least {needed} CPUs in the local Ray "
            f"({why}); it has {cpus:g}: use fewer workers or a Ray cluster (RAY_ADDRESS)"
        )


@dataclass
class StagedExamples:
    """Training examples written where every worker can read them, in the model's order."""

    path: str  # the parquet file
    directory: str  # removed once the run is over
    filesystem: pafs.FileSystem
    base: str  # the storage path in that filesystem (the run's checkpoints go under it)
    loss_args: object  # what the model's loss needs from the whole set (e.g. item counts)
    in_memory: bool  # each worker reads its share into memory (else Ray Data streams it)


def stage_examples(
    model: Trainable, fit_rows: dict[str, np.ndarray], run: RayRun, tag: str = ""
) -> StagedExamples:
    """Write ``fit_rows`` in ``model.example_order`` for the workers (``tag``: the job's,
    where a run trains several). The caller may drop its rows afterwards: the run reads only
    the file (at 20M interactions the rows are gigabytes, and a driver that kept them through
    training held them twice)."""
    fs, base = storage_filesystem(run.storage_path)
    if not run.resume:
        delete_dir(fs, f"{base}/{run.name}")  # a fresh run must not pick up old checkpoints
    directory = f"{base}/{run.name}-examples" + (f"-{tag}" if tag else "")
    order = model.example_order(fit_rows, model.config.seed)
    path = _write_examples(fit_rows, order, fs, directory)
    share = sum(v.nbytes for v in fit_rows.values()) / max(run.num_workers, 1)
    in_memory = share <= IN_MEMORY_MAX_BYTES
    return StagedExamples(path, directory, fs, base, model.loss_args(fit_rows), in_memory)


def fit_on_ray(model: Trainable, fit_rows: dict[str, np.ndarray], val, run: RayRun) -> Trainable:
    """Train a prepared neural model on Ray Train; load the best weights into it.

    ``model`` is a :class:`~recsys.models.trainable.Trainable`: the two-tower model and the
    DCN ranker are.
    """
    return fit_jobs([(model, stage_examples(model, fit_rows, run), val)], run)[0]


def fit_jobs(jobs: list[tuple[Trainable, StagedExamples, object]], run: RayRun) -> list:
    """Train several prepared models, each on its staged examples and validation data, one
    after the other in one Ray Train run (its controller and worker group started once:
    11-13 s of a MovieLens-100k run on 2 CPUs); load each one's best weights into it.

    Returns:
        The models, fitted, in the order given.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    started = time.time()
    ensure_ray()
    streamed = {f"job{i}": staged for i, (_, staged, _) in enumerate(jobs) if not staged.in_memory}
    require_room_for_data(run.num_workers, reads=bool(streamed))
    base = jobs[0][1]
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "jobs": [(model.worker_copy(), staged, val) for model, staged, val in jobs],
            # Read on the driver: workers keep the environment Ray started with.
            "fail_at_epoch": int(os.environ.get(FAIL_AT_EPOCH_ENV, "-1")),
            "checkpoint_every_s": run.checkpoint_every_s,
        },
        scaling_config=run.scaling(),
        run_config=ray.train.RunConfig(
            storage_path=base.base,
            storage_filesystem=base.filesystem,
            name=run.name,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
        datasets={name: _read_examples(staged) for name, staged in streamed.items()} or None,
    )
    fit_at = time.time()
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
    summaries = _jobs_done(saved)  # the run's last checkpoint: its last job's last epoch
    timing = run_timing(started, fit_at, time.time(), result.metrics, summaries)
    for (model, staged, _), summary in zip(jobs, summaries, strict=True):
        model.training_log = {
            "metrics": summary["metrics"],
            **summary["early_stopping"],
            "timing": timing,
        }
        model.load_state(summary["best_model"])
        delete_dir(staged.filesystem, staged.directory)
    return [model for model, _, _ in jobs]


def run_timing(started: float, fit_at: float, done: float, metrics: dict, jobs: list[dict]) -> dict:
    """Where a run's seconds went (wall clock): Ray's start (none when it was up), Ray Train's
    start of the controller and worker group up to the loop's first line, the jobs' epochs'
    training, the rest of the loop (building the networks, validation, reports, checkpoints)
    and the end of the run (the worker group's shutdown, the result back). Of the jobs this
    run trained: a resumed run's checkpoint may hold jobs an earlier run finished."""
    entered, reported = metrics["loop_entered_at"], metrics["reported_at"]
    jobs = [j for j in jobs if j["metrics"]["loop_entered_at"] == entered]  # not a resumed one's
    epochs_s = sum(sum(j["epoch_seconds"][: j["epoch"] + 1]) for j in jobs)
    return {
        "ray_start_s": fit_at - started,
        "worker_group_start_s": entered - fit_at,
        "epochs_s": epochs_s,
        "epochs": sum(j["epoch"] + 1 for j in jobs),
        "jobs": len(jobs),
        "loop_rest_s": reported - entered - epochs_s,
        "run_end_s": done - reported,
        "total_s": done - started,
        "started_at": started,  # unix times: a caller places the run within its own
        "done_at": done,
    }


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
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    return path
