"""Kafka security settings travel from config ([kafka] / LOOPLINE_KAFKA_*) to every client:
the producers (simulator/tests: EventProducer; serving: KafkaSink), the job's Kafka source and
sink (Flink SQL connector options) and the job's own kafka-python clients (lineage, schema
registry), and the tools (reconcile). Then for real: a SASL/PLAIN broker accepts every client
with the right credentials, refuses wrong or missing ones with an error that says so, and the
feedback job, submitted to the cluster with the credentials in its environment, reconciles."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bench.reliability import harness as h
from feature_repo.store import FeastConfig
from infra.config import ServicesConfig
from infra.flink_cluster import FlinkCluster
from infra.kafka_broker import KafkaBroker, SaslPlain
from infra.stack import Stack
from jobs.feedback import jvm_settings, pipeline
from jobs.feedback.context import RunContext
from jobs.reconcile import read_topic, reconcile
from loopline.kafka import KafkaConfig, load_kafka
from loopline.net import free_port
from loopline.paths import PathsConfig
from models import lineage as model_lineage
from models.serving.events import KafkaSink
from schemas.producer import EventProducer, ProduceError
from tests.integration.feedback_case import (
    EXPECTED_COUNTS,
    MIN,
    SERVING,
    T,
    case_job,
    produce_case,
)

pytestmark = pytest.mark.integration

# Quotes and a backslash: credentials must survive SQL and JAAS quoting unchanged.
PASSWORD = "pa'ss\"w\\rd-0123456789"
SECURE = {
    "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": "kafka-a.internal:9093,kafka-b.internal:9093",
    "LOOPLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "LOOPLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "LOOPLINE_KAFKA_SASL_USERNAME": "loopline-job",
    "LOOPLINE_KAFKA_SASL_PASSWORD": PASSWORD,
    "LOOPLINE_KAFKA_SSL_CAFILE": "/etc/loopline/kafka-ca.pem",
}
EXPECTED_KWARGS = {
    "bootstrap_servers": ["kafka-a.internal:9093", "kafka-b.internal:9093"],
    "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "loopline-job", "sasl_plain_password": PASSWORD,
    "ssl_cafile": "/etc/loopline/kafka-ca.pem",
}


class Recorder:
    """Stands in for a kafka-python client class: records how it was built, does nothing."""

    built: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, *topics: Any, **kwargs: Any) -> None:
        Recorder.built.append((type(self).__name__, kwargs))

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class _Acked:
    def get(self, timeout: float | None = None) -> None:
        return None


class FakeProducer(Recorder):
    def send(self, *args: Any, **kwargs: Any) -> _Acked:
        return _Acked()


class FakeConsumer(Recorder):
    pass


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    import kafka

    import jobs.reconcile
    import schemas.producer
    import schemas.registry

    Recorder.built = []
    for module, name, fake in ((schemas.producer, "KafkaProducer", FakeProducer),
                               (schemas.registry, "KafkaProducer", FakeProducer),
                               (schemas.registry, "KafkaConsumer", FakeConsumer),
                               (jobs.reconcile, "KafkaConsumer", FakeConsumer),
                               (kafka, "KafkaProducer", FakeProducer)):
        monkeypatch.setattr(module, name, fake)
    for key, value in SECURE.items():
        monkeypatch.setenv(key, value)
    yield Recorder.built


def _options(ddl: str) -> dict[str, str]:
    """The WITH ('key' = 'value', ...) options of a DDL statement, SQL quoting undone."""
    body = ddl[ddl.index("WITH (") + len("WITH ("):]
    return {k.replace("''", "'"): v.replace("''", "'")
            for k, v in re.findall(r"'((?:[^']|'')*)'\s*=\s*'((?:[^']|'')*)'", body)}


def test_security_settings_reach_every_client(
    recorded: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    kafka = load_kafka()  # from LOOPLINE_KAFKA_*, as `flink run` and `loopline serve` load it

    # Producers: the simulator's and the tests' EventProducer, serving's KafkaSink, lineage.
    EventProducer(kafka).close()
    sink = KafkaSink(kafka, retry_s=0.1)
    h.wait_until(lambda: len(recorded) >= 2, 10, "the serving sink's producer")
    sink.close()
    from jobs.transforms import lineage as job_lineage

    event = job_lineage.run_event("START", "run-1", "job", "code", 0)
    model_lineage.send(event, kafka)
    # The job's own kafka-python clients (lineage START/COMPLETE, the schema registry) and the
    # reconcile tool.
    from jobs.feedback import run as job_run
    from schemas.registry import SchemaRegistry

    job_run._send_lineage(kafka, RunContext(case_job(), FeastConfig(), PathsConfig(home=tmp_path),
                                            "run-1", "code", kafka), event)
    SchemaRegistry(kafka).read_all()
    read_topic(kafka, "any")
    assert len(recorded) >= 6
    for kind, kwargs in recorded:
        assert {k: kwargs.get(k) for k in EXPECTED_KWARGS} == EXPECTED_KWARGS, kind
        if kind == "FakeProducer":
            assert kwargs["acks"] == "all" and kwargs["enable_idempotence"] is True

    # The job's Kafka source and sink: Flink connector properties, the JAAS line built from
    # the same credentials, the CA file as a PEM trust store.
    run = RunContext(case_job(), FeastConfig(), PathsConfig(home=tmp_path), "r", "c", kafka)
    jaas = ('org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.'
            'ScramLoginModule required '
            'username="loopline-job" password="pa\'ss\\"w\\\\rd-0123456789";')
    sink = {f"properties.{k}": v for k, v in jvm_settings.sink_properties(kafka).items()}
    for options in (_options(pipeline.source_ddl(run, kafka)), sink):
        assert options["properties.bootstrap.servers"] == SECURE[
            "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS"]
        assert options["properties.security.protocol"] == "SASL_SSL"
        assert options["properties.sasl.mechanism"] == "SCRAM-SHA-512"
        assert options["properties.sasl.jaas.config"] == jaas
        assert options["properties.ssl.truststore.type"] == "PEM"
        assert options["properties.ssl.truststore.location"] == SECURE["LOOPLINE_KAFKA_SSL_CAFILE"]


def test_the_job_ddl_with_quoted_credentials_is_valid_flink_sql(tmp_path: Path) -> None:
    """Flink's own parser reads back exactly the credentials that were configured."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    kafka = KafkaConfig(bootstrap_servers="kafka-a.internal:9093", security_protocol="SASL_SSL",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="loopline-job",
                        sasl_password=PASSWORD, ssl_cafile=SECURE["LOOPLINE_KAFKA_SSL_CAFILE"])
    run = RunContext(case_job(), FeastConfig(), PathsConfig(home=tmp_path), "r", "c", kafka)
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.execute_sql(pipeline.source_ddl(run, kafka))
    rows = t_env.execute_sql(f"SHOW CREATE TABLE {pipeline.SOURCE_TABLE}").collect()
    shown = _options(str(next(iter(rows))[0]))
    assert shown["properties.sasl.jaas.config"].endswith(
        'password="pa\'ss\\"w\\\\rd-0123456789";')
    assert shown["properties.security.protocol"] == "SASL_SSL"


# -- a real SASL/PLAIN broker ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sasl_broker(services_config: ServicesConfig, stack: Stack) -> Iterator[KafkaBroker]:
    used = {getattr(services_config, f) for f in ("kafka_port", "kafka_controller_port",
                                                   "redis_port", "flink_rest_port",
                                                   "flink_rpc_port")}
    port = free_port(29092, avoid=frozenset(used))
    controller = free_port(29093, avoid=frozenset(used | {port}))
    cfg = replace(services_config, kafka_port=port, kafka_controller_port=controller)
    broker = KafkaBroker(cfg, stack.paths, folder="kafka-sasl",
                         sasl=SaslPlain({"loopline": "loopline-secret-1", "reader": "r-secret"}))
    broker.up()
    try:
        yield broker
    finally:
        broker.down()
        broker.wipe()


def test_sasl_broker_accepts_configured_clients_and_refuses_others(
    sasl_broker: KafkaBroker, flink_cluster: FlinkCluster, tmp_path: Path
) -> None:
    kafka = sasl_broker.client_config()
    job = case_job()
    produce_case(kafka, job)  # EventProducer + admin client, over SASL
    assert len(read_topic(kafka, job.serving_topic)) == len(SERVING)

    sink = KafkaSink(kafka, topic=job.serving_topic, retry_s=0.5)  # the serving path
    for i, event in enumerate(SERVING[:3]):
        sink({**event, "request_id": f"sink-{i}", "event_time": T + 40 * MIN + i})
    sink.close(timeout_s=60)
    assert sink.stats()["sent"] == 3 and sink.stats()["failed"] == 0, sink.stats()

    # Wrong password, or no SASL at all: refused, and the error says so (never a silent drop).
    refusals = {}
    for what, bad in (("wrong password", replace(kafka, sasl_password="wrong-password")),
                      ("no SASL", KafkaConfig(bootstrap_servers=kafka.bootstrap_servers))):
        started = time.monotonic()
        with (pytest.raises(ProduceError) as refused,
              EventProducer(bad, request_timeout_ms=3000, delivery_timeout_ms=4000,
                            max_block_ms=4000, bootstrap_timeout_ms=5000) as producer):
            producer.send_raw(job.serving_topic, b"x", timestamp_ms=SERVING[0]["event_time"])
        refusals[what] = (round(time.monotonic() - started, 1), str(refused.value)[:160])
    print("sasl refusals:", refusals)

    # The feedback job on the cluster, with the SASL settings only in its environment.
    env = {f"LOOPLINE_KAFKA_{f.name.upper()}": str(getattr(kafka, f.name))
           for f in fields(kafka) if getattr(kafka, f.name) is not None}
    with h.environ(env):
        h.submit(flink_cluster, job, tmp_path / "home", attached=True)
    counts = reconcile(kafka, job).as_dict()
    print("sasl job figures:", counts)
    assert counts == {**EXPECTED_COUNTS, "input": EXPECTED_COUNTS["input"] + 3,
                      "joined_serving": EXPECTED_COUNTS["joined_serving"] + 3,
                      "joined": EXPECTED_COUNTS["joined"] + 3}

