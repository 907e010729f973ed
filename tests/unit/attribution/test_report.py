"""report.json matches its versioned schema; report.html leads with the validity gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attribution import report
from attribution.schema import REPORT_SCHEMA

jsonschema = pytest.importorskip("jsonschema")


def test_report_json_validates_against_schema(
    confounded_report: dict[str, Any], tmp_path: Path
) -> None:
    json_path, _ = report.write(confounded_report, tmp_path)
    document = json.loads(json_path.read_text())
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    jsonschema.validate(document, REPORT_SCHEMA)
    assert document["schema_version"] == "2"


def test_schema_rejects_a_report_without_estimates(confounded_report: dict[str, Any]) -> None:
    broken = report.json_safe(confounded_report)
    broken["versions"][1]["estimates"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, REPORT_SCHEMA)


def test_every_version_carries_slice_estimates_refuters_and_checks(
    confounded_report: dict[str, Any],
) -> None:
    versions = {v["model_version"]: v for v in confounded_report["versions"]}
    assert confounded_report["control_version"] == "v1" and versions["v1"]["is_control"]
    for name in ("v2", "v3"):
        v = versions[name]
        assert v["feedback_slice"]["fingerprint"] and v["feedback_slice"]["partition_count"] > 0
        assert [e["estimator"] for e in v["estimates"]] == [
            "backdoor.linear_regression",
            "backdoor.doubly_robust",
        ]
        assert {r["name"] for r in v["refuters"]} == {
            "placebo_treatment_refuter",
            "random_common_cause",
            "data_subset_refuter",
            "add_unobserved_common_cause",
        }
        assert v["refuter_sample_size"] == 3_000
        assert {c["name"] for c in v["checks"]} >= {
            "lineage",
            "positivity",
            "effective_sample_size",
        }
        assert {s["segment"] for s in v["segments"]} == {"new", "light", "heavy"}


def test_naive_bias_is_reported_in_json_and_html(confounded_report: dict[str, Any]) -> None:
    v2 = next(v for v in confounded_report["versions"] if v["model_version"] == "v2")
    assert v2["naive"]["biased"] is True
    assert "biased" in v2["naive"]["note"] and "confounder-adjusted" in v2["naive"]["note"]
    warn = [
        c
        for c in confounded_report["checks"]
        if c["name"] == "naive_difference" and c["scope"] == "v2"
    ]
    assert warn and warn[0]["status"] == "warn"
    html = report.render_html(confounded_report)
    assert "naive difference (biased)" in html and "is biased: its interval excludes" in html


def test_slice_pair_is_attributed(confounded_report: dict[str, Any]) -> None:
    (pair,) = confounded_report["slice_attribution"]
    assert (pair["older_version"], pair["newer_version"]) == ("v3", "v2")
    assert pair["shared"] == {
        "parent_version": "v1",
        "code_version": "d15ea5e",
        "feature_service": "ranking_v1",
    }
    assert "slice" in pair["statement"]


def test_html_is_static_and_gate_comes_before_headline(confounded_report: dict[str, Any]) -> None:
    failing = report.json_safe(confounded_report)
    failing["checks"].insert(
        0,
        {
            "name": "sample_ratio_mismatch",
            "scope": "global",
            "status": "fail",
            "message": "chi-square 40, p=1e-9",
            "details": {},
        },
    )
    html = report.render_html(failing)
    gate, headline = html.index("NOT trustworthy"), html.index("<h2>Headline</h2>")
    assert gate < headline
    # Static: nothing is fetched or run (namespace declarations are names, not requests).
    for needle in ("<script", "<link", "<iframe", "src=", "url(http", "url(//", 'href="http'):
        assert needle not in html, needle
    assert html.count("<svg") >= 5  # uplift, segments, two waterfalls, slice timeline
