"""Off-policy estimates of reward per impression: IPS, self-normalised IPS, doubly robust.

Input is one row per logged impression (request, position j, item a shown there) with the
reward r, the logging policy's propensity p₀(a at j) and the target policy's p₁(a at j).
The estimators assume the item-position model: an impression's reward depends on the
context, the item and its position, not on the other items of the slate. Then

    IPS    V = Σ w·r / Σ 1                  w = p₁/p₀           (unbiased)
    SNIPS  V = Σ w·r / Σ w                                      (consistent, lower variance)
    DR     V = Σ [ dm + w·(r − q̂) ] / Σ 1   dm = Σ_a p₁(a at j)·q̂(a, j)
    DM     V = Σ dm / Σ 1                                       (the reward model alone)

with sums over impressions. Requests are the independent units (impressions of one slate
share a user), so each estimate is a ratio of per-request sums and its standard error comes
from the linearised ratio over requests; the interval is normal. ESS is Kish's
(Σw)²/Σw² over impressions: how many on-policy impressions the weighted sample is worth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from models.errors import EvaluationError


@dataclass(frozen=True)
class Estimate:
    """One estimator's value per impression with its interval and diagnostics."""

    estimator: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    ess: float
    requests: int
    impressions: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoggedImpressions:
    """The arrays OPE reads, one entry per logged impression (validated on construction)."""

    request: np.ndarray  # integer request codes: the independent units
    reward: np.ndarray
    logging_propensity: np.ndarray  # p₀(logged item at its position)
    target_propensity: np.ndarray  # p₁(logged item at its position)
    q_logged: np.ndarray | None = None  # q̂(logged item, position) for DR
    q_target: np.ndarray | None = None  # Σ_a p₁(a at this position)·q̂(a, position) for DR

    def __post_init__(self) -> None:
        n = len(self.reward)
        arrays = {
            "request": self.request, "reward": self.reward,
            "logging_propensity": self.logging_propensity,
            "target_propensity": self.target_propensity,
            "q_logged": self.q_logged, "q_target": self.q_target,
        }
        for name, arr in arrays.items():
            if arr is not None and len(arr) != n:
                raise EvaluationError(
                    f"{name} has {len(arr)} entries, expected {n} (one per impression)")
        if n == 0:
            raise EvaluationError("no logged impressions to evaluate")
        p0 = np.asarray(self.logging_propensity, dtype=float)
        if not np.all(np.isfinite(p0)) or np.any(p0 <= 0) or np.any(p0 > 1):
            bad = p0[~((p0 > 0) & (p0 <= 1))][:3]
            raise EvaluationError(
                f"logging propensities must be in (0, 1], got e.g. {bad.tolist()}")
        p1 = np.asarray(self.target_propensity, dtype=float)
        if not np.all(np.isfinite(p1)) or np.any(p1 < 0) or np.any(p1 > 1 + 1e-9):
            raise EvaluationError("target propensities must be in [0, 1]")
        if (self.q_logged is None) != (self.q_target is None):
            raise EvaluationError("doubly robust needs both q_logged and q_target")

    @property
    def weights(self) -> np.ndarray:
        p1 = np.asarray(self.target_propensity, float)
        return p1 / np.asarray(self.logging_propensity, float)


def _ratio(inp: LoggedImpressions, name: str, numerator: np.ndarray, denominator: np.ndarray,
           confidence: float) -> Estimate:
    """Σ numerator / Σ denominator with a standard error over requests (delta method)."""
    _, groups = np.unique(inp.request, return_inverse=True)
    y = np.bincount(groups, weights=numerator)
    d = np.bincount(groups, weights=denominator)
    requests = len(y)
    if d.sum() <= 0:
        raise EvaluationError(f"{name}: the target policy puts no weight on any logged impression")
    value = float(y.sum() / d.sum())
    residual = (y - value * d) / d.mean()
    se = float(residual.std(ddof=1) / np.sqrt(requests)) if requests > 1 else float("inf")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    w = inp.weights
    ess = float(w.sum() ** 2 / np.sum(w**2)) if np.any(w > 0) else 0.0
    return Estimate(name, value, se, value - z * se, value + z * se, ess, requests,
                    len(inp.reward), confidence)


def ips(inp: LoggedImpressions, confidence: float = 0.95) -> Estimate:
    """Inverse propensity scoring: unbiased wherever p₀ > 0 covers p₁."""
    r = np.asarray(inp.reward, float)
    return _ratio(inp, "ips", inp.weights * r, np.ones_like(r), confidence)


def snips(inp: LoggedImpressions, confidence: float = 0.95) -> Estimate:
    """Self-normalised IPS: divides by the realised weight mass instead of the count."""
    w = inp.weights
    return _ratio(inp, "snips", w * np.asarray(inp.reward, float), w, confidence)


def doubly_robust(inp: LoggedImpressions, confidence: float = 0.95) -> Estimate:
    """Direct-method prediction corrected by the weighted residual of the reward model."""
    if inp.q_logged is None or inp.q_target is None:
        raise EvaluationError("doubly robust needs reward-model predictions (q_logged, q_target)")
    r = np.asarray(inp.reward, float)
    correction = inp.weights * (r - np.asarray(inp.q_logged, float))
    return _ratio(inp, "dr", np.asarray(inp.q_target, float) + correction, np.ones_like(r),
                  confidence)


def direct_method(inp: LoggedImpressions, confidence: float = 0.95) -> Estimate:
    """The reward model's prediction under the target alone: low variance, biased wherever the
    model is wrong (DR corrects it with the weighted residual)."""
    if inp.q_target is None:
        raise EvaluationError("the direct method needs reward-model predictions (q_target)")
    ones = np.ones(len(inp.reward))
    return _ratio(inp, "dm", np.asarray(inp.q_target, float), ones, confidence)


def on_policy(request: np.ndarray, reward: np.ndarray, confidence: float = 0.95) -> Estimate:
    """The logged (on-policy) mean reward per impression, with the same request-level SE."""
    ones = np.ones(len(reward))
    inp = LoggedImpressions(np.asarray(request), np.asarray(reward, float), ones, ones)
    return _ratio(inp, "on_policy", np.asarray(reward, float), ones, confidence)


def estimate_all(inp: LoggedImpressions, confidence: float = 0.95) -> list[Estimate]:
    """IPS, SNIPS and, when reward-model predictions are present, DR."""
    out = [ips(inp, confidence), snips(inp, confidence)]
    if inp.q_logged is not None:
        out.append(doubly_robust(inp, confidence))
    return out
