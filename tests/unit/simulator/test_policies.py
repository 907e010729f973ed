from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from simulator import behaviour, policies
from simulator.errors import SimulatorConfigError
from simulator.policies import Arm, Slate, Split
from simulator.world import World


def candidates(world: World, n: int) -> list[str]:
    return [world.items.ids[i] for i in world.active(0)[:n]]


def test_uniform_random_logs_one_over_n(world: World) -> None:
    cands = candidates(world, 20)
    slate = policies.uniform_random(world)("u000001", "s", cands, 5, world.start_ms)
    assert [i.position for i in slate.items] == [0, 1, 2, 3, 4]
    assert all(i.propensity == pytest.approx(1 / 20) for i in slate.items)
    assert slate.policy == "uniform"


def test_epsilon_greedy_propensities_match_frequencies(world: World) -> None:
    cands = candidates(world, 5)
    policy = policies.popularity(world, epsilon=0.3, version="pop")
    seen: Counter[tuple[str, int]] = Counter()
    logged: dict[tuple[str, int], float] = {}
    draws = 6_000
    for _ in range(draws):
        for item in policy("u000001", "s", cands, 3, world.start_ms).items:
            seen[(item.item_id, item.position)] += 1
            logged[(item.item_id, item.position)] = item.propensity
    for key, p in logged.items():
        se = np.sqrt(p * (1 - p) / draws)
        assert abs(seen[key] / draws - p) < 4 * se + 1e-9, key
    # Exactly the two values the policy can log: greedy slot or explored.
    assert set(np.round(list(logged.values()), 9)) == {round(0.7 + 0.3 / 5, 9), round(0.3 / 5, 9)}


def test_oracle_ranks_by_true_value(world: World) -> None:
    cands = candidates(world, 30)
    slate = policies.oracle(world)("u000002", "s", cands, 5, world.start_ms)
    items = np.array([world.item_index[c] for c in cands])
    value = behaviour.value(behaviour.probabilities(world, 0, 2, items))
    best = [cands[i] for i in np.argsort(-value)[:5]]
    assert [i.item_id for i in slate.items] == best
    assert all(i.propensity == 1.0 for i in slate.items)


def test_split_is_stable_and_can_be_skewed_by_segment(world: World) -> None:
    a, b = policies.uniform_random(world, "a"), policies.popularity(world, version="b")
    even = Split(world, [Arm("control", a, 0.5), Arm("treatment", b, 0.5)], salt="x")
    users = list(world.users.ids)
    first = [even.assign(u).name for u in users]
    assert first == [even.assign(u).name for u in users]
    assert 0.35 < first.count("treatment") / len(users) < 0.65
    slate = even(users[0], "s", candidates(world, 10), 3, world.start_ms)
    assert slate.arm == first[0]

    skewed = Split(world, [Arm("control", a, 0.5), Arm("treatment", b, 0.5)], salt="x",
                   segment_shares={"heavy": (0.1, 0.9), "light": (0.9, 0.1)})
    segment = world.segment_names
    heavy = [skewed.assign(u).name for u, s in zip(users, segment, strict=True) if s == "heavy"]
    light = [skewed.assign(u).name for u, s in zip(users, segment, strict=True) if s == "light"]
    assert heavy.count("treatment") / len(heavy) > light.count("treatment") / len(light) + 0.4
    with pytest.raises(SimulatorConfigError):
        Split(world, [Arm("control", a, 0.7), Arm("treatment", b, 0.5)])


def test_slate_from_a_serving_event() -> None:
    event = {"request_id": "r1", "model_version": "v2", "arm": "exp1:canary",
             "policy": "softmax(t=1)", "fallback": False,
             "slate": [{"item_id": "i1", "position": 0, "score": 0.5, "propensity": 0.25}]}
    slate = Slate.from_event(event)
    assert (slate.request_id, slate.model_version, slate.arm) == ("r1", "v2", "exp1:canary")
    assert slate.items[0].propensity == 0.25


def test_slate_from_another_slate_object() -> None:
    @dataclass(frozen=True)
    class Item:
        item_id: str
        position: int
        score: float
        propensity: float

    @dataclass(frozen=True)
    class ServedSlate:  # the attribute names of models.serving's Slate
        request_id: str
        model_version: str
        arm: str
        policy: str
        fallback: bool
        fallback_reason: str | None
        items: tuple[Item, ...]

    served = ServedSlate("r9", "popularity", "exp2:canary", "softmax(t=1)", True, "timeout",
                         (Item("i1", 0, 0.1, 0.5), Item("i2", 1, 0.0, 0.4)))
    slate = Slate.from_object(served)
    assert slate.request_id == "r9" and slate.fallback
    assert [i.item_id for i in slate.items] == ["i1", "i2"]
