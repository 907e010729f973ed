"""Feedback slices → one row per user: assignment, outcomes after exposure, pre-exposure covariates.

The unit is the user. A user's first impression served in [since, until) is their exposure;
their arm at that moment is the assignment (intent to treat). Outcomes count within the
attribution window after exposure: revenue attributed to impressions plus organic revenue
(interactions the job could not link to an impression — counted, never dropped). Covariates
come from the pre-period window before exposure, so they cannot be moved by the version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attribution.config import AttributionConfig
from attribution.errors import InputDataError

IMPRESSIONS = "labelled_impressions"
UNMATCHED = "unmatched_interactions"
IMPRESSION_COLUMNS = (
    "user_id",
    "model_version",
    "arm",
    "fallback",
    "served_at",
    "clicked",
    "purchased",
    "revenue",
)
UNMATCHED_COLUMNS = ("user_id", "event_time", "type", "revenue")
BASE_COVARIATES = ("pre_revenue", "pre_events", "pre_purchases")
_HOUR = re.compile(r"^event_hour=(\d{4}-\d{2}-\d{2}T\d{2})$")


@dataclass
class AnalysisTable:
    """Per-user frame plus which columns are covariates and where the data came from."""

    users: pd.DataFrame
    covariates: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def versions(self) -> list[str]:
        return sorted(self.users["version"].unique().tolist())


def _partitions(root: Path, start: pd.Timestamp | None, end: pd.Timestamp | None) -> list[Path]:
    if not root.is_dir():
        return []
    out = []
    lo = start.floor("h") if start is not None else None
    for child in sorted(root.iterdir()):
        match = _HOUR.match(child.name)
        if not match or not child.is_dir():
            continue
        hour = pd.Timestamp(match.group(1) + ":00:00", tz="UTC")
        if (lo is None or hour >= lo) and (end is None or hour < end):
            out.append(child)
    return out


def _read(dirs: list[Path], columns: tuple[str, ...], time_col: str) -> tuple[pd.DataFrame, dict]:
    """Read the partitions' Parquet parts and compare them with each `_manifest.json`.

    When a manifest lists its files (the job writes the manifest last), only those are read:
    a consistent snapshot even while the job is adding a file.
    """
    tables, manifests, mismatched, missing_manifest = [], 0, [], 0
    for d in dirs:
        manifest = _manifest(d)
        listed = [f.get("name") for f in manifest.get("files", [])] if manifest else []
        files = [d / name for name in listed] if listed else sorted(d.glob("part-*.parquet"))
        part_rows = 0
        for f in files:
            if not f.is_file():
                mismatched.append(f"{d.name}: manifest lists {f.name}, which is missing")
                continue
            table = _read_file(f, columns)
            part_rows += table.num_rows
            tables.append(table)
        if manifest is None:
            missing_manifest += 1
            continue
        manifests += 1
        expected = manifest.get("row_count")
        if expected is not None and int(expected) != part_rows:
            mismatched.append(f"{d.name}: manifest {expected} rows, files {part_rows}")
    info = {
        "rows": 0,
        "partitions": len(dirs),
        "manifests": manifests,
        "partitions_without_manifest": missing_manifest,
        "manifest_mismatches": mismatched,
    }
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}), info
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    frame[time_col] = pd.to_datetime(frame[time_col], utc=True)
    info["rows"] = len(frame)
    return frame, info


def _manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / "_manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputDataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_file(path: Path, columns: tuple[str, ...]) -> pa.Table:
    try:
        names = pq.read_schema(path).names
        absent = [c for c in columns if c not in names]
        if absent:
            raise InputDataError(f"{path}: expected columns {list(columns)}, missing {absent}")
        return pq.read_table(path, columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise InputDataError(f"{path}: not a readable Parquet file: {exc}") from exc


def _ns(values: pd.Series) -> np.ndarray:
    return values.dt.tz_convert("UTC").to_numpy(dtype="datetime64[ns]").view("int64")


def aggregate_users(
    impressions: pd.DataFrame,
    unmatched: pd.DataFrame,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    cfg: AttributionConfig,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Vectorised per-user aggregation (bincount over integer user codes, no Python loops)."""
    served = _ns(impressions["served_at"])
    in_period = np.ones(served.size, dtype=bool)
    if since is not None:
        in_period &= served >= since.value
    if until is not None:
        in_period &= served < until.value
    if not in_period.any():
        raise InputDataError(
            f"no labelled impressions served in [{since}, {until}): nothing to attribute"
        )
    # An impression without an arm label is its own arm, named by the version it served.
    arm_label = impressions["arm"].astype("string").fillna("").to_numpy(dtype=object)
    arm = np.where(arm_label == "", impressions["model_version"].astype(str).to_numpy(), arm_label)
    exposed = pd.DataFrame(
        {
            "user_id": impressions["user_id"].to_numpy()[in_period],
            "served": served[in_period],
            "arm": arm[in_period],
        }
    )
    first = exposed.sort_values("served", kind="stable").drop_duplicates("user_id", keep="first")
    user_index = pd.Index(first["user_id"].to_numpy())
    fe = first["served"].to_numpy()
    first_arm = first["arm"].to_numpy()

    # Version behind each arm: the model it served when not falling back to a baseline.
    fallback = impressions["fallback"].fillna(False).to_numpy(dtype=bool)
    served_model = in_period & ~fallback
    pairs = pd.DataFrame(
        {"arm": arm[served_model], "v": impressions["model_version"].to_numpy()[served_model]}
    )
    arm_version = pairs.groupby(["arm", "v"]).size().reset_index().sort_values(0, ascending=False)
    arm_version = arm_version.drop_duplicates("arm").set_index("arm")["v"].to_dict()
    for a in set(first_arm) - set(arm_version):
        arm_version[a] = a  # arm only ever served fallbacks: name it by the arm
    n = len(user_index)

    codes = user_index.get_indexer(exposed["user_id"].to_numpy())
    crossover_users = np.unique(codes[exposed["arm"].to_numpy() != first_arm[codes]]).size

    window = int(cfg.attribution_window_hours * 3600e9)
    pre = int(cfg.pre_period_hours * 3600e9)
    held_out = int(cfg.held_out_hours * 3600e9)

    def windows(
        user_ids: np.ndarray, times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user code, in attribution window, in covariate window, in negative-control window)."""
        c = user_index.get_indexer(user_ids)
        known = c >= 0
        start = np.where(known, fe[np.maximum(c, 0)], 0)
        post = known & (times >= start) & (times < start + window)
        before = known & (times < start - held_out) & (times >= start - pre)
        control = known & (times < start) & (times >= start - held_out)
        return c, post, before, control

    def total(c: np.ndarray, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(c[mask], weights=None if weights is None else weights[mask], minlength=n)

    c, post, before, nc = windows(impressions["user_id"].to_numpy(), served)
    clicked = impressions["clicked"].fillna(False).to_numpy(dtype=bool)
    purchased = impressions["purchased"].fillna(False).to_numpy(dtype=bool)
    revenue = impressions["revenue"].fillna(0.0).to_numpy(dtype=float)
    users = pd.DataFrame({"user_id": user_index.to_numpy()})
    users["arm"] = first_arm
    users["version"] = pd.Series(first_arm).map(arm_version).astype(str).to_numpy()
    users["first_exposure"] = pd.to_datetime(fe, utc=True)
    users["impressions"] = total(c, post).astype(np.int64)
    users["clicks"] = total(c, post & clicked).astype(np.int64)
    users["attributed_purchases"] = total(c, post & purchased).astype(np.int64)
    users["attributed_revenue"] = total(c, post, revenue)
    users["fallback_impressions"] = total(c, post & fallback).astype(np.int64)
    nc_revenue = total(c, nc, revenue)
    pre_events = total(c, before & clicked)
    pre_purchases = total(c, before & purchased)
    pre_revenue = total(c, before, revenue)

    data_end = int(served.max())
    organic = np.zeros(n)
    organic_purchases = np.zeros(n)
    if len(unmatched):
        times = _ns(unmatched["event_time"])
        data_end = max(data_end, int(times.max()))
        c, post, before, nc = windows(unmatched["user_id"].to_numpy(), times)
        rev = unmatched["revenue"].fillna(0.0).to_numpy(dtype=float)
        nc_revenue = nc_revenue + total(c, nc, rev)
        is_purchase = unmatched["type"].astype(str).to_numpy() == "purchase"
        organic = total(c, post, rev)
        organic_purchases = total(c, post & is_purchase)
        pre_events = pre_events + total(c, before)
        pre_purchases = pre_purchases + total(c, before & is_purchase)
        pre_revenue = pre_revenue + total(c, before, rev)
    users["organic_revenue"] = organic
    users["organic_purchases"] = organic_purchases.astype(np.int64)
    users["revenue"] = users["attributed_revenue"] + users["organic_revenue"]
    users["purchases"] = users["attributed_purchases"] + users["organic_purchases"]
    users["converted"] = (users["purchases"] > 0).astype(np.int64)
    # Revenue in the held-out window before exposure: the negative-control outcome.
    users["nc_revenue"] = nc_revenue
    users["pre_revenue"] = pre_revenue
    users["pre_events"] = pre_events.astype(np.int64)
    users["pre_purchases"] = pre_purchases.astype(np.int64)
    info = {
        "users": n,
        "crossover_users": int(crossover_users),
        "truncated_windows": int((fe + window > data_end).sum()),
        "arm_versions": {str(k): str(v) for k, v in sorted(arm_version.items())},
        "organic_revenue": float(organic.sum()),
        "attributed_revenue": float(users["attributed_revenue"].sum()),
    }
    return users, info


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "blank"


def prepare_table(
    users: pd.DataFrame,
    cfg: AttributionConfig,
    user_table: pd.DataFrame | None = None,
    info: dict[str, Any] | None = None,
) -> AnalysisTable:
    """Attach segments and extra covariates, and name the covariate columns for the models."""
    users = users.copy()
    info = dict(info or {})
    extra: list[str] = []
    if user_table is not None:
        if "user_id" not in user_table.columns:
            raise InputDataError(
                f"user table needs a user_id column, got {list(user_table.columns)}"
            )
        table = user_table.drop_duplicates("user_id").set_index("user_id")
        if "segment" in table.columns:
            users = users.drop(columns=["segment"], errors="ignore")
            users["segment"] = (
                users["user_id"].map(table["segment"]).fillna("unknown").astype(str).to_numpy()
            )
        for col in table.columns:
            if col != "segment" and pd.api.types.is_numeric_dtype(table[col]):
                name = f"user_{_slug(col)}"
                values = users["user_id"].map(table[col]).astype(float)
                users[name] = values.fillna(values.median() if values.notna().any() else 0.0)
                extra.append(name)
        info["user_table_matched"] = int(users["user_id"].isin(table.index).sum())
    if "segment" not in users.columns or users["segment"].isna().all():
        users["segment"] = activity_tiers(users["pre_events"].to_numpy(), cfg.heavy_quantile)
        info["segment_source"] = "pre-exposure activity tiers"
    else:
        info.setdefault("segment_source", "user table" if user_table is not None else "given")
    counts = users["segment"].value_counts()
    dummies = []
    for seg in sorted(counts.index[1:]):  # most common segment is the reference level
        name = f"seg_{_slug(seg)}"
        users[name] = (users["segment"] == seg).astype(float)
        dummies.append(name)
    covariates = [*BASE_COVARIATES, *extra, *dummies]
    return AnalysisTable(users=users, covariates=covariates, info=info)


def activity_tiers(pre_events: np.ndarray, heavy_quantile: float) -> np.ndarray:
    """new (no pre-exposure activity), light, heavy (top quantile of active users)."""
    tiers = np.full(pre_events.size, "light", dtype=object)
    active = pre_events > 0
    tiers[~active] = "new"
    if active.any():
        cut = np.quantile(pre_events[active], heavy_quantile)
        tiers[active & (pre_events > cut)] = "heavy"
    return tiers


def read_user_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputDataError(f"{path}: expected a parquet or csv user table: {exc}") from exc


def load_analysis_table(
    slices: Path,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    cfg: AttributionConfig,
    users_path: Path | None = None,
) -> AnalysisTable:
    """Read the feedback slices needed for [since, until) (plus pre-period and window)."""
    pre = pd.Timedelta(hours=cfg.pre_period_hours)
    window = pd.Timedelta(hours=cfg.attribution_window_hours)
    start = since - pre if since is not None else None
    end = until + window if until is not None else None
    imp_dirs = _partitions(slices / IMPRESSIONS, start, end)
    if not imp_dirs:
        raise InputDataError(
            f"no labelled-impression partitions under {slices / IMPRESSIONS} for "
            f"[{start}, {end}): expected event_hour=YYYY-MM-DDTHH folders"
        )
    impressions, imp_info = _read(imp_dirs, IMPRESSION_COLUMNS, "served_at")
    unmatched, um_info = _read(
        _partitions(slices / UNMATCHED, start, end), UNMATCHED_COLUMNS, "event_time"
    )
    users, info = aggregate_users(impressions, unmatched, since, until, cfg)
    info.update(
        {
            "since": since.isoformat() if since is not None else None,
            "until": until.isoformat() if until is not None else None,
            "impressions": imp_info,
            "unmatched_interactions": um_info,
        }
    )
    user_table = read_user_table(users_path) if users_path is not None else None
    return prepare_table(users, cfg, user_table, info)
