"""Lineage of a model version: lineage.json (read by attribution) and a LineageRecord run event.

lineage.json names the exact slice a version was trained on (its shape is a contract):

    {"model_version", "parent_version", "trained_at", "code_version", "feature_service",
     "features": {"source": "point-in-time" | "logged", ...},
     "slice": {"start", "end", "row_count", "fingerprint", "partitions",
               "sources": {topic: {partition: [min_offset, max_offset]}}, "job_run_ids"}}

The same facts travel as an OpenLineage-shaped LineageRecord (built with the job's helpers,
so both producers look alike) to the lineage topic, mirrored as a JSON line under
<home>/lineage/<run_id>.jsonl like the job's records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.transforms import lineage as openlineage
from loopline.errors import LooplineError
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from loopline.privacy import pseudonymiser
from loopline.version import code_version as shared_code_version
from models.errors import LineageEmitError
from models.slices import SliceRef
from schemas import topics
from schemas.codec import LINEAGE_RECORD, default_codec

JOB_NAME = "loopline-train"
POINT_IN_TIME, LOGGED = "point-in-time", "logged"  # where a version's feature values came from
_CODE_DIRS = ("models", "feature_repo", "schemas", "loopline")


def code_version() -> str:
    """The git commit of the training code (+ '-dirty' if it has local edits)."""
    return shared_code_version(_CODE_DIRS)


def document(version: str, parent: str | None, trained_at: str, code: str,
             feature_service: str, slice_ref: SliceRef,
             features_used: dict[str, Any] | None = None) -> dict[str, Any]:
    """The lineage.json of a version. `features_used`: where the feature values came from
    (Feast's offline point-in-time history, or serving's logged vectors with their offsets)."""
    return {
        "model_version": version,
        "parent_version": parent,
        "trained_at": trained_at,
        "code_version": code,
        "feature_service": feature_service,
        "features": features_used or {"source": POINT_IN_TIME},
        "slice": slice_ref.lineage(),
    }


def run_record(doc: dict[str, Any], run_id: str, event_ms: int, slice_ref: SliceRef,
               paths: PathsConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """A COMPLETE LineageRecord: inputs = source topics + slice, output = the model version."""
    inputs = [openlineage.dataset("kafka", topic, offsets=offsets)
              for topic, offsets in slice_ref.sources.items()]
    inputs.append(openlineage.dataset(
        f"file://{paths.slices}",
        f"labelled_impressions/{doc['slice']['start']}..{doc['slice']['end']}",
        **doc["slice"], event_time_min=slice_ref.event_time_min,
        event_time_max=slice_ref.event_time_max,
    ))
    output = openlineage.dataset(f"file://{paths.models}", doc["model_version"], lineage=doc,
                                 metrics=metrics)
    return openlineage.run_event(
        "COMPLETE", run_id, JOB_NAME, doc["code_version"], event_ms, inputs=inputs,
        outputs=[output], parent_version=doc["parent_version"],
        feature_service=doc["feature_service"], upstream_job_runs=doc["slice"]["job_run_ids"],
    )


def mirror(record: dict[str, Any], paths: PathsConfig) -> Path:
    """Append the record to <home>/lineage/<run_id>.jsonl (the topic's local mirror)."""
    record = pseudonymiser(paths=paths).scrub(record)  # no raw user ids in lineage
    paths.lineage.mkdir(parents=True, exist_ok=True)
    path = paths.lineage / f"{record['run_id']}.jsonl"
    with open(path, "a") as handle:
        handle.write(json.dumps(openlineage.as_json(record), sort_keys=True) + "\n")
    return path


def send(record: dict[str, Any], kafka: KafkaConfig, topic: str = topics.LINEAGE) -> None:
    """Deliver the record to the lineage topic (key run_id, timestamp = event time), durably."""
    from schemas.producer import EventProducer  # imports kafka-python: only with a broker

    value = default_codec().encode(LINEAGE_RECORD, pseudonymiser().scrub(record))
    try:
        with EventProducer(kafka) as producer:
            producer.send_raw(topic, value, key=record["run_id"].encode(),
                              timestamp_ms=record["event_time"])
    except LooplineError as exc:
        raise LineageEmitError(
            f"lineage record of {record['job_name']} run {record['run_id']} not delivered to "
            f"{topic} at {kafka.bootstrap_servers}: {exc}"
        ) from exc


def _features_text(used: dict[str, Any] | None) -> str:
    if not used or used.get("source") == POINT_IN_TIME:
        return "Feast offline history, point in time (served_at - 1 ms)"
    offsets = "; ".join(f"[{p}] {lo}..{hi}" for p, (lo, hi) in
                        (used.get("feature_log_offsets") or {}).items())
    return (f"serving's logged vectors ({used.get('rows', 0)} rows; "
            f"{used.get('rows_without_log', 0)} impressions without a log left out; "
            f"feature-log offsets {offsets or '-'}, joined by the feedback job)")


def describe(doc: dict[str, Any]) -> str:
    """Human-readable trace: version → slice → job runs → source offsets."""
    s = doc["slice"]
    lines = [
        f"model {doc['model_version']}  (parent: {doc['parent_version'] or '-'})",
        f"  trained_at       {doc['trained_at']}",
        f"  code_version     {doc['code_version']}",
        f"  feature_service  {doc['feature_service']}",
        f"  features from    {_features_text(doc.get('features'))}",
        f"  slice            {s['start']} .. {s['end']}",
        f"    rows           {s['row_count']}",
        f"    fingerprint    {s['fingerprint']}",
        f"    partitions     {', '.join(s['partitions'])}",
        f"    job runs       {', '.join(s['job_run_ids']) or '-'}",
        "    source offsets",
    ]
    for topic, parts in s["sources"].items():
        for partition, (lo, hi) in parts.items():
            lines.append(f"      {topic}[{partition}]  {lo} .. {hi}")
    return "\n".join(lines)
