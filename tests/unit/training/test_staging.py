"""The two-tower's examples staged for Ray Train's workers: 32-bit columns, written in the
model's shuffled order a slice at a time (no reordered copy of every column at once); each
worker's equal share read into memory, or streamed where it is too large; an epoch's batches."""

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import torch

from recsys.models.neural import epoch_batches
from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training import staging
from recsys.training.runs import RayRun
from recsys.training.staging import read_share, stage_examples
from tests.helpers import side_tables


def test_examples_are_staged_in_the_models_order_a_slice_at_a_time(
    interactions, tmp_path, monkeypatch
):
    monkeypatch.setattr(staging, "WRITE_ROWS", 7)  # many slices, the last one short
    users, items = side_tables()
    model = TwoTower(TwoTowerConfig(history_len=4, epochs=1))
    rows = model.prepare(model.prepare_base(interactions, items), users, items)
    assert {v.dtype for v in rows.values()} == {np.dtype(np.int32)}
    staged = stage_examples(model, rows, RayRun(storage_path=str(tmp_path), name="run"))

    back = pq.read_table(staged.path)
    order = model.example_order(rows, model.config.seed)
    assert back.num_rows == len(order) == len(interactions) and len(order) % 7
    assert back.column_names == list(rows)
    for name, values in rows.items():
        np.testing.assert_array_equal(back[name].to_numpy(), values[order], err_msg=name)
    np.testing.assert_array_equal(staged.loss_args, model.item_counts(rows))


def test_a_fresh_run_clears_its_old_checkpoints_when_staging(interactions, tmp_path):
    old = tmp_path / "run" / "checkpoint_0"
    old.mkdir(parents=True)
    model = TwoTower(TwoTowerConfig(history_len=4, epochs=1))
    rows = model.prepare(model.prepare_base(interactions, None), None, None)
    stage_examples(model, rows, RayRun(storage_path=str(tmp_path), name="run", resume=True))
    assert old.exists()  # a resumed run keeps them
    stage_examples(model, rows, RayRun(storage_path=str(tmp_path), name="run"))
    assert not old.exists()


def test_each_worker_reads_an_equal_slice_of_the_staged_order(interactions, tmp_path, monkeypatch):
    """Shares cut across row groups: worker r holds rows [r*m, (r+1)*m) of the staged file,
    m = rows // workers, as many for every worker (DDP steps together)."""
    monkeypatch.setattr(staging, "ROW_GROUP_ROWS", 5)
    model = TwoTower(TwoTowerConfig(history_len=4, epochs=1))
    rows = model.prepare(model.prepare_base(interactions, None), None, None)
    staged = stage_examples(model, rows, RayRun(storage_path=str(tmp_path), name="run"))
    assert staged.in_memory
    whole = pq.read_table(staged.path)
    assert whole.num_rows % 7  # the last rows are left out with seven workers
    for world in (1, 2, 7):
        shares = [read_share(staged, rank, world) for rank in range(world)]
        m = whole.num_rows // world
        assert [len(s["uid"]) for s in shares] == [m] * world
        for name in rows:
            got = np.concatenate([s[name] for s in shares])
            np.testing.assert_array_equal(got, whole[name].to_numpy()[: m * world], err_msg=name)


def test_examples_larger_than_a_workers_memory_share_are_streamed(
    interactions, tmp_path, monkeypatch
):
    model = TwoTower(TwoTowerConfig(history_len=4, epochs=1))
    rows = model.prepare(model.prepare_base(interactions, None), None, None)
    size = sum(v.nbytes for v in rows.values())
    monkeypatch.setattr(staging, "IN_MEMORY_MAX_BYTES", size // 2)
    run = RayRun(storage_path=str(tmp_path), name="run")
    assert not stage_examples(model, rows, run).in_memory
    assert stage_examples(model, rows, dataclasses.replace(run, num_workers=2)).in_memory


def test_an_epochs_batches_cover_every_row_once_in_a_seeded_order(interactions):
    model = TwoTower(TwoTowerConfig(history_len=4, epochs=1, batch_size=16))
    rows = model.prepare(model.prepare_base(interactions, None), None, None)
    n = len(rows["uid"])
    batches = list(epoch_batches(model, rows, seed=3))
    assert len(batches) == -(-n // 16) and all(len(b["uid"]) <= 16 for b in batches)
    seen = np.sort(np.concatenate([b["iid"].numpy() for b in batches]))
    np.testing.assert_array_equal(seen, np.sort(rows["iid"]))
    again = list(epoch_batches(model, rows, seed=3, limit=2))
    assert len(again) == 2 and torch.equal(again[1]["uid"], batches[1]["uid"])
    other = next(epoch_batches(model, rows, seed=4))
    assert not torch.equal(other["uid"], batches[0]["uid"])
