"""The simulator's one frozen config ([simulator] / LOOPLINE_SIMULATOR_*): sizes and knobs.

Only the knobs worth turning from the demo live here (size, horizon, slate shape, drift,
position bias); the behaviour model's remaining constants are named in `behaviour.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopline import settings
from simulator.errors import SimulatorConfigError

SEGMENTS = ("light", "regular", "heavy")


@dataclass(frozen=True)
class SimulatorConfig:
    """World size, simulated horizon, and the behaviour knobs the demo's scenarios turn."""

    seed: int = 7
    users: int = 400
    days: int = 3
    items: int = 1_000
    categories: int = 20
    latent_dim: int = 8
    # Epoch ms of day 0's start; None: (now rounded down to the hour) - (days + 1) days, so
    # every event is in the past (Kafka refuses record timestamps > 1 h ahead of its clock).
    start_ms: int | None = None

    # Users: segment shares and mean sessions per day of light / regular / heavy users.
    segment_shares: tuple[float, ...] = (0.5, 0.35, 0.15)
    sessions_per_day: tuple[float, ...] = (0.5, 1.5, 4.0)
    requests_per_session: float = 4.0  # recommendation slots a session loads (>= 1)
    organic_per_session: float = 0.6  # items a user finds on their own per session

    # Slates: candidates per request and slots shown; examination 1/(1+position)^eta.
    candidates: int = 60
    slate_size: int = 10
    position_eta: float = 1.0

    # Catalogue dynamics: daily appeal random walk (sd) and share of items replaced per day.
    drift_sd: float = 0.3
    item_churn: float = 0.03
    # Share of purchases made after the 30 min maturity window (they become organic revenue).
    late_purchase_share: float = 0.03

    def __post_init__(self) -> None:
        for name in ("users", "days", "items", "categories", "latent_dim", "candidates",
                     "slate_size"):
            if getattr(self, name) <= 0:
                raise SimulatorConfigError(
                    f"simulator.{name} must be positive, got {getattr(self, name)}"
                )
        if len(self.segment_shares) != len(SEGMENTS) or len(self.sessions_per_day) != len(
            SEGMENTS
        ):
            raise SimulatorConfigError(
                f"simulator.segment_shares and sessions_per_day need one value per segment "
                f"{SEGMENTS}, got {self.segment_shares} and {self.sessions_per_day}"
            )
        if any(s < 0 for s in self.segment_shares) or abs(sum(self.segment_shares) - 1) > 1e-6:
            raise SimulatorConfigError(
                f"simulator.segment_shares must be >= 0 and sum to 1, got {self.segment_shares}"
            )
        if any(r < 0 for r in self.sessions_per_day):
            raise SimulatorConfigError(
                f"simulator.sessions_per_day must be >= 0, got {self.sessions_per_day}"
            )
        if self.requests_per_session < 1:
            raise SimulatorConfigError(
                f"simulator.requests_per_session must be >= 1, got {self.requests_per_session}"
            )
        if self.slate_size > self.candidates:
            raise SimulatorConfigError(
                f"simulator.slate_size ({self.slate_size}) cannot exceed candidates "
                f"({self.candidates})"
            )
        # Candidate sets are drawn from the items active on a day; churn keeps that near `items`.
        if self.items < 2 * self.candidates:
            raise SimulatorConfigError(
                f"simulator.items must be at least 2 x candidates ({2 * self.candidates}), "
                f"got {self.items}"
            )
        for name in ("organic_per_session", "position_eta", "drift_sd"):
            if getattr(self, name) < 0:
                raise SimulatorConfigError(
                    f"simulator.{name} must be >= 0, got {getattr(self, name)}"
                )
        for name in ("item_churn", "late_purchase_share"):
            if not 0 <= getattr(self, name) < 0.5:
                raise SimulatorConfigError(
                    f"simulator.{name} must be in [0, 0.5), got {getattr(self, name)}"
                )


def load_simulator(**overrides: object) -> SimulatorConfig:
    return settings.load(SimulatorConfig, "simulator", **overrides)
