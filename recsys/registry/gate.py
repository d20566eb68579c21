"""The promotion gate: a candidate replaces the champion only when it is better on the same
held-out users.

Three checks, each with its figures and a sentence, so the decision explains itself:

- ``beats_champion``: candidate nDCG@k ≥ champion nDCG@k + ``margin`` (a retrain on the same
  data lands within noise of the champion and must not churn the pointer);
- ``keeps_coverage``: candidate catalog coverage ≥ champion coverage − ``coverage_tolerance``
  (a model that wins nDCG by recommending only blockbusters is not promoted);
- ``beats_baseline``: candidate nDCG@k > the strongest baseline's evaluated beside it on the
  same users (EASE, popularity; not the candidate's own kind) + ``baseline_margin``: a
  multi-stage model that loses to one of its own sources is cost, not a model.

Without a champion the first two pass and the baselines decide. When a baseline wins, the
decision names it: it is a model kind of its own, which the pipeline trains, gates, registers
and serves like any other (``recsys pipeline run training --model ease``).

A rollout to an experiment (``rollout="experiment"``: the candidate becomes the champion's
challenger on a share of the users, who decide) needs the two nDCG checks; a lost coverage is
then the users' to judge, not grounds to keep the candidate from them: the check is kept, and
its reason says so. Every decision names the population its checks were judged on (the
evaluation's held-out users: how many, the data and the protocol).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

METRIC = "ndcg"
COVERAGE = "catalog_coverage"


class GatePolicy(BaseModel):
    """How much better a candidate must be (pipeline parameters and CLI options)."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(0.005, ge=-1.0, le=1.0)  # nDCG@k gain over the champion
    coverage_tolerance: float = Field(0.05, ge=0.0, le=1.0)  # catalog coverage it may lose
    baseline_margin: float = Field(0.001, ge=-1.0, le=1.0)  # nDCG@k gain over every baseline


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passed: bool
    candidate: float
    threshold: float | None
    reason: str


class GateDecision(BaseModel):
    """The gate's verdict; saved as the pipeline's decision artifact."""

    model_config = ConfigDict(extra="forbid")

    promote: bool
    candidate: str
    champion: str | None
    k: int
    checks: dict[str, Check]
    policy: GatePolicy
    baseline: str | None = None  # the strongest baseline beside the candidate
    baseline_wins: bool = False  # it beat the candidate: serve that kind instead
    rollout: str = "switch"  # or "experiment": promote means "the champion's challenger"
    population: dict[str, Any] | None = None  # the held-out users the checks were judged on

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks.values()]

    def summary(self) -> str:
        on = f", judged on {describe(self.population)}" if self.population else ""
        if self.promote and self.rollout == "experiment" and self.champion:
            head = f"TRY {self.candidate} against champion {self.champion} in an experiment"
        elif self.promote:
            over = f"over champion {self.champion}" if self.champion else "(no champion yet)"
            head = f"PROMOTE {self.candidate} {over}"
        elif self.champion:
            head = f"KEEP champion {self.champion}, reject {self.candidate}"
        else:
            head = f"REJECT {self.candidate} (no champion yet)"
        tail = ""
        if self.baseline_wins:
            tail = (
                f" — the {self.baseline} baseline is better on these users: train and serve it "
                f"with `recsys pipeline run training --model {self.baseline}`"
            )
        return f"gate: {head}{on}: " + "; ".join(self.reasons) + tail


def describe(population: dict[str, Any]) -> str:
    """``"943 held-out users of interactions.parquet (temporal)"``."""
    source = Path(str(population.get("source") or "")).name or "the split"
    protocol = f" ({population['protocol']})" if population.get("protocol") else ""
    return f"{population.get('users', '?')} held-out users of {source}{protocol}"


def judge(
    evaluation: dict[str, Any], policy: GatePolicy | None = None, rollout: str = "switch"
) -> GateDecision:
    """Apply the gate to an evaluation (``recsys.evaluation.protocol.evaluate_candidate``'s result).

    Args:
        evaluation: ``k``, ``candidate`` (with its ``kind`` when known) / ``champion`` (or
            None) / ``references`` (the baselines by kind) or a single ``baseline``, each with
            ``version`` (or ``model``) and ``metrics`` holding ``ndcg`` and ``catalog_coverage``.
        policy: the margins; the defaults when omitted.
        rollout: ``switch`` (every check must pass) or ``experiment`` (the nDCG checks must;
            coverage is left to the users).

    Returns:
        The decision with one check per rule.
    """
    policy = policy or GatePolicy()
    k = evaluation["k"]
    cand = evaluation["candidate"]["metrics"]
    champ_entry = evaluation.get("champion")
    base_name, base = strongest_baseline(evaluation)
    ndcg = float(cand[METRIC])
    coverage = float(cand[COVERAGE])
    checks: dict[str, Check] = {}
    if champ_entry is None:
        checks["beats_champion"] = Check(
            passed=True, candidate=ndcg, threshold=None, reason="no champion to beat"
        )
        checks["keeps_coverage"] = Check(
            passed=True, candidate=coverage, threshold=None, reason="no champion coverage to keep"
        )
    else:
        champ = champ_entry["metrics"]
        best, widest = float(champ[METRIC]), float(champ[COVERAGE])
        checks["beats_champion"] = _at_least(
            ndcg,
            best + policy.margin,
            f"nDCG@{k} {ndcg:.4f}",
            f"{best:.4f} + margin {policy.margin:g}",
        )
        checks["keeps_coverage"] = _at_least(
            coverage,
            widest - policy.coverage_tolerance,
            f"coverage {coverage:.3f}",
            f"{widest:.3f} - tolerance {policy.coverage_tolerance:g}",
        )
    floor = float(base[METRIC]) + policy.baseline_margin
    beats = ndcg > floor
    margin = f" + margin {policy.baseline_margin:g}" if policy.baseline_margin else ""
    checks["beats_baseline"] = Check(
        passed=beats,
        candidate=ndcg,
        threshold=floor,
        reason=f"nDCG@{k} {ndcg:.4f} {'>' if beats else '≤'} {base_name} "
        f"{float(base[METRIC]):.4f}{margin}",
    )
    required = dict(checks)
    trial = rollout == "experiment" and champ_entry is not None
    if trial and not checks["keeps_coverage"].passed:
        lost = checks["keeps_coverage"]
        required.pop("keeps_coverage")
        checks["keeps_coverage"] = lost.model_copy(
            update={"reason": f"{lost.reason} (an experiment: the users judge it)"}
        )
    return GateDecision(
        promote=all(c.passed for c in required.values()),
        rollout=rollout,
        population=evaluation.get("population"),
        candidate=evaluation["candidate"]["version"],
        champion=champ_entry["version"] if champ_entry else None,
        k=k,
        checks=checks,
        policy=policy,
        baseline=base_name,
        baseline_wins=not beats,
    )


def _at_least(value: float, threshold: float, what: str, champion: str) -> Check:
    """A check that ``value`` reaches ``threshold``; the reason reads
    ``"<what> ≥ champion <champion>"`` (``<`` when it does not)."""
    passed = value >= threshold
    return Check(
        passed=passed,
        candidate=value,
        threshold=threshold,
        reason=f"{what} {'≥' if passed else '<'} champion {champion}",
    )


def strongest_baseline(evaluation: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The baseline with the best nDCG@k beside the candidate (never its own kind)."""
    own = evaluation["candidate"].get("kind")
    refs = {
        name: entry["metrics"]
        for name, entry in (evaluation.get("references") or {}).items()
        if name != own
    }
    if not refs:
        entry = evaluation["baseline"]
        return str(entry.get("model", "popularity")), entry["metrics"]
    name = max(refs, key=lambda n: float(refs[n][METRIC]))
    return name, refs[name]
