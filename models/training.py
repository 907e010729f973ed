"""Train a LightGBM ranker on a feedback slice and register it as a new model version.

Training data is point-in-time correct: every impression gets the feature values Feast's
offline store held just before it was served (features.historical). The held-out part is the
latest requests by serving time, so metrics measure the future, not a shuffle of the past.

Position bias (see ranker.py): binary-on-clicks learns position as a training-only feature
pinned to 0 at serving; lambdarank uses LightGBM's unbiased lambdarank with the logged
positions. Logged propensities are *not* used as training weights: they are the probability
that the logging policy chose the item for the position (selection), not how likely a shopper
was to look at the position (examination), and their inverse makes the training loss
high-variance; they are used where they are exact, in off-policy evaluation.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from feast import FeatureStore
from tqdm import tqdm

from jobs.transforms.slices import LOGGED_COLUMNS
from loopline import settings
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models import feature_logs, features, lineage, metrics, slices
from models.errors import LineageEmitError, TrainingError
from models.ranker import OBJECTIVES, POSITION, ModelSpec, Ranker
from models.registry import LINEAGE_FILE, METRICS_FILE, POPULARITY_FILE, Registry, write_json
from models.rollout import Rollout

MIN_REQUESTS = 20


@dataclass(frozen=True)
class TrainingConfig:
    """How to train ([training] / LOOPLINE_TRAINING_*)."""

    objective: str = "binary"
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    holdout_fraction: float = 0.2  # latest requests, for metrics
    validation_fraction: float = 0.1  # latest requests before the holdout, for early stopping
    ndcg_at: int = 5
    # 1: on a shared 2-core machine LightGBM's OpenMP threads spin against other processes (80
    # trees on 1.2 K rows: 0.25 s with 1 thread, 10 s with 2 under load). Raise on a big box.
    num_threads: int = 1
    seed: int = 7
    emit_lineage: bool = False  # also send the LineageRecord to Kafka (else: local mirror only)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise TrainingError(
                f"training.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if not (0 < self.holdout_fraction < 1 and 0 < self.validation_fraction < 1
                and self.holdout_fraction + self.validation_fraction < 1):
            raise TrainingError("training.holdout_fraction and validation_fraction must be in "
                                "(0, 1) and sum to less than 1")
        for name in ("num_boost_round", "num_leaves", "min_data_in_leaf", "ndcg_at", "num_threads"):
            if getattr(self, name) <= 0:
                raise TrainingError(f"training.{name} must be positive, got {getattr(self, name)}")


def load_training(**overrides: object) -> TrainingConfig:
    return settings.load(TrainingConfig, "training", **overrides)


@dataclass(frozen=True)
class TrainResult:
    version: str
    run_id: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    lineage_mirror: Path


def split_requests(frame: pd.DataFrame, cfg: TrainingConfig) -> pd.Series:
    """'train' / 'valid' / 'holdout' per row, by each request's serving time (latest last)."""
    first_seen = frame.groupby("request_id")["served_at"].min().sort_values(kind="stable")
    n = len(first_seen)
    if n < MIN_REQUESTS:
        raise TrainingError(f"the slice holds {n} requests; training needs at least {MIN_REQUESTS}")
    n_hold = max(1, round(n * cfg.holdout_fraction))
    n_valid = max(1, round(n * cfg.validation_fraction))
    part = pd.Series("train", index=first_seen.index)
    part.iloc[n - n_hold:] = "holdout"
    part.iloc[n - n_hold - n_valid:n - n_hold] = "valid"
    return frame["request_id"].map(part)


def _dataset(frame: pd.DataFrame, spec: ModelSpec,
             reference: lgb.Dataset | None = None) -> lgb.Dataset:
    columns = list(spec.columns)
    if spec.objective == "binary":
        return lgb.Dataset(frame[columns], label=frame["clicked"].astype(int), reference=reference,
                           free_raw_data=False)
    ordered = frame.sort_values(["request_id", POSITION], kind="stable")
    return lgb.Dataset(
        ordered[columns], label=metrics.relevance(ordered), reference=reference,
        group=ordered.groupby("request_id", sort=True).size().to_numpy(),
        position=ordered[POSITION].to_numpy(dtype=np.int32), free_raw_data=False,
    )


def fit(frame: pd.DataFrame, cfg: TrainingConfig,
        progress: bool = False) -> tuple[Ranker, dict[str, Any]]:
    """Train on the frame (impressions + feature columns); return the ranker and its metrics."""
    spec = ModelSpec.for_objective(cfg.objective)
    part = split_requests(frame, cfg)
    train, valid, hold = (frame[part == p] for p in ("train", "valid", "holdout"))
    params: dict[str, Any] = {
        "objective": cfg.objective, "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves, "min_data_in_leaf": cfg.min_data_in_leaf,
        "num_threads": cfg.num_threads, "seed": cfg.seed, "deterministic": True,
        "verbosity": -1,
    }
    if cfg.objective == "lambdarank":
        params.update(metric="ndcg", eval_at=[cfg.ndcg_at])
    else:
        params.update(metric="binary_logloss")
    dtrain = _dataset(train, spec)
    dvalid = _dataset(valid, spec, reference=dtrain)
    bar = tqdm(total=cfg.num_boost_round, desc="boosting", unit="tree", disable=not progress,
               leave=False)
    try:
        booster = lgb.train(
            params, dtrain, num_boost_round=cfg.num_boost_round, valid_sets=[dvalid],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
                       lambda env: bar.update(1)],
        )
    except lgb.basic.LightGBMError as exc:
        raise TrainingError(f"LightGBM could not train ({cfg.objective}): {exc}") from exc
    finally:
        bar.close()
    ranker = Ranker(booster, spec)
    return ranker, holdout_metrics(ranker, hold, cfg) | {
        "objective": cfg.objective,
        "best_iteration": booster.best_iteration or booster.current_iteration(),
        "rows": {"train": len(train), "valid": len(valid), "holdout": len(hold)},
        "requests": {p: int(frame.loc[part == p, "request_id"].nunique())
                     for p in ("train", "valid", "holdout")},
        "slice_ctr": float(frame["clicked"].mean()),
        # share of feature values Feast had for the impressions: 0 means a broken join
        "feature_coverage": float(frame[list(features.COLUMNS)].notna().to_numpy().mean()),
        "params": params,
        "position_bias": ("position feature, pinned to 0 when scoring" if cfg.objective == "binary"
                          else "LightGBM unbiased lambdarank (logged positions)"),
    }


def holdout_metrics(ranker: Ranker, hold: pd.DataFrame, cfg: TrainingConfig) -> dict[str, Any]:
    """AUC (clicks) and NDCG@k (graded) of the model vs the logged ranking, on held-out slates."""
    scores = ranker.score_frame(hold)
    rel = metrics.relevance(hold)
    groups = hold["request_id"].to_numpy()
    clicks = hold["clicked"].to_numpy(int)
    k = cfg.ndcg_at
    return {
        "auc": metrics.auc(clicks, scores),
        f"ndcg@{k}": metrics.ndcg(groups, rel, scores, k),
        "logged_auc": metrics.auc(clicks, hold["score"].to_numpy()),
        f"logged_ndcg@{k}": metrics.ndcg(groups, rel, -hold[POSITION].to_numpy(float), k),
    }


def popularity(frame: pd.DataFrame) -> dict[str, float]:
    """log(1 + clicks) per item over the slice: the static fallback ranking for serving."""
    clicks = frame.groupby("item_id")["clicked"].sum()
    return {str(item): float(np.log1p(c)) for item, c in clicks.items()}


def _with_features(paths: PathsConfig, store: FeatureStore, frame: pd.DataFrame,
                   source: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The slice with its feature columns: Feast's point-in-time history, or (LOGGED)
    exactly the vectors serving scored each impression with, which the feedback job joined
    into the slice rows; impressions without them are left out and counted in lineage."""
    if source == lineage.POINT_IN_TIME:
        features.check_sources(store, paths)
        frame = frame.drop(columns=[c for c in LOGGED_COLUMNS if c in frame.columns])
        return (pd.concat([frame, features.historical(store, frame)], axis=1),
                {"source": lineage.POINT_IN_TIME})
    if source != lineage.LOGGED:
        raise TrainingError(f"features must come from {lineage.POINT_IN_TIME!r} or "
                            f"{lineage.LOGGED!r}, got {source!r}")
    logged = feature_logs.from_slice(frame)
    joined = logged.frame
    left_out = len(frame) - len(joined)
    if joined["request_id"].nunique() < MIN_REQUESTS:
        raise TrainingError(
            f"only {joined['request_id'].nunique()} requests of the slice have logged features "
            f"({left_out} of {len(frame)} impressions have none); training needs at least "
            f"{MIN_REQUESTS}. Is feature logging on ([serving] feature_log_sample_rate), and "
            f"does the feedback job read its topic ([job] feature_log_topic)?")
    return joined, {"source": lineage.LOGGED, "rows": len(joined),
                    "rows_without_log": left_out,
                    "malformed_rows": sum(logged.malformed.values()),
                    "malformed_by_reason": dict(sorted(logged.malformed.items())),
                    # the log topic is named with these offsets in the slice's sources
                    "feature_log_offsets": logged.offsets,
                    "feature_service_version": features.SERVICE_VERSION}


def train(paths: PathsConfig, rng: slices.SliceRange, store: FeatureStore, cfg: TrainingConfig,
          parent: str | None = None, kafka: KafkaConfig | None = None,
          progress: bool = False, features_from: str = lineage.POINT_IN_TIME) -> TrainResult:
    """Slice → features (point in time, or LOGGED: serving's own vectors, from the slice) →
    LightGBM →
    registered version with lineage (which names the feature source)."""
    registry = Registry.from_paths(paths)
    if parent is None:
        parent = Rollout(registry).production_version()  # what this version would replace
    else:
        registry.directory(parent)  # must exist
    run_id = str(uuid.uuid4())
    stages = tqdm(total=4, desc="train", unit="step", disable=not progress, leave=False)
    frame, ref = slices.load(paths, rng)
    stages.update(1)
    frame, features_used = _with_features(paths, store, frame, features_from)
    stages.update(1)
    ranker, scores = fit(frame, cfg, progress=progress)
    stages.update(1)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    code = lineage.code_version()
    result_doc: dict[str, Any] = {}

    def write(directory: Path, version: str) -> None:
        ranker.save(directory)
        write_json(directory / METRICS_FILE, scores | {"trained_at": trained_at, "run_id": run_id})
        write_json(directory / POPULARITY_FILE, popularity(frame))
        doc = lineage.document(version, parent, trained_at, code, ranker.spec.feature_service, ref,
                               features_used)
        write_json(directory / LINEAGE_FILE, doc)
        result_doc.update(doc)

    version = registry.register(write)
    stages.update(1)
    stages.close()
    record = lineage.run_record(result_doc, run_id, int(time.time() * 1000), ref, paths, scores)
    mirror = lineage.mirror(record, paths)
    if kafka is not None:
        try:
            lineage.send(record, kafka)
        except LineageEmitError as exc:
            raise LineageEmitError(f"{version} is registered and its lineage mirrored to "
                                   f"{mirror}, but {exc}") from exc
    return TrainResult(version, run_id, scores, result_doc, mirror)
