"""`loopline submit` path: the feedback job submitted to the standalone Flink session cluster."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from feature_repo.store import FeastConfig, feature_store
from infra.flink_cluster import FlinkCluster
from infra.flink_jobs import flink_run
from jobs.feedback import run as job_run
from jobs.reconcile import reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from tests.integration.feedback_case import (
    EXPECTED_COUNTS,
    case_job,
    check_online_features,
    dead_letter_reasons,
    produce_case,
)

pytestmark = pytest.mark.integration


def test_submitted_job_reconciles_and_fills_feast(
    kafka: KafkaConfig, flink_cluster: FlinkCluster, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = case_job()
    produce_case(kafka, job)
    # The job script reads its settings like any deployment would: from LOOPLINE_* variables.
    for field in fields(job):
        value = getattr(job, field.name)
        if value is not None and isinstance(value, (str, int, float, bool)):
            monkeypatch.setenv(f"LOOPLINE_JOB_{field.name.upper()}", str(value))
    monkeypatch.setenv("LOOPLINE_PATHS_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPLINE_PATHS_JARS", str(PathsConfig().jars.resolve()))
    submitted = flink_run(Path(job_run.__file__), ["--bounded"], detached=False,
                          cluster=flink_cluster)
    assert submitted.job_id is not None
    counts = reconcile(kafka, job).as_dict()
    assert counts == EXPECTED_COUNTS, dead_letter_reasons(kafka, job)
    paths = PathsConfig(home=tmp_path).resolved()
    check_online_features(feature_store(FeastConfig(), paths))
    assert list((paths.slices / "labelled_impressions").glob("*/_manifest.json"))
