import pytest

from feature_repo.store import FeastConfig
from jobs.errors import WriterConfigError
from jobs.writer.background import configs_of, spec_of
from jobs.writer.config import WriterConfig, load_writer
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from schemas import topics


def test_defaults_are_the_contract_topic_and_the_writer_group():
    cfg = load_writer()
    assert (cfg.topic, cfg.group_id) == (topics.FEATURE_UPDATES, "loopline-feast-writer")


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("LOOPLINE_WRITER_GROUP_ID", "g2")
    monkeypatch.setenv("LOOPLINE_WRITER_MAX_BATCH_ROWS", "500")
    cfg = load_writer(topic="t")
    assert (cfg.topic, cfg.group_id, cfg.max_batch_rows) == ("t", "g2", 500)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_batch_rows", 0, "max_batch_rows must be positive"),
    ("poll_timeout_ms", -1, "poll_timeout_ms must be positive"),
    ("batch_idle_ms", 0, "batch_idle_ms must be positive"),
    ("group_id", "", "group_id must be non-empty"),
    ("dead_letter_topic", topics.FEATURE_UPDATES, "must differ from writer.topic"),
    ("auto_offset_reset", "none", "earliest or latest"),
])
def test_bad_settings_say_what_was_expected(field, value, message):
    with pytest.raises(WriterConfigError, match=message):
        WriterConfig(**{field: value})


def test_the_child_process_spec_round_trips(tmp_path):
    configs = (WriterConfig(group_id="g", run_id="r"), KafkaConfig(bootstrap_servers="h:1"),
               FeastConfig(online_store="redis", project="p"),
               PathsConfig(home=tmp_path, jars=tmp_path / "jars"))
    assert configs_of(spec_of(*configs)) == configs
