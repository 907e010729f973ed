"""The equal-work baseline does the job's work: every input ends in exactly one place, labels
come out of the job's own join, and slice partitions are written once final."""

from __future__ import annotations

from typing import Any, NamedTuple

from bench.naive_equal import MATURITY_WINDOW_MS, EqualWork
from jobs.sinks.slice_log import partition_dir, read_manifest
from jobs.transforms import slices
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec
from tests.unit.jobs.events import T0, interaction, serving

SPEC = {"serving_topic": "s", "interactions_topic": "i", "labelled_topic": "lab",
        "unmatched_topic": "unm", "late_topic": "late", "dead_letter_topic": "dlq",
        "group_id": "g-test"}


class Rec(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes


def test_inputs_reconcile_and_slices_are_written(tmp_path):
    codec, sent = default_codec(), []
    work = EqualWork(SPEC, codec, lambda *out: sent.append(out), tmp_path)
    work.expect([("s", 0), ("i", 0)])

    def rec(topic: str, offset: int, event: dict[str, Any], name: str) -> Rec:
        return Rec(topic, 0, offset, event["event_time"], codec.encode(name, event))

    records = [
        rec("s", 0, serving("r1", T0), SERVING_EVENT),
        rec("i", 0, interaction("e1", T0 + 1_000, "a"), INTERACTION_EVENT),  # joined
        rec("i", 1, interaction("e1", T0 + 1_000, "a"), INTERACTION_EVENT),  # duplicate
        rec("i", 2, interaction("e2", T0 + 2_000, "z", request_id=None), INTERACTION_EVENT),
        Rec("i", 0, 3, T0 + 2_000, b"garbage"),  # dead letter
        rec("i", 4, interaction("e3", T0 - 60_000, "a"), INTERACTION_EVENT),  # late
    ]
    accepted = work.accept(records)
    assert [e[4].get("event_id", e[4].get("request_id")) for e in accepted] == ["r1", "e1", "e2"]
    work.fire(work.watermark(), end_of_input=True)
    work.flush_slices(work.watermark(), end_of_input=True)

    c = work.counts
    assert c["input"] == 6
    # r1 and e1 joined, e2 organic (unmatched), a duplicate + garbage dead-lettered, e3 late.
    assert (c["joined"], c["unmatched"], c["dead_lettered"], c["late"]) == (2, 1, 2, 1)
    assert c["input"] == c["joined"] + c["unmatched"] + c["dead_lettered"] + c["late"]
    by_topic: dict[str, int] = {}
    for topic, *_ in sent:
        by_topic[topic] = by_topic.get(topic, 0) + 1
    assert by_topic == {"lab": 3, "unm": 1, "dlq": 2, "late": 1}  # 3 slate items labelled
    name, _, _ = slices.partition_of(T0, 3_600_000)
    labelled = read_manifest(partition_dir(tmp_path, slices.LABELLED_DATASET, name))
    assert labelled is not None and labelled["row_count"] == 3


def test_a_partition_is_written_only_once_the_watermark_passes_it(tmp_path):
    work = EqualWork(SPEC, default_codec(), lambda *out: None, tmp_path)
    work._buffer(slices.UNMATCHED_DATASET, {"event_time": T0, "event_id": "x"})
    _, _, end = slices.partition_of(T0, 3_600_000)
    work.flush_slices(end + MATURITY_WINDOW_MS - 1)
    assert work.pending and work.counts["slice_files"] == 0
