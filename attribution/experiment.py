"""Experiment-style readouts per version next to the causal estimate: the naive difference
(flagged when confounding biases it), CUPED with pre-exposure revenue, segments, and the
secondary outcomes (clicks, conversion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from attribution.config import AttributionConfig
from attribution.stats import (
    Estimate,
    difference_in_means,
    ols_adjusted,
    standardized_mean_differences,
)

CUPED_COVARIATE = "pre_revenue"
SECONDARY_OUTCOMES = ("clicks", "converted")
MIN_SEGMENT_USERS = 20  # per arm; below this a segment's interval is not worth printing
SMD_IMBALANCED = 0.1


@dataclass
class Readout:
    naive: Estimate
    naive_biased: bool
    naive_note: str
    balance: dict[str, float]
    cuped: Estimate
    cuped_theta: float
    cuped_variance_reduction: float
    cuped_biased: bool
    cuped_note: str
    segments: list[dict[str, Any]] = field(default_factory=list)
    secondary: dict[str, Estimate] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "naive": {**self.naive.to_dict(), "biased": self.naive_biased, "note": self.naive_note},
            "covariate_balance_smd": self.balance,
            "cuped": {
                **self.cuped.to_dict(),
                "covariate": CUPED_COVARIATE,
                "theta": self.cuped_theta,
                "variance_reduction": self.cuped_variance_reduction,
                "biased": self.cuped_biased,
                "note": self.cuped_note,
            },
            "segments": self.segments,
            "secondary": {k: v.to_dict() for k, v in self.secondary.items()},
        }


def cuped(
    y: np.ndarray, x: np.ndarray, treated: np.ndarray, alpha: float
) -> tuple[Estimate, float, float]:
    """Difference in means of y - θ(x - x̄), θ = cov(y, x)/var(x) on the pooled sample.

    Unbiased only when assignment is random; it trims variance, it does not fix confounding.
    """
    var_x = float(x.var())
    theta = float(np.cov(y, x, bias=True)[0, 1] / var_x) if var_x > 0 else 0.0
    adjusted = y - theta * (x - x.mean())
    reduction = 1.0 - float(adjusted.var() / y.var()) if y.var() > 0 else 0.0
    return difference_in_means(adjusted, treated, "cuped", alpha), theta, reduction


def naive_bias_note(
    naive: Estimate, adjusted: Estimate, balance: dict[str, float], what: str = "naive difference"
) -> tuple[bool, str]:
    """Biased when the naive 95 % CI excludes the confounder-adjusted estimate."""
    worst = max(balance.items(), key=lambda kv: kv[1], default=("", 0.0))
    if naive.covers(adjusted.effect):
        return False, (
            f"{what} {naive.effect:+.4g} is consistent with the adjusted {adjusted.effect:+.4g}"
        )
    imbalance = (
        f"; arms differ before exposure ({worst[0]} standardised difference {worst[1]:.2f})"
        if worst[1] > SMD_IMBALANCED
        else ""
    )
    return True, (
        f"{what} {naive.effect:+.4g} [{naive.ci_low:+.4g}, {naive.ci_high:+.4g}] is "
        f"biased: its interval excludes the confounder-adjusted {adjusted.effect:+.4g}{imbalance}"
    )


def readout(
    users: pd.DataFrame,
    covariates: list[str],
    version: str,
    control: str,
    adjusted: Estimate,
    cfg: AttributionConfig,
) -> Readout:
    wanted = ["version", "segment", "revenue", CUPED_COVARIATE, *SECONDARY_OUTCOMES, *covariates]
    rows = users.loc[users["version"].isin([version, control]), list(dict.fromkeys(wanted))]
    treated = rows["version"].to_numpy() == version
    y = rows["revenue"].to_numpy(dtype=float)
    x_cov = rows[covariates].to_numpy(dtype=float)
    naive = difference_in_means(y, treated, "naive", cfg.alpha)
    balance = standardized_mean_differences(x_cov, treated, covariates)
    biased, note = naive_bias_note(naive, adjusted, balance)
    cup, theta, reduction = cuped(
        y, rows[CUPED_COVARIATE].to_numpy(dtype=float), treated, cfg.alpha
    )
    cup_biased, cup_note = naive_bias_note(cup, adjusted, balance, "CUPED difference")
    out = Readout(
        naive=naive,
        naive_biased=biased,
        naive_note=note,
        balance=balance,
        cuped=cup,
        cuped_theta=theta,
        cuped_variance_reduction=reduction,
        cuped_biased=cup_biased,
        cuped_note=cup_note,
    )
    out.secondary = ols_adjusted(
        {name: rows[name].to_numpy(dtype=float) for name in SECONDARY_OUTCOMES},
        treated,
        x_cov,
        "ols_interacted",
        cfg.alpha,
    )
    seg_covs = [c for c in covariates if not c.startswith("seg_")]
    segment = rows["segment"].to_numpy()
    for seg in sorted(pd.unique(segment)):
        mask = segment == seg
        n_t, n_c = int((treated & mask).sum()), int((~treated & mask).sum())
        entry: dict[str, Any] = {"segment": str(seg), "n_treated": n_t, "n_control": n_c}
        if min(n_t, n_c) >= MIN_SEGMENT_USERS:
            est = ols_adjusted(
                {"revenue": y[mask]},
                treated[mask],
                rows.loc[mask, seg_covs].to_numpy(dtype=float),
                "ols_interacted",
                cfg.alpha,
            )["revenue"]
            entry["estimate"] = est.to_dict()
            entry["naive"] = difference_in_means(
                y[mask], treated[mask], "naive", cfg.alpha
            ).to_dict()
        else:
            entry["estimate"] = None
            entry["naive"] = None
            entry["note"] = f"fewer than {MIN_SEGMENT_USERS} users in an arm"
        out.segments.append(entry)
    return out
