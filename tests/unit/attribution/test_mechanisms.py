"""Mechanism decomposition: parts sum to the total and point at the mechanism that moved."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from attribution import mechanisms
from attribution.mechanisms import MECHANISMS, decompose
from bench.attribution_world import SimulationSpec, VersionSpec, simulate


def _parts(users: pd.DataFrame) -> tuple[float, dict[str, float]]:
    d = decompose(users, "v2", "v1")
    return d.total, d.parts


@pytest.mark.parametrize("assignment", ["random", "confounded"])
def test_parts_sum_to_the_observed_total(assignment: str) -> None:
    sim = simulate(SimulationSpec(n_users=20_000, assignment=assignment), seed=5)
    total, parts = _parts(sim.users)
    means = sim.users.groupby("version")["revenue"].mean()
    assert math.isclose(total, means["v2"] - means["v1"], rel_tol=1e-9)
    assert math.isclose(sum(parts.values()), total, rel_tol=1e-9, abs_tol=1e-9)
    assert abs(parts["unexplained"]) < 1e-9 * max(1.0, abs(total))
    assert list(parts)[: len(MECHANISMS)] == list(MECHANISMS)


def test_confounding_shows_up_as_traffic_mix() -> None:
    sim = simulate(SimulationSpec(n_users=40_000, assignment="confounded"), seed=1)
    total, parts = _parts(sim.users)
    assert parts["traffic_mix"] > 0.7 * total
    sim = simulate(
        SimulationSpec(n_users=40_000, assignment="random", split=(0.5, 0.5, 0.0)), seed=1
    )
    _, parts = _parts(sim.users)
    assert abs(parts["traffic_mix"]) < 0.3 * sum(abs(v) for v in parts.values())


@pytest.mark.parametrize("mechanism", ["exposure", "ctr", "conversion", "order_value"])
def test_a_planted_single_mechanism_gets_most_of_the_credit(mechanism: str) -> None:
    versions = (
        VersionSpec("v1", arm="control"),
        VersionSpec("v2", arm="treatment", **{mechanism: 1.5}),
    )
    sim = simulate(
        SimulationSpec(n_users=60_000, versions=versions, assignment="random", split=(0.5, 0.5)),
        seed=2,
    )
    total, parts = _parts(sim.users)
    assert max(parts, key=lambda k: parts[k]) == mechanism
    assert parts[mechanism] > 0.6 * total


def test_inconsistent_rows_land_in_unexplained_and_still_sum() -> None:
    users = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "d"],
            "version": ["v1", "v1", "v2", "v2"],
            "segment": ["x", "x", "x", "x"],
            "impressions": [10, 10, 10, 10],
            "clicks": [1, 0, 0, 0],  # v2 bought without any click: the chain cannot express it
            "attributed_purchases": [1, 0, 1, 0],
            "attributed_revenue": [20.0, 0.0, 30.0, 0.0],
            "organic_revenue": [0.0, 5.0, 0.0, 0.0],
        }
    )
    users["revenue"] = users["attributed_revenue"] + users["organic_revenue"]
    d = decompose(users, "v2", "v1")
    assert np.isclose(sum(d.parts.values()), d.total)
    assert np.isclose(d.total, 15.0 - 12.5)


def test_exact_shapley_matches_dowhy_and_bands_separate_signal_from_noise() -> None:
    rng = np.random.default_rng(3)
    old, new = rng.uniform(0.1, 1.0, (3, 6)), rng.uniform(0.1, 1.0, (3, 6))
    assert np.allclose(mechanisms.exact_shapley(old, new), mechanisms._shapley(old, new))
    # v2 changes CTR (+10 %) but not exposure: CTR's band excludes 0, exposure's mostly not.
    noise = []
    for seed in range(5):
        sim = simulate(SimulationSpec(n_users=20_000, assignment="random"), seed=seed)
        parts = {
            p["mechanism"]: p
            for p in mechanisms.decompose(sim.users, "v2", "v1", reps=60).to_dict()["parts"]
        }
        assert parts["ctr"]["noise"] is False, parts["ctr"]
        noise.append(parts["exposure"]["noise"])
    assert sum(noise) >= 4, noise
