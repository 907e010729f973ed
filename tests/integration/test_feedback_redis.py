"""The feedback job with Redis as the Feast online store (the scaled setup)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from feature_repo.store import FeastConfig, feature_store
from infra.redis_server import RedisEndpoint
from jobs.feedback.run import run
from jobs.reconcile import reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from tests.integration.feedback_case import (
    EXPECTED_COUNTS,
    case_job,
    check_online_features,
    produce_case,
)

pytestmark = pytest.mark.integration


def test_job_writes_newest_values_to_redis(kafka: KafkaConfig, redis: RedisEndpoint,
                                           tmp_path: Path) -> None:
    job = case_job()
    produce_case(kafka, job)
    feast = FeastConfig(online_store="redis", redis_connection_string=redis.connection_string,
                        project=f"t{uuid.uuid4().hex[:8]}")
    paths = PathsConfig(home=tmp_path, jars=PathsConfig().jars).resolved()
    run(job, kafka, feast, paths)
    assert reconcile(kafka, job).as_dict() == EXPECTED_COUNTS
    check_online_features(feature_store(feast, paths))
