import copy
import json

import pytest

from schemas.codec import INTERACTION_EVENT, MAGIC, SERVING_EVENT, Codec, default_codec
from schemas.errors import DecodeError, IncompatibleSchemaError, UnknownSchemaError
from schemas.fingerprint import crc64_avro
from schemas.store import AVRO_DIR, SchemaStore
from tests.unit.jobs.events import T0, interaction, serving


def v2_interaction_schema(**field_overrides):
    raw = json.loads((AVRO_DIR / "interaction_event.v1.avsc").read_text())
    raw["fields"].append({"name": "device", "type": ["null", "string"], "default": None,
                          **field_overrides})
    return raw


def test_crc64_matches_the_avro_spec_vectors():
    # Fingerprints of primitive schemas' canonical forms, as published with the Avro spec.
    assert crc64_avro(b'"null"') == 0x63DD24E7CC258F8A
    assert crc64_avro(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"


def test_round_trip_every_contract():
    codec = default_codec()
    for name, record in ((SERVING_EVENT, serving("r1", T0)),
                         (INTERACTION_EVENT, interaction("e1", T0, "a"))):
        data = codec.encode(name, record)
        assert data[:2] == MAGIC
        writer, back = codec.decode(data, name)
        assert back == record and writer.name == name


def test_v2_writer_is_read_by_v1_reader_and_v1_by_v2():
    v1_store = SchemaStore.from_directory()
    v2_store = SchemaStore.from_directory()
    v2 = v2_store.register(v2_interaction_schema())
    assert v2.version == 2
    v1_store.register(v2_interaction_schema())  # the v1 consumer learns the writer schema
    event_v2 = {**interaction("e1", T0, "a"), "device": "ios"}
    data_v2 = Codec(v2_store).encode(INTERACTION_EVENT, event_v2)
    _, seen = Codec(v1_store).decode(data_v2)
    assert seen["device"] == "ios"
    old_only = SchemaStore()
    old_only.register(json.loads((AVRO_DIR / "interaction_event.v1.avsc").read_text()), 1)
    old_only._by_fp[v2.fingerprint] = v2  # knows the writer, reads as v1
    _, as_v1 = Codec(old_only).decode(data_v2, INTERACTION_EVENT)
    assert "device" not in as_v1 and as_v1["item_id"] == "a"
    # A v2 reader on v1 data fills the default.
    data_v1 = Codec(v1_store).encode(INTERACTION_EVENT, interaction("e2", T0, "b"), version=1)
    _, as_v2 = Codec(v2_store).decode(data_v1, INTERACTION_EVENT)
    assert as_v2["device"] is None


def test_incompatible_changes_are_refused():
    store = SchemaStore.from_directory()
    no_default = v2_interaction_schema()
    del no_default["fields"][-1]["default"]
    with pytest.raises(IncompatibleSchemaError, match="backward"):
        store.register(no_default)
    retyped = json.loads((AVRO_DIR / "interaction_event.v1.avsc").read_text())
    revenue = next(f for f in retyped["fields"] if f["name"] == "revenue")
    revenue["type"], revenue["default"] = "string", "0"
    with pytest.raises(IncompatibleSchemaError, match="revenue"):
        store.register(retyped)
    dropped = copy.deepcopy(retyped)
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "item_id"]
    with pytest.raises(IncompatibleSchemaError, match="forward"):
        store.register(dropped)


def test_corrupt_bytes_raise_typed_errors():
    codec = default_codec()
    good = codec.encode(SERVING_EVENT, serving("r1", T0))
    with pytest.raises(DecodeError, match="no Avro single-object header"):
        codec.decode(b"plain text")
    with pytest.raises(UnknownSchemaError):
        codec.decode(MAGIC + b"\x00" * 8 + good[10:])
    with pytest.raises(DecodeError, match="corrupt ServingEvent"):
        codec.decode(good[:-4])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(good + b"\x00")


def test_labelled_impression_v2_names_the_joined_feature_log_and_reads_both_ways():
    """v2 (the feedback job's writer since it joins FeatureLogs) is registered FULL compatible
    with v1: a v1 record reads with null log coordinates, a v2 record reads as v1 without them."""
    from schemas.codec import LABELLED_IMPRESSION

    store = SchemaStore.from_directory()
    assert store.latest(LABELLED_IMPRESSION).version == 2
    row = {"request_id": "r1", "item_id": "a", "user_id": "u", "session_id": "s",
           "model_version": "v1", "arm": "control", "policy": "p", "fallback": False,
           "position": 0, "score": 0.5, "propensity": 0.5, "served_at": T0, "clicked": True,
           "added_to_cart": False, "purchased": False, "revenue": 0.0, "dwell_ms": 0,
           "interaction_count": 1, "label_window_ms": 1_800_000, "source_topic": "t",
           "source_partition": 0, "source_offset": 4}
    v1_only = SchemaStore()
    v1_only.register(json.loads((AVRO_DIR / "labelled_impression.v1.avsc").read_text()), 1)
    old = Codec(v1_only).encode(LABELLED_IMPRESSION, row)
    _, read = Codec(store).decode(old, LABELLED_IMPRESSION)
    assert read["feature_log_partition"] is None and read["feature_log_offset"] is None
    new = Codec(store).encode(LABELLED_IMPRESSION,
                              {**row, "feature_log_partition": 0, "feature_log_offset": 9})
    v2 = store.latest(LABELLED_IMPRESSION)
    v1_only._by_fp[v2.fingerprint] = v2  # knows the writer, reads as v1
    _, as_v1 = Codec(v1_only).decode(new, LABELLED_IMPRESSION)
    assert "feature_log_offset" not in as_v1 and as_v1["source_offset"] == 4
    _, as_v2 = Codec(store).decode(new, LABELLED_IMPRESSION)
    assert as_v2["feature_log_offset"] == 9
