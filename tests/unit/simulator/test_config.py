from __future__ import annotations

from pathlib import Path

import pytest

from loopline.errors import ConfigError
from simulator.config import SimulatorConfig, load_simulator
from simulator.errors import SimulatorConfigError


def test_defaults_are_valid_and_loadable() -> None:
    assert load_simulator() == SimulatorConfig()  # tests/conftest.py isolates the config


def test_config_file_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "loopline.toml"
    config.write_text("[simulator]\nusers = 30\nseed = 3\n")
    monkeypatch.setenv("LOOPLINE_CONFIG", str(config))
    assert (load_simulator().users, load_simulator().seed) == (30, 3)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_SIMULATOR_USERS", "50")
    monkeypatch.setenv("LOOPLINE_SIMULATOR_SEGMENT_SHARES", "0.2,0.3,0.5")
    cfg = load_simulator(days=1)
    assert (cfg.users, cfg.days, cfg.segment_shares) == (50, 1, (0.2, 0.3, 0.5))


@pytest.mark.parametrize("bad", [
    {"users": 0},
    {"slate_size": 70, "candidates": 60},
    {"items": 100, "candidates": 60},
    {"segment_shares": (0.5, 0.5)},
    {"segment_shares": (0.5, 0.4, 0.3)},
    {"requests_per_session": 0.5},
    {"item_churn": 0.7},
])
def test_invalid_settings_say_what_is_wrong(bad: dict[str, object]) -> None:
    with pytest.raises(SimulatorConfigError) as info:
        SimulatorConfig(**bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigError)
    assert "simulator." in str(info.value)
