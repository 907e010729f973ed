"""Power up front: what an experiment of a given size can detect, from the variance observed.

The headline estimator's SE already includes the covariate adjustment (and so the variance
CUPED-like adjustment removes); at the same split and variance it shrinks as 1/sqrt(users).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from attribution.stats import minimum_detectable_effect, users_needed


@dataclass(frozen=True)
class Plan:
    version: str
    observed_users: int
    observed_se: float
    planned_users: int
    mde_observed: float
    mde_planned: float
    uplift: float | None
    users_for_uplift: float | None
    days_for_uplift: float | None

    def text(self, label: str, power: float) -> str:
        out = (
            f"{self.version}: with {self.planned_users:,} users the smallest uplift detected at "
            f"{power:.0%} power is ±{self.mde_planned:.4g} {label} (now {self.observed_users:,} "
            f"users: ±{self.mde_observed:.4g})"
        )
        if self.uplift is not None and self.users_for_uplift is not None:
            out += f"; {self.uplift:+g} needs {math.ceil(self.users_for_uplift):,} users"
            if self.days_for_uplift is not None:
                out += f" (about {self.days_for_uplift:.1f} days at the observed rate)"
        return out


def plan(
    document: dict[str, Any], users: int, uplift: float | None, alpha: float, power: float
) -> list[Plan]:
    """One Plan per estimated version of a report document."""
    since, until = (document["period"].get(k) for k in ("since", "until"))
    days = (
        (pd.Timestamp(until) - pd.Timestamp(since)).total_seconds() / 86_400
        if since and until
        else None
    )
    out = []
    for v in document["versions"]:
        p = v.get("power")
        if v["is_control"] or not p:
            continue
        se, n = float(p["se"]), int(p["users"])
        scaled = se * math.sqrt(n / users)
        needed = users_needed(se, n, uplift, alpha, power) if uplift else None
        per_day = n / days if days else None
        out.append(
            Plan(
                version=v["model_version"],
                observed_users=n,
                observed_se=se,
                planned_users=users,
                mde_observed=minimum_detectable_effect(se, alpha, power),
                mde_planned=minimum_detectable_effect(scaled, alpha, power),
                uplift=uplift,
                users_for_uplift=needed,
                days_for_uplift=needed / per_day if needed and per_day else None,
            )
        )
    return out
