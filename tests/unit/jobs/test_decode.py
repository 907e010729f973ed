from jobs.transforms.decode import Rejection, decode_record, is_late
from jobs.transforms.records import Envelope, SourceRecord
from schemas import topics
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec
from tests.unit.jobs.events import T0, interaction, serving

codec = default_codec()
NOW = T0 + 60_000


def decode(topic, raw, kafka_ts):
    record = SourceRecord(raw, topic, 1, 42, kafka_ts)
    return decode_record(record, codec, topics.SERVING, topics.INTERACTIONS, NOW, 3_600_000)


def test_valid_events_decode_with_coordinates():
    out = decode(topics.SERVING, codec.encode(SERVING_EVENT, serving("r1", T0)), T0)
    assert isinstance(out, Envelope) and out.join_key == "r1" and out.offset == 42


def test_rejections_say_why():
    def reason(topic, event, name, kafka_ts=None):
        raw = codec.encode(name, event)
        out = decode(topic, raw, event["event_time"] if kafka_ts is None else kafka_ts)
        assert isinstance(out, Rejection)
        return out.stage, out.reason

    stage, why = reason(topics.INTERACTIONS, interaction("e", T0, "a", "share"), INTERACTION_EVENT)
    assert stage == "validate" and "type must be one of" in why
    _, why = reason(topics.INTERACTIONS, interaction("e", T0, "a", "purchase", revenue=-1.0),
                    INTERACTION_EVENT)
    assert "revenue must be a finite number >= 0" in why
    _, why = reason(topics.INTERACTIONS, interaction("e", NOW + 7_200_000, "a"), INTERACTION_EVENT)
    assert "in the future" in why
    _, why = reason(topics.INTERACTIONS, interaction("e", T0, "a"), INTERACTION_EVENT, T0 + 5)
    assert "differs from the Kafka record timestamp" in why
    bad_slate = serving("r1", T0)
    bad_slate["slate"][0]["propensity"] = 0.0
    _, why = reason(topics.SERVING, bad_slate, SERVING_EVENT)
    assert "propensity of a must be in (0, 1]" in why


def test_corrupt_and_misrouted_bytes_are_decode_rejections():
    out = decode(topics.SERVING, b"\x00garbage", T0)
    assert isinstance(out, Rejection) and out.stage == "decode"
    raw = codec.encode(SERVING_EVENT, serving("r1", T0))
    out = decode(topics.INTERACTIONS, raw, T0)
    assert isinstance(out, Rejection) and "expected a InteractionEvent" in out.reason
    out = decode(topics.SERVING, raw[:-3], T0)
    assert isinstance(out, Rejection) and out.fingerprint == raw[2:10].hex()


def test_lateness_is_relative_to_the_partition_watermark():
    assert not is_late(None, T0, 5000)
    assert not is_late(T0, T0 - 5000, 5000)
    assert is_late(T0, T0 - 5001, 5000)
