"""Experiment-style readouts per version next to the causal estimate: the naive difference
(flagged when confounding biases it), CUPED with pre-exposure revenue, segments, and the
secondary outcomes (clicks, conversion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from attribution.config import AttributionConfig
from attribution.metrics import METRICS
from attribution.stats import (
    Estimate,
    difference_in_means,
    metric_estimate,
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
    cuped_covariate: str = CUPED_COVARIATE
    segments: list[dict[str, Any]] = field(default_factory=list)
    secondary: dict[str, Estimate] = field(default_factory=dict)
    # Every metric, covariate-adjusted (the primary one's headline comes from DoWhy).
    metrics: dict[str, Estimate] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "naive": {**self.naive.to_dict(), "biased": self.naive_biased, "note": self.naive_note},
            "covariate_balance_smd": self.balance,
            "cuped": {
                **self.cuped.to_dict(),
                "covariate": self.cuped_covariate,
                "theta": None if np.isnan(self.cuped_theta) else self.cuped_theta,
                "variance_reduction": self.cuped_variance_reduction,
                "biased": self.cuped_biased,
                "note": self.cuped_note,
            },
            "segments": self.segments,
            "secondary": {k: v.to_dict() for k, v in self.secondary.items()},
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
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
    naive: Estimate,
    adjusted: Estimate,
    balance: dict[str, float],
    what: str = "naive difference",
    max_smd: float = SMD_IMBALANCED,
) -> tuple[bool, str]:
    """Biased when the naive CI excludes the confounder-adjusted estimate, or when the arms
    differ before exposure (standardised difference above `max_smd`): under heavy tails the
    naive interval is wide enough to cover a badly biased value, imbalance still shows it."""
    worst = max(balance.items(), key=lambda kv: kv[1], default=("", 0.0))
    imbalanced = worst[1] > max_smd
    imbalance = (
        f"arms differ before exposure ({worst[0]} standardised difference {worst[1]:.2f} > "
        f"{max_smd:g})"
    )
    if naive.covers(adjusted.effect):
        if imbalanced:
            return True, (
                f"{what} {naive.effect:+.4g} compares different users: {imbalance}; the "
                f"confounder-adjusted estimate is {adjusted.effect:+.4g}"
            )
        return False, (
            f"{what} {naive.effect:+.4g} is consistent with the adjusted {adjusted.effect:+.4g}"
        )
    return True, (
        f"{what} {naive.effect:+.4g} [{naive.ci_low:+.4g}, {naive.ci_high:+.4g}] is "
        f"biased: its interval excludes the confounder-adjusted {adjusted.effect:+.4g}"
        + (f"; {imbalance}" if imbalanced else "")
    )


def _metric_table(
    rows: pd.DataFrame, treated: np.ndarray, x_cov: np.ndarray, alpha: float
) -> dict[str, Estimate]:
    """Every metric, covariate-adjusted, so a reviewer sees what moved besides the headline."""
    out = {}
    for metric in METRICS.values():
        num = rows[metric.column].to_numpy(dtype=float)
        den = rows[metric.denominator].to_numpy(dtype=float) if metric.denominator else None
        if np.nanstd(num) == 0 or (den is not None and (den.sum() <= 0)):
            continue  # constant: no interval to show (the estimation check says so for the primary)
        out[metric.name] = metric_estimate(num, den, treated, x_cov, "adjusted", alpha)
    return out


def readout(
    users: pd.DataFrame,
    covariates: list[str],
    version: str,
    control: str,
    adjusted: Estimate,
    cfg: AttributionConfig,
) -> Readout:
    metric = cfg.outcome
    columns = {m.column for m in METRICS.values()} | {"impressions"}
    cuped_cov = metric.cuped_covariate or "pre_events"
    wanted = ["version", "segment", *sorted(columns), cuped_cov, *SECONDARY_OUTCOMES, *covariates]
    rows = users.loc[users["version"].isin([version, control]), list(dict.fromkeys(wanted))]
    treated = rows["version"].to_numpy() == version
    y = rows[metric.column].to_numpy(dtype=float)
    den = rows[metric.denominator].to_numpy(dtype=float) if metric.denominator else None
    x_cov = rows[covariates].to_numpy(dtype=float)
    x_pre = rows[cuped_cov].to_numpy(dtype=float)
    none = np.empty((len(rows), 0))
    if den is None:
        naive = difference_in_means(y, treated, "naive", cfg.alpha)
        cup, theta, reduction = cuped(y, x_pre, treated, cfg.alpha)
    else:
        # A ratio metric's CUPED is the same ratio with one pre-exposure covariate adjusted.
        naive = metric_estimate(y, den, treated, none, "naive", cfg.alpha)
        cup = metric_estimate(y, den, treated, x_pre[:, None], "cuped", cfg.alpha)
        theta = float("nan")
        reduction = 1.0 - (cup.se / naive.se) ** 2 if naive.se > 0 else 0.0
    balance = standardized_mean_differences(x_cov, treated, covariates)
    biased, note = naive_bias_note(naive, adjusted, balance, max_smd=cfg.max_balance_smd)
    cup_biased, cup_note = naive_bias_note(
        cup, adjusted, balance, "CUPED difference", max_smd=cfg.max_balance_smd
    )
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
        cuped_covariate=cuped_cov,
    )
    out.secondary = ols_adjusted(
        {name: rows[name].to_numpy(dtype=float) for name in SECONDARY_OUTCOMES},
        treated,
        x_cov,
        "ols_interacted",
        cfg.alpha,
    )
    out.metrics = _metric_table(rows, treated, x_cov, cfg.alpha)
    seg_covs = [c for c in covariates if not c.startswith("seg_")]
    segment = rows["segment"].to_numpy()
    for seg in sorted(pd.unique(segment)):
        mask = segment == seg
        n_t, n_c = int((treated & mask).sum()), int((~treated & mask).sum())
        entry: dict[str, Any] = {"segment": str(seg), "n_treated": n_t, "n_control": n_c}
        seg_den = den[mask] if den is not None else None
        if min(n_t, n_c) >= MIN_SEGMENT_USERS and np.std(y[mask]) > 0:
            x_seg = rows.loc[mask, seg_covs].to_numpy(dtype=float)
            est = metric_estimate(y[mask], seg_den, treated[mask], x_seg, "adjusted", cfg.alpha)
            entry["estimate"] = est.to_dict()
            entry["naive"] = metric_estimate(
                y[mask], seg_den, treated[mask], none[mask], "naive", cfg.alpha
            ).to_dict()
        else:
            entry["estimate"] = None
            entry["naive"] = None
            entry["note"] = (
                f"fewer than {MIN_SEGMENT_USERS} users in an arm"
                if min(n_t, n_c) < MIN_SEGMENT_USERS
                else f"{metric.column} does not vary in this segment"
            )
        out.segments.append(entry)
    return out
