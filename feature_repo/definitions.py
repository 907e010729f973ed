"""Feast declarations for the features the streaming job keeps fresh.

Online values are written by the PyFlink job; the same rows are appended to Parquet under the
Loopline home (the batch sources below), so training gets point-in-time-correct history.
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64, String

from feature_repo import names
from loopline.paths import load_paths

_paths = load_paths()

# A shopper: user-level activity is the strongest signal of intent.
user = Entity(
    name="user", join_keys=[names.USER_KEY], value_type=ValueType.STRING, description="A shopper"
)
# A catalogue item: item-level performance carries popularity and position-debiased quality.
item = Entity(
    name="item",
    join_keys=[names.ITEM_KEY],
    value_type=ValueType.STRING,
    description="A catalogue item",
)

# Every online write of user features is also logged here, for point-in-time training joins.
user_activity_source = FileSource(
    name="user_activity_log",
    path=str(_paths.features_offline / names.USER_ACTIVITY),
    timestamp_field=names.TIMESTAMP_FIELD,
)
# Same for item features.
item_performance_source = FileSource(
    name="item_performance_log",
    path=str(_paths.features_offline / names.ITEM_PERFORMANCE),
    timestamp_field=names.TIMESTAMP_FIELD,
)


def _typed(feature: str) -> Field:
    if feature == "user_last_clicked":
        return Field(name=feature, dtype=String)
    is_count = any(
        feature.endswith(f"_{c}_{w}")
        for c in ("impressions", "clicks", "purchases", "add_to_cart")
        for w in names.WINDOWS
    )
    return Field(name=feature, dtype=Int64 if is_count else Float64)


# Windowed user activity (1 h / 24 h) and the last clicked items, updated per event.
user_activity = FeatureView(
    name=names.USER_ACTIVITY,
    entities=[user],
    ttl=timedelta(days=2),
    schema=[Field(name=names.USER_KEY, dtype=String), *(_typed(f) for f in names.USER_FEATURES)],
    source=user_activity_source,
    online=True,
    description="Per-user impressions, clicks, purchases, revenue over 1h/24h; last clicks",
)

# Windowed item performance, including CTR debiased for position (clicks over expected clicks).
item_performance = FeatureView(
    name=names.ITEM_PERFORMANCE,
    entities=[item],
    ttl=timedelta(days=2),
    schema=[Field(name=names.ITEM_KEY, dtype=String), *(_typed(f) for f in names.ITEM_FEATURES)],
    source=item_performance_source,
    online=True,
    description="Per-item counts, CTR, purchase rate and position-debiased CTR over 1h/24h",
)

# What the LightGBM ranker reads, online at serving time and historically at training time.
ranker_v1 = FeatureService(
    name=names.RANKER_SERVICE,
    features=[user_activity, item_performance],
    description="Inputs of the LightGBM ranker",
)
