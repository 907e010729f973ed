"""JobConfig refuses settings the job cannot honour, with a message naming the field."""

from __future__ import annotations

import pytest

from jobs.config import JobConfig
from jobs.errors import JobConfigError


@pytest.mark.parametrize("ms", [3_600_000, 7_200_000, 86_400_000])
def test_whole_hour_slice_partitions_are_accepted(ms: int) -> None:
    assert JobConfig(slice_partition_ms=ms).slice_partition_ms == ms


@pytest.mark.parametrize("ms", [1_800_000, 900_000, 5_400_000])
def test_partitions_that_would_share_an_hourly_name_are_refused(ms: int) -> None:
    with pytest.raises(JobConfigError, match="slice_partition_ms must be a whole number of hours"):
        JobConfig(slice_partition_ms=ms)


@pytest.mark.parametrize("field", ["maturity_window_ms", "parallelism", "online_flush_ms",
                                   "restart_window_ms"])
def test_non_positive_sizes_are_refused(field: str) -> None:
    with pytest.raises(JobConfigError, match=f"job.{field} must be positive"):
        JobConfig(**{field: 0})


def test_the_two_inputs_must_be_different_topics() -> None:
    with pytest.raises(JobConfigError, match="must differ"):
        JobConfig(serving_topic="x", interactions_topic="x")


def test_the_feature_log_topic_is_a_third_input_unless_empty() -> None:
    from schemas import topics

    assert JobConfig().input_topics == (topics.SERVING, topics.INTERACTIONS, topics.FEATURE_LOGS)
    assert JobConfig(feature_log_topic="").input_topics == (topics.SERVING, topics.INTERACTIONS)
    with pytest.raises(JobConfigError, match="must differ"):
        JobConfig(feature_log_topic=topics.SERVING)


def test_an_unknown_state_backend_is_refused() -> None:
    with pytest.raises(JobConfigError, match=r"job\.state_backend must be hashmap or rocksdb"):
        JobConfig(state_backend="memory")


@pytest.mark.parametrize(("backend", "incremental"), [("hashmap", "false"), ("rocksdb", "true")])
def test_the_state_backend_reaches_flink_with_incremental_checkpoints_for_rocksdb(
        backend: str, incremental: str, tmp_path: object) -> None:
    from pathlib import Path

    from jobs.feedback.environment import flink_configuration
    from loopline.paths import PathsConfig

    conf = flink_configuration(JobConfig(state_backend=backend),
                               PathsConfig(home=Path(str(tmp_path))).resolved(), embedded=False)
    assert conf.get_string("state.backend.type", "") == backend
    assert conf.get_string("execution.checkpointing.incremental", "") == incremental


def test_feature_log_slices_must_divide_the_partition() -> None:
    assert JobConfig(feature_log_slice_ms=300_000).feature_log_slice_ms == 300_000
    with pytest.raises(JobConfigError, match="feature_log_slice_ms must divide"):
        JobConfig(feature_log_slice_ms=7 * 60_000)
