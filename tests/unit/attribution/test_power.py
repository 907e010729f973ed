"""The minimum detectable effect against an independent power calculation (statsmodels) and
against simulation; the plan inverts it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower

from attribution.power import plan
from attribution.stats import difference_in_means, minimum_detectable_effect, users_needed


@pytest.mark.parametrize(
    ("n1", "n0", "alpha", "power"), [(500, 500, 0.05, 0.8), (300, 1200, 0.01, 0.9)]
)
def test_mde_matches_an_analytic_power_calculation(
    n1: int, n0: int, alpha: float, power: float
) -> None:
    sigma = 7.0
    se = sigma * math.sqrt(1 / n1 + 1 / n0)
    d = NormalIndPower().solve_power(nobs1=n1, ratio=n0 / n1, alpha=alpha, power=power)
    assert minimum_detectable_effect(se, alpha, power) == pytest.approx(d * sigma, rel=1e-3)


def test_an_effect_of_one_mde_is_detected_about_80_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    n, sigma, seeds = 400, 5.0, 400
    mde = minimum_detectable_effect(sigma * math.sqrt(2 / n), 0.05, 0.8)
    treated = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    hits = 0
    for _ in range(seeds):
        y = rng.normal(0, sigma, 2 * n) + mde * treated
        hits += difference_in_means(y, treated, "naive", 0.05).significant(0.05)
    assert 0.74 <= hits / seeds <= 0.86, hits / seeds  # Binomial(400, 0.8): ±2.5 SD
    # Half the effect is detected far less often: the statement "detectable at ±MDE" is sharp.
    half = sum(
        difference_in_means(
            rng.normal(0, sigma, 2 * n) + mde / 2 * treated, treated, "n", 0.05
        ).significant(0.05)
        for _ in range(200)
    )
    assert half / 200 < 0.45


def test_plan_scales_the_se_and_inverts_the_mde() -> None:
    doc = {
        "period": {"since": "2026-11-01T00:00:00+00:00", "until": "2026-11-08T00:00:00+00:00"},
        "versions": [
            {"is_control": True, "model_version": "v1"},
            {
                "is_control": False,
                "model_version": "v2",
                "power": {"se": 2.0, "users": 10_000},
            },
        ],
    }
    (p,) = plan(doc, 40_000, 1.5, 0.05, 0.8)
    assert p.mde_planned == pytest.approx(p.mde_observed / 2)  # 4x users, half the MDE
    assert p.users_for_uplift is not None and p.days_for_uplift is not None
    se_then = 2.0 * math.sqrt(10_000 / p.users_for_uplift)
    assert minimum_detectable_effect(se_then, 0.05, 0.8) == pytest.approx(1.5)
    assert p.days_for_uplift == pytest.approx(p.users_for_uplift / (10_000 / 7))
    assert users_needed(2.0, 10_000, 0.0, 0.05) != users_needed(2.0, 10_000, 0.0, 0.05)  # nan
