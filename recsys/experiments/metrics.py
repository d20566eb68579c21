"""Per-arm live quality from the served answers and what the users did next, and the decision.

The input is one row per served item of the experiment's answers (the prediction log's
records that name it), each labelled ``target`` 1 when the user then acted on that item within
the window (``recsys.monitoring.logs.join_feedback``): ``request_id, ts, user_id,
model_version, arm, team, item_id, rank, latency_ms, target``. ``team`` is the arm whose list
placed the item (a split answer's items are all its arm's).

- A split compares the users' click-through (the share of a user's answers with a click on a
  served item) between the arms: one value per user, users in the order they first came.
- Interleaving compares, per user, which arm's items they clicked more (+1, -1 or 0 per
  answer, summed and signed per user).
- A shadow's challenger answered a share of the same requests without being shown: both
  lists are scored against what the user did next (an offline replay for the challenger),
  paired by request (the ``request`` column: a shadow answer's returned answer), and the
  users' preferences are tested as interleaving's are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.experiments.interleaving import preference
from recsys.experiments.sequential import (
    Decision,
    compare_arms,
    interleaving_preference,
    srm_p_value,
)
from recsys.experiments.spec import ARMS, Experiment
from recsys.ndcg import list_ndcg

ANSWER_COLUMNS = ("request_id", "ts", "user_id", "model_version", "arm", "team", "item_id")
ANSWER_COLUMNS += ("rank", "latency_ms", "target")
# The per-answer value each metric compares (ctr: whether the answer had a click).
METRIC_COLUMN = {"ctr": "hit", "hit_at_10": "hit", "ndcg_at_10": "ndcg"}


def answer_table(rows: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """One row per answer: clicks, hit and nDCG@k of the list against the clicks (an answer
    without a click scores 0)."""
    top = rows[rows["rank"] <= k]
    answers = top.groupby("request_id", sort=False).agg(
        ts=("ts", "first"),
        user_id=("user_id", "first"),
        arm=("arm", "first"),
        model_version=("model_version", "first"),
        latency_ms=("latency_ms", "first"),
        clicks=("target", "sum"),
    )
    clicked = top[top["target"].to_numpy() > 0]
    lists = answers.index.get_indexer(clicked["request_id"])
    ranks = clicked["rank"].to_numpy() - 1
    answers["ndcg"] = list_ndcg(lists, ranks, answers["clicks"].to_numpy(), k)
    answers["hit"] = (answers["clicks"] > 0).astype(float)
    return answers.reset_index().sort_values("ts", kind="stable")


def _arm_row(arm: str, version: str, answers: pd.DataFrame, clicks: np.ndarray, ndcg) -> dict:
    """One arm's row: its answers, the clicks credited to it per answer, its list quality."""
    latency = answers["latency_ms"].dropna()
    n = len(answers)
    return {
        "arm": arm,
        "model_version": version,
        "users": int(answers["user_id"].nunique()),
        "requests": n,
        "clicks": int(clicks.sum()),
        "ctr": float((clicks > 0).mean()) if n else None,
        "ndcg_at_10": ndcg,
        "hit_at_10": float((clicks > 0).mean()) if n else None,
        "p50_ms": float(latency.quantile(0.5)) if len(latency) else None,
        "p99_ms": float(latency.quantile(0.99)) if len(latency) else None,
    }


def status(experiment: Experiment, rows: pd.DataFrame, *, k: int = 10) -> dict:
    """The experiment's status: per-arm rows, the sample-ratio check and the decision."""
    versions = {"control": experiment.control, "challenger": experiment.challenger}
    if experiment.mode == "interleave":
        return _interleaved(experiment, rows, versions, k)
    if experiment.mode == "shadow":
        return _shadowed(experiment, rows, versions, k)
    answers = answer_table(rows, k)
    arms = []
    for arm in ARMS:
        mine = answers[answers["arm"] == arm]
        arms.append(
            _arm_row(arm, versions[arm], mine, mine["clicks"].to_numpy(), _mean(mine["ndcg"]))
        )
    srm = srm_p_value({row["arm"]: row["users"] for row in arms}, experiment.expected_shares())
    per_user = answers.groupby("user_id", sort=False).agg(
        arm=("arm", "first"), value=(METRIC_COLUMN[experiment.metric], "mean"), first=("ts", "min")
    )
    per_user = per_user.sort_values("first", kind="stable")
    challenger = per_user["arm"].to_numpy() == "challenger"
    values = per_user["value"].to_numpy(dtype=float)
    decision = compare_arms(
        values[~challenger],
        values[challenger],
        challenger,
        alpha=experiment.alpha,
        min_users=experiment.min_users,
        srm=srm,
    )
    return _result(experiment, arms, srm, decision)


def _interleaved(experiment: Experiment, rows: pd.DataFrame, versions: dict, k: int) -> dict:
    """Both arms in every answer: each arm's clicks are those on the items it placed; the
    decision tests the users' preferences (which arm's items they clicked more)."""
    top = rows[rows["rank"] <= k].sort_values(["ts", "request_id", "rank"], kind="stable")
    per_answer = top.groupby("request_id", sort=False).agg(
        user_id=("user_id", "first"), ts=("ts", "first"), latency_ms=("latency_ms", "first")
    )
    per_answer["pref"] = [
        preference(list(g["team"]), list(g["target"] > 0))
        for _, g in top.groupby("request_id", sort=False)
    ]
    arms = []
    for arm in ARMS:
        credited = top[top["team"] == arm].groupby("request_id")["target"].sum()
        clicks = credited.reindex(per_answer.index, fill_value=0).to_numpy()
        arms.append(_arm_row(arm, versions[arm], per_answer, clicks, None))
    per_user = per_answer.groupby("user_id", sort=False).agg(
        pref=("pref", "sum"), first=("ts", "min")
    )
    per_user = per_user.sort_values("first", kind="stable")
    decision = interleaving_preference(
        np.sign(per_user["pref"].to_numpy(dtype=float)),
        alpha=experiment.alpha,
        min_users=experiment.min_users,
    )
    return _result(experiment, arms, 1.0, decision)


def _shadowed(experiment: Experiment, rows: pd.DataFrame, versions: dict, k: int) -> dict:
    """Every user got the control's list; the challenger's lists (arm ``shadow``) of a share
    of the same requests were logged only. Each arm's row scores its lists against what the
    users did next; the decision tests, per user, which arm's lists caught more of it over the
    paired requests; ``overlap_at_10`` is the mean share of a shadow list's top k that the
    control's list of the same request holds."""
    answers = answer_table(rows, k)
    answers["request"] = answers["request_id"].map(
        rows.groupby("request_id", sort=False)["request"].first()
    )
    control = answers[answers["arm"] == "control"]
    shadow = answers[answers["arm"] == "shadow"]
    arms = [
        _arm_row(arm, versions[arm], mine, mine["clicks"].to_numpy(), _mean(mine["ndcg"]))
        for arm, mine in (("control", control), ("challenger", shadow))
    ]
    column = METRIC_COLUMN[experiment.metric]
    paired = shadow.join(control.set_index("request_id")[[column]], on="request", rsuffix="_c")
    paired = paired[paired[f"{column}_c"].notna()]
    per_user = paired.assign(pref=paired[column] - paired[f"{column}_c"])
    per_user = per_user.groupby("user_id", sort=False).agg(
        pref=("pref", "sum"), first=("ts", "min")
    )
    decision = interleaving_preference(
        np.sign(per_user.sort_values("first", kind="stable")["pref"].to_numpy(dtype=float)),
        alpha=experiment.alpha,
        min_users=experiment.min_users,
        method="mSPRT, shadow (paired lists)",
    )
    top = rows[rows["rank"] <= k]
    lists = top.groupby("request_id", sort=False)["item_id"].agg(frozenset)
    shared = [
        len(lists[r] & lists[c]) / max(len(lists[r]), 1)
        for r, c in zip(paired["request_id"], paired["request"], strict=True)
    ]
    overlap = float(np.mean(shared)) if shared else None
    return _result(experiment, arms, 1.0, decision) | {"overlap_at_10": overlap}


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def _result(experiment: Experiment, arms: list[dict], srm: float, decision: Decision) -> dict:
    return {
        "name": experiment.name,
        "mode": experiment.mode,
        "arms": arms,
        "srm_p_value": srm,
        "decision": decision.as_dict(),
    }


def arm_lists(rows: pd.DataFrame, k: int = 10) -> dict[str, pd.DataFrame]:
    """Each arm's served lists as Evidently's ranking rows (``user_id`` is the answer's
    request id: one list per answer; ``rank``, ``target`` the click): an A/B split's by arm,
    an interleaved answer's items by the team that placed them, at their place in the list; a
    shadow's logged lists are the challenger's."""
    top = rows[rows["rank"] <= k]
    arm = top["team"] if (top["arm"] == "interleaved").any() else top["arm"]
    arm = arm.replace({"shadow": "challenger"})
    frame = top.assign(user_id=top["request_id"].astype(str))[["user_id", "item_id", "rank"]]
    frame = frame.assign(target=(top["target"].to_numpy() > 0).astype(int))
    return {a: frame[arm.to_numpy() == a].reset_index(drop=True) for a in ARMS if (arm == a).any()}
