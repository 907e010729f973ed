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


@dataclass(frozen=True)
class _Coded:
    """Logs and target as integer codes, shared by every reward (numpy only, no joins)."""

    request: np.ndarray  # logged request code per impression
    slot: np.ndarray  # request code × positions + position, per impression
    cell: np.ndarray  # item code × positions + position, per impression
    fold: np.ndarray  # cross-fitting fold per impression
    p0: np.ndarray
    p1: np.ndarray
    t_slot: np.ndarray  # per target row (of logged requests)
    t_cell: np.ndarray
    t_fold: np.ndarray
    t_prob: np.ndarray
    cells: int
    slots: int


def _code(logs: pd.DataFrame, target: pd.DataFrame) -> _Coded:
    l_req, l_item = logs["request_id"].astype(str), logs["item_id"].astype(str)
    l_pos = logs["position"].to_numpy(dtype=np.int64)
    requests = pd.Index(pd.unique(l_req))
    t_req = requests.get_indexer(target["request_id"])
    keep = t_req >= 0  # target rows for requests nobody logged are irrelevant here
    t_req, t_pos = t_req[keep], target["position"].to_numpy(dtype=np.int64)[keep]
    items = pd.Index(pd.unique(np.concatenate([l_item.to_numpy(),
                                               target["item_id"].to_numpy()[keep]])))
    positions = int(max(l_pos.max(), t_pos.max() if t_pos.size else 0)) + 1
    l_code, t_code = items.get_indexer(l_item), items.get_indexer(target["item_id"][keep])
    lr = requests.get_indexer(l_req)
    fold_of = np.array([zlib.crc32(r.encode()) % 2 for r in requests], dtype=np.int64)
    t_prob = target["probability"].to_numpy(dtype=float)[keep]
    # p₁ of each logged (request, item, position); duplicate target rows add up.
    t_key = (t_req * positions + t_pos) * len(items) + t_code
    uniq, inverse = np.unique(t_key, return_inverse=True)
    summed = np.bincount(inverse, weights=t_prob)
    l_key = (lr * positions + l_pos) * len(items) + l_code
    at = np.clip(np.searchsorted(uniq, l_key), 0, max(len(uniq) - 1, 0))
    found = (uniq[at] == l_key) if uniq.size else np.zeros(l_key.size, dtype=bool)
    p1 = np.where(found, summed[at] if uniq.size else 0.0, 0.0)
    return _Coded(
        request=lr, slot=lr * positions + l_pos, cell=l_code * positions + l_pos,
        fold=fold_of[lr], p0=logs["propensity"].to_numpy(dtype=float), p1=p1,
        t_slot=t_req * positions + t_pos, t_cell=t_code * positions + t_pos,
        t_fold=fold_of[t_req], t_prob=t_prob, cells=len(items) * positions,
        slots=len(requests) * positions,
    )


def _cross_fitted(c: _Coded, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q̂ of each logged impression, Σ_a p₁(a at j) q̂(a, j) at its slot), each fitted on
    the other fold's requests: q̂ = mean reward per (item, position) shrunk to the overall."""
    q_logged, q_target = np.zeros(y.size), np.zeros(y.size)
    for f in (0, 1):
        train, rows, t_rows = c.fold != f, c.fold == f, c.t_fold == f
        overall = float(y[train].mean()) if train.any() else float(y.mean())
        sums = np.bincount(c.cell[train], weights=y[train], minlength=c.cells)
        counts = np.bincount(c.cell[train], minlength=c.cells)
        q = (sums + _PRIOR_WEIGHT * overall) / (counts + _PRIOR_WEIGHT)
        q_logged[rows] = q[c.cell[rows]]
        dm = np.bincount(c.t_slot[t_rows], weights=c.t_prob[t_rows] * q[c.t_cell[t_rows]],
                         minlength=c.slots)
        q_target[rows] = dm[c.slot[rows]]
    return q_logged, q_target


def logged_impressions(logs: pd.DataFrame, target: pd.DataFrame | None, reward: str,
                       coded: _Coded | None = None) -> ope.LoggedImpressions:
    """The arrays ope.py reads: logs × target probabilities × cross-fitted q̂."""
    y = logs[reward].to_numpy(dtype=float)
    p0 = logs["propensity"].to_numpy(dtype=float)
    request = logs["request_id"].astype(str).to_numpy()
    if target is None:  # the logging policy itself: weights are 1, IPS = the observed mean
        return ope.LoggedImpressions(request, y, p0, p0)
    c = coded or _code(logs, target)
    q_logged, q_target = _cross_fitted(c, y)
    return ope.LoggedImpressions(c.request, y, p0, c.p1, q_logged, q_target)


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
    coded = _code(logs, target) if target is not None else None
    for reward in rewards:
        inp = logged_impressions(logs, target, reward, coded)
        out = ope.estimate_all(inp, confidence)
        if inp.q_target is not None:
            out.append(ope.direct_method(inp, confidence))
        estimates[reward] = out
        logged[reward] = ope.on_policy(inp.request, inp.reward, confidence)
    return estimates, logged
