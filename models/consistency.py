"""Online/offline consistency: what serving scored with vs what training would read.

For every labelled impression of a slice whose request was sampled for feature logging, the
logged online value of each feature is compared with the point-in-time offline value
training uses for the same row (features.historical: as of served_at − 1 ms). Per feature:

* mismatch rate: rows where both sides have a value and |online − offline| > abs_tolerance +
  rel_tolerance·|offline|, over the rows where both have one;
* missing rate on each side (a value on one side only is counted there, not as a mismatch);
* mean absolute difference over the rows where both have a value;
* how many mismatches staleness explains: the offline value as of the online row's own event
  time equals the logged one (the online store was behind, the definition agrees), as
  opposed to a feature computed differently online.

Staleness (serving time − the online row's event time) is reported per view as p50/p95/p99
and a histogram. Requests that should have a log (sampled by request id, not a fallback) and
have none are *missing*, never mismatches; unreadable records are counted by reason.

`match` and `compare` are pure; `evaluate` adds the Feast point-in-time reads, `run` the slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from feature_repo import names
from loopline import settings
from loopline.errors import ConfigError
from loopline.paths import PathsConfig
from models import features, slices
from models.feature_logs import ITEM_TIME, KEY, SERVED_MS, USER_TIME, LoggedFeatures
from models.serving.feature_log import sampled

_VIEW_OF = {c: view for view, cols in features.VIEW_COLUMNS.items() for c in cols}
_TIME_OF = {names.USER_ACTIVITY: USER_TIME, names.ITEM_PERFORMANCE: ITEM_TIME}
_ONLINE = "_online"
HIST_BINS = 20


@dataclass(frozen=True)
class ConsistencyConfig:
    """Tolerances and thresholds of the check ([consistency] / LOOPLINE_CONSISTENCY_*)."""

    abs_tolerance: float = 1e-6
    rel_tolerance: float = 1e-6
    # A feature whose mismatch rate (beyond tolerance) exceeds this is a breach.
    max_mismatch_rate: float = 0.01
    # Share of sampled, non-fallback requests whose log never arrived.
    max_missing_log_rate: float = 0.05
    # p99 of serving time − feature time, per view (0 = no threshold). A quiet entity's row
    # legitimately ages until its window moves on, so the default is the longest window.
    max_staleness_p99_ms: int = names.WINDOWS["24h"]
    # The rate serving sampled at; None = [serving] feature_log_sample_rate.
    sample_rate: float | None = None

    def __post_init__(self) -> None:
        if self.abs_tolerance < 0 or self.rel_tolerance < 0:
            raise ConfigError("consistency tolerances must be >= 0")
        for name in ("max_mismatch_rate", "max_missing_log_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"consistency.{name} must be in [0, 1], "
                                  f"got {getattr(self, name)}")
        if self.max_staleness_p99_ms < 0:
            raise ConfigError("consistency.max_staleness_p99_ms must be >= 0")
        if self.sample_rate is not None and not 0 < self.sample_rate <= 1:
            raise ConfigError(f"consistency.sample_rate must be in (0, 1], got {self.sample_rate}")


def load_consistency(**overrides: object) -> ConsistencyConfig:
    return settings.load(ConsistencyConfig, "consistency", **overrides)


@dataclass(frozen=True)
class Matched:
    """Impressions joined with their logged rows, and what could not be joined."""

    rows: pd.DataFrame  # impression columns + logged columns (suffix _online) + times
    expected_requests: int  # sampled, not fallback
    missing_requests: int  # of those, no log at all
    fallback_without_log: int  # sampled fallback requests without a log (lookup never ran)
    missing_rows: int  # impressions of logged requests whose item is absent from the log
    unmatched_log_rows: int  # logged rows with no impression in the slice


def match(impressions: pd.DataFrame, logged: LoggedFeatures, sample_rate: float) -> Matched:
    """Join impressions (request_id, item_id, user_id, served_at, fallback) with the logged
    rows on (request_id, item_id)."""
    fallback = impressions.groupby("request_id", sort=False)["fallback"].first().astype(bool)
    fallback = fallback[[sampled(str(r), sample_rate) for r in fallback.index]]  # sampled only
    log = logged.frame
    have = set(log["request_id"]) if len(log) else set()
    no_log = fallback[[r not in have for r in fallback.index]]
    online = log.rename(columns={c: c + _ONLINE for c in features.COLUMNS})
    rows = impressions.merge(online.drop(columns=["user_id"]), on=KEY, how="inner",
                             validate="one_to_one")
    logged_requests = impressions[impressions["request_id"].isin(have)]
    return Matched(
        rows=rows.reset_index(drop=True),
        expected_requests=int((~fallback).sum()),
        missing_requests=int((~no_log).sum()),
        fallback_without_log=int(no_log.sum()),
        missing_rows=len(logged_requests) - len(rows),
        unmatched_log_rows=len(log) - len(rows),
    )


def _quantiles(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None,
                "negative": 0, "histogram": {"edges_ms": [], "counts": []}}
    counts, edges = np.histogram(values, bins=HIST_BINS)
    p50, p95, p99 = np.percentile(values, [50, 95, 99], method="lower")
    return {"count": len(values), "p50_ms": float(p50), "p95_ms": float(p95),
            "p99_ms": float(p99), "max_ms": float(values.max()),
            "negative": int((values < 0).sum()),  # a row from the future: a clock problem
            "histogram": {"edges_ms": [float(e) for e in edges],
                          "counts": [int(c) for c in counts]}}


def staleness(logged: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Serving time − feature time per view: the user row once per request, items per row."""
    out = {}
    for view, column in _TIME_OF.items():
        frame = logged.drop_duplicates("request_id") if view == names.USER_ACTIVITY else logged
        ages = (frame[SERVED_MS].to_numpy(float) - frame[column].to_numpy(float))
        out[view] = _quantiles(ages[np.isfinite(ages)])
    return out


def _beyond(online: np.ndarray, offline: np.ndarray, cfg: ConsistencyConfig) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(online - offline) > cfg.abs_tolerance + cfg.rel_tolerance * np.abs(offline)


def compare(matched: Matched, offline: pd.DataFrame, logged: LoggedFeatures,
            cfg: ConsistencyConfig, at_feature_time: pd.DataFrame | None = None
            ) -> dict[str, Any]:
    """The report (JSON-ready) from matched rows and their offline values (same index).
    `at_feature_time`: offline values as of each online row's own event time, for the rows
    that mismatch (index ⊆ matched.rows.index); None skips the staleness attribution."""
    rows = matched.rows
    per_feature = []
    for column in features.COLUMNS:
        on = rows[column + _ONLINE].to_numpy(float)
        off = offline[column].to_numpy(float) if len(rows) else np.empty(0)
        both = ~np.isnan(on) & ~np.isnan(off)
        bad = both & _beyond(on, off, cfg)
        explained = 0
        if at_feature_time is not None and bad.any():
            idx = rows.index[bad]
            past = at_feature_time.reindex(idx)[column].to_numpy(float)
            explained = int((~np.isnan(past) & ~_beyond(on[bad], past, cfg)
                             | (np.isnan(past) & np.isnan(on[bad]))).sum())
        compared = int(both.sum())
        n = len(rows)
        rate = bad.sum() / compared if compared else 0.0
        diff = np.abs(on[both] - off[both])
        per_feature.append({
            "name": column, "view": _VIEW_OF[column], "compared": compared,
            "mismatches": int(bad.sum()), "mismatch_rate": float(rate),
            "explained_by_staleness": explained if at_feature_time is not None else None,
            "missing_online": int(np.isnan(on).sum()),
            "missing_online_rate": float(np.isnan(on).mean()) if n else 0.0,
            "missing_offline": int(np.isnan(off).sum()),
            "missing_offline_rate": float(np.isnan(off).mean()) if n else 0.0,
            "mean_abs_diff": float(diff.mean()) if len(diff) else None,
            "max_abs_diff": float(diff.max()) if len(diff) else None,
            "breach": bool(rate > cfg.max_mismatch_rate),
        })
    stale = staleness(logged.frame)
    missing_rate = (matched.missing_requests / matched.expected_requests
                    if matched.expected_requests else 0.0)
    breaches = [f"feature {f['name']}: mismatch {f['mismatch_rate']:.2%} > "
                f"{cfg.max_mismatch_rate:.2%} ({f['mismatches']} of {f['compared']} rows"
                + (f", {f['explained_by_staleness']} explained by staleness"
                   if f["explained_by_staleness"] is not None else "") + ")"
                for f in per_feature if f["breach"]]
    if missing_rate > cfg.max_missing_log_rate:
        breaches.append(f"missing feature logs: {missing_rate:.2%} of sampled requests > "
                        f"{cfg.max_missing_log_rate:.2%}")
    for view, s in stale.items():
        if cfg.max_staleness_p99_ms and s["p99_ms"] is not None \
                and s["p99_ms"] > cfg.max_staleness_p99_ms:
            breaches.append(f"staleness {view}: p99 {s['p99_ms'] / 1000:.1f}s > "
                            f"{cfg.max_staleness_p99_ms / 1000:.1f}s")
    return {
        "feature_service": features.FEATURE_SERVICE,
        "feature_service_version": features.SERVICE_VERSION,
        "tolerance": {"abs": cfg.abs_tolerance, "rel": cfg.rel_tolerance},
        "thresholds": {"max_mismatch_rate": cfg.max_mismatch_rate,
                       "max_missing_log_rate": cfg.max_missing_log_rate,
                       "max_staleness_p99_ms": cfg.max_staleness_p99_ms},
        "compared_rows": len(rows),
        "logs": logged.summary() | {"unmatched_rows": matched.unmatched_log_rows},
        "missing_logs": {"expected_requests": matched.expected_requests,
                         "missing_requests": matched.missing_requests,
                         "missing_rate": missing_rate,
                         "missing_rows_of_logged_requests": matched.missing_rows,
                         "fallback_requests_without_log": matched.fallback_without_log},
        "features": per_feature,
        "staleness": stale,
        "breaches": breaches,
        "ok": not breaches,
    }


def _as_of(store: FeatureStore, rows: pd.DataFrame, times: dict[str, str]) -> pd.DataFrame:
    """features.historical with each view read as of its own time column (+1 ms, undoing
    the lookup offset), for rows whose times are known."""
    out = pd.DataFrame(np.nan, index=rows.index, columns=list(features.COLUMNS))
    for view, column in times.items():
        known = rows[np.isfinite(rows[column].to_numpy(float))]
        if not len(known):
            continue
        at = pd.to_datetime(known[column].to_numpy("int64") + 1, unit="ms", utc=True)
        frame = pd.DataFrame({"served_at": at, names.USER_KEY: known[names.USER_KEY].to_numpy(),
                              names.ITEM_KEY: known[names.ITEM_KEY].to_numpy()},
                             index=known.index)
        cols = list(features.VIEW_COLUMNS[view])
        out.loc[known.index, cols] = features.historical(store, frame)[cols].to_numpy()
    return out


def evaluate(impressions: pd.DataFrame, logged: LoggedFeatures, store: FeatureStore,
             cfg: ConsistencyConfig, sample_rate: float) -> dict[str, Any]:
    """match → offline point-in-time values (as training reads them) → compare."""
    matched = match(impressions, logged, sample_rate)
    rows = matched.rows
    if len(rows):
        offline = features.historical(store, rows)
        offline.index = rows.index
        mismatch = np.zeros(len(rows), dtype=bool)
        for column in features.COLUMNS:
            on, off = rows[column + _ONLINE].to_numpy(float), offline[column].to_numpy(float)
            mismatch |= ~np.isnan(on) & ~np.isnan(off) & _beyond(on, off, cfg)
        past = _as_of(store, rows[mismatch], _TIME_OF) if mismatch.any() else None
    else:
        offline, past = pd.DataFrame(columns=list(features.COLUMNS)), None
    report = compare(matched, offline, logged, cfg, past)
    report["sample_rate"] = sample_rate
    # Which requests should have a log follows from the rate serving sampled at; logs written
    # at another rate make the missing count wrong, so say so rather than guess.
    seen = sorted({float(r) for r in logged.frame["sample_rate"]}) if len(logged.frame) else []
    report["sample_rates_logged"] = seen
    if any(abs(r - sample_rate) > 1e-12 for r in seen):
        report["breaches"].append(
            f"feature logs were sampled at {seen}, the check assumed {sample_rate}: the "
            "missing count is unreliable (set [consistency] sample_rate)")
        report["ok"] = False
    report["impressions"] = len(impressions)
    report["requests"] = int(impressions["request_id"].nunique())
    return report


def summary_line(report: dict[str, Any]) -> str:
    """One line: compared rows, worst feature, missing logs, staleness p99, verdict."""
    worst = max(report["features"], key=lambda f: f["mismatch_rate"], default=None)
    items = report["staleness"][names.ITEM_PERFORMANCE]
    stale = ("-" if items["p99_ms"] is None else f"{items['p99_ms'] / 1000:.1f}s")
    worst_text = ("-" if worst is None or not worst["mismatches"] else
                  f"{worst['name']} {worst['mismatch_rate']:.1%}")
    verdict = "ok" if report["ok"] else f"BREACH ({len(report['breaches'])})"
    return (f"Consistency {report.get('slice', '')}: {report['compared_rows']:,} rows compared, "
            f"{sum(f['breach'] for f in report['features'])} of {len(report['features'])} "
            f"features beyond {report['thresholds']['max_mismatch_rate']:.0%} mismatch "
            f"(worst {worst_text}), missing logs "
            f"{report['missing_logs']['missing_rate']:.1%}, malformed "
            f"{report['logs']['malformed']}, item staleness p99 {stale}: {verdict}")


def run(paths: PathsConfig, rng: slices.SliceRange, store: FeatureStore,
        logged: LoggedFeatures, cfg: ConsistencyConfig, sample_rate: float) -> dict[str, Any]:
    """The check over the final partitions of `rng`."""
    frame, ref = slices.load(paths, rng, columns=["request_id", "item_id", "user_id",
                                                  "served_at", "fallback"], verify=False)
    report = evaluate(frame, logged, store, cfg, sample_rate)
    return {"slice": str(rng), "slice_fingerprint": ref.fingerprint,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds")
            .replace("+00:00", "Z")} | report

