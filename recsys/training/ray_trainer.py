"""Neural models trained by Ray Train's ``TorchTrainer`` (two-tower, ranker), several in one run.

The driver stages each job's examples (``recsys.training.staging``); a worker reads its share
into memory and iterates it as the in-process fit does (``recsys.models.neural.epoch_batches``),
or streams it as a Ray Data shard where it is too large to hold. A run's jobs train on its
workers data-parallel, one job after the other (``num_workers`` > 1), or side by side, one
worker per job (``num_workers`` = 1 and room for more workers: each job then ends exactly as
its in-process fit). Every epoch reports its metrics; a checkpoint (each worker's file: the
jobs it finished, their best weights, and the one under way with its optimiser and
early-stopping state) goes to ``storage_path/run_name`` after a job's last epoch and on an
interval. Launching again with ``resume=True`` and the same run name continues from the latest
checkpoint: Ray Train V2 restores the run's checkpoint manager from storage and
``ray.train.get_checkpoint()`` hands it to the loop.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from recsys.config import ensure_ray
from recsys.models.neural import epoch_batches
from recsys.models.trainable import Trainable
from recsys.training.runs import RayRun, delete_dir
from recsys.training.staging import (
    StagedExamples,
    read_examples,
    read_share,
    require_room_for_data,
    stage_examples,
)

log = logging.getLogger(__name__)
FAIL_AT_EPOCH_ENV = "RECSYS_FAIL_AT_EPOCH"  # crash injection, for the resume test
__all__ = ["FAIL_AT_EPOCH_ENV", "fit_jobs", "fit_on_ray", "read_checkpoint", "stage_examples"]


def _train_loop(cfg: dict) -> None:
    """``train_loop_per_worker``: this worker's jobs in turn (every job, data-parallel with the
    other workers; or, side by side, every ``world``-th from its rank), then reports with the
    others until all are done (a report waits for every worker). A resumed run skips the
    jobs its checkpoint holds as finished and continues the ones under way."""
    import ray.train

    entered = time.time()  # the driver reads the worker group's start from it
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    finished, underway = {}, {}
    if checkpoint := ray.train.get_checkpoint():
        with checkpoint.as_directory() as d:
            finished, underway = read_checkpoint(d)
    parallel, starts = cfg["side_by_side"], cfg["starts"]
    source_jobs = {j for j, _ in starts.values()}  # the jobs a later one starts from
    # their weights, by job (those finished before, this run's as each ends)
    sources = {j: finished[j]["best_model"] for j in source_jobs if j in finished}
    # the first worker's file carries on what earlier runs finished; data-parallel workers
    # hold the same weights, so only the first one writes
    report = _EpochReport(
        cfg, entered, rank, world, finished if rank == 0 else {}, writes=parallel or rank == 0
    )
    for job in range(rank, len(cfg["jobs"]), world) if parallel else range(len(cfg["jobs"])):
        if job in finished:
            continue
        model, staged, val = cfg["jobs"][job]
        report.job, report.model = job, model
        start = (sources.pop(starts[job][0]), starts[job][1]) if job in starts else None
        best = _train_job(model, staged, val, job, underway.get(job), report, not parallel, start)
        if job in source_jobs:
            sources[job] = best
    report.idle()


def _train_job(
    model: Trainable, staged, val, job: int, saved, report, data_parallel: bool, start_from=None
):
    """One job's epochs in this worker: from ``saved``, a checkpoint of it, when given, else
    from ``start_from`` (another job's weights and the model's ``start_from`` argument) or
    the model's initial weights. Returns its best weights."""
    import ray.train
    import ray.train.torch

    device = ray.train.torch.get_device()
    model.net = model.build_net()
    if start_from is not None and saved is None:
        model.start_from(*start_from)
    loss = model.loss_module(staged.loss_args)
    start, state = 0, None
    if saved is not None:
        model.net.load_state_dict(saved["model"])
        start, state = saved["state"]["epoch"] + 1, saved["state"]
    loss = loss.to(device)
    rank, world = report.rank, report.world
    if data_parallel:
        trained = ray.train.torch.prepare_model(loss, move_to_device=False)
    else:
        trained, rank, world = loss, 0, 1  # this job is this worker's alone
    if staged.in_memory:
        rows = read_share(staged, rank, world)
        steps = _common_steps(model, rows, world)

        def batches(epoch: int):
            return epoch_batches(model, rows, model.config.seed + epoch, device, steps)
    else:
        batches = _streamed_batches(model, device, f"job{job}")
    final = model.run_epochs(batches, trained, val, start_epoch=start, state=state, on_epoch=report)
    return final.get("best_model")


class _EpochReport:
    """The epoch callback of a worker's jobs (``job`` and ``model``: the one under way):
    every epoch reports; the workers agree on a checkpoint after a job's last epoch and once
    ``checkpoint_every_s`` is over since the last one, each writing its file (``writes``)."""

    def __init__(
        self, cfg: dict, entered: float, rank: int, world: int, finished: dict, writes: bool
    ):
        self.cfg, self.entered, self.saved_at = cfg, entered, time.monotonic()
        self.rank, self.world, self.writes = rank, world, writes
        self.job, self.model = -1, None
        self.finished = dict(finished)  # job → what it left (_summary): this worker's file

    def __call__(self, epoch: int, metrics: dict, state: dict, last: bool) -> None:
        due = last or time.monotonic() - self.saved_at >= self.cfg["checkpoint_every_s"]
        _, due = self._agree(busy=True, due=due)
        metrics = {**metrics, "job": self.job, **self._stamps()}
        if last:
            self.finished[self.job] = _summary(state, metrics, self.rank)
            underway = {}
        else:
            underway = {self.job: {"model": self.model.net.state_dict(), "state": state}}
        self._report(metrics, due, underway)
        if epoch == self.cfg["fail_at_epoch"]:
            raise RuntimeError(f"injected failure after epoch {epoch} ({FAIL_AT_EPOCH_ENV})")

    def idle(self) -> None:
        """Report alongside the workers still training until none is."""
        while True:
            busy, due = self._agree(busy=False, due=False)
            if not busy:
                return
            self._report({"job": -1, **self._stamps()}, due, {})

    def _agree(self, busy: bool, due: bool) -> tuple[bool, bool]:
        """Whether any worker is still training, and wants a checkpoint."""
        if self.world == 1:
            return busy, due
        import torch.distributed as dist

        flags = torch.tensor([int(busy), int(due)])
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags[0]), bool(flags[1])

    def _stamps(self) -> dict:
        return {"run": self.cfg["run"], "loop_entered_at": self.entered, "reported_at": time.time()}

    def _report(self, metrics: dict, due: bool, underway: dict) -> None:
        import ray.train

        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if due and self.writes:
                payload = {"finished": self.finished, "underway": underway}
                torch.save(payload, Path(tmp) / f"state-{self.rank}.pt")
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        self.saved_at = time.monotonic() if due else self.saved_at


def read_checkpoint(directory: str | Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """The jobs a checkpoint accounts for, over its workers' files: the finished ones (job →
    best weights, early stopping, last metrics) and those under way (job → weights, state)."""
    finished, underway = {}, {}
    for file in sorted(Path(directory).glob("state-*.pt")):
        saved = torch.load(file, map_location="cpu", weights_only=False)
        finished |= saved["finished"]
        underway |= saved["underway"]
    return finished, {j: s for j, s in underway.items() if j not in finished}


def _summary(state: dict, metrics: dict, rank: int) -> dict:
    """What a finished job leaves: its best weights, its early stopping, its last metrics."""
    keep = ("best_model", "early_stopping", "epoch", "epoch_seconds")
    return {**{k: state.get(k) for k in keep}, "metrics": metrics, "rank": rank}


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


def _common_steps(model: Trainable, rows: dict[str, np.ndarray], world: int) -> int | None:
    """The batches every worker runs in an epoch: the fewest any worker's share makes (DDP
    waits on every worker at every step; listwise batches of whole users vary in number)."""
    if world == 1:
        return None
    import torch.distributed as dist

    mine = torch.tensor(sum(1 for _ in model.batch_indices(rows, model.config.seed)))
    dist.all_reduce(mine, op=dist.ReduceOp.MIN)
    return int(mine)


def fit_on_ray(model: Trainable, fit_rows, val, run: RayRun) -> Trainable:
    """Train a prepared neural model on Ray Train; load the best weights into it.

    ``model`` is a :class:`~recsys.models.trainable.Trainable`: the two-tower model and the
    DCN ranker are.
    """
    return fit_jobs([(model, stage_examples(model, fit_rows, run), val)], run)[0]


def fit_jobs(
    jobs: list[tuple[Trainable, StagedExamples, object]],
    run: RayRun,
    starts: dict[int, tuple[int, object]] | None = None,
) -> list:
    """Train several prepared models, each on its staged examples and validation data, in one
    Ray Train run (its controller and worker group started once); load each one's best weights
    into it. With ``run.num_workers`` = 1 the jobs train side by side on up to
    :func:`job_workers` workers, one job each; else, or where a job starts from another's
    weights (``starts``: job → (the earlier job, the model's ``start_from`` argument)), one
    after the other, data-parallel.

    Returns:
        The models, fitted, in the order given.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    started = time.time()
    ensure_ray()
    streamed = {f"job{i}": staged for i, (_, staged, _) in enumerate(jobs) if not staged.in_memory}
    starts = starts or {}
    side_by_side = run.num_workers == 1 and not streamed and len(jobs) > 1 and not starts
    world = job_workers(len(jobs), run) if side_by_side else run.num_workers
    require_room_for_data(world, reads=bool(streamed))
    base = jobs[0][1]
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "jobs": [(model.worker_copy(), staged, val) for model, staged, val in jobs],
            "side_by_side": side_by_side and world > 1,
            "starts": starts,
            "run": uuid.uuid4().hex,
            # Read on the driver: workers keep the environment Ray started with.
            "fail_at_epoch": int(os.environ.get(FAIL_AT_EPOCH_ENV, "-1")),
            "checkpoint_every_s": run.checkpoint_every_s,
        },
        scaling_config=run.scaling(world),
        run_config=ray.train.RunConfig(
            storage_path=base.base,
            storage_filesystem=base.filesystem,
            name=run.name,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
        datasets={name: read_examples(staged) for name, staged in streamed.items()} or None,
    )
    fit_at = time.time()
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        finished, _ = read_checkpoint(d)  # the run's last checkpoint: every job finished
    summaries = [finished[job] for job in range(len(jobs))]
    timing = run_timing(started, fit_at, time.time(), result.metrics, summaries)
    for (model, staged, _), summary in zip(jobs, summaries, strict=True):
        model.training_log = {
            "metrics": summary["metrics"],
            **summary["early_stopping"],
            "timing": {**timing, "workers": world},
        }
        model.load_state(summary["best_model"])
        delete_dir(staged.filesystem, staged.directory)
    return [model for model, _, _ in jobs]


def job_workers(jobs: int, run: RayRun) -> int:
    """The workers of a run of ``jobs`` one-worker jobs side by side: ``run.job_workers`` where
    set, else one per job up to the CPUs (GPUs with ``use_gpu``) the cluster has free."""
    if run.job_workers:
        return min(run.job_workers, jobs)
    import ray

    free = ray.available_resources().get("GPU" if run.use_gpu else "CPU", 0)
    return max(1, min(jobs, int(free)))


def run_timing(started: float, fit_at: float, done: float, metrics: dict, jobs: list[dict]) -> dict:
    """Where a run's seconds went (wall clock): Ray's start (none when it was up), Ray Train's
    start of the controller and worker group up to the loop's first line, the jobs' epochs'
    training (side by side: the busiest worker's), the rest of the loop (building the
    networks, validation, reports, checkpoints) and the end of the run (the worker group's
    shutdown, the result back). Of the jobs this run trained: a resumed run's checkpoint may
    hold jobs an earlier run finished."""
    entered, reported = metrics["loop_entered_at"], metrics["reported_at"]
    jobs = [j for j in jobs if j["metrics"]["run"] == metrics["run"]]  # not a resumed one's
    by_worker: dict[int, float] = defaultdict(float)
    for j in jobs:
        by_worker[j["rank"]] += sum(j["epoch_seconds"][: j["epoch"] + 1])
    epochs_s = max(by_worker.values(), default=0.0)
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
