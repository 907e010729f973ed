import math

import pytest

from feature_repo import names
from jobs.writer.updates import Update, decode_batch, unknown_fingerprints, value_problem
from schemas.codec import SERVING_EVENT, default_codec
from tests.unit.jobs.events import serving
from tests.unit.jobs.writer.records import T0, TOPIC, Rec, rec, update, values

U, ITEM = names.USER_ACTIVITY, names.ITEM_PERFORMANCE
NOW = T0 + 60_000


def decode(*records):
    return decode_batch(records, default_codec(), NOW, 3_600_000)


def reasons(*records):
    updates, rejected = decode(*records)
    assert updates == []
    return [(r.why.stage, r.why.reason) for r in rejected]


def test_valid_updates_decode_with_their_coordinates():
    updates, rejected = decode(rec(update(U, "u1", T0, 3), 7, partition=1),
                               rec(update(ITEM, "i1", T0 + 1, 4, run_id=None), 8))
    assert rejected == []
    assert updates[0] == Update(U, "u1", T0, values(U, 3), 1, 7, "run-a")
    assert updates[1].job_run_id is None and updates[1].values == values(ITEM, 4)


def test_every_record_ends_as_exactly_one_update_or_rejection():
    good = [rec(update(U, f"u{i}", T0), i) for i in range(3)]
    bad = [Rec(TOPIC, 0, 10, T0, b"k", b"garbage"), Rec(TOPIC, 0, 11, T0, b"k", None)]
    updates, rejected = decode(good[0], bad[0], good[1], bad[1], good[2])
    assert [u.offset for u in updates] == [0, 1, 2]
    assert [r.record.offset for r in rejected] == [10, 11]


def test_undecodable_bytes_are_decode_rejections():
    (stage, why), (_, why_empty) = reasons(Rec(TOPIC, 0, 1, T0, b"k", b"not avro"),
                                           Rec(TOPIC, 0, 2, T0, b"k", None))
    assert stage == "decode" and "no Avro single-object header" in why
    assert "empty value" in why_empty


def test_another_contract_on_the_topic_is_a_decode_rejection():
    raw = default_codec().encode(SERVING_EVENT, serving("r1", T0))
    [(stage, why)] = reasons(Rec(TOPIC, 0, 1, T0, b"user_activity:u", raw))
    assert stage == "decode" and "expected a FeatureUpdate, got a ServingEvent" in why


def test_unknown_writer_schemas_are_reported_for_a_registry_lookup():
    raw = b"\xc3\x01" + bytes(8) + b"\x00"
    _, rejected = decode(Rec(TOPIC, 0, 1, T0, b"k", raw))
    assert unknown_fingerprints(rejected) == {"00" * 8}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda e: e.update(view="user_profile"), "view must be one of"),
    (lambda e: e.update(entity_id=""), "entity_id must be non-empty"),
    (lambda e: e.update(event_time=NOW + 7_200_000), "s in the future"),
    (lambda e: e["values"].pop("user_clicks_1h"), "missing ['user_clicks_1h']"),
    (lambda e: e["values"].update(user_colour="red"), "unknown ['user_colour']"),
    (lambda e: e["values"].update(user_clicks_1h="3"), "user_clicks_1h must be a long"),
    (lambda e: e["values"].update(user_clicks_1h=2.5), "user_clicks_1h must be a long"),
    (lambda e: e["values"].update(user_revenue_1h=math.nan), "must be finite"),
    (lambda e: e["values"].update(user_revenue_1h="a lot"), "must be a number"),
    (lambda e: e["values"].update(user_last_clicked=7), "must be a string"),
])
def test_contract_violations_are_validate_rejections(change, expected):
    event = update(U, "u1", T0)
    change(event)
    [(stage, why)] = reasons(rec(event, 1, timestamp=event["event_time"],
                                 key=b"user_activity:u1"))
    assert stage == "validate" and expected in why


def test_the_key_and_the_record_timestamp_must_match_the_payload():
    event = update(U, "u1", T0)
    [(_, why)] = reasons(rec(event, 1, key=b"user_activity:u2"))
    assert "Kafka key must be 'user_activity:u1'" in why
    [(_, why)] = reasons(Rec(TOPIC, 0, 1, T0, None, rec(event, 1).value))
    assert "got no key" in why
    [(_, why)] = reasons(rec(event, 1, timestamp=T0 + 5))
    assert "differs from the Kafka record timestamp" in why


def test_nulls_and_whole_numbers_for_rates_are_accepted():
    vals = values(ITEM)
    vals["item_ctr_1h"] = 0  # a rate of exactly 0 may arrive as a long
    vals["item_clicks_1h"] = None  # not known yet: Feast stores it unset
    assert value_problem(ITEM, vals) is None
