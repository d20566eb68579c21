"""The two-tower's examples staged for Ray Train's workers: 32-bit columns, written in the
model's shuffled order a slice at a time (no reordered copy of every column at once)."""

import numpy as np
import pyarrow.parquet as pq

from recsys.models.two_tower import TwoTower, TwoTowerConfig
from recsys.training import ray_trainer
from recsys.training.ray_trainer import stage_examples
from recsys.training.runs import RayRun
from tests.helpers import side_tables


def test_examples_are_staged_in_the_models_order_a_slice_at_a_time(
    interactions, tmp_path, monkeypatch
):
    monkeypatch.setattr(ray_trainer, "WRITE_ROWS", 7)  # many slices, the last one short
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
