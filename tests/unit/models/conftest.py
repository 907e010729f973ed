"""Fixtures of the models tests: a Loopline home with synthetic slices, a feature log and a
real Feast store (SQLite), built once per test module."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import FeatureStore

from bench import synthetic
from feature_repo.store import FeastConfig, feature_store
from loopline.paths import PathsConfig, load_paths

START_MS = 1_767_261_600_000  # 2026-01-01T10:00Z
HOURS = 3
SLICE = "2026-01-01T10..2026-01-01T13"


@contextmanager
def loopline_home(path: Path) -> Iterator[PathsConfig]:
    """Point LOOPLINE_PATHS_HOME at `path` for the duration. feature_repo.definitions reads
    the paths when imported, so it is re-imported on the way in and on the way out."""
    import feature_repo.definitions as definitions

    before = os.environ.get("LOOPLINE_PATHS_HOME")
    os.environ["LOOPLINE_PATHS_HOME"] = str(path)
    importlib.reload(definitions)
    try:
        yield load_paths()
    finally:
        if before is None:
            os.environ.pop("LOOPLINE_PATHS_HOME", None)
        else:
            os.environ["LOOPLINE_PATHS_HOME"] = before
        importlib.reload(definitions)


@dataclass
class Shop:
    paths: PathsConfig
    store: FeatureStore
    world: synthetic.World
    rows: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    frames: dict[str, pd.DataFrame]


def build_shop(paths: PathsConfig, hours: int = HOURS, requests_per_hour: int = 120,
               n_items: int = 60, seed: int = 0) -> Shop:
    world = synthetic.make_world(n_items=n_items, seed=seed)
    rows = synthetic.simulate(world, START_MS, hours, requests_per_hour, n_candidates=20, k=5,
                              seed=seed + 2)
    manifests = synthetic.write_slices(paths, rows)
    frames = synthetic.feature_frames(world, START_MS, hours, seed=seed + 1)
    synthetic.write_feature_log(paths, frames)
    store = feature_store(FeastConfig(), paths, apply=True)
    for view, frame in synthetic.latest_rows(frames).items():
        store.write_to_online_store(view, frame)
    return Shop(paths, store, world, rows, manifests, frames)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with loopline_home(tmp_path_factory.mktemp("home")) as paths:
        yield build_shop(paths)
