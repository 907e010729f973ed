"""The estimators against planted truth on a confounded rollout (v2 shown mostly to heavy users,
placebo v3 mostly to light ones). Refuters are skipped inside the seed loop: they do not change
the estimates and would multiply the runtime."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from scipy import stats

from attribution import causal, experiment
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from attribution.stats import Estimate
from bench.attribution_world import SimulationSpec, simulate

COVERAGE_SEEDS = range(20)
PLACEBO_SEEDS = range(40)
N_USERS = 5_000
CFG = AttributionConfig()


@dataclass(frozen=True)
class SeedResult:
    truth: float
    estimates: list[Estimate]  # configured estimators, primary first
    naive: Estimate
    naive_biased: bool
    placebo: Estimate


@pytest.fixture(scope="module")
def seeds() -> list[SeedResult]:
    out = []
    for seed in PLACEBO_SEEDS:
        sim = simulate(SimulationSpec(n_users=N_USERS), seed=seed)
        table = prepare_table(sim.users, CFG)
        res = causal.estimate_version(table.users, table.covariates, "v2", "v1", CFG, refute=False)
        readout = experiment.readout(table.users, table.covariates, "v2", "v1", res.primary, CFG)
        placebo = causal.estimate_version(
            table.users, table.covariates, "v3", "v1", CFG, refute=False, primary_only=True
        )
        out.append(
            SeedResult(
                sim.planted_uplift("v2"),
                res.estimates,
                readout.naive,
                readout.naive_biased,
                placebo.primary,
            )
        )
    return out


@pytest.mark.parametrize("index", [0, 1], ids=["regression", "doubly_robust"])
def test_ci_covers_planted_uplift_in_at_least_18_of_20_seeds(
    seeds: list[SeedResult], index: int
) -> None:
    covered = [s.estimates[index].covers(s.truth) for s in seeds[: len(COVERAGE_SEEDS)]]
    assert sum(covered) >= 18, [
        (
            round(s.truth, 3),
            round(s.estimates[index].ci_low, 3),
            round(s.estimates[index].ci_high, 3),
        )
        for s in seeds[: len(COVERAGE_SEEDS)]
    ]


def test_estimators_are_unbiased_across_seeds(seeds: list[SeedResult]) -> None:
    for index in (0, 1):
        errors = [s.estimates[index].effect - s.truth for s in seeds]
        se = stats.sem(errors)
        mean = sum(errors) / len(errors)
        assert abs(mean) < 3 * se, (index, mean, se)


def test_naive_difference_misses_the_planted_uplift_and_is_flagged(seeds: list[SeedResult]) -> None:
    first = seeds[: len(COVERAGE_SEEDS)]
    assert sum(not s.naive.covers(s.truth) for s in first) >= 18
    assert sum(s.naive_biased for s in first) >= 18
    # Heavy users buy more and get v2 more often: the naive gap overstates the uplift.
    assert all(s.naive.effect > s.truth for s in first)


def test_placebo_version_is_significant_no_more_often_than_alpha(seeds: list[SeedResult]) -> None:
    significant = sum(s.placebo.significant(CFG.alpha) for s in seeds)
    # Binomial(40, 0.05): P(X >= 6) is about 1.4 %; 6+ would mean a real excess.
    assert significant <= 5, significant
    assert stats.binomtest(significant, len(seeds), CFG.alpha, alternative="greater").pvalue > 0.01
