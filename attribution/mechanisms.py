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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MECHANISMS = ("traffic_mix", "exposure", "ctr", "conversion", "order_value", "organic")
UNEXPLAINED = "unexplained"


@dataclass(frozen=True)
class Decomposition:
    from_version: str
    to_version: str
    total: float
    parts: dict[str, float]
    rates: dict[str, dict[str, float]]  # mechanism → {control, version} population-level value

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "total": self.total,
            "parts": [{"mechanism": k, "contribution": v} for k, v in self.parts.items()],
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


def decompose(users: pd.DataFrame, version: str, control: str) -> Decomposition:
    from dowhy.gcm import config as gcm_config
    from dowhy.gcm.shapley import (
        ShapleyApproximationMethods,
        ShapleyConfig,
        estimate_shapley_values,
    )

    counts = segment_counts(users, [control, version])
    segments = sorted(counts.index.get_level_values("segment").unique())
    by_version = {
        v: counts.xs(v, level="version").reindex(segments).fillna(0.0) for v in (control, version)
    }
    old, new = _segment_factors(by_version[control]), _segment_factors(by_version[version])
    # A rate undefined in one arm (segment absent, or no clicks) takes the other arm's value,
    # so it moves nothing on its own and only the mix (or the data) explains the change.
    old = np.where(np.isnan(old), new, old)
    new = np.where(np.isnan(new), old, new)

    def value(subset: np.ndarray) -> float:
        return _chain(np.where(subset.astype(bool)[None, :], new, old))

    shown, gcm_config.show_progress_bars = gcm_config.show_progress_bars, False
    try:
        shapley = estimate_shapley_values(
            value,
            len(MECHANISMS),
            ShapleyConfig(approximation_method=ShapleyApproximationMethods.EXACT, n_jobs=1),
        )
    finally:
        gcm_config.show_progress_bars = shown
    totals = {v: by_version[v].sum() for v in (control, version)}
    mean = {v: float((t["attributed"] + t["organic"]) / t["n"]) for v, t in totals.items()}
    total = mean[version] - mean[control]
    parts = {name: float(v) for name, v in zip(MECHANISMS, np.ravel(shapley), strict=True)}
    parts[UNEXPLAINED] = total - sum(parts.values())
    rates = {
        name: {
            "control": _population_rate(totals[control], name),
            "version": _population_rate(totals[version], name),
        }
        for name in MECHANISMS[1:]
    }
    return Decomposition(control, version, total, parts, rates)


def _population_rate(t: pd.Series, mechanism: str) -> float:
    num, den = {
        "exposure": ("imps", "n"),
        "ctr": ("clicks", "imps"),
        "conversion": ("buys", "clicks"),
        "order_value": ("attributed", "buys"),
        "organic": ("organic", "n"),
    }[mechanism]
    return float(t[num] / t[den]) if t[den] else 0.0
