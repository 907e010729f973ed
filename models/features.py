"""Model inputs from Feast: point-in-time history for training, online values for serving.

Both sides ask for the same feature references (feature_repo.names.RANKER_FEATURES, the
numeric part of feature service ranker_v1) and lay them out in the same column order, so a
model trained on history scores online rows without a translation step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from feature_repo import names
from loopline.paths import PathsConfig
from models.errors import TrainingError

FEATURE_REFS: tuple[str, ...] = names.RANKER_FEATURES
FEATURE_SERVICE = names.RANKER_SERVICE
COLUMNS: tuple[str, ...] = tuple(ref.split(":", 1)[1] for ref in FEATURE_REFS)
_COLUMN_INDEX = {column: j for j, column in enumerate(COLUMNS)}
# Each view's columns in COLUMNS order: a logged feature vector holds one view's values in
# this order (models/serving/feature_log.py), so the order is part of the service's version.
VIEW_COLUMNS: dict[str, tuple[str, ...]] = {
    view: tuple(ref.split(":", 1)[1] for ref in FEATURE_REFS if ref.startswith(f"{view}:"))
    for view in names.KEY_BY_VIEW
}
_VIEW_OF = {column: view for view, columns in VIEW_COLUMNS.items() for column in columns}
# Names the exact ordered feature list: a logged vector of another version is not decoded as
# this one (the values would silently land in the wrong columns).
SERVICE_VERSION = "sha256:" + hashlib.sha256("\n".join(FEATURE_REFS).encode()).hexdigest()[:16]
_PRESENT = FieldStatus.PRESENT
# Features are looked up just before the impression: at serving time the online store did not
# yet hold anything the impression itself caused, so training must not either.
LOOKUP_OFFSET = pd.Timedelta(milliseconds=1)


def _as_ns(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def check_sources(store: FeatureStore, paths: PathsConfig) -> None:
    """Fail early if the registry's batch sources point away from this home's feature log."""
    for view in names.FEATURES_BY_VIEW:
        try:
            source = store.get_feature_view(view).batch_source
        except Exception as exc:  # Feast raises its own not-found types
            raise TrainingError(f"feature view {view!r} is not in the Feast registry "
                                f"({type(exc).__name__}); was the store applied?") from exc
        expected = (paths.features_offline / view).resolve()
        actual = Path(getattr(source, "path", "")).resolve()
        if actual != expected:
            raise TrainingError(f"Feast source of {view} reads {actual}, expected {expected} "
                                "(the registry was applied from another home)")


def historical(store: FeatureStore, impressions: pd.DataFrame) -> pd.DataFrame:
    """Feature columns for each impression, as of just before it was served (no leakage).

    One retrieval per feature view, on that view's distinct (entity key, time) pairs, merged
    back onto every impression: Feast 0.67's file store de-duplicates its result on (the
    first view's keys, time), which silently drops rows when several items of one slate
    share a user and a timestamp and both views are fetched in one call.
    """
    times = _as_ns(impressions["served_at"]) - LOOKUP_OFFSET
    out = pd.DataFrame(index=impressions.index)
    for view, key in names.KEY_BY_VIEW.items():
        refs = [ref for ref in FEATURE_REFS if ref.startswith(f"{view}:")]
        columns = [ref.split(":", 1)[1] for ref in refs]
        keys = pd.DataFrame({key: impressions[key].astype(str).to_numpy(),
                             "event_timestamp": times.to_numpy()}, index=impressions.index)
        unique = keys.drop_duplicates().reset_index(drop=True)
        try:
            found = store.get_historical_features(entity_df=unique, features=refs).to_df()
        except Exception as exc:  # Feast/dask raise many types; say what was being asked
            raise TrainingError(f"Feast historical retrieval of {view} for {len(unique)} entity "
                                f"rows failed: {type(exc).__name__}: {exc}") from exc
        found["event_timestamp"] = _as_ns(found["event_timestamp"])
        merged = keys.merge(found[[key, "event_timestamp", *columns]], how="left",
                            on=[key, "event_timestamp"], validate="many_to_one")
        out[columns] = merged[columns].astype(float).to_numpy()
    return out[list(COLUMNS)]


@dataclass(frozen=True)
class OnlineRows:
    """One request's online lookup: the model's matrix and, per entity row read, the event
    time the store held it for (NaN = no row), so serving can log how stale each value was."""

    matrix: np.ndarray  # (len(items), len(COLUMNS)), NaN = missing
    user_time_ms: float
    item_time_ms: np.ndarray  # (len(items),)


def online(store: FeatureStore, user_id: str, items: list[str]) -> np.ndarray:
    """(len(items), len(COLUMNS)) float matrix of the newest online values; NaN = missing."""
    return online_rows(store, user_id, items).matrix


def _event_ms(vector: Any, rows: np.ndarray) -> list[float]:
    """Epoch ms of the response's event timestamp at each index in `rows`."""
    stamps = vector.event_timestamps
    return [float(stamps[i].seconds * 1000 + stamps[i].nanos // 1_000_000) for i in rows]


def online_rows(store: FeatureStore, user_id: str, items: list[str]) -> OnlineRows:
    """The matrix `online` returns, with each view's row event time from the response.

    Values are read from the response proto rather than OnlineResponse.to_dict(), whose
    per-value type conversion cost more than the lookup itself (2,300 values per request).
    Anything but PRESENT (not found, null, older than the view's TTL) is missing.
    """
    rows = [{names.USER_KEY: user_id, names.ITEM_KEY: item} for item in items]
    response = store.get_online_features(features=list(FEATURE_REFS), entity_rows=rows).proto
    matrix = np.full((len(items), len(COLUMNS)), np.nan)
    # A view's row carries one event time for all its features: each entity row's time comes
    # from the first of the view's features present for it (NaN = no row).
    times = {view: np.full(len(items), np.nan) for view in VIEW_COLUMNS}
    for name, vector in zip(response.metadata.feature_names.val, response.results, strict=True):
        j = _COLUMN_INDEX.get(name)
        if j is None:
            continue  # an entity key echoed back
        present = np.fromiter(vector.statuses, dtype=np.int64, count=len(items)) == _PRESENT
        known = times[_VIEW_OF[name]]
        gap = np.flatnonzero(np.isnan(known) & present)
        if len(gap) and len(vector.event_timestamps) == len(items):
            known[gap] = _event_ms(vector, gap)
        if not present.any():
            continue
        kind = vector.values[int(np.argmax(present))].WhichOneof("val")  # one type per feature
        if kind is None or kind == "null_val":
            continue
        column = np.fromiter(map(attrgetter(kind), vector.values), dtype=float, count=len(items))
        matrix[present, j] = column[present]
    user_times = times[names.USER_ACTIVITY]
    return OnlineRows(matrix, float(user_times[0]) if len(items) else float("nan"),
                      times[names.ITEM_PERFORMANCE])
