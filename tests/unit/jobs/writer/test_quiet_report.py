"""A live writer that reads nothing for a while logs its consumer's state (jobs/writer/loop.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kafka import TopicPartition

from jobs.writer.config import WriterConfig
from jobs.writer.loop import FeatureWriter, _Joined
from loopline.kafka import KafkaConfig


class _Consumer:
    """What _report_quiet asks of a KafkaConsumer: joined, holding nothing, 7 updates waiting."""

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 7 for tp in partitions}

    def assignment(self) -> set[TopicPartition]:
        return set()

    def position(self, tp: TopicPartition) -> int:
        raise AssertionError("never asked for a partition it does not hold")


def test_a_quiet_writer_logs_what_it_holds_against_the_topic(
        caplog: pytest.LogCaptureFixture) -> None:
    writer: Any = FeatureWriter.__new__(FeatureWriter)
    writer.config = WriterConfig(topic="updates")
    writer.kafka = KafkaConfig()
    joined = _Joined()
    joined.joined = True
    with caplog.at_level(logging.INFO, logger="jobs.writer.loop"):
        writer._report_quiet(_Consumer(), joined)
    assert "joined=True, assigned [] at positions {}; the topic's end offsets {0: 7}" in caplog.text
