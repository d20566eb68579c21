"""The two-tower model on Ray Train with the real MovieLens-100k: checkpoints, quality, resume
after a crash, the CLI round trip and (where CUDA exists) GPU training.

In-process runs share the session's Ray (``ray_session``, where the crash-injection variable
set after ``ray.init`` reaches the training workers), the CLI's commands too.
"""

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config import TRAIN_POLL_S, RecsysError
from recsys.data.split import stratified_split, write_split
from recsys.evaluation.metrics import ranking_metrics
from recsys.models.kinds import load_model
from recsys.models.manifest import read_manifest
from recsys.models.multistage.crossfit import StageTrainer
from recsys.models.popularity import Popularity
from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training.ray_trainer import read_checkpoint
from recsys.training.runs import RayRun
from recsys.training.staging import require_room_for_data
from recsys.training.train import TrainArgs, train
from recsys.training.two_tower import FAIL_AT_EPOCH_ENV, train_two_towers
from tests.helpers import recommend_rows

CONFIG = {"epochs": 3, "history_len": 20}
EVERY = ("--checkpoint-every", "0")  # a checkpoint after every epoch


@pytest.fixture(scope="module")
def split_dir(movielens_dir, tmp_path_factory) -> Path:
    ratings = pd.read_parquet(movielens_dir / "interactions.parquet")
    train_df, test_df = stratified_split(ratings)
    out = tmp_path_factory.mktemp("split")
    return write_split(
        train_df, test_df, out, params={"protocol": "stratified"}, side_from=movielens_dir
    )


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


def train_here(split_dir: Path, out: Path, storage: Path, run_name: str, **kw) -> Path:
    """``train(TrainArgs)`` in this process, on the session's Ray; a checkpoint after every
    epoch unless ``checkpoint_every_s`` says otherwise."""
    params = {**CONFIG, **kw.pop("params", {})}
    args = TrainArgs(
        data=split_dir,
        model="two_tower",
        out=out,
        params=params,
        storage_path=str(storage),
        run_name=run_name,
        **{"checkpoint_every_s": 0, **kw},
    )
    return train(args)


def val_history(model_dir: Path) -> list[float]:
    return read_manifest(model_dir).metrics["training"]["history"]


def checkpoints(storage: Path, run_name: str) -> dict[str, int]:
    """Checkpoint directory name → the epoch its (one job's) state was saved after."""
    return {d.name: epoch for d, [(_, epoch, _)] in job_checkpoints(storage / run_name)}


def job_checkpoints(run_dir: Path) -> list[tuple[Path, list[tuple[int, int, bool]]]]:
    """Each checkpoint a run directory keeps, with the (job, epoch, whether the job was done)
    of every job it holds."""
    out = []
    for d in sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir()):
        finished, underway = read_checkpoint(d)
        jobs = [(j, s["epoch"], True) for j, s in finished.items()]
        jobs += [(j, s["state"]["epoch"], False) for j, s in underway.items()]
        out.append((d, sorted(jobs)))
    return out


@dataclass
class Reference:
    model_dir: Path
    checkpoints: dict[str, int]  # as the run left them


@pytest.fixture(scope="module")
def uninterrupted(ray_session, split_dir, storage, tmp_path_factory) -> Reference:
    """The reference run: CONFIG trained start to end, no crash."""
    out = train_here(split_dir, tmp_path_factory.mktemp("models") / "full", storage, "full")
    return Reference(out, checkpoints(storage, "full"))


def test_checkpoints_history_and_quality(uninterrupted, split_dir, storage):
    # Checkpoints: the two latest kept (num_to_keep=2), each with the trainer state.
    assert sorted(uninterrupted.checkpoints.values()) == [1, 2]
    assert not (storage / "full-examples").exists()  # the staged examples are cleaned up

    log = read_manifest(uninterrupted.model_dir).metrics["training"]
    history = log["history"]
    assert len(history) == CONFIG["epochs"]
    assert all(0.0 < h < 1.0 and math.isfinite(h) for h in history)
    assert log["best_epoch"] == int(np.argmax(history)) and log["best"] == max(history)
    assert history[-1] > history[0]  # validation improves while it trains

    train_df = pd.read_parquet(split_dir / "train.parquet")
    test_df = pd.read_parquet(split_dir / "test.parquet")
    users = sorted(test_df.user_id.unique())
    recs = recommend_rows(load_model(uninterrupted.model_dir), users, 10, history=train_df)
    assert recs.groupby("user_id").size().eq(10).all()
    assert train_df[["user_id", "item_id"]].merge(recs, on=["user_id", "item_id"]).empty
    ndcg = ranking_metrics(recs, test_df, 10).ndcg
    pop = recommend_rows(Popularity().fit(train_df), users, 10, history=train_df)
    pop_ndcg = ranking_metrics(pop, test_df, 10).ndcg
    # Popularity is ~0.25 on this split; three epochs of the two-tower reach ~0.38.
    assert ndcg > 0.30 and ndcg > pop_ndcg + 0.05, (ndcg, pop_ndcg)


def test_a_fresh_run_under_an_old_name_crashes_then_cli_resume_recommend(
    uninterrupted, split_dir, storage, cli_here, monkeypatch, tmp_path
):
    """A new run under the reference run's name (its checkpoints there to tempt it) starts at
    epoch 0 and crashes after it (the injected failure reaches the session's workers);
    `recsys train --resume --run-name` (a new run that has only the storage to go on)
    finishes it from its checkpoint with the uninterrupted run's validation history (a shorter
    run's history is the longer one's prefix); `recsys recommend` serves it."""
    import ray.train

    assert (storage / "full").is_dir()
    out = tmp_path / "m"
    short = {"epochs": 2}
    monkeypatch.setenv(FAIL_AT_EPOCH_ENV, "0")
    with pytest.raises(ray.train.TrainingFailedError, match="injected failure after epoch 0"):
        train_here(split_dir, out, storage, "full", params=short)
    assert not out.exists()  # nothing written half-way
    crashed = checkpoints(storage, "full")
    # started afresh: the old run's checkpoints are gone and one epoch ran
    assert list(crashed.values()) == [0] and not set(crashed) & set(uninterrupted.checkpoints)
    monkeypatch.delenv(FAIL_AT_EPOCH_ENV)

    params = [arg for k, v in {**CONFIG, **short}.items() for arg in ("--param", f"{k}={v}")]
    train_args = ["train", "--data", split_dir, "--model", "two_tower", *params, "--out", out]
    cli_here(*train_args, "--storage-path", storage, "--run-name", "full", "--resume", *EVERY)
    resumed = checkpoints(storage, "full")
    (latest,) = crashed
    assert resumed.get(latest) == 0  # the crashed run's checkpoint is still there ...
    assert [resumed[n] for n in set(resumed) - set(crashed)] == [1]  # ... and one epoch ran
    np.testing.assert_allclose(
        val_history(out), val_history(uninterrupted.model_dir)[:2], rtol=0, atol=1e-6
    )

    recs_path = tmp_path / "recs.parquet"
    cli_here("recommend", "--model", out, "--data", split_dir, "--k", 10, "--out", recs_path)
    train_df = pd.read_parquet(split_dir / "train.parquet")
    recs = pd.read_parquet(recs_path)
    assert set(recs.user_id) == set(train_df.user_id)
    assert recs.groupby("user_id").size().eq(10).all()
    assert train_df[["user_id", "item_id"]].merge(recs, on=["user_id", "item_id"]).empty


def test_several_models_train_side_by_side_as_in_process_and_resume_where_they_were(
    ray_session, split_dir, tmp_path, monkeypatch
):
    """The cross-fitted model's two-towers train in one Ray Train run, side by side on two
    workers (jobs 0 and 2 on the first, job 1 on the second): each ends as the in-process fit
    of its part does (a worker runs the in-process loop on the same batches). A run that
    crashes after jobs 0 and 1 is resumed at job 2, the second worker reporting alongside; at
    the default interval a checkpoint is written when a job ends, holding every worker's."""
    import ray.train

    train_df = pd.read_parquet(split_dir / "train.parquet")
    users = pd.read_parquet(split_dir / "users.parquet")
    items = pd.read_parquet(split_dir / "items.parquet")
    cfg = TwoTowerConfig(**{**CONFIG, "epochs": 2})
    codes = train_df.user_id.astype(int)
    parts = [(train_df[codes % 4 == m], f"part{m}", None) for m in (0, 1, 2)]
    run = RayRun(storage_path=str(tmp_path), name="jobs", job_workers=2)

    monkeypatch.setenv(FAIL_AT_EPOCH_ENV, "1")  # after jobs 0 and 1's last epoch
    with pytest.raises(ray.train.TrainingFailedError, match="injected failure"):
        train_two_towers(parts, users, items, cfg, run)
    monkeypatch.delenv(FAIL_AT_EPOCH_ENV)
    assert [jobs for _, jobs in job_checkpoints(tmp_path / "jobs")] == [
        [(0, 1, True), (1, 1, True)]
    ]
    models = train_two_towers(parts, users, items, cfg, dataclasses.replace(run, resume=True))
    kept = [jobs for _, jobs in job_checkpoints(tmp_path / "jobs")]
    assert kept == [[(0, 1, True), (1, 1, True)], [(0, 1, True), (1, 1, True), (2, 1, True)]]
    timing = models[2].training_log["timing"]
    assert (timing["jobs"], timing["workers"]) == (1, 2)  # the resumed run trained one
    # A 1-CPU worker runs torch on one thread: so does the reference here (a product summed
    # over two threads rounds otherwise, and the runs drift apart epoch by epoch).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fits = [TwoTower(cfg).fit(part, users, items) for part, _, _ in parts]
    finally:
        torch.set_num_threads(threads)
    for model, here in zip(models, fits, strict=True):
        np.testing.assert_allclose(model.training_log["history"], here.training_log["history"])
        np.testing.assert_allclose(model.item_embeddings, here.item_embeddings, atol=1e-5)


def test_a_continued_two_tower_trains_after_its_source_in_one_worker_as_in_process(
    ray_session, split_dir, tmp_path
):
    """A part that continues the previous one (the multi-stage model's full fit from its last
    fold's weights) trains after it in the same worker, from its best weights with each
    user's id row mapped, on its rows only; both end as the in-process fits do."""
    train_df = pd.read_parquet(split_dir / "train.parquet")
    train_df = train_df[train_df.user_id.astype(int) % 3 == 0]  # a third of the users: quick
    users = pd.read_parquet(split_dir / "users.parquet")
    items = pd.read_parquet(split_dir / "items.parquet")
    cfg = TwoTowerConfig(**{**CONFIG, "epochs": 1, "val_share": 0.0})
    early = train_df.timestamp < train_df.timestamp.quantile(0.6)
    parts = [(train_df[early], "fold-0", None), (train_df, "all", ~early.to_numpy())]
    run = RayRun(storage_path=str(tmp_path), name="continued")
    models = train_two_towers(parts, users, items, cfg, run)
    timing = models[1].training_log["timing"]
    assert (timing["jobs"], timing["workers"]) == (2, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1-CPU worker's torch: one thread
    try:
        here = StageTrainer().two_towers(iter(parts), users, items, cfg)
    finally:
        torch.set_num_threads(threads)
    for model, fit in zip(models, here, strict=True):
        np.testing.assert_allclose(model.item_embeddings, fit.item_embeddings, atol=1e-5)
    # the continued fit moved on from its source, on the rows the source did not see
    assert not np.allclose(models[1].item_embeddings, models[0].item_embeddings, atol=1e-3)
    assert here[1].training_log["examples"] == int((~early).sum())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_training_one_epoch(ray_session, split_dir, tmp_path):
    out = train_here(
        split_dir, tmp_path / "gpu", tmp_path / "ckpt", "gpu", params={"epochs": 1}, gpu=True
    )
    manifest = read_manifest(out)
    assert manifest.config["use_gpu"] is True
    assert len(manifest.metrics["training"]["history"]) == 1
    model = load_model(out)  # the weights come back to the CPU
    assert len(recommend_rows(model, ["1", "2"], 10, history=None)) == 20


def test_the_local_rays_train_controllers_poll_at_the_short_interval(ray_session):
    """What ``ensure_ray`` sets before starting a local Ray reaches its worker processes (a
    Train controller is one): reports are taken at TRAIN_POLL_S, not Ray's default."""

    @ray_session.remote
    def interval() -> str | None:
        return os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")

    assert ray_session.get(interval.remote()) == TRAIN_POLL_S


def test_more_workers_than_a_local_ray_can_feed_fail_at_once(ray_session, monkeypatch):
    """Workers that stream their examples leave no CPU for Ray Data's reads when they take
    every CPU of a 2-CPU local Ray; workers that hold them in memory can take every CPU, no
    more. Either run would wait for ever, so it is refused with the numbers."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = int(ray_session.cluster_resources()["CPU"])
    require_room_for_data(cpus - 1)
    with pytest.raises(RecsysError, match=rf"num_workers={cpus} needs at least {cpus + 1} CPUs"):
        require_room_for_data(cpus)
    require_room_for_data(cpus, reads=False)
    with pytest.raises(RecsysError, match=rf"at least {cpus + 1} CPUs in the local Ray .one per"):
        require_room_for_data(cpus + 1, reads=False)
