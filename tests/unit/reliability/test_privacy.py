"""loopline.privacy without services: the scrub walks records, keeps non-identifiers."""

from __future__ import annotations

import pytest

from loopline.errors import ConfigError
from loopline.privacy import PrivacyConfig, Pseudonymiser

HIDE = Pseudonymiser(b"unit-test-key-0123456789")


def test_scrub_hides_identifier_fields_and_mentions_in_text_only() -> None:
    record = {
        "run_id": "r1", "user_id": "u1", "unit": "user", "count": 3, "ok": True, "none": None,
        "inputs": [{"facets": {"session_id": "s1", "user_ids": ["u2", "u3"], "item_id": "i1"}}],
        "error": "KeyError in {'user_id': 'u4', 'session_id': \"s5\"}; user_id=u6, item i7",
    }
    out = HIDE.scrub(record)
    assert out["run_id"] == "r1" and out["unit"] == "user" and out["count"] == 3
    assert out["ok"] is True and out["none"] is None
    assert out["user_id"] == HIDE("u1")
    facets = out["inputs"][0]["facets"]
    assert facets == {"session_id": HIDE("s1"), "user_ids": [HIDE("u2"), HIDE("u3")],
                      "item_id": "i1"}
    assert out["error"] == (f"KeyError in {{'user_id': '{HIDE('u4')}', 'session_id': "
                            f"\"{HIDE('s5')}\"}}; user_id={HIDE('u6')}, item i7")
    assert record["user_id"] == "u1"  # a copy: the input is untouched
    assert HIDE.scrub(out) == out  # idempotent


def test_config_refuses_short_keys_and_non_positive_retention() -> None:
    with pytest.raises(ConfigError):
        PrivacyConfig(pseudonym_key="short")
    with pytest.raises(ConfigError):
        PrivacyConfig(slice_retention_days=0)
