"""Schema evolution in a running pipeline: producers switch to v2 mid-stream, nothing fails.

The job starts (unbounded) knowing only the v1 schemas shipped in schemas/avro. A producer then
registers InteractionEvent v2 (one added optional field) in the schemas topic and writes with
it; the job meets the unknown fingerprint, reloads the topic and decodes: 0 dead letters. An
incompatible v3 is refused by the producer before a single record is written.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from feature_repo.store import FeastConfig
from jobs.feedback.run import run
from jobs.reconcile import reconcile
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas.codec import INTERACTION_EVENT, Codec
from schemas.errors import IncompatibleSchemaError
from schemas.producer import EventProducer
from schemas.registry import SchemaRegistry
from schemas.store import AVRO_DIR, SchemaStore
from tests.integration.feedback_case import MIN, T, _act, _serving, case_job

pytestmark = pytest.mark.integration


def _v2() -> dict:
    raw = json.loads((AVRO_DIR / "interaction_event.v1.avsc").read_text())
    raw["fields"].append({"name": "device", "type": ["null", "string"], "default": None})
    return raw


def _wait_for(predicate, describe, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(2)
    raise AssertionError(f"not reached in {timeout_s:.0f}s: {describe()}")


def test_v2_producer_mid_stream_decodes_and_v3_incompatible_is_refused(
    kafka: KafkaConfig, tmp_path: Path
) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    job = replace(case_job(), bounded=False, schemas_topic=f"t.schemas.{uuid.uuid4().hex[:8]}")
    admin = KafkaAdminClient(**kafka.client_kwargs())
    admin.create_topics(
        [
            NewTopic(t, 1, 1)
            for t in (
                job.serving_topic,
                job.interactions_topic,
                job.schemas_topic,
                *job.output_topics,
            )
        ]
    )
    admin.close()
    paths = PathsConfig(home=tmp_path, jars=PathsConfig().jars).resolved()
    started = run(job, kafka, FeastConfig(), paths, wait=False)
    registry = SchemaRegistry(kafka, job.schemas_topic, min_refresh_interval_s=0)
    try:
        with EventProducer(kafka, registry=registry) as v1:
            for i in range(5):
                v1.serving(_serving(f"r{i}", T + i * MIN, "u1", "ab"), topic=job.serving_topic)
                v1.interaction(_act(f"a{i}", T + i * MIN + 1000, "u1", "a", rid=f"r{i}"),
                               topic=job.interactions_topic)
        v2_store = SchemaStore.from_directory()
        v2_store.register(_v2())
        # The switch: from here on interactions are written with v2 (serving stays on v1).
        with EventProducer(kafka, codec=Codec(v2_store), registry=registry) as v2:
            for i in range(5, 10):
                v2.serving(_serving(f"r{i}", T + i * MIN, "u1", "ab"), topic=job.serving_topic)
                event = {**_act(f"b{i}", T + i * MIN + 1000, "u1", "b", rid=f"r{i}"),
                         "device": "ios"}
                v2.interaction(event, topic=job.interactions_topic)
            # Later events move the watermark past every window, so the slates close.
            v2.serving(_serving("r-tick", T + 90 * MIN, "u9", "z"), topic=job.serving_topic)
            v2.interaction({**_act("tick", T + 90 * MIN, "u9", "z"), "device": None},
                           topic=job.interactions_topic)

        _wait_for(
            lambda: reconcile(kafka, job).joined_interactions == 10,
            lambda: reconcile(kafka, job).as_dict(),
        )
        counts = reconcile(kafka, job)
        assert counts.dead_lettered == 0 and counts.late == 0
        assert counts.joined_serving == 10
        incompatible = _v2()
        incompatible["fields"][-1] = {"name": "device", "type": "int"}  # no default: breaks
        v3_store = SchemaStore()  # a producer that only knows its own, incompatible schema
        v3_store.register(incompatible, version=3)
        with (
            pytest.raises(IncompatibleSchemaError),
            EventProducer(kafka, codec=Codec(v3_store), registry=registry) as v3,
        ):
            v3.interaction({**_act("c1", T, "u1", "a"), "device": 1}, topic=job.interactions_topic)
        assert v3_store.latest(INTERACTION_EVENT).name == INTERACTION_EVENT
    finally:
        started.cancel()
