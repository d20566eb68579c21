"""The closed loop's rollout: the drifted users before and after the retraining come from one
world, split by user; the running rollout experiment is found in the registry by its name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recsys.config import RecsysError
from recsys.experiments.spec import Experiment
from recsys.models.kinds import create_model
from recsys.registry import Registry
from recsys.workflows.loop import scratch_registry
from recsys.workflows.rollout import running_rollout
from recsys.workflows.simulated import drifted_population
from tests.helpers import make_interactions


def test_the_later_users_share_the_drifted_world_but_not_a_user(tmp_path):
    catalog = [str(n) for n in range(1, 81)]
    first, later = drifted_population(catalog, tmp_path / "w", 30, 10, later_users=20)
    assert first["user_id"].nunique() > 20 and later["user_id"].nunique() > 12
    assert not set(first["user_id"]) & set(later["user_id"])  # new to the retrained model
    assert set(first["item_id"]) | set(later["item_id"]) <= set(catalog)
    number = lambda rows: rows["user_id"].str.removeprefix("drift-u").astype(int)  # noqa: E731
    assert number(first).max() < 30 <= number(later).min()
    assert first["timestamp"].is_monotonic_increasing and later["timestamp"].is_monotonic_increasing
    alone, none = drifted_population(catalog, tmp_path / "a", 30, 10)
    assert none.empty and alone["user_id"].nunique() == first["user_id"].nunique()
    # one world: the same drifted popularity, whichever users it is drawn for
    top = lambda rows: set(rows["item_id"].value_counts().index[:10])  # noqa: E731
    assert len(top(first) & top(later)) >= 5


def record(experiment: Experiment, stopped: bool) -> dict:
    now = datetime(2026, 12, 7, tzinfo=UTC).isoformat()
    return {
        "experiment": experiment.model_dump(),
        "started_at": now,
        "stopped_at": now if stopped else None,
    }


def test_the_running_rollout_is_the_experiment_named_after_its_challenger(tmp_path):
    registry = Registry(tmp_path / "registry")
    assert running_rollout(str(registry.uri)) is None
    manual = Experiment(name="manual", control="v1", challenger="v2")
    registry.write_experiment_record("manual", record(manual, stopped=False))
    earlier = Experiment(name="rollout-v2", control="v1", challenger="v2")
    registry.write_experiment_record("rollout-v2", record(earlier, stopped=True))
    assert running_rollout(str(registry.uri)) is None  # a manual one, a stopped rollout
    trial = Experiment(name="rollout-v3", control="v1", challenger="v3", share=0.5)
    registry.write_experiment_record("rollout-v3", record(trial, stopped=False))
    assert running_rollout(str(registry.uri)) == trial


def test_the_loop_promotes_in_a_registry_of_its_own_that_starts_from_the_champion(tmp_path):
    """What the closed loop promotes stays in its scratch registry: the user's champion is
    the one the next quickstart meets."""
    mine = Registry(tmp_path / "mine")
    with pytest.raises(RecsysError, match="the closed loop needs a champion"):
        scratch_registry(mine, tmp_path / "loop")
    model = create_model("popularity").fit(make_interactions())
    mine.register(model.save(tmp_path / "m", version="v1"))
    mine.promote("v1")
    loop = scratch_registry(mine, tmp_path / "loop" / "registry")
    assert loop.champion().version == "v1" and loop.local_path("v1").exists()
    model.save(tmp_path / "m2", version="v2")
    loop.register(tmp_path / "m2")
    loop.promote("v2")
    assert mine.champion().version == "v1" and [v.version for v in mine.versions()] == ["v1"]
