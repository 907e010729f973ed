"""bench.results: the README table shows the newest *reference* run per suite, never a smoke
run, a job variant or a run without its baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import results


def _doc(suite: str, started: str, variant: str | None = "process mode", smoke: bool = False,
         baseline: float | None = 10.0) -> dict[str, Any]:
    return {"suite": suite, "started_at": started,
            "parameters": {"smoke": smoke, "job_variant": variant},
            "figures": [results.figure("events/s", "events/s", 5.0, baseline, True)]}


def _write(folder: Path, name: str, doc: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(doc))


def test_newest_reference_run_wins(tmp_path: Path) -> None:
    _write(tmp_path, "t-1.json", _doc("throughput", "2026-01-01T00:00"))
    _write(tmp_path, "t-2.json", _doc("throughput", "2026-01-02T00:00"))
    assert results.latest(tmp_path)["throughput"]["_file"] == "t-2.json"


def test_smoke_variant_and_baseline_less_runs_are_left_out(tmp_path: Path) -> None:
    _write(tmp_path, "t-1.json", _doc("throughput", "2026-01-01T00:00"))
    _write(tmp_path, "t-2.json", _doc("throughput", "2026-01-02T00:00", smoke=True))
    _write(tmp_path, "t-3.json", _doc("throughput", "2026-01-03T00:00",
                                      variant="process mode, parallelism=2"))
    _write(tmp_path, "t-4.json", _doc("throughput", "2026-01-04T00:00", baseline=None))
    _write(tmp_path, "a-1.json", _doc("attribution", "2026-01-05T00:00", variant=None))
    found = results.latest(tmp_path)
    assert found["throughput"]["_file"] == "t-1.json"
    assert found["attribution"]["_file"] == "a-1.json"


def test_a_run_of_the_default_job_is_a_reference(tmp_path: Path) -> None:
    """JobVariant labels a run without overrides "defaults": such runs must reach the table."""
    from bench.jobspec import JobVariant

    _write(tmp_path, "t-1.json", _doc("throughput", "2026-01-01T00:00"))
    _write(tmp_path, "t-2.json", _doc("throughput", "2026-01-02T00:00",
                                      variant=JobVariant().label))
    _write(tmp_path, "t-3.json", _doc("throughput", "2026-01-03T00:00",
                                      variant=JobVariant(overrides=(("parallelism", 2),)).label))
    assert results.latest(tmp_path)["throughput"]["_file"] == "t-2.json"
