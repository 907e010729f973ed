"""Event time, end to end: the same log consumed live and replayed as a backlog gives the same
outputs row for row, and the features training reads are the truth as of each impression.

Live: the job runs unbounded while the log is produced in event-time order, then stops with
a drain. Replay: the interactions topic is loaded first, then the serving topic, and the job
runs `--bounded`, so it reads clicks long before the impressions they follow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from bench.reliability.harness import (
    caught_up,
    create_topics,
    drainable,
    online_snapshot,
    unique_job,
    wait_until,
)
from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from jobs.config import JobConfig
from jobs.feedback.run import run, stop_with_drain
from jobs.reconcile import reconcile
from jobs.transforms.features import feature_events, values_at
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from models import features as model_features
from schemas.producer import EventProducer
from tests.integration import event_time_case as case

pytestmark = pytest.mark.integration


def _produce(kafka: KafkaConfig, job: JobConfig, batches: list[list[tuple[str, dict[str, Any]]]]
             ) -> None:
    with EventProducer(kafka) as producer:
        for batch in batches:
            for kind, event in batch:
                if kind == "serving":
                    producer.serving(event, topic=job.serving_topic)
                else:
                    producer.interaction(event, topic=job.interactions_topic)
            producer.flush()


def _home(factory: pytest.TempPathFactory, name: str) -> PathsConfig:
    return PathsConfig(home=factory.mktemp(name), jars=PathsConfig().jars).resolved()


@pytest.fixture(scope="module")
def runs(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    serving, acts = case.build()
    # Small chunks: the offline feature log leaves each hour in several groups of one-minute
    # slices (cut at 40 rows), which live and replay must cut alike.
    live = drainable(unique_job("live", startup="earliest-offset", checkpoint_interval_ms=2_000,
                                partition_chunk_rows=40))
    replay = unique_job("replay", bounded=True, startup="earliest-offset", partition_chunk_rows=40)
    for job in (live, replay):
        create_topics(kafka, job)
    # The backlog: every interaction first, then every slate.
    _produce(kafka, replay, [[("interaction", a) for a in acts],
                             [("serving", s) for s in serving]])
    live_home, replay_home = _home(tmp_path_factory, "live"), _home(tmp_path_factory, "replay")
    started = run(live, kafka, FeastConfig(), live_home, wait=False)
    merged = sorted([("serving", s) for s in serving] + [("interaction", a) for a in acts],
                    key=lambda p: p[1]["event_time"])
    _produce(kafka, live, [merged[i:i + 200] for i in range(0, len(merged), 200)])
    expected_input = len(serving) + len(acts)

    # Offsets are committed on checkpoints: all input before them has gone through the job.
    wait_until(lambda: caught_up(kafka, live), 240, "the live job to read the whole log")
    stop_with_drain(started.client, (live_home.home / "savepoints").as_uri())
    assert started.writer is not None
    writer_stats = started.writer.stop(drain=True).as_dict()
    run(replay, kafka, FeastConfig(), replay_home)
    return {"serving": serving, "acts": acts, "expected_input": expected_input,
            "live_writer": writer_stats,
            "live": (live, live_home), "replay": (replay, replay_home)}


def _without_topic(rows: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in r.items() if f != "source_topic"} for k, r in rows.items()}


def test_every_input_ends_in_exactly_one_place_in_both(kafka: KafkaConfig,
                                                       runs: dict[str, Any]) -> None:
    for job, _ in (runs["live"], runs["replay"]):
        counts = reconcile(kafka, job)
        assert counts.balanced and counts.input == runs["expected_input"]
        assert counts.late == 0 and counts.dead_lettered == 1  # the redelivered organic click


def test_backfill_equals_stream_labelled_impressions(kafka: KafkaConfig,
                                                     runs: dict[str, Any]) -> None:
    live = case.labelled(kafka, runs["live"][0])
    replay = case.labelled(kafka, runs["replay"][0])
    assert len(live) == 4 * len(runs["serving"])
    assert _without_topic(live) == _without_topic(replay)


def test_backfill_equals_stream_online_features(kafka: KafkaConfig, runs: dict[str, Any]) -> None:
    live = case.online_updates(kafka, runs["live"][0])
    replay = case.online_updates(kafka, runs["replay"][0])
    assert live and live == replay
    # ... and what the Feast writers made of them: the same online store, value for value.
    users = sorted({s["user_id"] for s in runs["serving"]})
    items = sorted({i["item_id"] for s in runs["serving"] for i in s["slate"]})
    stores = [feature_store(FeastConfig(), home) for _, home in (runs["live"], runs["replay"])]
    live_online, replay_online = (online_snapshot(s, users, items) for s in stores)
    assert runs["live_writer"]["complete"] and runs["live_writer"]["rows_total"], runs
    assert live_online == replay_online, runs["live_writer"]
    assert live_online[names.USER_ACTIVITY][users[0]]["user_impressions_24h"] is not None


@pytest.mark.parametrize("view", [names.USER_ACTIVITY, names.ITEM_PERFORMANCE])
def test_backfill_equals_stream_offline_feature_log(runs: dict[str, Any], view: str) -> None:
    live = case.offline_log(runs["live"][1], view)
    replay = case.offline_log(runs["replay"][1], view)
    assert len(live) > len({*live[names.KEY_BY_VIEW[view]]})  # history, not one row each
    pd.testing.assert_frame_equal(live, replay)


@pytest.mark.parametrize("view", [names.USER_ACTIVITY, names.ITEM_PERFORMANCE])
def test_backfill_and_stream_cut_the_feature_log_into_the_same_files(runs: dict[str, Any],
                                                                      view: str) -> None:
    """File names hold the content fingerprint: the same names are the same cuts and rows,
    although the live job's watermark passed the slices minute by minute and the replay's
    jumped over hours at a time."""
    live, replay = ({p.name for p in (home.features_offline / view).glob("*.parquet")}
                    for _, home in (runs["live"], runs["replay"]))
    assert live == replay
    per_hour: dict[str, int] = {}
    for name in live:
        hour = name.split("-c")[0]
        per_hour[hour] = per_hour.get(hour, 0) + 1
    assert max(per_hour.values()) > 1, per_hour  # hours did leave in more than one group


def _impressions(kafka: KafkaConfig, job: JobConfig) -> pd.DataFrame:
    rows = case.labelled(kafka, job).values()
    frame = pd.DataFrame(rows).sort_values(["served_at", "request_id", "item_id"])
    frame["served_at"] = pd.to_datetime(frame["served_at"], unit="ms", utc=True)
    return frame.reset_index(drop=True)


def _truth(runs: dict[str, Any], impressions: pd.DataFrame) -> pd.DataFrame:
    """Brute force: each feature from the raw accepted events strictly before the impression."""
    by_key: dict[str, list[Any]] = {}
    for env in case.accepted(runs["serving"], runs["acts"]):
        for event in feature_events(env):
            by_key.setdefault(event.key, []).append(event)
    rows = []
    for imp in impressions.itertuples():
        at = int(imp.served_at.value // 1_000_000) - 1
        row: dict[str, float] = {}
        for kind, entity in (("u", imp.user_id), ("i", imp.item_id)):
            before = [e for e in by_key.get(f"{kind}:{entity}", []) if e.ts <= at]
            values = values_at(kind, before, at) if before else {}
            row.update({k: float(v) for k, v in values.items() if k != "user_last_clicked"})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(model_features.COLUMNS))


def _historical(runs: dict[str, Any], impressions: pd.DataFrame) -> pd.DataFrame:
    store = feature_store(FeastConfig(), runs["replay"][1])
    return model_features.historical(store, impressions)


def test_point_in_time_features_are_the_truth_before_each_impression(
        kafka: KafkaConfig, runs: dict[str, Any]) -> None:
    impressions = _impressions(kafka, runs["replay"][0])
    got = _historical(runs, impressions)
    want = _truth(runs, impressions)
    missing = want.isna()
    assert missing.any(axis=None), "some impressions have no history: checked as missing"
    assert (got.isna() == missing).all(axis=None), "missing in one, present in the other"
    diff = (got.fillna(0) - want.fillna(0)).abs()
    bad = diff.gt(1e-12).any(axis=1)
    assert not bad.any(), (
        f"{int(bad.sum())} of {len(got)} rows differ, e.g.\n"
        f"{pd.concat([got[bad].head(3), want[bad].head(3)])}")


def _cv_auc(features: pd.DataFrame, labels: np.ndarray) -> float:
    scores = np.zeros(len(labels))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(features, labels):
        model = lgb.LGBMClassifier(n_estimators=60, num_leaves=7, min_child_samples=20,
                                   verbose=-1, random_state=0)
        model.fit(features.iloc[train], labels[train])
        scores[test] = model.predict_proba(features.iloc[test])[:, 1]
    return float(roc_auc_score(labels, scores))


def test_no_feature_moves_with_the_label(kafka: KafkaConfig, runs: dict[str, Any]) -> None:
    """Outcomes here are coin flips: point-in-time features must not predict them, while the
    same features read after the label (a planted leak) do — so the check can fail."""
    impressions = _impressions(kafka, runs["replay"][0])
    labels = impressions["clicked"].to_numpy().astype(int)
    honest = _cv_auc(_historical(runs, impressions), labels)
    leaked_at: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f.assign(  # noqa: E731
        served_at=f["served_at"] + pd.Timedelta(minutes=10))
    leaky = _cv_auc(_historical(runs, leaked_at(impressions)), labels)
    print(f"coin-flip clicks: point-in-time AUC {honest:.3f}, planted leak AUC {leaky:.3f}")
    assert 0.42 < honest < 0.58, f"point-in-time AUC {honest:.3f} on coin-flip labels"
    assert leaky > 0.62, f"the planted leak was not detectable (AUC {leaky:.3f})"
