"""Feature view, service and field names: defined once, imported by the job, training, serving."""

PROJECT = "loopline"

USER_ACTIVITY = "user_activity"
ITEM_PERFORMANCE = "item_performance"
RANKER_SERVICE = "ranker_v1"

USER_KEY = "user_id"
ITEM_KEY = "item_id"
TIMESTAMP_FIELD = "event_timestamp"

# Window suffixes: every windowed counter exists once per window.
WINDOWS = {"1h": 3_600_000, "24h": 86_400_000}

USER_COUNTERS = ("impressions", "clicks", "purchases", "revenue")
ITEM_COUNTERS = ("impressions", "clicks", "add_to_cart", "purchases")

USER_FEATURES = (
    *(f"user_{c}_{w}" for w in WINDOWS for c in USER_COUNTERS),
    "user_last_clicked",
)
ITEM_FEATURES = (
    *(f"item_{c}_{w}" for w in WINDOWS for c in ITEM_COUNTERS),
    *(f"item_ctr_{w}" for w in WINDOWS),
    *(f"item_purchase_rate_{w}" for w in WINDOWS),
    *(f"item_debiased_ctr_{w}" for w in WINDOWS),
)
FEATURES_BY_VIEW = {USER_ACTIVITY: USER_FEATURES, ITEM_PERFORMANCE: ITEM_FEATURES}
KEY_BY_VIEW = {USER_ACTIVITY: USER_KEY, ITEM_PERFORMANCE: ITEM_KEY}

# Model inputs (all numeric; user_last_clicked is used for candidate generation, not scoring).
RANKER_FEATURES = tuple(
    f"{view}:{name}"
    for view, names in FEATURES_BY_VIEW.items()
    for name in names
    if name != "user_last_clicked"
)
