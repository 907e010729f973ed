from __future__ import annotations

import pytest

from attribution.config import AttributionConfig, load_config
from loopline.errors import ConfigError


def test_defaults_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config()
    assert (cfg.alpha, cfg.srm_alpha, cfg.expected_split) == (0.05, 0.001, None)
    assert cfg.primary_estimator == "backdoor.linear_regression"
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_EXPECTED_SPLIT", "v1=1,v2=3")
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_ESTIMATORS", "backdoor.doubly_robust")
    cfg = load_config(control_version="v1")
    assert cfg.split() == {"v1": 0.25, "v2": 0.75}
    assert cfg.estimators == ("backdoor.doubly_robust",)
    assert cfg.control_version == "v1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 1.5},
        {"expected_split": "v1=0.5,v2"},
        {"expected_split": "v1=-1"},
        {"estimators": ("backdoor.magic",)},
        {"attribution_window_hours": 0},
        {"refuter_simulations": 1},
    ],
)
def test_bad_values_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        AttributionConfig(**kwargs)
