"""Retrain triggers on synthetic slices: size, decay and drift, each decision recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bench import synthetic
from loopline.paths import PathsConfig
from models.registry import LINEAGE_FILE, Registry
from models.triggers import DECISIONS_FILE, TriggerConfig, check
from tests.unit.models.conftest import START_MS

HOUR = 3_600_000
CFG = TriggerConfig(min_new_rows=10_000, window_hours=2, min_window_rows=200)


def serve_hours(paths: PathsConfig, world: synthetic.World, first_hour: int, hours: int,
                version: str = "v1") -> int:
    rows = synthetic.simulate(world, START_MS + first_hour * HOUR, hours, 60, 20, 5,
                              seed=first_hour, first_offset=first_hour * 1000,
                              model_version=version)
    synthetic.write_slices(paths, rows)
    return len(rows)


def register_production(paths: PathsConfig, trained_until_hour: int) -> None:
    def write(directory: Path, version: str) -> None:
        end = f"2026-01-01T{10 + trained_until_hour:02d}:00:00Z"
        (directory / LINEAGE_FILE).write_text(json.dumps({"slice": {"end": end}}))

    Registry.from_paths(paths).register(write)


def test_slice_size(tmp_path: Path) -> None:
    paths = PathsConfig(home=tmp_path)
    rows = serve_hours(paths, synthetic.make_world(), 0, 3, version="v0")
    quiet = check(paths, replace(CFG, min_new_rows=rows + 1))
    assert not quiet.retrain and quiet.measurements["new_rows"] == rows
    loud = check(paths, replace(CFG, min_new_rows=rows))
    assert loud.retrain and loud.reasons == [f"slice size: {rows} new rows >= {rows}"]
    assert loud.proposed_slice == "2026-01-01T10:00:00Z..2026-01-01T13:00:00Z"
    logged = (paths.models / DECISIONS_FILE).read_text().splitlines()
    assert [json.loads(line)["retrain"] for line in logged] == [False, True]


def test_a_healthy_model_is_left_alone(tmp_path: Path) -> None:
    paths = PathsConfig(home=tmp_path)
    world = synthetic.make_world()
    serve_hours(paths, world, 0, 2, version="v0")
    register_production(paths, trained_until_hour=2)
    serve_hours(paths, world, 2, 6)
    decision = check(paths, CFG)
    assert not decision.retrain, decision.text()
    assert decision.proposed_slice == "2026-01-01T12:00:00Z..2026-01-01T18:00:00Z"
    assert decision.measurements["score_psi"] < CFG.max_score_psi


def test_decay_and_drift_on_recent_slices(tmp_path: Path) -> None:
    paths = PathsConfig(home=tmp_path)
    world = synthetic.make_world()
    serve_hours(paths, world, 0, 2, version="v0")
    register_production(paths, trained_until_hour=2)
    serve_hours(paths, world, 2, 4)
    # the catalogue changes: items are now a third as appealing (and scored lower)
    serve_hours(paths, replace(world, appeal=world.appeal / 3), 6, 2)
    decision = check(paths, CFG)
    assert decision.retrain and decision.production_version == "v1"
    assert any(r.startswith("performance decay: CTR") for r in decision.reasons), decision.text()
    assert any(r.startswith("score drift: PSI") for r in decision.reasons), decision.text()
    assert decision.measurements["reference_window"] == "2026-01-01T12..2026-01-01T13"
    assert decision.measurements["latest_window"] == "2026-01-01T16..2026-01-01T17"
