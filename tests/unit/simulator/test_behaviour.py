from __future__ import annotations

from collections import Counter

import numpy as np

from simulator import behaviour, policies
from simulator.events import INTERACTION, SERVING
from simulator.simulation import Simulation
from simulator.world import World
from tests.unit.simulator.conftest import small_config


def test_position_bias_is_visible_in_generated_clicks() -> None:
    """Under uniformly random slates relevance is position-free, so CTR(j) ~ 1/(1+j)^eta."""
    world = World.build(small_config(users=300, days=1, requests_per_session=5.0))
    events = list(Simulation(world).run(policies.uniform_random(world)))
    shown: Counter[int] = Counter()
    clicks: Counter[int] = Counter()
    for kind, e in events:
        if kind == SERVING:
            shown.update(i["position"] for i in e["slate"])
        elif kind == INTERACTION and e["type"] == "click":
            clicks[e["position"]] += 1
    ctr = np.array([clicks[j] / shown[j] for j in range(world.config.slate_size)])
    top, middle, bottom = ctr[0], ctr[1:4].mean(), ctr[4:].mean()
    assert top > middle > bottom
    # Examination ratio of slot 0 to slots 4..7 is 1 / mean(1/(1+j)) ~ 6.1 for eta = 1.
    assert 3.0 < top / bottom < 12.0


def test_expectation_matches_the_draws() -> None:
    world = World.build(small_config())
    items = world.active(0)[:40]
    probs = behaviour.probabilities(world, 0, 3, items)
    cols, positions = np.arange(8), np.arange(8)
    exact = behaviour.expected(probs, cols, positions, eta=1.0)
    draws = behaviour.draw(np.random.default_rng(1), len(items), 8, 0.0, reps=20_000)
    realized = behaviour.realize(probs, cols, positions, draws, eta=1.0)
    se = realized.revenue.sum(axis=1).std() / np.sqrt(20_000)
    assert abs(realized.revenue.sum(axis=1).mean() - exact.revenue) < 4 * se
    assert abs(realized.clicked.sum(axis=1).mean() - exact.clicks) < 0.02
    # A purchase always comes with a click and a cart.
    assert not (realized.bought & ~realized.carted).any()
    assert not (realized.carted & ~realized.clicked).any()


def test_price_above_budget_lowers_add_to_cart() -> None:
    world = World.build(small_config())
    items = world.active(0)
    probs = behaviour.probabilities(world, 0, 0, items)
    over = np.log(probs.price / world.users.budget[0])
    adjusted = np.log(probs.cart / (1 - probs.cart)) - behaviour.CART_AFFINITY * probs.affinity
    assert np.corrcoef(over, adjusted)[0, 1] < -0.99
