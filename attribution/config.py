"""One frozen config for an attribution run ([attribution] / LOOPLINE_ATTRIBUTION_*)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from attribution import metrics
from loopline import settings
from loopline.errors import ConfigError

SUPPORTED_ESTIMATORS = (
    "backdoor.linear_regression",
    "backdoor.doubly_robust",
    "backdoor.propensity_score_weighting",
)


@dataclass(frozen=True)
class AttributionConfig:
    """What to compare, over which windows, and how strict the validity gate is."""

    # Reference version; None takes the control of the registry's rollout for these versions,
    # else the version of the arm named "control", else the largest arm (a tie is refused).
    control_version: str | None = None
    # What is estimated per user: revenue | clicks | purchases | conversion | ctr.
    metric: str = "revenue"
    # Revenue counts when it lands within this window after a user's first exposure.
    attribution_window_hours: float = 168.0
    # Pre-exposure covariates (and CUPED) come from this window before first exposure ...
    pre_period_hours: float = 336.0
    # ... except its last hours, kept out of adjustment as a negative-control outcome (revenue
    # there cannot be moved by the version; an "effect" on it means hidden confounding).
    # 0 switches the check off; at most half the pre-period is held out (`held_out_hours`).
    negative_control_hours: float = 72.0
    # The negative control fails below this p-value (stricter than alpha: it blocks the gate).
    negative_control_alpha: float = 0.01
    alpha: float = 0.05
    srm_alpha: float = 0.001
    # Intended traffic split, e.g. "v1=0.5,v2=0.5"; None takes the registry's rollout split for
    # these versions, else the SRM test is skipped.
    expected_split: str | None = None
    # Power the minimum detectable effect is stated at.
    power: float = 0.8
    seed: int = 0
    # The first estimator is the headline; the others are reported next to it.
    estimators: tuple[str, ...] = ("backdoor.linear_regression", "backdoor.doubly_robust")
    run_refuters: bool = True
    refuter_simulations: int = 20
    # Refuters re-fit the estimator many times, so they run on a random subsample this large.
    refuter_max_units: int = 20_000
    # A refuter fails only when DoWhy rejects it AND the shift exceeds this many standard errors.
    refuter_tolerance_se: float = 0.5
    # A refuter that cannot run is a failed check (it proves nothing) unless this is False.
    refuter_errors_fail: bool = True
    # Sensitivity: a hidden confounder flipping this share of assignments ...
    sensitivity_flip_share: float = 0.05
    # ... and moving revenue by this many outcome standard deviations per unit of confounder.
    sensitivity_outcome_sd: float = 0.1
    # Propensity scores outside [eps, 1 - eps] count as positivity violations.
    positivity_eps: float = 0.01
    max_extreme_propensity_share: float = 0.01
    # Inverse-propensity weights must keep at least this share of each arm as effective sample.
    min_ess_share: float = 0.1
    # Users seen in more than one arm (assignment leak) tolerated before the check fails.
    max_crossover_share: float = 0.01
    # Arms whose shares of impressions served by the popularity fallback differ by more than
    # this compare fallback traffic, not models: the check fails.
    max_fallback_share_gap: float = 0.05
    # Largest pre-exposure standardised mean difference a randomised split explains; beyond it
    # the comparison is called observational.
    max_balance_smd: float = 0.1
    # Without a user table, users above this quantile of pre-exposure activity are "heavy".
    heavy_quantile: float = 0.75

    def __post_init__(self) -> None:
        for name in (
            "alpha",
            "srm_alpha",
            "positivity_eps",
            "heavy_quantile",
            "power",
            "negative_control_alpha",
        ):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"attribution.{name} must be in (0, 1), got {value!r}")
        for name in ("attribution_window_hours", "pre_period_hours"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"attribution.{name} must be > 0, got {getattr(self, name)!r}")
        if self.negative_control_hours < 0:
            raise ConfigError(
                "attribution.negative_control_hours must be >= 0, got "
                f"{self.negative_control_hours!r}"
            )
        for name in ("max_fallback_share_gap", "max_balance_smd"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"attribution.{name} must be > 0, got {getattr(self, name)!r}")
        metrics.get(self.metric)  # refuse an unknown metric early
        if self.refuter_simulations < 2 or self.refuter_max_units < 100:
            raise ConfigError(
                "attribution.refuter_simulations must be >= 2 and refuter_max_units >= 100, got "
                f"{self.refuter_simulations} and {self.refuter_max_units}"
            )
        if not self.estimators:
            raise ConfigError("attribution.estimators must name at least one estimator")
        unknown = [e for e in self.estimators if e not in SUPPORTED_ESTIMATORS]
        if unknown:
            raise ConfigError(
                f"attribution.estimators has unsupported {unknown}; expected some of "
                f"{list(SUPPORTED_ESTIMATORS)}"
            )
        self.split()  # validate early

    def split(self) -> dict[str, float] | None:
        """The expected split as normalised shares per version, or None when unknown."""
        if self.expected_split is None or not self.expected_split.strip():
            return None
        shares: dict[str, float] = {}
        for part in self.expected_split.split(","):
            name, sep, raw = part.partition("=")
            try:
                value = float(raw)
            except ValueError:
                value = -1.0
            if not sep or not name.strip() or value <= 0:
                raise ConfigError(
                    "attribution.expected_split must look like 'v1=0.5,v2=0.5' with positive "
                    f"shares, got {self.expected_split!r}"
                )
            shares[name.strip()] = value
        total = sum(shares.values())
        return {name: value / total for name, value in shares.items()}

    @property
    def held_out_hours(self) -> float:
        """Negative-control window actually used: covariates keep at least half the pre-period."""
        return min(self.negative_control_hours, self.pre_period_hours / 2.0)

    @property
    def outcome(self) -> metrics.Metric:
        return metrics.get(self.metric)

    @property
    def primary_estimator(self) -> str:
        return self.estimators[0]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["estimators"] = list(self.estimators)
        return data


def load_config(**overrides: Any) -> AttributionConfig:
    return settings.load(AttributionConfig, "attribution", **overrides)
