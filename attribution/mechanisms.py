"""Which mechanism moved revenue per user between two versions.

Revenue per user is an explicit causal chain, evaluated per segment s and averaged over the
traffic mix w_s:

    revenue/user = Σ_s w_s · (exposure_s · CTR_s · conversion_s · order value_s + organic_s)

with exposure = impressions/user, CTR = clicks/impression, conversion = attributed
purchases/click, order value = attributed revenue/purchase, organic = unlinked revenue/user.
Each mechanism is a player; switching a player from the control's value to the version's is
the intervention, and dowhy.gcm's exact Shapley estimator splits the change among them. Shapley
efficiency makes the parts sum to the chain's total change, which equals the observed
difference in mean revenue; anything the chain cannot express (e.g. purchases without a
click) is reported as its own "unexplained" part, so the parts always sum to the total.

This is a descriptive decomposition of the observed difference: in a confounded rollout the
traffic-mix part is where the confounding shows up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

MECHANISMS = ("traffic_mix", "exposure", "ctr", "conversion", "order_value", "organic")
UNEXPLAINED = "unexplained"
BOOTSTRAP_REPS = 100


@dataclass(frozen=True)
class Decomposition:
    from_version: str
    to_version: str
    total: float
    parts: dict[str, float]
    rates: dict[str, dict[str, float]]  # mechanism → {control, version} population-level value
    # mechanism → [2.5 %, 97.5 %] bootstrap band; a band spanning 0 means the bar may be noise.
    bands: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def part(k: str, v: float) -> dict[str, Any]:
            band = self.bands.get(k)
            noise = None if band is None else bool(band[0] <= 0.0 <= band[1])
            return {"mechanism": k, "contribution": v, "band_95": band, "noise": noise}

        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "total": self.total,
            "parts": [part(k, v) for k, v in self.parts.items()],
            "rates": self.rates,
            "method": "dowhy.gcm.shapley exact Shapley values over the revenue chain",
        }


COUNTS = {
    "n": "users",
    "imps": "impressions",
    "clicks": "clicks",
    "buys": "attributed_purchases",
    "attributed": "attributed_revenue",
    "organic": "organic_revenue",
}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _segment_factors(g: pd.DataFrame) -> np.ndarray:
    """Matrix segments × (weight, exposure, ctr, conversion, order value, organic)."""
    c = {k: g[k].to_numpy(dtype=float) for k in COUNTS}
    return np.column_stack(
        [
            c["n"] / max(float(c["n"].sum()), 1.0),
            _ratio(c["imps"], c["n"]),
            _ratio(c["clicks"], c["imps"]),
            _ratio(c["buys"], c["clicks"]),
            _ratio(c["attributed"], c["buys"]),
            _ratio(c["organic"], c["n"]),
        ]
    )


def _chain(f: np.ndarray) -> float:
    funnel = np.nan_to_num(f[:, 1] * f[:, 2] * f[:, 3] * f[:, 4])
    return float(np.sum(f[:, 0] * (funnel + np.nan_to_num(f[:, 5]))))


def segment_counts(users: pd.DataFrame, versions: list[str]) -> pd.DataFrame:
    """Sums per (version, segment) of everything the chain needs: one pass over the users."""
    rows = users.loc[
        users["version"].isin(versions), ["version", "segment", *list(COUNTS.values())[1:]]
    ]
    g = rows.groupby(["version", "segment"], observed=True)
    out = g.sum()
    out.insert(0, "users", g.size())
    return out.rename(columns={v: k for k, v in COUNTS.items()})


def _shapley(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    from dowhy.gcm import config as gcm_config
    from dowhy.gcm.shapley import (
        ShapleyApproximationMethods,
        ShapleyConfig,
        estimate_shapley_values,
    )

    # A rate undefined in one arm (segment absent, or no clicks) takes the other arm's value,
    # so it moves nothing on its own and only the mix (or the data) explains the change.
    old = np.where(np.isnan(old), new, old)
    new = np.where(np.isnan(new), old, new)

    def value(subset: np.ndarray) -> float:
        return _chain(np.where(subset.astype(bool)[None, :], new, old))

    shown, gcm_config.show_progress_bars = gcm_config.show_progress_bars, False
    try:
        return np.ravel(
            estimate_shapley_values(
                value,
                len(MECHANISMS),
                ShapleyConfig(approximation_method=ShapleyApproximationMethods.EXACT, n_jobs=1),
            )
        )
    finally:
        gcm_config.show_progress_bars = shown


def exact_shapley(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The same exact Shapley values as dowhy.gcm (all 2^6 coalitions), in numpy: the bootstrap
    needs it a hundred times, where dowhy's generic loop costs ~25 ms a call."""
    old = np.where(np.isnan(old), new, old)
    new = np.where(np.isnan(new), old, new)
    k = len(MECHANISMS)
    masks = (np.arange(1 << k)[:, None] >> np.arange(k)) & 1  # coalitions × players
    f = np.where(masks.astype(bool)[:, None, :], new[None], old[None])  # coalition × seg × 6
    funnel = np.nan_to_num(f[..., 1] * f[..., 2] * f[..., 3] * f[..., 4])
    values = np.sum(f[..., 0] * (funnel + np.nan_to_num(f[..., 5])), axis=1)  # = _chain each
    size = masks.sum(axis=1)
    weight = np.array(
        [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
    )
    out = np.zeros(k)
    for i in range(k):
        without = masks[:, i] == 0
        idx = np.flatnonzero(without)
        out[i] = np.sum(weight[size[idx]] * (values[idx | (1 << i)] - values[idx]))
    return out


def bootstrap_bands(
    users: pd.DataFrame, version: str, control: str, reps: int = BOOTSTRAP_REPS, seed: int = 0
) -> dict[str, list[float]]:
    """95 % percentile bands of each part under a Poisson bootstrap over users (weights, not
    resampled frames: one bincount per column and replicate, so a million users stay cheap)."""
    rows = users[users["version"].isin([control, version])]
    segments = sorted(rows["segment"].astype(str).unique())
    seg = pd.Categorical(rows["segment"].astype(str), categories=segments).codes
    is_new = (rows["version"].to_numpy() == version).astype(np.int64)
    group = is_new * len(segments) + seg
    cols = [np.ones(len(rows))] + [rows[c].to_numpy(dtype=float) for c in list(COUNTS.values())[1:]]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        w = rng.poisson(1.0, len(rows)).astype(float)
        sums = np.stack(
            [np.bincount(group, weights=w * c, minlength=2 * len(segments)) for c in cols], axis=1
        )
        frames = [
            pd.DataFrame(sums[k * len(segments) : (k + 1) * len(segments)], columns=list(COUNTS))
            for k in (0, 1)
        ]
        old, new = _segment_factors(frames[0]), _segment_factors(frames[1])
        parts = exact_shapley(old, new)
        total = float(
            (frames[1]["attributed"].sum() + frames[1]["organic"].sum())
            / max(frames[1]["n"].sum(), 1)
            - (frames[0]["attributed"].sum() + frames[0]["organic"].sum())
            / max(frames[0]["n"].sum(), 1)
        )
        draws.append([*parts, total - parts.sum()])
    a = np.asarray(draws)
    lo, hi = np.percentile(a, [2.5, 97.5], axis=0)
    return {name: [float(lo[i]), float(hi[i])] for i, name in enumerate([*MECHANISMS, UNEXPLAINED])}


def decompose(
    users: pd.DataFrame, version: str, control: str, reps: int = BOOTSTRAP_REPS
) -> Decomposition:
    counts = segment_counts(users, [control, version])
    segments = sorted(counts.index.get_level_values("segment").unique())
    by_version = {
        v: counts.xs(v, level="version").reindex(segments).fillna(0.0) for v in (control, version)
    }
    old, new = _segment_factors(by_version[control]), _segment_factors(by_version[version])
    shapley = _shapley(old, new)
    bands = bootstrap_bands(users, version, control, reps) if reps else {}
    totals = {v: by_version[v].sum() for v in (control, version)}
    mean = {v: float((t["attributed"] + t["organic"]) / t["n"]) for v, t in totals.items()}
    total = mean[version] - mean[control]
    parts = {name: float(v) for name, v in zip(MECHANISMS, shapley, strict=True)}
    parts[UNEXPLAINED] = total - sum(parts.values())
    rates = {
        name: {
            "control": _population_rate(totals[control], name),
            "version": _population_rate(totals[version], name),
        }
        for name in MECHANISMS[1:]
    }
    return Decomposition(control, version, total, parts, rates, bands)


def _population_rate(t: pd.Series, mechanism: str) -> float:
    num, den = {
        "exposure": ("imps", "n"),
        "ctr": ("clicks", "imps"),
        "conversion": ("buys", "clicks"),
        "order_value": ("attributed", "buys"),
        "organic": ("organic", "n"),
    }[mechanism]
    return float(t[num] / t[den]) if t[den] else 0.0
