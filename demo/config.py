"""The demo's one frozen config ([demo] / LOOPLINE_DEMO_*): size, seed, scenario, knobs.

Defaults are sized for about five minutes on a 2-core machine. The cost is mostly serving:
every simulated request is a real Feast lookup + LightGBM + exact propensities (~10 ms on an
idle core), and on experiment days the ground-truth shadows rank it twice more. 400 users
make ~2,000 requests and ~4,800 events per simulated day; the feedback job (separate Python
worker processes, a few hundred events/s) keeps up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from demo.errors import DemoConfigError
from loopline import settings

SCENARIOS = ("default", "exploitation")
MIN_DAYS = 3  # a bootstrap day, a baseline day, at least one experiment day


@dataclass(frozen=True)
class DemoConfig:
    """What the demo simulates and how it runs the loop."""

    seed: int = 7
    users: int = 400
    days: int = 4
    # default: softmax exploration; exploitation: (almost) greedy serving, to show the
    # feedback loop narrowing catalogue coverage.
    scenario: str = "default"
    # The demo folder: report/, ground_truth.json, summary.json, users.parquet and home/
    # (the demo's own Loopline home). Wiped at the start of every run.
    out: Path = Path(".loopline/demo")

    # Serving: softmax temperature per scenario; a score budget far above the lookup time, so
    # a loaded machine never turns a request into a popularity fallback.
    temperature: float = 1.0
    exploitation_temperature: float = 0.05
    score_timeout_ms: int = 10_000
    # Experiment from day 2 on: control v1, the two candidates share the rest equally.
    control_share: float = 0.4

    # Training (LightGBM) and the scheduled retrain during the experiment.
    num_boost_round: int = 150
    retrain_during_experiment: bool = True
    # Attribution: DoWhy refuters cost a few seconds per version.
    refuters: bool = True

    # The streaming job: how long to wait for its final slices.
    catch_up_timeout_s: float = 900.0
    progress: bool | None = None  # None: progress bars when stderr is a terminal

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DemoConfigError(
                f"demo.scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.users < 20:
            raise DemoConfigError(f"demo.users must be at least 20, got {self.users}")
        if self.days < MIN_DAYS:
            raise DemoConfigError(
                f"demo.days must be at least {MIN_DAYS} (bootstrap, baseline, experiment), "
                f"got {self.days}")
        if not 0.0 < self.control_share < 1.0:
            raise DemoConfigError(
                f"demo.control_share must be in (0, 1), got {self.control_share}")
        for name in ("temperature", "exploitation_temperature", "score_timeout_ms",
                     "num_boost_round", "catch_up_timeout_s"):
            if not getattr(self, name) > 0:
                raise DemoConfigError(f"demo.{name} must be positive, got {getattr(self, name)}")

    @property
    def serving_temperature(self) -> float:
        if self.scenario == "exploitation":
            return self.exploitation_temperature
        return self.temperature

    @property
    def experiment_days(self) -> list[int]:
        """Simulated days of the v1/v2/v3 experiment (day 0 bootstraps, day 1 is baseline)."""
        return list(range(2, self.days))

    @property
    def split(self) -> dict[str, float]:
        """Intended traffic split of the experiment, per version."""
        rest = (1.0 - self.control_share) / 2
        return {"v1": self.control_share, "v2": rest, "v3": rest}


def load_demo(**overrides: object) -> DemoConfig:
    return settings.load(DemoConfig, "demo", **overrides)
