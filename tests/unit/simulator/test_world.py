from __future__ import annotations

import time

import numpy as np

from simulator.config import SEGMENTS
from simulator.world import DAY_MS, HOUR_MS, World, default_start_ms
from tests.unit.simulator.conftest import small_config


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b = World.build(small_config()), World.build(small_config())
    c = World.build(small_config(seed=12))
    for name in ("preference", "activity", "segment"):
        assert np.array_equal(getattr(a.users, name), getattr(b.users, name))
    assert np.array_equal(a.items.appeal, b.items.appeal)
    assert np.array_equal(a.items.price, b.items.price)
    assert not np.array_equal(a.items.price, c.items.price)


def test_catalogue_churns_but_keeps_its_size(world: World) -> None:
    day0, day1 = set(world.active(0).tolist()), set(world.active(1).tolist())
    assert len(day0) == len(day1) == world.config.items
    born = day1 - day0
    assert born and all(world.items.born[i] == 1 for i in born)
    assert all(world.items.retired[i] == 1 for i in day0 - day1)
    # Appeal drifts: yesterday's bestsellers are not exactly today's.
    assert not np.array_equal(world.items.appeal[0], world.items.appeal[1])
    assert 0.5 < np.corrcoef(world.items.appeal[0], world.items.appeal[1])[0, 1] < 0.99


def test_prices_are_cents_and_segments_differ_in_activity(world: World) -> None:
    price = world.items.price
    assert (price >= 1.0).all() and np.allclose(price, np.round(price, 2))
    by_segment = [world.users.activity[world.users.segment == s].mean()
                  for s in range(len(SEGMENTS))]
    assert by_segment == sorted(by_segment)  # light < regular < heavy
    assert set(world.user_table()["segment"]) <= set(SEGMENTS)


def test_default_start_is_in_the_past_and_hour_aligned() -> None:
    now = int(time.time() * 1000)
    start = default_start_ms(3, now)
    assert start % HOUR_MS == 0
    assert now - HOUR_MS < start + 4 * DAY_MS <= now  # day 3 (past the horizon) ends by now
