from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import policies
from simulator.errors import GroundTruthError
from simulator.events import INTERACTION, Emitted
from simulator.ground_truth import Truth, evaluate
from simulator.simulation import Simulation
from simulator.world import World


@pytest.fixture(scope="module")
def truth(world: World) -> Truth:
    versions = {"random": policies.uniform_random(world), "popularity": policies.popularity(world),
                "oracle": policies.oracle(world)}
    return evaluate(world, versions, range(world.days), replications=30)


def test_planted_uplift_oracle_beats_random(truth: Truth) -> None:
    doc = truth.summary(control="random")
    oracle, control = doc["versions"]["oracle"], doc["versions"]["random"]
    assert control["uplift_abs"] == 0.0 and control["ci"] == [0.0, 0.0]
    assert oracle["uplift_abs"] > 0 and oracle["ci"][0] > 0
    assert oracle["ci_rel"][0] > 0.2  # a large planted effect
    assert oracle["expected_ctr"] > doc["versions"]["popularity"]["expected_ctr"] > 0


def test_monte_carlo_ci_covers_the_analytic_value(truth: Truth) -> None:
    doc = truth.summary(control="random")
    for name, v in doc["versions"].items():
        mc = v["monte_carlo"]
        assert mc["replications"] == 30
        assert mc["ci"][0] <= v["expected_revenue_per_user"] <= mc["ci"][1], name
        if name != "random":
            assert mc["uplift_ci"][0] <= v["uplift_abs"] <= mc["uplift_ci"][1], name


def test_events_earn_what_ground_truth_expects(
        world: World, popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    """Realized revenue of the emitted stream agrees with the analytic truth of its policy."""
    _, events = popularity_run
    doc = evaluate(world, {"p": policies.popularity(world, epsilon=0.2)}, range(world.days),
                   replications=20).summary(control="p")
    v = doc["versions"]["p"]
    realized = sum(e["revenue"] for k, e in events if k == INTERACTION) / v["users"]
    half_width = (v["monte_carlo"]["ci"][1] - v["monte_carlo"]["ci"][0]) / 2
    sd_one_run = half_width * (20**0.5)  # CI of the mean of 20 runs -> spread of one run
    assert abs(realized - v["expected_revenue_per_user"]) < 2 * sd_one_run


def test_shadow_truth_during_a_run_equals_replay(world: World) -> None:
    shadow = Truth(world, {"oracle": policies.oracle(world), "pop": policies.popularity(world)})
    sim = Simulation(world)
    for day in range(world.days):
        for _ in sim.run_day(day, policies.uniform_random(world), shadow):
            pass
    replay = evaluate(world, {"oracle": policies.oracle(world), "pop": policies.popularity(world)},
                      range(world.days))
    assert shadow.summary("pop") == replay.summary("pop")


def test_pure_exploitation_narrows_coverage(truth: Truth) -> None:
    diversity = truth.summary(control="random")["diversity"]
    for day in ("0", "1"):
        assert diversity["popularity"][day]["coverage"] < 0.5 * diversity["random"][day]["coverage"]
        assert diversity["popularity"][day]["gini"] > diversity["random"][day]["gini"]


def test_ground_truth_json(truth: Truth, tmp_path: Path) -> None:
    doc = truth.write(tmp_path / "out" / "ground_truth.json", control="popularity", days=[1])
    loaded = json.loads((tmp_path / "out" / "ground_truth.json").read_text())
    assert loaded == doc
    assert loaded["schema_version"] == 1 and loaded["seed"] == 11
    assert loaded["control"] == "popularity" and loaded["days"] == [1]
    assert set(loaded["versions"]) == {"random", "popularity", "oracle"}
    for v in loaded["versions"].values():
        assert {"expected_revenue_per_user", "uplift_abs", "uplift_rel", "ci"} <= set(v)
    with pytest.raises(GroundTruthError, match="control"):
        truth.summary(control="v9")
    with pytest.raises(GroundTruthError, match="missing"):
        truth.summary(control="random", days=[5])


def test_versions_can_join_later(world: World) -> None:
    """A version trained after day 0 is shadowed from day 1; truth compares it on day 1 only."""
    shadow = Truth(world, {"pop": policies.popularity(world)})
    sim = Simulation(world)
    recommender = policies.uniform_random(world)
    for _ in sim.run_day(0, recommender, shadow):
        pass
    shadow.add_version("oracle", policies.oracle(world))
    for _ in sim.run_day(1, recommender, shadow):
        pass
    assert shadow.observed("oracle") == [1]
    assert set(shadow.summary("pop")["versions"]) == {"pop"}
    with pytest.raises(GroundTruthError, match="not observed on day 0"):
        shadow.summary("pop", versions=["pop", "oracle"])
    day1 = shadow.summary("pop", days=[1])
    assert set(day1["versions"]) == {"pop", "oracle"}
    assert day1["versions"]["oracle"]["ci"][0] > 0
