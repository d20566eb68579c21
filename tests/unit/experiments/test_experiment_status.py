"""An experiment's status from its answers and the clicks on them (split and interleaving),
the app's side (a user's arm per request, the interleaved answer, the prediction record) and
the log reader that finds an experiment's answers."""

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from recsys.data.records import PredictionRecord, record_line
from recsys.experiments import metrics
from recsys.experiments.assignment import arm_of
from recsys.experiments.spec import Experiment
from recsys.models.base import Candidates
from recsys.monitoring.logs import join_feedback, load_experiment_answers
from recsys.recommend.batch import Served
from recsys.recommend.stages import Answer, Recommendation
from serving import arms
from serving.predlog import prediction_record
from serving.schemas import ExperimentArm, ModelSelection, RecommendRequest, RecommendResponse

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SPLIT = Experiment(name="e1", control="v1", challenger="v2", share=0.5, min_users=100)


def split_rows(n_users: int, ctr: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """One answer of 10 items per user, in the user's arm; a click on the first item with the
    arm's probability (``target`` as join_feedback labels it)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(n_users):
        user = f"u{n}"
        arm = arm_of(SPLIT.name, user, SPLIT.share)
        clicked = rng.random() < ctr[arm]
        for rank in range(1, 11):
            target = int(clicked and rank == 1)
            version = SPLIT.challenger if arm == "challenger" else SPLIT.control
            ts = T0 + timedelta(seconds=n)
            rows.append((f"r{n}", ts, user, version, arm, arm, f"i{rank}", rank, 5.0, target))
    return pd.DataFrame(rows, columns=list(metrics.ANSWER_COLUMNS))


def test_a_split_names_the_arm_whose_users_click_more_and_checks_the_split():
    result = metrics.status(SPLIT, split_rows(3000, {"control": 0.10, "challenger": 0.20}))
    control, challenger = result["arms"]
    assert (control["arm"], challenger["arm"]) == ("control", "challenger")
    assert control["users"] + challenger["users"] == 3000 and result["srm_p_value"] > 0.001
    assert challenger["ctr"] > control["ctr"] and challenger["clicks"] > control["clicks"]
    assert challenger["ndcg_at_10"] == pytest.approx(challenger["ctr"])  # clicks at rank 1
    decision = result["decision"]
    assert decision["winner"] == "challenger" and decision["ci"][0] > 0
    same = metrics.status(SPLIT, split_rows(3000, {"control": 0.15, "challenger": 0.15}))
    assert same["decision"]["winner"] is None


def test_a_split_that_lost_part_of_an_arms_logs_is_not_decided():
    rows = split_rows(4000, {"control": 0.10, "challenger": 0.30})
    users = rows.loc[rows["arm"] == "challenger", "user_id"].unique()
    lost = set(users[: len(users) // 5])  # a fifth of the challenger's users never logged
    result = metrics.status(SPLIT, rows[~rows["user_id"].isin(lost)])
    assert result["srm_p_value"] < 0.001
    assert result["decision"]["winner"] is None
    assert "sample ratio mismatch" in result["decision"]["reason"]


def test_interleaving_credits_each_click_to_the_team_that_placed_the_item():
    spec = Experiment(name="e2", control="v1", challenger="v2", mode="interleave", min_users=50)
    rng = np.random.default_rng(3)
    rows = []
    for n in range(600):
        teams = ["control", "challenger"] * 5
        liked = "challenger" if rng.random() < 0.3 else ("control" if rng.random() < 0.15 else "")
        for rank, team in enumerate(teams, start=1):
            target = int(team == liked and rank <= 2)
            row = (f"r{n}", T0 + timedelta(seconds=n), f"u{n}", "v1", "interleaved", team)
            rows.append((*row, f"i{rank}", rank, 4.0, target))
    result = metrics.status(spec, pd.DataFrame(rows, columns=list(metrics.ANSWER_COLUMNS)))
    control, challenger = result["arms"]
    assert challenger["clicks"] > control["clicks"] > 0
    assert control["requests"] == challenger["requests"] == 600
    assert result["decision"]["winner"] == "challenger"
    assert result["decision"]["method"] == "mSPRT, interleaving"


def test_each_arm_lists_its_answers_or_its_teams_items_for_evidently():
    rows = split_rows(200, {"control": 0.2, "challenger": 0.4})
    lists = metrics.arm_lists(rows, k=5)
    assert set(lists) == {"control", "challenger"}
    for arm, frame in lists.items():
        mine = rows[(rows["arm"] == arm) & (rows["rank"] <= 5)]
        assert list(frame.columns) == ["user_id", "item_id", "rank", "target"]
        assert set(frame["user_id"]) == set(mine["request_id"]) and len(frame) == len(mine)
        assert frame["target"].sum() == mine["target"].sum()
    teams = ["control", "challenger"] * 3
    interleaved = [
        ("r1", T0, "u1", "v1", "interleaved", team, f"i{n}", n, 4.0, int(n == 2))
        for n, team in enumerate(teams, start=1)
    ]
    lists = metrics.arm_lists(pd.DataFrame(interleaved, columns=list(metrics.ANSWER_COLUMNS)))
    assert lists["challenger"]["rank"].tolist() == [2, 4, 6]
    assert lists["challenger"]["target"].tolist() == [1, 0, 0]
    assert lists["control"]["item_id"].tolist() == ["i1", "i3", "i5"]


# -- the app's side ----------------------------------------------------------------------------
def served(version: str, items: list[str]) -> Served:
    recs = [
        Recommendation(item_id=i, score=1.0 / n, rank=n, reason=version)
        for n, i in enumerate(items, start=1)
    ]
    candidates = Candidates(np.arange(len(items)), known=True)
    return Served(Answer("u1", recs, False), candidates, np.zeros(len(items)), {}, {"rank": 1e-3})


def test_the_app_serves_a_users_arm_and_interleaves_both_arms():
    lists = {"v1": ["a", "b", "c", "d"], "v2": ["x", "a", "y", "z"]}
    asked = []

    async def run(ask):
        asked.append(ask.version)
        return served(ask.version, lists[ask.version])

    body = RecommendRequest(user_id="u1", k=4)
    version, answer, arm = asyncio.run(arms.serve(run, "v1", SPLIT, body, "r1"))
    expected = arm_of("e1", "u1", 0.5)
    assert arm.arm == expected and version == {"control": "v1", "challenger": "v2"}[expected]
    assert asked == [version] and answer.answer.items[0].reason == version

    mixed = SPLIT.model_copy(update={"mode": "interleave"})
    version, answer, arm = asyncio.run(arms.serve(run, "v1", mixed, body, "r2"))
    assert version == "v1" and arm.arm == "interleaved" and sorted(asked[1:]) == ["v1", "v2"]
    items = [r.item_id for r in answer.answer.items]
    assert len(items) == 4 == len(set(items)) and [r.rank for r in answer.answer.items] == [
        1,
        2,
        3,
        4,
    ]
    for rec, team in zip(answer.answer.items, arm.teams, strict=True):
        assert rec.reason == {"control": "v1", "challenger": "v2"}[team]  # the arm's own item
    assert asyncio.run(arms.serve(run, "v1", None, body, "r3"))[2] is None


def test_the_user_config_names_an_experiment_whose_control_is_served():
    selection = ModelSelection(model_version="v1", experiment=SPLIT)
    assert selection.versions() == ["v1", "v2"]
    with pytest.raises(ValidationError, match="not the served model_version"):
        ModelSelection(model_version="v3", experiment=SPLIT)
    shadow = ModelSelection(
        model_version="v1", experiment=SPLIT.model_copy(update={"mode": "shadow"})
    )
    assert shadow.versions() == ["v1"] and shadow.shadow() == "v2"  # the Shadow holds v2
    assert selection.shadow() is None


def test_an_experiments_answer_is_logged_with_its_arm_and_read_back(tmp_path):
    body = RecommendRequest(user_id="u1", k=4)
    answer = served("v2", ["x", "a", "y", "z"])
    plain = RecommendResponse(
        user_id="u1", model_version="v2", items=answer.answer.items, cold_start=False, took_ms=3.0
    )
    record = prediction_record("r1", body, plain, answer, 3.0)
    assert "experiment" not in record and "arm" not in record  # other lines stay as they were
    arm = {"name": "e1", "arm": "interleaved", "teams": ["control", "challenger"] * 2}
    within = plain.model_copy(update={"experiment": ExperimentArm(**arm)})
    line = record_line(prediction_record("r2", body, within, answer, 3.0))
    parsed = PredictionRecord.model_validate_json(line)
    assert (parsed.experiment, parsed.arm, parsed.teams) == ("e1", "interleaved", arm["teams"])
    (tmp_path / "predictions-1.jsonl").write_text(record_line(record) + "\n" + line + "\n")
    rows, warnings = load_experiment_answers(tmp_path, "e1")
    assert not warnings and list(rows["team"]) == arm["teams"] and set(rows["request_id"]) == {"r2"}
    assert list(rows["rank"]) == [1, 2, 3, 4] and rows["ts"].dt.tz is not None
    empty, _ = load_experiment_answers(tmp_path, "nope")
    assert (
        empty.empty
        and len(join_feedback(empty, empty.iloc[:0].assign(type=[], rating=[], timestamp=[]))) == 0
    )
