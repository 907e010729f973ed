"""The outcomes attribution can estimate, per user (the unit), and how each is computed.

Additive metrics (revenue, clicks, purchases, conversion) are means of a per-user column and go
through DoWhy. CTR is a ratio of sums (clicks / impressions over all users of an arm): its
estimate is the ratio of the two covariate-adjusted arm means with a delta-method SE, because
a mean of per-user CTRs would weight a one-impression user like a heavy one.
"""

from __future__ import annotations

from dataclasses import dataclass

from loopline.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str
    column: str  # per-user numerator column
    denominator: str | None  # per-user denominator column for ratio metrics
    label: str  # how one unit of the metric reads in a sentence
    # Mechanism chain from treatment to this outcome, in the causal graph, never adjusted for.
    mediators: tuple[str, ...]
    # Pre-exposure column CUPED uses for this metric.
    cuped_covariate: str | None

    @property
    def is_ratio(self) -> bool:
        return self.denominator is not None


METRICS = {
    m.name: m
    for m in (
        Metric(
            "revenue",
            "revenue",
            None,
            "revenue per user",
            ("impressions", "clicks", "attributed_purchases"),
            "pre_revenue",
        ),
        Metric("clicks", "clicks", None, "clicks per user", ("impressions",), "pre_events"),
        Metric(
            "purchases",
            "purchases",
            None,
            "purchases per user",
            ("impressions", "clicks"),
            "pre_purchases",
        ),
        Metric(
            "conversion",
            "converted",
            None,
            "share of users who purchased",
            ("impressions", "clicks"),
            "pre_purchases",
        ),
        Metric("ctr", "clicks", "impressions", "clicks per impression", (), None),
    )
}


def get(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(
            f"attribution.metric must be one of {sorted(METRICS)}, got {name!r}"
        ) from None
