"""The statistics that decide an experiment, safe to read at every look.

- The sample-ratio check: a chi-squared test of the users each arm got against the shares the
  experiment set; below ``SRM_P`` the split itself is broken and no decision is made.
- The always-valid test (mSPRT, Johari, Koomen, Pekelis and Walsh, "Always Valid Inference",
  2017/2022): a normal mixture over the effect, with ``tau**2`` its variance. The p-value at a
  look is the smallest ``1 / Lambda`` over every earlier sample size (the users in arrival
  order), so reading the status every minute never inflates the false-positive rate; the
  confidence sequence is the set of effects the test would not reject.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

SRM_P = 0.001  # below it the split is flagged, as experimentation platforms do


def srm_p_value(users: dict[str, int], shares: dict[str, float]) -> float:
    """Chi-squared p-value of the users per arm against the expected shares."""
    observed = np.array([users[arm] for arm in shares], dtype=float)
    if observed.sum() == 0:
        return 1.0
    expected = observed.sum() * np.array(list(shares.values()), dtype=float)
    return float(stats.chisquare(observed, expected).pvalue)


@dataclass(frozen=True)
class Decision:
    winner: str | None  # "challenger", "control", or None: continue
    effect: float  # challenger - control (interleaving: the mean preference for the challenger)
    ci: tuple[float, float]  # always-valid at 1 - alpha
    p_value: float  # always-valid
    method: str
    reason: str

    def as_dict(self) -> dict:
        return {
            "winner": self.winner,
            "effect": self.effect,
            "ci": list(self.ci),
            "p_value": self.p_value,
            "method": self.method,
            "reason": self.reason,
        }


def _running(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample size, mean and (unbiased) variance of every prefix of ``values``."""
    n = np.arange(1, len(values) + 1, dtype=float)
    mean = np.cumsum(values) / n
    square = np.cumsum(values**2) / n
    var = np.maximum(square - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    return n, mean, var


def _min_p(delta: np.ndarray, v: np.ndarray, tau2: float) -> float:
    """The always-valid p-value: min over the looks of 1 / Lambda, the mixture likelihood
    ratio of an effect estimate ``delta`` of variance ``v`` (looks without a variance yet are
    skipped)."""
    ok = np.isfinite(v) & (v > 0)
    d, w = delta[ok], v[ok]
    log_lambda = 0.5 * np.log(w / (w + tau2)) + tau2 * d**2 / (2 * w * (w + tau2))
    return float(min(1.0, np.exp(-np.max(log_lambda, initial=0.0))))


def _half_width(v: float, tau2: float, alpha: float) -> float:
    return math.sqrt(v * (v + tau2) / tau2 * (math.log((v + tau2) / v) - 2 * math.log(alpha)))


def _decide(delta, v, p, tau2, alpha, enough: bool, srm: float, method: str) -> Decision:
    d, var = float(delta[-1]), float(v[-1])
    if not math.isfinite(var) or var <= 0:
        return Decision(None, d, (-math.inf, math.inf), 1.0, method, "no variance yet")
    half = _half_width(var, tau2, alpha)
    ci = (d - half, d + half)
    if srm < SRM_P:
        return Decision(None, d, ci, p, method, f"sample ratio mismatch (p={srm:.2g})")
    if not enough:
        return Decision(None, d, ci, p, method, "fewer users than min_users in an arm")
    if p > alpha:
        return Decision(None, d, ci, p, method, f"p={p:.3g} > alpha={alpha:g}: continue")
    winner = "challenger" if d > 0 else "control"
    return Decision(winner, d, ci, p, method, f"p={p:.3g} <= alpha={alpha:g}")


def compare_arms(
    control: np.ndarray,
    challenger: np.ndarray,
    arrivals: np.ndarray,
    *,
    alpha: float = 0.05,
    min_users: int = 200,
    srm: float = 1.0,
) -> Decision:
    """A/B: one value per user (e.g. whether they clicked), ``arrivals`` the arm of each user
    in the order they arrived (``True`` for the challenger), the values in that order too.

    ``tau**2`` is the variance of the effect estimate at ``min_users`` users per arm: the test
    is most powerful for effects first visible around there.
    """
    a, b = np.asarray(control, float), np.asarray(challenger, float)
    order = np.asarray(arrivals, bool)
    if len(a) < 2 or len(b) < 2:
        return Decision(None, 0.0, (-math.inf, math.inf), 1.0, "mSPRT", "fewer than 2 users")
    # every prefix of the arrivals: the users each arm had then
    na = np.cumsum(~order)
    nb = np.cumsum(order)
    _, ma, va = _running(a)
    _, mb, vb = _running(b)
    looks = (na >= 2) & (nb >= 2)
    ia, ib = na[looks] - 1, nb[looks] - 1
    v = va[ia] / na[looks] + vb[ib] / nb[looks]
    delta = mb[ib] - ma[ia]
    pooled = (va[-1] + vb[-1]) / 2
    tau2 = max(2 * pooled / min_users, 1e-12)
    p = _min_p(delta, v, tau2)
    enough = min(len(a), len(b)) >= min_users
    return _decide(delta, v, p, tau2, alpha, enough, srm, "mSPRT, two arms")


def interleaving_preference(
    preferences: np.ndarray,
    *,
    alpha: float = 0.05,
    min_users: int = 200,
    method: str = "mSPRT, interleaving",
) -> Decision:
    """Interleaving (and a shadow's paired lists): each user's preference (+1 challenger,
    -1 control, 0 none) in arrival order; the test of a mean preference of zero."""
    x = np.asarray(preferences, float)
    if len(x) < 2:
        return Decision(None, 0.0, (-math.inf, math.inf), 1.0, method, "fewer than 2 users")
    n, mean, var = _running(x)
    v = (var / n)[1:]
    tau2 = max(var[-1] / min_users, 1e-12)
    p = _min_p(mean[1:], v, tau2)
    return _decide(mean[1:], v, p, tau2, alpha, len(x) >= min_users, 1.0, method)
