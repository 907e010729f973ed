"""Synthetic rollouts with planted effects, for tests and benchmarks (not product code).

`simulate()` draws a per-user table in exactly the shape `data.build_analysis_table` produces,
plus the ground truth (each user's expected revenue under every version), so an estimate can
be checked against the uplift that was planted. Rollouts can be a hash split or confounded
(a version shown mostly to heavy users), and a split can be broken on purpose (SRM).
`write_contracts()` (in `bench.attribution_files`) expands a simulation into the Parquet
slices, manifests and lineage files that `loopline attribute` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

SEGMENTS = ("new", "light", "heavy")
SEGMENT_SHARES = (0.30, 0.45, 0.25)
# Mean sessions per week (Gamma-distributed activity) and order value per segment.
SEGMENT_ACTIVITY = (0.8, 2.5, 8.0)
SEGMENT_CTR = (0.04, 0.05, 0.06)
SEGMENT_ORDER_VALUE = (35.0, 40.0, 50.0)
ACTIVITY_SHAPE = 2.0
ITEMS_PER_SESSION = 10.0
CONVERSION = 0.08
PRE_VIEWS_PER_SESSION = 3.0
PRE_PURCHASES_PER_SESSION = 0.06
ORGANIC_PURCHASES_PER_SESSION = 0.02


@dataclass(frozen=True)
class VersionSpec:
    """A model version's planted mechanism multipliers and its training lineage."""

    name: str
    exposure: float = 1.0
    ctr: float = 1.0
    conversion: float = 1.0
    order_value: float = 1.0
    arm: str | None = None
    parent: str | None = None
    code_version: str = "c0ffee1"
    feature_service: str = "ranking_v1"
    slice_start: str = "2026-10-01T00:00:00+00:00"
    slice_end: str = "2026-10-15T00:00:00+00:00"
    has_lineage: bool = True
    # Share of this version's impressions served by the popularity fallback.
    fallback_share: float = 0.05

    @property
    def arm_name(self) -> str:
        return self.arm or self.name


def default_versions() -> tuple[VersionSpec, ...]:
    """Control v1, v2 with a planted uplift, v3 a placebo retrained on a different slice."""
    return (
        VersionSpec("v1", arm="control", slice_end="2026-10-15T00:00:00+00:00"),
        VersionSpec(
            "v2",
            arm="treatment_a",
            ctr=1.10,
            conversion=1.05,
            order_value=1.03,
            parent="v1",
            code_version="d15ea5e",
            slice_start="2026-10-15T00:00:00+00:00",
            slice_end="2026-10-29T00:00:00+00:00",
        ),
        VersionSpec(
            "v3",
            arm="treatment_b",
            parent="v1",
            code_version="d15ea5e",
            slice_start="2026-10-01T00:00:00+00:00",
            slice_end="2026-10-15T00:00:00+00:00",
        ),
    )


# Share of each segment (new, light, heavy) assigned to each version in a confounded rollout:
# v2 goes mostly to heavy users, the placebo v3 mostly to light ones.
CONFOUNDED_ROLLOUT = {
    "v1": (0.60, 0.40, 0.15),
    "v2": (0.20, 0.25, 0.70),
    "v3": (0.20, 0.35, 0.15),
}


@dataclass(frozen=True)
class SimulationSpec:
    n_users: int = 10_000
    versions: tuple[VersionSpec, ...] = field(default_factory=default_versions)
    # "random": hash split with `split`; "confounded": per-segment shares in `rollout`;
    # "latent": treated versions go to users with a high unobserved spending trait (`latent_sd`),
    # P(not control) = sigmoid(latent_tilt · trait), split evenly among the other versions.
    assignment: str = "confounded"
    latent_sd: float = 0.0
    latent_tilt: float = 0.0
    split: tuple[float, ...] | None = None
    rollout: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(CONFOUNDED_ROLLOUT))
    # Drop this share of one version's users after assignment (e.g. lost logging): breaks SRM.
    drop_version: str | None = None
    drop_share: float = 0.0
    window_hours: float = 168.0
    pre_period_hours: float = 336.0
    # Last hours of the pre-period, held out of the covariates (negative-control outcome).
    negative_control_hours: float = 72.0

    @property
    def control(self) -> str:
        return self.versions[0].name


@dataclass(frozen=True)
class Simulation:
    spec: SimulationSpec
    users: pd.DataFrame
    # Expected revenue per user under each version (columns = version names), same row order.
    expected: pd.DataFrame
    # The same for every per-user column a metric reads (revenue, clicks, impressions,
    # purchases, converted).
    expected_columns: dict[str, pd.DataFrame] = field(default_factory=dict)

    def planted_uplift(
        self, version: str, control: str | None = None, metric: str = "revenue"
    ) -> float:
        """True average uplift of `version` vs control among users of either arm, for `metric`
        (revenue | clicks | purchases | conversion per user, or ctr as a ratio of sums)."""
        control = control or self.spec.control
        among = self.users["version"].isin([version, control]).to_numpy()
        if metric == "ctr":
            clicks, imps = self.expected_columns["clicks"], self.expected_columns["impressions"]
            return float(
                clicks[version].to_numpy()[among].sum() / imps[version].to_numpy()[among].sum()
                - clicks[control].to_numpy()[among].sum() / imps[control].to_numpy()[among].sum()
            )
        column = {"conversion": "converted"}.get(metric, metric)
        frame = self.expected if column == "revenue" else self.expected_columns[column]
        diff = frame[version].to_numpy() - frame[control].to_numpy()
        return float(diff[among].mean())

    def planted_relative_uplift(self, version: str, control: str | None = None) -> float:
        control = control or self.spec.control
        among = self.users["version"].isin([version, control]).to_numpy()
        return self.planted_uplift(version, control) / float(
            self.expected[control].to_numpy()[among].mean()
        )


def _assign(
    spec: SimulationSpec, segment: np.ndarray, trait: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    names = [v.name for v in spec.versions]
    if spec.assignment == "latent":
        treated = rng.random(segment.size) < 1.0 / (1.0 + np.exp(-spec.latent_tilt * trait))
        other = 1 + rng.integers(0, len(names) - 1, segment.size)
        return np.where(treated, other, 0)
    if spec.assignment == "random":
        split = np.asarray(spec.split or [1.0] * len(names), dtype=float)
        choice = rng.choice(len(names), size=segment.size, p=split / split.sum())
        return choice
    if spec.assignment != "confounded":
        raise ValueError(f"assignment must be 'random' or 'confounded', got {spec.assignment!r}")
    shares = np.array([spec.rollout[name] for name in names], dtype=float)  # versions × segments
    shares = shares / shares.sum(axis=0, keepdims=True)
    cumulative = shares.cumsum(axis=0)[:, segment]  # versions × users
    draw = rng.random(segment.size)
    return np.minimum((draw[None, :] > cumulative).sum(axis=0), len(names) - 1)


def _gamma_sum(counts: np.ndarray, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sum of `counts` Gamma(2, mean/2) order values, drawn in one shot (0 where counts == 0)."""
    out = np.zeros(counts.size)
    has = counts > 0
    out[has] = rng.gamma(2.0 * counts[has], np.broadcast_to(mean, counts.shape)[has] / 2.0)
    return out


def simulate(spec: SimulationSpec | None = None, seed: int = 0) -> Simulation:
    """Draw one synthetic rollout; every column `build_analysis_table` emits is present."""
    spec = spec or SimulationSpec()
    rng = np.random.default_rng(seed)
    n = spec.n_users
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARES)
    activity_mean = np.asarray(SEGMENT_ACTIVITY)[segment]
    activity = rng.gamma(ACTIVITY_SHAPE, activity_mean / ACTIVITY_SHAPE)
    pre_weeks = (spec.pre_period_hours - spec.negative_control_hours) / 168.0
    nc_weeks = spec.negative_control_hours / 168.0
    weeks = spec.window_hours / 168.0
    # Unobserved spending trait: scales order values before and after exposure alike.
    trait = rng.standard_normal(n)
    spend = np.exp(spec.latent_sd * trait - spec.latent_sd**2 / 2.0)
    order_value = np.asarray(SEGMENT_ORDER_VALUE)[segment] * spend
    ctr = np.asarray(SEGMENT_CTR)[segment]

    pre_views = rng.poisson(activity * pre_weeks * PRE_VIEWS_PER_SESSION)
    pre_purchases = rng.poisson(activity * pre_weeks * PRE_PURCHASES_PER_SESSION)
    pre_revenue = _gamma_sum(pre_purchases, order_value, rng)
    nc_purchases = rng.poisson(activity * nc_weeks * PRE_PURCHASES_PER_SESSION)
    nc_revenue = _gamma_sum(nc_purchases, order_value, rng)

    arm_index = _assign(spec, segment, trait, rng)
    versions = spec.versions
    mult = {
        key: np.array([getattr(v, key) for v in versions])[arm_index]
        for key in ("exposure", "ctr", "conversion", "order_value")
    }
    impressions = 1 + rng.poisson(activity * weeks * ITEMS_PER_SESSION * mult["exposure"])
    clicks = rng.binomial(impressions, np.minimum(ctr * mult["ctr"], 0.95))
    purchases = rng.binomial(clicks, np.minimum(CONVERSION * mult["conversion"], 0.95))
    attributed = _gamma_sum(purchases, order_value * mult["order_value"], rng)
    organic_purchases = rng.poisson(activity * weeks * ORGANIC_PURCHASES_PER_SESSION)
    organic = _gamma_sum(organic_purchases, order_value, rng)
    fallback_share = np.array([v.fallback_share for v in versions])[arm_index]
    fallback_impressions = rng.binomial(impressions, fallback_share)

    expected = {}
    columns: dict[str, dict[str, np.ndarray]] = {
        k: {} for k in ("impressions", "clicks", "purchases", "converted")
    }
    organic_rate = activity * weeks * ORGANIC_PURCHASES_PER_SESSION
    for v in versions:
        rate = activity * weeks * ITEMS_PER_SESSION * v.exposure  # impressions = 1 + Poisson
        p_click = np.minimum(ctr * v.ctr, 0.95)
        p_buy = p_click * np.minimum(CONVERSION * v.conversion, 0.95)
        expected[v.name] = (1 + rate) * p_buy * order_value * v.order_value + (
            organic_rate * order_value
        )
        columns["impressions"][v.name] = 1 + rate
        columns["clicks"][v.name] = (1 + rate) * p_click
        columns["purchases"][v.name] = (1 + rate) * p_buy + organic_rate
        # P(no purchase) = E[(1 - q)^(1 + Poisson(rate))] · P(no organic purchase).
        columns["converted"][v.name] = 1 - (1 - p_buy) * np.exp(-rate * p_buy - organic_rate)

    names = np.array([v.name for v in versions])
    arms = np.array([v.arm_name for v in versions])
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:07d}" for i in range(n)],
            "version": names[arm_index],
            "arm": arms[arm_index],
            "segment": np.asarray(SEGMENTS)[segment],
            "revenue": attributed + organic,
            "attributed_revenue": attributed,
            "organic_revenue": organic,
            "impressions": impressions.astype(np.int64),
            "clicks": clicks.astype(np.int64),
            "attributed_purchases": purchases.astype(np.int64),
            "organic_purchases": organic_purchases.astype(np.int64),
            "purchases": (purchases + organic_purchases).astype(np.int64),
            "converted": ((purchases + organic_purchases) > 0).astype(np.int64),
            "fallback_impressions": fallback_impressions.astype(np.int64),
            "nc_revenue": nc_revenue,
            "pre_revenue": pre_revenue,
            "pre_events": (pre_views + pre_purchases).astype(np.int64),
            "pre_purchases": pre_purchases.astype(np.int64),
        }
    )
    expected_frame = pd.DataFrame(expected)
    column_frames = {k: pd.DataFrame(v) for k, v in columns.items()}
    keep = np.ones(n, dtype=bool)
    if spec.drop_version is not None and spec.drop_share > 0:
        in_version = users["version"].to_numpy() == spec.drop_version
        keep &= ~(in_version & (rng.random(n) < spec.drop_share))
    users = users[keep].reset_index(drop=True)
    expected_frame = expected_frame[keep].reset_index(drop=True)
    column_frames = {k: f[keep].reset_index(drop=True) for k, f in column_frames.items()}
    return Simulation(spec, users, expected_frame, column_frames)
