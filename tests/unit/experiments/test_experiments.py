"""Online experiments' core: sticky, uniform and independent assignment; team-draft
interleaving; the sample-ratio check; the always-valid test's false-positive rate over seeded
A/A experiments read at every look, and its power on a real difference."""

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from recsys.experiments.assignment import arm_of, arms_of, unit_hash
from recsys.experiments.interleaving import preference, team_draft
from recsys.experiments.sequential import (
    SRM_P,
    compare_arms,
    interleaving_preference,
    srm_p_value,
)
from recsys.experiments.spec import Experiment

USERS = [f"u{i}" for i in range(20_000)]


# -- assignment ------------------------------------------------------------------------------
def test_a_users_arm_is_sticky_and_the_shares_hold():
    arms = arms_of("exp-a", USERS, 0.1)
    assert [arm_of("exp-a", u, 0.1) for u in USERS[:500]] == list(arms[:500])
    users = {"challenger": int((arms == "challenger").sum())}
    users["control"] = len(USERS) - users["challenger"]
    assert srm_p_value(users, {"control": 0.9, "challenger": 0.1}) > SRM_P
    assert arm_of("exp-a", "never-seen-before", 0.1) in {"control", "challenger"}


def test_two_experiments_assign_independently():
    a = arms_of("exp-a", USERS, 0.5) == "challenger"
    b = arms_of("exp-b", USERS, 0.5) == "challenger"
    table = [[(a & b).sum(), (a & ~b).sum()], [(~a & b).sum(), (~a & ~b).sum()]]
    assert stats.chi2_contingency(table).pvalue > SRM_P
    hashes = np.array([unit_hash("exp-a", u) for u in USERS])
    assert stats.kstest(hashes, "uniform").pvalue > SRM_P  # uniform on [0, 1)


def test_an_experiment_needs_two_versions_and_a_valid_share():
    Experiment(name="e1", control="v1", challenger="v2", share=0.1)
    for bad in (
        {"control": "v1", "challenger": "v1"},
        {"control": "v1", "challenger": "v2", "share": 1.0},
        {"control": "v1", "challenger": "v2", "share": 0.0},
        {"control": "v1", "challenger": "v2", "mode": "canary"},
    ):
        with pytest.raises(ValidationError):
            Experiment(name="e1", **bad)
    with pytest.raises(ValidationError, match="name"):
        Experiment(name="no spaces", control="v1", challenger="v2")


# -- interleaving ----------------------------------------------------------------------------
def test_team_draft_takes_turns_without_duplicates_and_is_reproducible():
    control = ["a", "b", "c", "d", "e", "f"]
    challenger = ["b", "x", "a", "y", "z", "w"]
    mixed = team_draft(control, challenger, 6, "exp|u1|0")
    assert len(mixed.items) == 6 and len(set(mixed.items)) == 6
    assert abs(mixed.teams.count("control") - mixed.teams.count("challenger")) <= 1
    for item, team in zip(mixed.items, mixed.teams, strict=True):
        assert item in (control if team == "control" else challenger)
    assert team_draft(control, challenger, 6, "exp|u1|0") == mixed
    firsts = {team_draft(control, challenger, 6, f"exp|u{i}|0").teams[0] for i in range(40)}
    assert firsts == {"control", "challenger"}  # the coin decides who starts
    short = team_draft(["a"], ["b", "c", "d"], 4, "k")
    assert sorted(short.items) == ["a", "b", "c", "d"]  # a spent arm lets the other fill


def test_a_click_credits_the_team_that_placed_the_item():
    teams = ["control", "challenger", "control", "challenger"]
    assert preference(teams, [False, True, False, False]) == 1
    assert preference(teams, [True, True, True, False]) == -1
    assert preference(teams, [True, True, False, False]) == 0
    assert preference(teams, [False] * 4) == 0


# -- the sample-ratio check ------------------------------------------------------------------
def test_an_arm_that_loses_five_percent_of_its_users_logs_is_flagged():
    arms = arms_of("exp-srm", USERS, 0.5)
    rng = np.random.default_rng(0)
    kept = (arms == "control") | (rng.random(len(arms)) > 0.05)  # the challenger loses 5%
    users = {arm: int((arms[kept] == arm).sum()) for arm in ("control", "challenger")}
    assert srm_p_value(users, {"control": 0.5, "challenger": 0.5}) < SRM_P
    clean = {arm: int((arms == arm).sum()) for arm in ("control", "challenger")}
    assert srm_p_value(clean, {"control": 0.5, "challenger": 0.5}) > SRM_P


def _ab(rng, n: int, p_control: float, p_challenger: float):
    arrivals = rng.random(n) < 0.5
    values = np.where(arrivals, rng.random(n) < p_challenger, rng.random(n) < p_control)
    return values[~arrivals], values[arrivals], arrivals


# -- the always-valid test -------------------------------------------------------------------
def test_aa_experiments_read_at_every_look_declare_a_winner_in_at_most_five_percent():
    """200 seeded A/A experiments of 2,000 users; the p-value is the smallest over every
    earlier sample size, so a winner at any look shows in the final status."""
    winners = peeking = 0
    for seed in range(200):
        control, challenger, arrivals = _ab(np.random.default_rng(seed), 2000, 0.1, 0.1)
        decision = compare_arms(control, challenger, arrivals, min_users=100)
        winners += decision.winner is not None
        peeking += any(  # a fixed-horizon t-test read every 200 users, for contrast
            stats.ttest_ind(
                control[: (~arrivals[:n]).sum()], challenger[: arrivals[:n].sum()]
            ).pvalue
            < 0.05
            for n in range(200, 2001, 200)
        )
    assert winners / 200 <= 0.05, winners
    assert peeking / 200 > 0.10, peeking  # what the always-valid p-value protects against


def test_a_real_difference_is_called_for_the_better_arm_with_its_interval():
    rng = np.random.default_rng(1)
    control, challenger, arrivals = _ab(rng, 6000, 0.10, 0.15)
    decision = compare_arms(control, challenger, arrivals, min_users=200)
    assert decision.winner == "challenger" and decision.p_value <= 0.05
    assert decision.ci[0] < 0.05 < decision.ci[1] and decision.ci[0] > 0
    worse = compare_arms(challenger, control, ~arrivals, min_users=200)
    assert worse.winner == "control"


def test_no_decision_before_min_users_or_under_a_sample_ratio_mismatch():
    rng = np.random.default_rng(2)
    control, challenger, arrivals = _ab(rng, 6000, 0.10, 0.20)
    early = compare_arms(control, challenger, arrivals, min_users=10_000)
    assert early.winner is None and "min_users" in early.reason
    broken = compare_arms(control, challenger, arrivals, min_users=200, srm=1e-6)
    assert broken.winner is None and "sample ratio mismatch" in broken.reason


def test_interleaving_is_valid_under_aa_and_calls_a_better_arm():
    winners = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        prefs = rng.choice([-1, 0, 1], size=1000, p=[0.15, 0.7, 0.15])
        winners += interleaving_preference(prefs, min_users=100).winner is not None
    assert winners / 200 <= 0.05, winners
    rng = np.random.default_rng(7)
    prefs = rng.choice([-1, 0, 1], size=1000, p=[0.12, 0.7, 0.18])
    assert interleaving_preference(prefs, min_users=100).winner == "challenger"
