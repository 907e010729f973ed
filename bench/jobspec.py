"""Specs of measured runs: unique topics, groups, Feast projects and the JobConfig fields."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchUsageError
from bench.services import Services
from jobs.config import JobConfig


@dataclass(frozen=True)
class JobVariant:
    """How the job runs: extra JobConfig fields and environment variables."""

    overrides: tuple[tuple[str, Any], ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        fields = set(JobConfig.__dataclass_fields__)
        bad = [k for k, _ in self.overrides if k not in fields]
        if bad:
            raise BenchUsageError(f"unknown job setting {bad}; JobConfig fields: {sorted(fields)}")

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.overrides]
        parts += [f"env:{k}={v}" for k, v in self.env]
        return ", ".join(parts) or "defaults"


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def input_topics(tag: str) -> tuple[str, str]:
    return f"bench.{tag}.serving", f"bench.{tag}.interactions"


def job_fields(tag: str, serving: str, interactions: str, variant: JobVariant,
               bounded: bool) -> dict[str, Any]:
    """JobConfig fields of one run: its own output topics and group, reading from the start."""
    fields: dict[str, Any] = {
        "serving_topic": serving,
        "interactions_topic": interactions,
        # The run's own (empty) FeatureLog topic: equal work with production's three inputs,
        # and never the shared topic's records counted as this run's inputs.
        "feature_log_topic": f"bench.{tag}.features.logged",
        "labelled_topic": f"bench.{tag}.labelled",
        "unmatched_topic": f"bench.{tag}.unmatched",
        "late_topic": f"bench.{tag}.late",
        "dead_letter_topic": f"bench.{tag}.dlq",
        "lineage_topic": f"bench.{tag}.lineage",
        "feature_updates_topic": f"bench.{tag}.features",
        "group_id": f"bench-{tag}",
        "bounded": bounded,
        "startup": "earliest-offset",
        "run_id": f"bench-{tag}",
        "job_name": f"loopline-bench-{tag}",
    }
    fields.update(dict(variant.overrides))
    JobConfig(**fields)  # validate now, not in the child
    return fields


def output_topics(fields: dict[str, Any]) -> list[str]:
    return [fields[k] for k in ("labelled_topic", "unmatched_topic", "late_topic",
                                "dead_letter_topic", "lineage_topic", "feature_updates_topic")]


def feast_fields(store: str, services: Services, project: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"online_store": store, "project": project}
    if store == "redis":
        if services.redis is None:
            raise BenchUsageError("the Redis store needs a Redis server; none is running")
        fields["redis_connection_string"] = services.redis.connection_string
    return fields
