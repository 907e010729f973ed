"""OpenLineage-shaped run events (LineageRecord contract): job, run, inputs, outputs, facets."""

from __future__ import annotations

import json
from typing import Any

JOB_NAMESPACE = "loopline"
PRODUCER = "urn:loopline:jobs"  # identifies the emitter, as OpenLineage asks


def dataset(namespace: str, name: str, **facets: Any) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "facets_json": json.dumps(facets, sort_keys=True, default=str),
    }


def run_event(
    event_type: str,
    run_id: str,
    job_name: str,
    code_version: str,
    event_ms: int,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    **run_facets: Any,
) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "event_time": event_ms,
        "run_id": run_id,
        "job_namespace": JOB_NAMESPACE,
        "job_name": job_name,
        "code_version": code_version,
        "producer": PRODUCER,
        "inputs": inputs or [],
        "outputs": outputs or [],
        "run_facets_json": json.dumps(run_facets, sort_keys=True, default=str),
    }


def as_json(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON-lines mirror: facets parsed back into objects for people and tools."""
    out = dict(record)
    out["run_facets"] = json.loads(out.pop("run_facets_json"))
    for side in ("inputs", "outputs"):
        out[side] = [
            {"namespace": d["namespace"], "name": d["name"], "facets": json.loads(d["facets_json"])}
            for d in out[side]
        ]
    return out
