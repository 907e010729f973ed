"""Privacy: user identifiers reach lineage records (topic and mirror, from the job and from
training) and attribution reports only as keyed-hash pseudonyms, and raw slice partitions
older than the configured retention are deleted by `loopline job purge-slices`."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest

from attribution import report as attribution_report
from bench.reliability.harness import create_topics
from cli.main import main as loopline
from jobs.feedback import run as job_run
from jobs.feedback.context import RunContext, lineage_to_sink
from jobs.reconcile import read_topic
from jobs.sinks.slice_log import purge_expired, write_partition
from jobs.transforms import lineage, slices
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig
from loopline.privacy import PREFIX, PrivacyConfig, Pseudonymiser, key_file, pseudonymiser
from models import lineage as model_lineage
from schemas.codec import LINEAGE_RECORD, default_codec
from tests.integration.feedback_case import case_job

pytestmark = pytest.mark.integration

KEY = "k3y-for-tests-0123456789abcdef"
USER, SESSION = "user-4711@example.com", "s-user-4711"


def test_pseudonyms_are_keyed_stable_and_not_a_plain_hash(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    hide = Pseudonymiser(KEY.encode())
    assert hide(USER) == hide(USER) and hide(USER).startswith(PREFIX)
    assert hide(USER) != hide("user-4712")
    assert hide(USER) != Pseudonymiser(b"another-key-0123456789")(USER)
    assert hide(USER)[len(PREFIX):] not in hashlib.sha256(USER.encode()).hexdigest()
    assert hide(hide(USER)) == hide(USER)  # never hashed twice
    assert KEY not in repr(hide) and KEY not in repr(PrivacyConfig(pseudonym_key=KEY))

    # From config/env; without a key, one random key per home, private to its owner.
    monkeypatch.setenv("LOOPLINE_PRIVACY_PSEUDONYM_KEY", KEY)
    paths = PathsConfig(home=tmp_path)
    assert pseudonymiser(paths=paths)(USER) == hide(USER)
    monkeypatch.delenv("LOOPLINE_PRIVACY_PSEUDONYM_KEY")
    local = pseudonymiser(paths=paths)
    assert local(USER) != hide(USER) and local(USER) == pseudonymiser(paths=paths)(USER)
    assert stat.S_IMODE(os.stat(key_file(paths)).st_mode) == 0o600


def _failing_run_event() -> dict:
    """A lineage event carrying user ids: in a facet, and inside an error message (a record's
    repr in a Python traceback, as a failing operator would report it)."""
    return lineage.run_event(
        "FAIL", "run-priv", "loopline-feedback", "code", int(time.time() * 1000),
        inputs=[lineage.dataset("kafka", "t", sample={"user_id": USER, "session_id": SESSION})],
        error=f"ValueError: bad record {{'user_id': '{USER}', 'item_id': 'i1', "
              f"'session_id': '{SESSION}'}}",
    )


def test_lineage_records_name_users_only_by_pseudonym(kafka: KafkaConfig, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_PRIVACY_PSEUDONYM_KEY", KEY)
    hide = Pseudonymiser(KEY.encode())
    paths = PathsConfig(home=tmp_path)
    job = case_job()
    create_topics(kafka, job)
    codec = default_codec()
    # The job: client-side START/FAIL events and the operators' RUNNING events share this path.
    run = RunContext(job, None, paths, "run-priv", "code", kafka, hide)  # type: ignore[arg-type]
    job_run._send_lineage(kafka, run, _failing_run_event())
    sunk = lineage_to_sink(_failing_run_event(), job.lineage_topic, paths.lineage, hide)
    # Training: the model's lineage record, mirrored and sent.
    model_lineage.mirror(_failing_run_event(), paths)
    model_lineage.send(_failing_run_event(), kafka, topic=job.lineage_topic)

    texts = [p.read_text() for p in paths.lineage.glob("*.jsonl")]
    texts += [json.dumps(codec.decode(r.value, LINEAGE_RECORD)[1], default=str)
              for r in read_topic(kafka, job.lineage_topic)]
    texts.append(json.dumps(codec.decode(sunk.value, LINEAGE_RECORD)[1], default=str))
    assert len(texts) == 4
    for text in texts:
        assert USER not in text and SESSION not in text
        assert hide(USER) in text and hide(SESSION) in text


def test_attribution_reports_name_users_only_by_pseudonym(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_PRIVACY_PSEUDONYM_KEY", KEY)
    # The HTML is rendered from what write() passes on (a full report needs a DoWhy run; the
    # unit tests render those): it must already be pseudonymised.
    monkeypatch.setattr(attribution_report, "render_html", lambda r: json.dumps(r))
    report = {"schema_version": "1", "unit": "user",
              "warnings": [f"user_id={USER} was served by two arms"],
              "data": {"users": 3, "examples": [{"user_id": USER, "session_id": SESSION}]}}
    json_path, html_path = attribution_report.write(report, tmp_path)
    hide = Pseudonymiser(KEY.encode())
    for text in (json_path.read_text(), html_path.read_text()):
        assert USER not in text and SESSION not in text
        assert hide(USER) in text and hide(SESSION) in text
    assert json.loads(json_path.read_text())["unit"] == "user"  # not an identifier field


def _row(event_ms: int, n: int) -> dict:
    return {"request_id": f"r{n}", "item_id": "i1", "user_id": "u1", "session_id": "s1",
            "model_version": "v1", "arm": "control", "policy": "p", "fallback": False,
            "position": 0, "score": 1.0, "propensity": 0.5, "served_at": event_ms,
            "clicked": False, "added_to_cart": False, "purchased": False, "revenue": 0.0,
            "dwell_ms": 0, "interaction_count": 0, "label_window_ms": 60_000,
            "source_topic": "t", "source_partition": 0, "source_offset": n,
            slices.REFS_FIELD: [("t", 0, n)]}


def test_raw_slices_older_than_the_retention_are_purged(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time() * 1000)
    day = 86_400_000
    job = {"name": "loopline-feedback", "run_id": "run-retention", "code_version": "c"}
    ages = {"old": now - 30 * day, "edge": now - 8 * day, "recent": now - 2 * day,
            "fresh": now - 3_600_000}
    written = {}
    for n, (name, t) in enumerate(ages.items()):
        partition = slices.partition_of(t, 3_600_000)[0]
        write_partition(tmp_path / "slices", slices.LABELLED_DATASET, partition,
                        [_row(t, n)], job)
        written[name] = partition
    root = tmp_path / "slices"
    # Dry run: names, deletes nothing.
    expired = purge_expired(root, 7, now_ms=now, dry_run=True)
    assert sorted(p.name for p in expired) == sorted(
        f"{slices.PARTITION_COLUMN}={written[n]}" for n in ("old", "edge"))
    assert len(list(root.glob("*/*/_manifest.json"))) == 4

    # The command, with the retention from config (LOOPLINE_PRIVACY_SLICE_RETENTION_DAYS).
    monkeypatch.setenv("LOOPLINE_PATHS_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPLINE_PRIVACY_SLICE_RETENTION_DAYS", "7")
    assert loopline(["job", "purge-slices"]) == 0
    left = sorted(p.parent.name for p in root.glob("*/*/_manifest.json"))
    assert left == sorted(f"{slices.PARTITION_COLUMN}={written[n]}" for n in ("recent", "fresh"))
    assert not list(root.glob("*/.purging-*"))
    monkeypatch.delenv("LOOPLINE_PRIVACY_SLICE_RETENTION_DAYS")
    assert loopline(["job", "purge-slices"]) != 0  # no retention configured: refuses, says so
    assert loopline(["job", "purge-slices", "--days", "1"]) == 0
    assert [p.parent.name for p in root.glob("*/*/_manifest.json")] == [
        f"{slices.PARTITION_COLUMN}={written['fresh']}"]
