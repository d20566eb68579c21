"""The promotion gate: each rule decides on its own and says why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recsys.registry.gate import GatePolicy, judge


def evaluation(cand=(0.40, 0.50), champ=(0.39, 0.50), base=0.20) -> dict:
    def row(ndcg, coverage):
        return {"ndcg": ndcg, "catalog_coverage": coverage}

    return {
        "k": 10,
        "candidate": {"version": "new", "metrics": row(*cand)},
        "champion": {"version": "old", "metrics": row(*champ)} if champ else None,
        "baseline": {"model": "popularity", "metrics": row(base, 0.05)},
    }


def test_without_a_champion_the_popularity_baseline_decides():
    first = judge(evaluation(champ=None))
    assert first.promote and first.champion is None
    assert first.checks["beats_champion"].reason == "no champion to beat"
    weak = judge(evaluation(cand=(0.15, 0.5), champ=None))
    assert not weak.promote and weak.summary().startswith("gate: REJECT new (no champion yet)")
    reason = "nDCG@10 0.1500 ≤ popularity 0.2000 + margin 0.001"
    assert weak.checks["beats_baseline"].reason == reason


def test_a_gain_within_the_margin_keeps_the_champion():
    same_data = judge(evaluation(cand=(0.4823, 0.5), champ=(0.4801, 0.5)))
    assert not same_data.promote
    check = same_data.checks["beats_champion"]
    assert not check.passed and check.threshold == pytest.approx(0.4851)
    assert same_data.summary().startswith("gate: KEEP champion old, reject new: nDCG@10 0.4823 <")
    assert judge(
        evaluation(cand=(0.4823, 0.5), champ=(0.4801, 0.5)), GatePolicy(margin=0.001)
    ).promote


def test_losing_catalog_coverage_beyond_the_tolerance_blocks_a_better_ndcg():
    narrow = judge(evaluation(cand=(0.45, 0.30), champ=(0.40, 0.40)))
    assert not narrow.promote
    assert narrow.checks["beats_champion"].passed and not narrow.checks["keeps_coverage"].passed
    assert narrow.checks["keeps_coverage"].threshold == pytest.approx(0.35)
    assert judge(evaluation(cand=(0.45, 0.36), champ=(0.40, 0.40))).promote


def test_a_rollout_to_an_experiment_leaves_a_lost_coverage_to_the_users():
    narrow = evaluation(cand=(0.45, 0.30), champ=(0.40, 0.40))
    narrow["population"] = {"users": 1243, "source": "/x/snapshot/interactions.parquet"}
    narrow["population"]["protocol"] = "stratified"
    trial = judge(narrow, rollout="experiment")
    assert trial.promote and not trial.checks["keeps_coverage"].passed  # kept, and said
    assert trial.checks["keeps_coverage"].reason.endswith("(an experiment: the users judge it)")
    assert trial.summary().startswith(
        "gate: TRY new against champion old in an experiment, judged on 1243 held-out users "
        "of interactions.parquet (stratified): nDCG@10 0.4500 ≥ champion"
    )
    assert not judge(narrow).promote  # a switch still needs every check
    worse = evaluation(cand=(0.39, 0.40), champ=(0.40, 0.40))  # the nDCG checks still decide
    assert not judge(worse, rollout="experiment").promote
    first = judge(evaluation(champ=None), rollout="experiment")  # nothing to test it against
    assert first.promote and first.summary().startswith("gate: PROMOTE new (no champion yet)")


def test_every_rule_must_pass_and_the_summary_lists_each_reason():
    verdict = judge(evaluation(cand=(0.45, 0.5), champ=(0.40, 0.5)))
    assert verdict.promote
    summary = verdict.summary()
    assert summary.startswith("gate: PROMOTE new over champion old: nDCG@10 0.4500 ≥ champion")
    assert len(verdict.reasons) == 3
    assert GatePolicy.model_validate(verdict.model_dump()["policy"]) == GatePolicy()


def test_policy_refuses_unknown_fields_and_out_of_range_values():
    with pytest.raises(ValidationError, match="extra"):
        GatePolicy(margn=0.01)
    with pytest.raises(ValidationError):
        GatePolicy(coverage_tolerance=2.0)


def test_the_strongest_baseline_beside_the_candidate_must_be_beaten():
    result = evaluation(cand=(0.4503, 0.5), champ=None)
    result["references"] = {
        "popularity": {"model": "popularity", "metrics": {"ndcg": 0.25, "catalog_coverage": 0.03}},
        "ease": {"model": "ease", "metrics": {"ndcg": 0.4823, "catalog_coverage": 0.2}},
    }
    verdict = judge(result)
    assert not verdict.promote and verdict.baseline == "ease" and verdict.baseline_wins
    assert verdict.checks["beats_baseline"].reason == (
        "nDCG@10 0.4503 ≤ ease 0.4823 + margin 0.001"
    )
    assert "the ease baseline is better" in verdict.summary()
    assert "--model ease" in verdict.summary()
    result["candidate"]["metrics"]["ndcg"] = 0.4870
    assert judge(result).promote and not judge(result).baseline_wins
    # a candidate of a baseline's own kind is held to the others, not to itself
    result["candidate"] = {
        "version": "e1",
        "kind": "ease",
        "metrics": {"ndcg": 0.4823, "catalog_coverage": 0.2},
    }
    verdict = judge(result)
    assert verdict.promote and verdict.baseline == "popularity"
