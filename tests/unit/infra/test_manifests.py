"""infra/k8s: the scale-out manifests are not applied here, so check what can be checked
without a cluster: they parse, and what they name exists in this repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from feature_repo.store import FeastConfig
from infra.metrics import REPORTER_FACTORY
from jobs.config import JobConfig
from schemas import topics

K8S = Path(__file__).resolve().parents[3] / "infra" / "k8s"


def documents() -> dict[str, list[dict[str, Any]]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
            for p in sorted(K8S.glob("*.yaml"))}


def test_every_manifest_parses_into_kubernetes_objects() -> None:
    docs = documents()
    assert set(docs) == {"flink-deployment.yaml", "kafka.yaml", "monitoring.yaml",
                         "redis.yaml", "storage.yaml"}
    for name, objects in docs.items():
        for obj in objects:
            assert {"apiVersion", "kind", "metadata"} <= set(obj), (name, obj)
            assert obj["metadata"]["namespace"] == "loopline", name


def test_topics_are_the_ones_the_code_uses() -> None:
    declared = {o["metadata"]["name"] for o in documents()["kafka.yaml"]
                if o["kind"] == "KafkaTopic"}
    assert declared == {topics.SERVING, topics.INTERACTIONS, topics.LABELLED,
                        topics.UNMATCHED, topics.LATE, topics.DEAD_LETTERS, topics.LINEAGE,
                        topics.SCHEMAS}


def test_the_flink_deployment_runs_our_module_with_our_settings() -> None:
    [deployment] = documents()["flink-deployment.yaml"]
    spec = deployment["spec"]
    module = spec["job"]["args"][spec["job"]["args"].index("-pym") + 1]
    assert (K8S.parents[1] / (module.replace(".", "/") + ".py")).is_file()
    conf = spec["flinkConfiguration"]
    assert conf["metrics.reporter.prom.factory.class"] == REPORTER_FACTORY
    env = {e["name"]: e["value"]
           for e in spec["podTemplate"]["spec"]["containers"][0]["env"]}
    # Each variable must name a real field (a misspelt one would now be refused anyway).
    fields = {"JOB": JobConfig, "FEAST": FeastConfig}
    for name in env:
        section, field = name.removeprefix("LOOPLINE_").split("_", 1)
        if section in fields:
            assert field.lower() in fields[section].__dataclass_fields__, name
