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
"""

from __future__ import annotations

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

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks.values()]

    def summary(self) -> str:
        if self.promote:
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
        return f"gate: {head}: " + "; ".join(self.reasons) + tail


def judge(evaluation: dict[str, Any], policy: GatePolicy | None = None) -> GateDecision:
    """Apply the gate to an evaluation (``recsys.evaluation.protocol.evaluate_candidate``'s result).

    Args:
        evaluation: ``k``, ``candidate`` (with its ``kind`` when known) / ``champion`` (or
            None) / ``references`` (the baselines by kind) or a single ``baseline``, each with
            ``version`` (or ``model``) and ``metrics`` holding ``ndcg`` and ``catalog_coverage``.
        policy: the margins; the defaults when omitted.

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
    return GateDecision(
        promote=all(c.passed for c in checks.values()),
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
