import json

from feature_repo import names
from jobs.transforms.decode import Rejection
from jobs.writer import batch
from jobs.writer.updates import Rejected, Update
from schemas.codec import DEAD_LETTER, LINEAGE_RECORD, default_codec
from tests.unit.jobs.writer.records import T0, TOPIC, Rec

U = names.USER_ACTIVITY


def test_commit_offsets_are_one_past_the_last_record_of_each_partition():
    records = [Rec(TOPIC, 0, 5, T0, None, b""), Rec(TOPIC, 1, 9, T0, None, b""),
               Rec(TOPIC, 0, 6, T0, None, b""), Rec(TOPIC, 0, 4, T0, None, b"")]
    ranges = batch.offset_ranges(records)
    assert ranges == {0: (4, 6), 1: (9, 9)}
    assert batch.next_offsets(ranges) == {0: 7, 1: 10}


def test_dead_letters_carry_the_bytes_their_origin_and_why():
    codec = default_codec()
    bad = Rec(TOPIC, 2, 41, T0, b"k", b"garbage")
    why = Rejection("decode", "DecodeError", "no Avro single-object header", None)
    [sink] = batch.dead_letters([Rejected(bad, why)], codec, "dlq", T0 + 5, "w1")
    assert sink.topic == "dlq" and sink.key == f"{TOPIC}/2/41".encode()
    _, letter = codec.decode(sink.value, DEAD_LETTER)
    assert (letter["raw"], letter["topic"], letter["partition"], letter["offset"]) == \
        (b"garbage", TOPIC, 2, 41)
    assert (letter["stage"], letter["reason"], letter["job_run_id"]) == \
        ("decode", "no Avro single-object header", "w1")
    assert letter["kafka_timestamp"] == T0 and sink.timestamp_ms == T0


def test_a_record_without_a_timestamp_is_dead_lettered_without_one():
    why = Rejection("decode", "DecodeError", "x", None)
    [sink] = batch.dead_letters([Rejected(Rec(TOPIC, 0, 1, -1, None, None), why)],
                                default_codec(), "dlq", T0, "w1")
    assert sink.timestamp_ms is None


def test_lineage_names_offsets_in_and_rows_and_event_times_out():
    rows = [Update(U, "a", T0 + 5, {}, 0, 3, "job-1"), Update(U, "b", T0, {}, 0, 4, None)]
    written = {U: batch.view_stats(rows)}
    event = batch.lineage_event(
        run_id="w1", job_name="writer", code_version="abc", now_ms=T0 + 9, topic=TOPIC,
        project="loopline", ranges={0: (3, 4)}, written=written, updates=rows, records_in=7,
        dead_lettered=1)
    default_codec().encode(LINEAGE_RECORD, event)  # fits the contract
    [out] = event["outputs"]
    assert out["name"] == U and out["namespace"] == "feast://loopline"
    assert json.loads(out["facets_json"]) == {"rows": 2, "event_time_min": T0,
                                              "event_time_max": T0 + 5}
    [source] = event["inputs"]
    assert json.loads(source["facets_json"]) == {"offsets": {"0": [3, 4]},
                                                 "job_run_ids": ["job-1"]}
    assert json.loads(event["run_facets_json"]) == {"records_in": 7, "dead_letters": 1}
