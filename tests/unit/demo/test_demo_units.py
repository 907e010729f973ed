"""The demo's pure parts: config validation, the demo folder's safety, which slice partitions
a watermark makes final, and the calendar of simulated days."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo import feedback, home
from demo.config import DemoConfig, load_demo
from demo.errors import DemoConfigError
from demo.phases import DAY_MS, HOUR_MS, start_of_days
from jobs.config import JobConfig


def test_defaults_and_derived_settings() -> None:
    cfg = DemoConfig()
    assert cfg.experiment_days == [2, 3]
    assert cfg.split == pytest.approx({"v1": 0.4, "v2": 0.3, "v3": 0.3})
    assert cfg.serving_temperature == 1.0
    assert DemoConfig(scenario="exploitation").serving_temperature == 0.05


@pytest.mark.parametrize(("change", "message"), [
    ({"days": 2}, "at least 3"),
    ({"users": 5}, "at least 20"),
    ({"scenario": "chaos"}, "scenario must be one of"),
    ({"control_share": 1.0}, "control_share"),
])
def test_bad_settings_say_what_was_expected(change: dict[str, object], message: str) -> None:
    with pytest.raises(DemoConfigError, match=message):
        DemoConfig(**change)  # type: ignore[arg-type]


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_DEMO_USERS", "120")
    assert load_demo().users == 120
    assert load_demo(users=50).users == 50


def test_the_demo_folder_is_wiped_only_when_the_demo_wrote_it(tmp_path: Path) -> None:
    folder = home.prepare(tmp_path / "new")
    assert folder.home.is_dir()
    folder.write_marker({"run": "r1", "topics": ["loopline.demo.r1.serving"]})
    (folder.out / "ground_truth.json").write_text("{}")
    again = home.prepare(folder.out)
    assert home.previous_run(folder.out) is None  # wiped, marker included
    assert sorted(p.name for p in again.out.iterdir()) == ["home"]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DemoConfigError, match="will not wipe"):
        home.prepare(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_partition_is_due_once_the_watermark_passes_its_end_plus_maturity() -> None:
    job = JobConfig()  # 1 h partitions, 30 min maturity
    h0 = 1_767_225_600_000  # 2026-01-01T00:00Z
    impressions = {h0: 50, h0 + HOUR_MS: 40, h0 + 2 * HOUR_MS: 30}
    assert feedback.due(impressions, None, job) == {}
    mark = h0 + 2 * HOUR_MS + 30 * 60_000 + 1  # past hour 1's end + 30 min, not hour 2's
    assert feedback.due(impressions, mark, job) == {h0: 50, h0 + HOUR_MS: 40}
    assert feedback.hour_name(h0 + HOUR_MS) == "2026-01-01T01"


def test_simulated_days_are_past_calendar_days() -> None:
    now = 1_767_268_800_000  # 2026-01-01T12:00Z
    start = start_of_days(4, now)
    assert start % DAY_MS == 0
    assert start + 4 * DAY_MS <= now - 3 * HOUR_MS  # the last day plus 2 h of late purchases
    early = 1_767_229_200_000  # 2026-01-01T01:00Z: yesterday cannot end before now - 3 h
    assert start_of_days(4, early) == start - DAY_MS
