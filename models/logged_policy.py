"""Off-policy evaluation for any logging policy that logged its propensities.

The logs need only, per impression: request, item, position, the logged propensity p₀ of that
item at that position, and the rewards. Nothing assumes a softmax logger or full slates, so
uniform, epsilon-greedy and Thompson-sampling logs (one item per request or slates) all work.

The target is a stored policy: a table of (request_id, item_id, [position,] probability)
giving p₁(item at position | request); a missing position means position 0 (one-item slates).
Slates are evaluated with the independent-item (position-based) estimator: each impression is
weighted by p₁(a at j) / p₀(a at j), which is unbiased when an impression's reward depends on
its item and position, not on the rest of the slate.

The reward model for DM and DR is tabular, q̂(item, position) = shrunk mean reward, cross-fitted
over two halves of the requests: it needs no features, so it exists for any log, and DR stays
unbiased where it is wrong (DM does not; it is reported for comparison).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models import ope
from models.errors import EvaluationError

LOGGING = "logging"  # target name: the logging policy itself (the identity check)
_PRIOR_WEIGHT = 5.0  # pseudo-impressions shrinking each (item, position) mean to the global


@dataclass(frozen=True)
class Selection:
    """Which logged impressions to evaluate on (all when empty)."""

    versions: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        keep = np.ones(len(frame), dtype=bool)
        if self.versions:
            keep &= frame["model_version"].isin(self.versions).to_numpy()
        if self.arms:
            keep &= frame["arm"].isin(self.arms).to_numpy()
        served = _ms(frame["served_at"])
        if self.since_ms is not None:
            keep &= served >= self.since_ms
        if self.until_ms is not None:
            keep &= served < self.until_ms
        return frame[keep]

    def describe(self) -> str:
        parts = [f"versions {list(self.versions)}" if self.versions else "",
                 f"arms {list(self.arms)}" if self.arms else ""]
        return ", ".join(p for p in parts if p) or "every logged impression"


def _ms(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    return values.to_numpy(dtype=np.int64)


def read_target(path_or_frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a target policy table: request_id, item_id, [position], probability."""
    t = path_or_frame.copy()
    missing = [c for c in ("request_id", "item_id", "probability") if c not in t.columns]
    if missing:
        raise EvaluationError(
            f"target policy needs columns request_id, item_id, [position], probability; "
            f"missing {missing}")
    if "position" not in t.columns:
        t["position"] = 0
    p = t["probability"].to_numpy(dtype=float)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1 + 1e-9):
        raise EvaluationError("target probabilities must be in [0, 1]")
    totals = t.groupby(["request_id", "position"])["probability"].sum()
    if (totals > 1 + 1e-6).any():
        worst = totals.idxmax()
        raise EvaluationError(
            f"target probabilities of request {worst[0]!r} at position {worst[1]} sum to "
            f"{totals.max():.4g}: at most 1 expected")
    t["request_id"], t["item_id"] = t["request_id"].astype(str), t["item_id"].astype(str)
    t["position"] = t["position"].astype(np.int64)
    return t[["request_id", "item_id", "position", "probability"]]


def _tabular_q(train: pd.DataFrame, reward: str) -> tuple[pd.Series, float]:
    """Shrunk mean reward per (item, position), and the global mean for unseen pairs."""
    overall = float(train[reward].mean())
    g = train.groupby(["item_id", "position"])[reward].agg(["sum", "count"])
    q = (g["sum"] + _PRIOR_WEIGHT * overall) / (g["count"] + _PRIOR_WEIGHT)
    return q, overall


def _lookup(q: pd.Series, overall: float, items: pd.Series, positions: pd.Series) -> np.ndarray:
    index = pd.MultiIndex.from_arrays([items.to_numpy(), positions.to_numpy()])
    return q.reindex(index).fillna(overall).to_numpy(dtype=float)


def logged_impressions(logs: pd.DataFrame, target: pd.DataFrame | None, reward: str
                       ) -> ope.LoggedImpressions:
    """The arrays ope.py reads: logs × target probabilities × cross-fitted q̂."""
    logs = logs.assign(request_id=logs["request_id"].astype(str),
                       item_id=logs["item_id"].astype(str),
                       position=logs["position"].astype(np.int64))
    p0 = logs["propensity"].to_numpy(dtype=float)
    if target is None:  # the logging policy itself: weights are 1, IPS = the observed mean
        return ope.LoggedImpressions(logs["request_id"].to_numpy(),
                                     logs[reward].to_numpy(dtype=float), p0, p0)
    key = ["request_id", "item_id", "position"]
    p1 = logs[key].merge(target, on=key, how="left")["probability"].fillna(0.0).to_numpy()
    fold = logs["request_id"].map(lambda r: zlib.crc32(r.encode()) % 2).to_numpy()
    q_logged = np.zeros(len(logs))
    q_target = np.zeros(len(logs))
    for f in (0, 1):
        q, overall = _tabular_q(logs[fold != f], reward)
        rows = logs[fold == f]
        q_logged[fold == f] = _lookup(q, overall, rows["item_id"], rows["position"])
        # Σ_a p₁(a at j) q̂(a, j) over the target's support at each logged (request, position).
        t = target[target["request_id"].isin(rows["request_id"].unique())]
        dm = (t.assign(v=t["probability"].to_numpy() *
                       _lookup(q, overall, t["item_id"], t["position"]))
              .groupby(["request_id", "position"])["v"].sum())
        index = pd.MultiIndex.from_arrays([rows["request_id"].to_numpy(),
                                           rows["position"].to_numpy()])
        q_target[fold == f] = dm.reindex(index).fillna(0.0).to_numpy()
    return ope.LoggedImpressions(logs["request_id"].to_numpy(), logs[reward].to_numpy(float),
                                 p0, p1, q_logged, q_target)


def evaluate_logs(logs: pd.DataFrame, target: pd.DataFrame | None, rewards: tuple[str, ...],
                  confidence: float = 0.95
                  ) -> tuple[dict[str, list[ope.Estimate]], dict[str, ope.Estimate]]:
    """(estimates per reward: IPS, SNIPS, DR, DM; observed mean per reward) on `logs`."""
    if logs.empty:
        raise EvaluationError("no logged impressions match the selection")
    bad = logs["propensity"].isna() | (logs["propensity"] <= 0) | (logs["propensity"] > 1)
    if bad.any():
        raise EvaluationError(
            f"{int(bad.sum())} logged impressions have no usable propensity (expected (0, 1]): "
            "OPE needs the logged probability of what was shown")
    estimates, logged = {}, {}
    for reward in rewards:
        inp = logged_impressions(logs, target, reward)
        out = ope.estimate_all(inp, confidence)
        if inp.q_target is not None:
            out.append(ope.direct_method(inp, confidence))
        estimates[reward] = out
        logged[reward] = ope.on_policy(inp.request, inp.reward, confidence)
    return estimates, logged
