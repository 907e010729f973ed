"""Shared simulated rollouts for the attribution tests (computed once per session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from attribution import pipeline
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from bench.attribution_files import write_lineage
from bench.attribution_world import Simulation, SimulationSpec, simulate

# Few simulations and a small refuter sample keep the refuter path exercised but fast.
FAST = AttributionConfig(refuter_simulations=5, refuter_max_units=3_000)


@pytest.fixture(scope="session")
def confounded() -> Simulation:
    return simulate(SimulationSpec(n_users=8_000), seed=11)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, confounded: Simulation) -> Path:
    models = tmp_path_factory.mktemp("models")
    write_lineage(confounded, models)
    return models


@pytest.fixture(scope="session")
def confounded_report(confounded: Simulation, models_dir: Path) -> dict[str, Any]:
    table = prepare_table(confounded.users, FAST)
    return pipeline.run(table, models_dir, FAST)
