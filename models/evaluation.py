"""`loopline evaluate`: off-policy estimates for a candidate version on a logged slice.

What is estimated. The slice holds the served slates, not the full candidate sets they were
drawn from, so no estimator can say what the candidate would have picked from candidates
nobody logged. What the logs do identify exactly is the value of the candidate *ordering the
items the logging policy chose*: the target policy keeps the logged top-m set S of each
request and re-orders it by Plackett-Luce over the candidate's scores (softmax at the serving
temperature). Its propensity P₁(a at j | S) comes from the candidate's scores; the logging
policy's P₀(a at j | S) is exact too: its weights are exp(logged score / t) and the weight of
all its candidates is recovered from the logged position-0 propensity (W = w₀ / p₀). Both
are computed by subset dynamic programming (policy.conditional_marginals), and ope.py turns
the ratios into IPS / SNIPS / DR with intervals. DR's reward model is a small LightGBM on the
slice's features + position, cross-fitted over two halves of the requests.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from feast import FeatureStore
from tqdm import tqdm

from loopline.paths import PathsConfig
from models import features, ope, slices
from models.errors import EvaluationError, ModelsError
from models.logged_policy import Selection, evaluate_logs
from models.policy import SoftmaxPolicy, conditional_marginals
from models.ranker import POSITION
from models.registry import Registry

REWARDS = {"clicked": "binary", "revenue": "regression"}


@dataclass(frozen=True)
class EvaluationReport:
    version: str
    slice: str
    positions: int
    target_policy: str
    requests: int
    skipped: dict[str, int]
    estimates: dict[str, list[ope.Estimate]]  # reward → IPS, SNIPS, DR
    logged: dict[str, ope.Estimate]  # reward → logged mean on the same impressions
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "slice": self.slice, "positions": self.positions,
            "target_policy": self.target_policy, "requests": self.requests,
            "skipped": self.skipped, "notes": self.notes,
            "estimates": {r: [e.to_dict() for e in es] for r, es in self.estimates.items()},
            "logged": {r: e.to_dict() for r, e in self.logged.items()},
        }

    def text(self) -> str:
        lines = [f"candidate {self.version} on slice {self.slice}",
                 f"target: {self.target_policy}",
                 f"requests: {self.requests}   skipped: {self.skipped or 'none'}",
                 f"{'reward':<8} {'estimator':<10} {'per impression':>14}   "
                 f"{int(100 * next(iter(self.logged.values())).confidence)}% CI"
                 f"{'':>16} {'ESS':>9}"]
        for reward, estimates in self.estimates.items():
            for e in [self.logged[reward], *estimates]:
                lines.append(f"{reward:<8} {e.estimator:<10} {e.value:>14.5f}   "
                             f"[{e.ci_low:.5f}, {e.ci_high:.5f}] {e.ess:>9.0f}")
        return "\n".join(lines + self.notes)


def _complete_slates(frame: pd.DataFrame, positions: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows at positions < m of requests whose slate has every one of those positions."""
    skipped: dict[str, int] = {}
    head = frame[frame[POSITION] < positions]
    counts = head.groupby("request_id")[POSITION].agg(["count", "max", "nunique"])
    m = np.minimum(positions, counts["max"] + 1)
    ok = (counts["nunique"] == counts["count"]) & (counts["count"] == m) & (m >= 2)
    if (~ok).any():
        skipped["incomplete or single-item slates"] = int((~ok).sum())
    keep = head[head["request_id"].isin(counts.index[ok])]
    return keep.sort_values(["request_id", POSITION], kind="stable"), skipped


def _temperatures(frame: pd.DataFrame) -> pd.Series:
    policies = frame.groupby("request_id")["policy"].first()
    parsed = {}
    for name in policies.unique():
        try:
            parsed[name] = SoftmaxPolicy.parse(name).temperature
        except ModelsError:
            parsed[name] = np.nan
    return policies.map(parsed)


def _reward_model(frame: pd.DataFrame, reward: str, objective: str) -> lgb.Booster:
    x = frame[[*features.COLUMNS, POSITION]]
    params = {"objective": objective, "num_leaves": 15, "learning_rate": 0.1, "verbosity": -1,
              "min_data_in_leaf": 20, "num_threads": 1, "seed": 3, "deterministic": True}
    return lgb.train(params, lgb.Dataset(x, label=frame[reward].astype(float)), num_boost_round=80)


def _cross_fitted(frame: pd.DataFrame, reward: str, m: int) -> np.ndarray:
    """q̂(item of row, every position 0..m-1), fitted on the other half of the requests."""
    fold = frame["request_id"].map(lambda r: zlib.crc32(str(r).encode()) % 2).to_numpy()
    q = np.zeros((len(frame), m))
    for f in (0, 1):
        booster = _reward_model(frame[fold != f], reward, REWARDS[reward])
        rows = frame[fold == f]
        for j in range(m):
            x = rows[[*features.COLUMNS, POSITION]].assign(**{POSITION: j})
            q[fold == f, j] = booster.predict(x, num_threads=1)
    return q


def _group(values: np.ndarray, m: int) -> np.ndarray:
    return values.reshape(-1, m)


def slate_propensities(logged_scores: np.ndarray, top_propensity: np.ndarray,
                       logging_temperature: np.ndarray, candidate_scores: np.ndarray,
                       temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(P₀, P₁), each (R, m, m) [request, item, position], of the logged top-m items, ordered
    by logged position: the logging policy's and the candidate's probability of putting each
    item at each position given that these m items fill the first m positions.

    The logging policy drew from more candidates than were logged; their total weight is
    W = w(top item) / p(top item) (its logged propensity), with w = exp((s − s_top) / t).
    """
    t = np.asarray(logging_temperature, float)[:, None]
    v = np.exp(np.clip((logged_scores - logged_scores[:, :1]) / t, -690, 690))
    total = np.maximum(1.0 / top_propensity, v.sum(axis=1))  # W ≥ the logged items' weight
    u = np.exp((candidate_scores - candidate_scores.max(axis=1, keepdims=True)) / temperature)
    return conditional_marginals(v, total), conditional_marginals(u, u.sum(axis=1))


def evaluate_logged(paths: PathsConfig, rng: slices.SliceRange, target: pd.DataFrame | None,
                    target_name: str, selection: Selection | None = None,
                    confidence: float = 0.95) -> EvaluationReport:
    """IPS / SNIPS / DR / DM of a stored policy's action probabilities (or, with target None,
    of the logging policy itself) on any logs that carry propensities: single items or slates,
    any logging policy (logged_policy.py)."""
    selection = selection or Selection()
    frame, _ = slices.load(paths, rng, verify=False)
    logs = selection.apply(frame)
    estimates, logged = evaluate_logs(logs, target, tuple(REWARDS), confidence)
    notes = []
    ess = min(e.ess for es in estimates.values() for e in es)
    if ess < 0.1 * len(logs):
        notes.append(f"warning: effective sample size {ess:.0f} is under 10% of {len(logs)} "
                     "impressions; the target differs a lot from the logging policy")
    notes.append("dm uses a tabular q(item, position) without context: biased where rewards "
                 "depend on the user; dr corrects it")
    return EvaluationReport(
        version=target_name, slice=str(rng), positions=int(logs[POSITION].max()) + 1,
        target_policy=(f"{target_name}: stored action probabilities" if target is not None
                       else "the logging policy itself (IPS must equal the observed mean)"),
        requests=int(logs["request_id"].nunique()),
        skipped={"not selected": len(frame) - len(logs)} if len(frame) > len(logs) else {},
        estimates=estimates, logged=logged,
        notes=[f"logs: {selection.describe()}", *notes],
    )


def evaluate(paths: PathsConfig, rng: slices.SliceRange, store: FeatureStore, version: str,
             temperature: float, positions: int = 5, confidence: float = 0.95,
             progress: bool = False, selection: Selection | None = None) -> EvaluationReport:
    """IPS / SNIPS / DR of click and revenue per impression for `version` on slice `rng`."""
    if positions < 2:
        raise EvaluationError(
            f"--positions must be at least 2 (re-ordering needs two), got {positions}")
    ranker = Registry.from_paths(paths).ranker(version)
    target = SoftmaxPolicy(temperature)
    bar = tqdm(total=4, desc="evaluate", unit="step", disable=not progress, leave=False)
    frame, _ = slices.load(paths, rng, verify=False)  # row counts still checked
    if selection is not None:
        frame = selection.apply(frame)
    rows, skipped = _complete_slates(frame, positions)
    temps = _temperatures(rows)
    if temps.isna().any():
        skipped["policy is not softmax(t=...)"] = int(temps.isna().sum())
        rows = rows[rows["request_id"].isin(temps.index[temps.notna()])]
    if rows.empty:
        raise EvaluationError(
            f"no slate in {rng} has {positions} logged positions with a softmax logging policy, "
            "which re-ranking a candidate model needs; for single-item logs or other logging "
            "policies evaluate stored action probabilities with --target-policy FILE")
    bar.update(1)
    features.check_sources(store, paths)
    rows = pd.concat([rows, features.historical(store, rows)], axis=1)
    rows["candidate_score"] = ranker.score_frame(rows)
    bar.update(1)

    estimates: dict[str, list[ope.Estimate]] = {}
    logged: dict[str, ope.Estimate] = {}
    slate_len = rows.groupby("request_id")[POSITION].transform("size").to_numpy()
    parts = []
    for m in sorted(set(slate_len.tolist())):  # requests grouped by evaluated slate length
        block = rows[slate_len == m]
        t_log = _temperatures(block).loc[block["request_id"].iloc[::m]].to_numpy()
        p0, p1 = slate_propensities(
            _group(block["score"].to_numpy(float), m),
            _group(block["propensity"].to_numpy(float), m)[:, 0], t_log,
            _group(block["candidate_score"].to_numpy(float), m), temperature)
        diag = np.arange(m)
        parts.append((slate_len == m, m, p0[:, diag, diag].ravel(), p1[:, diag, diag].ravel(), p1))
    bar.update(1)

    for reward in REWARDS:
        q_all = _cross_fitted(rows, reward, positions)  # q̂(this row's item, position j)
        pieces = []
        for mask, m, p0_row, p1_row, p1 in parts:
            block = rows[mask]
            q = q_all[mask, :m]
            q_items = q.reshape(-1, m, m)  # [request, item(=logged position), position]
            q_target = np.einsum("raj,raj->rj", p1, q_items).ravel()
            q_logged = q[np.arange(len(block)), np.tile(np.arange(m), len(block) // m)]
            pieces.append((block, p0_row, p1_row, q_logged, q_target))
        block_all = pd.concat([p[0] for p in pieces])
        inp = ope.LoggedImpressions(
            request=block_all["request_id"].to_numpy(),
            reward=block_all[reward].to_numpy(float),
            logging_propensity=np.concatenate([p[1] for p in pieces]),
            target_propensity=np.concatenate([p[2] for p in pieces]),
            q_logged=np.concatenate([p[3] for p in pieces]),
            q_target=np.concatenate([p[4] for p in pieces]),
        )
        estimates[reward] = ope.estimate_all(inp, confidence)
        logged[reward] = ope.on_policy(inp.request, inp.reward, confidence)
    bar.update(1)
    bar.close()
    notes = []
    ess = min(e.ess for es in estimates.values() for e in es)
    if ess < 0.1 * len(rows):
        notes.append(f"warning: effective sample size {ess:.0f} is under 10% of "
                     f"{len(rows)} impressions; the candidate orders very differently")
    return EvaluationReport(
        version=version, slice=str(rng), positions=positions,
        target_policy=(f"{version} re-orders the logged top-{positions} items with "
                       f"{target.name}"),
        requests=int(rows["request_id"].nunique()), skipped=skipped, estimates=estimates,
        logged=logged, notes=notes,
    )
