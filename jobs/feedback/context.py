"""What the job's Python pieces share: the run's identity and configs, and lineage records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feature_repo.config import FeastConfig
from jobs.config import JobConfig
from jobs.transforms import lineage
from jobs.transforms.records import SinkRecord
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from loopline.privacy import Pseudonymiser
from schemas.codec import LINEAGE_RECORD, default_codec


@dataclass(frozen=True)
class RunContext:
    """Everything the job's Python side needs besides its input: configs and the run's identity."""

    job: JobConfig
    feast: FeastConfig
    paths: PathsConfig
    run_id: str
    code_version: str
    kafka: KafkaConfig | None = None
    # User ids in lineage records are replaced by keyed hashes (loopline/privacy.py).
    pseudonymiser: Pseudonymiser | None = None

    def job_facet(self) -> dict[str, str]:
        return {"name": self.job.job_name, "run_id": self.run_id, "code_version": self.code_version}


def lineage_to_sink(
    record: dict[str, Any], topic: str, mirror_dir: Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> SinkRecord:
    """A lineage record for the lineage topic, mirrored as a JSON line under <home>/lineage."""
    if pseudonymiser is not None:
        record = pseudonymiser.scrub(record)
    if mirror_dir is not None:
        mirror_dir.mkdir(parents=True, exist_ok=True)
        with open(mirror_dir / f"{record['run_id']}.jsonl", "a") as handle:
            handle.write(json.dumps(lineage.as_json(record), sort_keys=True) + "\n")
    return SinkRecord(
        record["run_id"].encode(),
        default_codec().encode(LINEAGE_RECORD, record),
        topic,
        record["event_time"],
    )


def lineage_record(run: RunContext, record: dict[str, Any]) -> SinkRecord:
    return lineage_to_sink(record, run.job.lineage_topic, run.paths.lineage, run.pseudonymiser)
