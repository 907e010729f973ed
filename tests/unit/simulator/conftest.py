"""Small worlds shared by the simulator tests (built once per session: keep the suite fast)."""

from __future__ import annotations

import pytest

from simulator import policies
from simulator.config import SimulatorConfig
from simulator.events import Emitted
from simulator.simulation import Simulation
from simulator.world import World

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def small_config(**overrides: object) -> SimulatorConfig:
    values: dict[str, object] = dict(users=120, days=2, items=300, candidates=40, slate_size=8,
                                     start_ms=T0, seed=11)
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def world() -> World:
    return World.build(small_config())


@pytest.fixture(scope="session")
def popularity_run(world: World) -> tuple[Simulation, list[Emitted]]:
    """Both days under popularity with 20 % exploration, fully consumed."""
    sim = Simulation(world)
    return sim, list(sim.run(policies.popularity(world, epsilon=0.2)))
