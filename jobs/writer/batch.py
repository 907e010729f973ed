"""Pure pieces of one batch: offsets to commit, dead-letter envelopes, the lineage event."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from jobs.transforms import lineage
from jobs.transforms.dead_letters import dead_letter, to_sink
from jobs.transforms.records import SinkRecord
from jobs.writer.updates import KafkaRecord, Rejected, Update
from schemas.codec import Codec


def offset_ranges(records: Iterable[KafkaRecord]) -> dict[int, tuple[int, int]]:
    """partition → (first, last) offset seen in the batch."""
    ranges: dict[int, tuple[int, int]] = {}
    for record in records:
        p, o = record.partition, record.offset
        seen = ranges.get(p)
        if seen is None:
            ranges[p] = (o, o)
        elif o < seen[0] or o > seen[1]:
            ranges[p] = (min(seen[0], o), max(seen[1], o))
    return ranges


def next_offsets(ranges: dict[int, tuple[int, int]]) -> dict[int, int]:
    """What to commit: the offset after the last one written, per partition (Kafka's rule)."""
    return {p: last + 1 for p, (_, last) in ranges.items()}


def dead_letters(rejected: Sequence[Rejected], codec: Codec, sink_topic: str, now_ms: int,
                 run_id: str) -> list[SinkRecord]:
    """DeadLetter envelopes keyed by source coordinates (a replay overwrites, not duplicates)."""
    out = []
    for record, why in rejected:
        ts = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else None
        letter = dead_letter(bytes(record.value or b""), record.topic, record.partition,
                             record.offset, ts, why.stage, why.error_type, why.reason,
                             why.fingerprint, now_ms, run_id)
        out.append(to_sink(letter, codec, sink_topic))
    return out


def view_stats(rows: Sequence[Update]) -> dict[str, Any]:
    """Per-view facet of a batch's lineage: rows written and their event-time range."""
    times = [r.event_ms for r in rows]
    return {"rows": len(rows), "event_time_min": min(times), "event_time_max": max(times)}


def lineage_event(*, run_id: str, job_name: str, code_version: str, now_ms: int, topic: str,
                  project: str, ranges: dict[int, tuple[int, int]],
                  written: dict[str, dict[str, Any]], updates: Sequence[Update],
                  records_in: int, dead_lettered: int) -> dict[str, Any]:
    """The batch's RUNNING event: topic offsets in, per-view rows and event times out."""
    job_runs = sorted({u.job_run_id for u in updates if u.job_run_id})
    inputs = [lineage.dataset("kafka", topic,
                              offsets={str(p): [a, b] for p, (a, b) in sorted(ranges.items())},
                              job_run_ids=job_runs)]
    outputs = [lineage.dataset(f"feast://{project}", view, **facet)
               for view, facet in written.items()]
    return lineage.run_event("RUNNING", run_id, job_name, code_version, now_ms, inputs=inputs,
                             outputs=outputs, records_in=records_in, dead_letters=dead_lettered)
