"""Write a `Simulation` as the files `loopline attribute` reads (tests and demos only).

Labelled impressions and unmatched interactions go to hourly Parquet partitions with a
`_manifest.json` each, lineage to `<home>/models/<version>/lineage.json`, and the segments to a
user table. Every per-user number of the simulation is reproduced exactly by the events, and
decoys (users exposed after the period, purchases after the attribution window) check that the
loader's windows cut where they should.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attribution.data import IMPRESSIONS, UNMATCHED
from bench.attribution_world import Simulation
from jobs.transforms import slices

HOUR_MS = 3_600_000
TS = pa.timestamp("ms", tz="UTC")

# The job's own Parquet contracts: synthetic files must be indistinguishable from real ones.
IMPRESSION_SCHEMA = slices.LABELLED_SCHEMA
UNMATCHED_SCHEMA = slices.UNMATCHED_SCHEMA


@dataclass(frozen=True)
class WrittenFiles:
    home: Path
    since: pd.Timestamp
    until: pd.Timestamp
    users_path: Path
    impressions: int
    unmatched: int


def _split_evenly(total: np.ndarray, count: np.ndarray, rows_user: np.ndarray) -> np.ndarray:
    """Each row gets its user's total / count (rows belong to users with count > 0)."""
    return total[rows_user] / np.maximum(count[rows_user], 1)


def _rank_within(users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random rank 0..k-1 of every row among its user's rows."""
    order = np.lexsort((rng.random(users.size), users))
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, users.size]))
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - group_start
    return rank


def _impressions(
    sim: Simulation, fe: np.ndarray, window: int, rng: np.random.Generator
) -> pd.DataFrame:
    u = sim.users
    k = u["impressions"].to_numpy()
    row_user = np.repeat(np.arange(len(u)), k)
    rank = _rank_within(row_user, rng)
    first_of_user = np.r_[0, np.cumsum(k)[:-1]]
    pos_in_user = np.arange(row_user.size) - first_of_user[row_user]
    offset = (rng.random(row_user.size) * 0.9 * window).astype(np.int64)
    offset[pos_in_user == 0] = 0  # the first impression is the exposure
    clicked = rank < u["clicks"].to_numpy()[row_user]
    purchased = rank < u["attributed_purchases"].to_numpy()[row_user]
    revenue = np.where(
        purchased,
        _split_evenly(
            u["attributed_revenue"].to_numpy(), u["attributed_purchases"].to_numpy(), row_user
        ),
        0.0,
    )
    fallback = _rank_within(row_user, rng) < u["fallback_impressions"].to_numpy()[row_user]
    ids = u["user_id"].to_numpy()[row_user]
    req = pos_in_user // 10
    return pd.DataFrame(
        {
            "request_id": [f"r-{a}-{b}" for a, b in zip(ids, req, strict=True)],
            "item_id": [f"i{x}" for x in rng.integers(0, 5000, row_user.size)],
            "user_id": ids,
            "session_id": [f"s-{a}-{b}" for a, b in zip(ids, req // 2, strict=True)],
            "model_version": np.where(fallback, "popularity", u["version"].to_numpy()[row_user]),
            "arm": u["arm"].to_numpy()[row_user],
            "policy": np.where(fallback, "fallback", "epsilon_greedy"),
            "fallback": fallback,
            "position": (pos_in_user % 10).astype(np.int32),
            "score": rng.random(row_user.size),
            "propensity": np.full(row_user.size, 0.1),
            "served_at": fe[row_user] + offset,
            "clicked": clicked,
            "added_to_cart": purchased,
            "purchased": purchased,
            "revenue": revenue,
            "dwell_ms": np.where(clicked, rng.integers(500, 60_000, row_user.size), 0),
            "interaction_count": (clicked.astype(np.int32) + purchased.astype(np.int32) * 2),
            "label_window_ms": np.full(row_user.size, window, dtype=np.int64),
        }
    )


def _unmatched(
    sim: Simulation, fe: np.ndarray, window: int, pre: int, nc: int, rng: np.random.Generator
) -> pd.DataFrame:
    u = sim.users
    ids = u["user_id"].to_numpy()
    parts = []
    # Negative-control window (the last `nc` before exposure): one purchase carrying its revenue.
    buyers = np.flatnonzero(u["nc_revenue"].to_numpy() > 0)
    parts.append(
        pd.DataFrame(
            {
                "user": buyers,
                "event_time": fe[buyers]
                - (rng.uniform(0.001, 0.999, buyers.size) * nc).astype(np.int64),
                "type": "purchase",
                "revenue": u["nc_revenue"].to_numpy()[buyers],
                "reason": "organic",
            }
        )
    )
    # Pre-exposure activity: purchases carry the pre-period revenue, the rest are views.
    n_pre, n_pre_buy = u["pre_events"].to_numpy(), u["pre_purchases"].to_numpy()
    row_user = np.repeat(np.arange(len(u)), n_pre)
    is_buy = _rank_within(row_user, rng) < n_pre_buy[row_user]
    parts.append(
        pd.DataFrame(
            {
                "user": row_user,
                "event_time": fe[row_user]
                - nc
                - (rng.uniform(0.001, 0.999, row_user.size) * (pre - nc)).astype(np.int64),
                "type": np.where(is_buy, "purchase", "view"),
                "revenue": np.where(
                    is_buy, _split_evenly(u["pre_revenue"].to_numpy(), n_pre_buy, row_user), 0.0
                ),
                "reason": "organic",
            }
        )
    )
    # Organic purchases inside the attribution window: counted as revenue, not attributed.
    n_org = u["organic_purchases"].to_numpy()
    row_user = np.repeat(np.arange(len(u)), n_org)
    parts.append(
        pd.DataFrame(
            {
                "user": row_user,
                "event_time": fe[row_user]
                + (rng.uniform(0, 0.99, row_user.size) * window).astype(np.int64),
                "type": "purchase",
                "revenue": _split_evenly(u["organic_revenue"].to_numpy(), n_org, row_user),
                "reason": "organic",
            }
        )
    )
    # Decoys after the window closes: must not be counted.
    late = np.flatnonzero(rng.random(len(u)) < 0.2)
    parts.append(
        pd.DataFrame(
            {
                "user": late,
                "event_time": fe[late] + window + rng.integers(HOUR_MS, 24 * HOUR_MS, late.size),
                "type": "purchase",
                "revenue": 100.0,
                "reason": "outside_window",
            }
        )
    )
    frame = pd.concat(parts, ignore_index=True)
    user = frame.pop("user").to_numpy()
    n = len(frame)
    frame.insert(0, "event_id", [f"e{i:09d}" for i in range(n)])
    frame.insert(2, "user_id", ids[user])
    frame.insert(3, "session_id", [f"s-{x}-o" for x in ids[user]])
    frame.insert(4, "request_id", None)
    frame.insert(5, "item_id", [f"i{x}" for x in rng.integers(0, 5000, n)])
    frame.insert(8, "dwell_ms", None)
    frame.insert(9, "position", None)
    return frame


def _write_partitions(
    frame: pd.DataFrame, root: Path, dataset: str, time_col: str, schema: pa.Schema, topic: str
) -> None:
    frame = frame.sort_values(time_col, kind="stable").reset_index(drop=True)
    frame["source_topic"] = topic
    frame["source_partition"] = (np.arange(len(frame)) % 3).astype(np.int32)
    frame["source_offset"] = np.arange(len(frame), dtype=np.int64) // 3
    millis = frame[time_col].to_numpy(dtype=np.int64)
    frame[time_col] = pd.to_datetime(millis, unit="ms", utc=True)
    frame["_ms"] = millis
    # Columns the simulated log has no values for (serving's logged feature vectors): null,
    # as in a slice row of a request served without a FeatureLog.
    for name in schema.names:
        if name not in frame.columns:
            frame[name] = None
    hours = frame[time_col].dt.strftime("%Y-%m-%dT%H")
    for hour, part in frame.groupby(hours.to_numpy(), sort=True):
        folder = root / dataset / f"event_hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part[schema.names], schema=schema, preserve_index=False)
        pq.write_table(table, folder / "part-00000.parquet")
        sources: dict[str, dict[str, list[int]]] = {topic: {}}
        for p, offs in part.groupby("source_partition")["source_offset"]:
            sources[topic][str(p)] = [int(offs.min()), int(offs.max())]
        digest = hashlib.sha256(part["source_offset"].to_numpy().tobytes()).hexdigest()[:16]
        manifest = {
            "dataset": dataset,
            "partition": f"event_hour={hour}",
            "event_time_min": int(part["_ms"].min()),
            "event_time_max": int(part["_ms"].max()),
            "row_count": len(part),
            "fingerprint": digest,
            "files": [{"name": "part-00000.parquet", "rows": len(part), "fingerprint": digest}],
            "sources": sources,
            "job": {"name": "label-join", "run_id": "sim-run-1", "code_version": "sim"},
        }
        (folder / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def write_lineage(sim: Simulation, models: Path) -> None:
    for v in sim.spec.versions:
        folder = models / v.name
        folder.mkdir(parents=True, exist_ok=True)
        if not v.has_lineage:
            continue
        start, end = pd.Timestamp(v.slice_start), pd.Timestamp(v.slice_end)
        hours = pd.date_range(start, end, freq="h", inclusive="left")
        lineage = {
            "model_version": v.name,
            "parent_version": v.parent,
            "trained_at": (end + pd.Timedelta(hours=2)).isoformat(),
            "code_version": v.code_version,
            "feature_service": v.feature_service,
            "slice": {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "row_count": int(len(hours) * 1200),
                "fingerprint": hashlib.sha256(f"{start}{end}".encode()).hexdigest()[:16],
                "partitions": [f"event_hour={h:%Y-%m-%dT%H}" for h in hours],
                "sources": {"serving-events": {"0": [0, len(hours) * 400]}},
                "job_run_ids": [f"label-join-{start:%Y%m%d}"],
            },
        }
        (folder / "lineage.json").write_text(json.dumps(lineage, indent=1))
    # A heuristic baseline served as fallback: registered, but trained on no slice.
    (models / "popularity").mkdir(parents=True, exist_ok=True)


def write_contracts(
    sim: Simulation,
    home: Path,
    since: str = "2026-11-02T00:00:00+00:00",
    exposure_hours: float = 24.0,
    seed: int = 0,
) -> WrittenFiles:
    """Write slices, manifests, lineage and a user table under `home`; returns the period."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(since)
    window = int(sim.spec.window_hours * HOUR_MS)
    pre = int(sim.spec.pre_period_hours * HOUR_MS)
    nc = int(sim.spec.negative_control_hours * HOUR_MS)
    span = int(exposure_hours * HOUR_MS)
    fe = start.value // 1_000_000 + (rng.random(len(sim.users)) * span).astype(np.int64)
    impressions = _impressions(sim, fe, window, rng)
    # Decoy users first seen after the period: outside the analysis.
    decoy = impressions.iloc[: max(1, len(impressions) // 50)].copy()
    decoy["user_id"] = "late-" + decoy["user_id"]
    decoy["served_at"] = decoy["served_at"] + span + HOUR_MS
    impressions = pd.concat([impressions, decoy], ignore_index=True)
    unmatched = _unmatched(sim, fe, window, pre, nc, rng)
    slices = home / "slices"
    _write_partitions(
        impressions, slices, IMPRESSIONS, "served_at", IMPRESSION_SCHEMA, "serving-events"
    )
    _write_partitions(
        unmatched, slices, UNMATCHED, "event_time", UNMATCHED_SCHEMA, "interaction-events"
    )
    write_lineage(sim, home / "models")
    users_path = home / "users.parquet"
    users = sim.users[["user_id", "segment"]].copy()
    users["tenure_days"] = rng.integers(1, 900, len(users)).astype(float)
    users.to_parquet(users_path, index=False)
    return WrittenFiles(
        home=home,
        since=start,
        until=start + pd.Timedelta(milliseconds=span),
        users_path=users_path,
        impressions=len(impressions),
        unmatched=len(unmatched),
    )
