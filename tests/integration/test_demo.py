"""A shortened `loopline demo` on the session broker: the whole loop (simulated shoppers, real
serving, the streaming job in the Flink mini-cluster, SQLite Feast, retraining, a three-arm
rollout, attribution) must reconcile exactly, leave lineage for every version, and estimate
each version's uplift within its confidence interval of the simulator's ground truth.

The demo runs as a subprocess of the real CLI: it points LOOPLINE_PATHS_HOME at its own home
and starts its own PyFlink gateway, neither of which should leak into this test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loopline.kafka import KafkaConfig
from models.registry import Registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
USERS, DAYS, SEED = 150, 4, 7  # >= ~150: smaller arms make the CI itself unreliable


@pytest.fixture(scope="module")
def demo_run(kafka: KafkaConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "-v", "demo", "--users", str(USERS), "--days",
         str(DAYS), "--seed", str(SEED), "--out", str(out), "--no-refuters"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, f"demo failed:\n{done.stdout}\n{done.stderr[-6000:]}"
    return {"out": out, "stdout": done.stdout, "stderr": done.stderr,
            "summary": json.loads((out / "summary.json").read_text()),
            "truth": json.loads((out / "ground_truth.json").read_text()),
            "report": json.loads((out / "report" / "report.json").read_text())}


def test_the_summary_is_printed(demo_run: dict[str, Any]) -> None:
    stdout = demo_run["stdout"]
    assert f"seed {SEED} · {USERS} users · {DAYS} days" in stdout
    for line in ("Model versions", "Revenue uplift per user vs v1", "catalogue coverage",
                 "Reconciliation: input", "report.html"):
        assert line in stdout
    assert (demo_run["out"] / "report" / "report.html").is_file()


def test_every_input_is_accounted_for(demo_run: dict[str, Any]) -> None:
    summary = demo_run["summary"]
    counts = summary["reconciliation"]
    assert counts["balanced"], counts
    assert counts["input"] == summary["published_events"] > 0
    # simulated events arrive in event-time order per topic and are all well formed
    assert counts["late"] == 0 and counts["dead_lettered"] == 0
    served = sum(d["requests"] for d in summary["days_run"])
    assert counts["joined_serving"] == served
    # a generous score budget: no live request fell back to popularity once models existed
    assert set(summary["serving"]["fallback_reasons"]) <= {"no model registered"}


def test_every_version_has_lineage_down_to_offsets(demo_run: dict[str, Any]) -> None:
    summary = demo_run["summary"]
    registry = Registry(Path(summary["paths"]["home"]) / "models")
    versions = registry.versions()
    # v1 (bootstrap day), v2 and v3 (experiment), one scheduled retrain per experiment day
    # but the last
    assert versions == [f"v{n}" for n in range(1, DAYS + 1)]
    for version in versions:
        lineage = registry.lineage(version)
        s = lineage["slice"]
        assert s["row_count"] > 0 and s["fingerprint"].startswith("sha256:")
        assert s["job_run_ids"] == [summary["job_run_id"]]
        serving = [t for t in s["sources"] if t.endswith(".serving")]
        assert serving and all(lo <= hi for lo, hi in s["sources"][serving[0]].values())
    assert [registry.lineage(v)["parent_version"] for v in versions[1:]] == ["v1"] * (DAYS - 1)


def test_estimates_agree_with_the_ground_truth(demo_run: dict[str, Any]) -> None:
    """The summary's check is "truth inside the estimate's 95% CI". A 95% interval misses by
    design one time in twenty (docs/demo.md measures ~95% coverage over many seeds), and the
    wall-clock race between serving and the job's feature updates makes runs differ a little,
    so asserting it for two versions would fail about one run in ten. The test demands the
    truth within 3.29 standard errors (the 99.9% interval) and that the summary's verdict is
    the 95% containment."""
    truth, report = demo_run["truth"], demo_run["report"]
    assert truth["control"] == report["control_version"] == "v1"
    assert truth["days"] == list(range(2, DAYS))
    rows = {u["version"]: u for u in demo_run["summary"]["uplift"]}
    assert set(rows) == {"v2", "v3"}
    for version, row in rows.items():
        assert row["truth"] == truth["versions"][version]["uplift_abs"]
        lo, hi = row["ci"]
        assert row["truth_in_ci"] == (lo <= row["truth"] <= hi)
        se = (hi - lo) / (2 * 1.959964)
        assert abs(row["estimate"] - row["truth"]) <= 3.29 * se, (version, row)
    # no failed validity check (SRM, lineage, overlap): the report may be trusted
    assert report["trustworthy"], report["headline"]["failed_checks"]


def test_the_feedback_loop_is_measured_per_version_and_day(demo_run: dict[str, Any]) -> None:
    live = demo_run["summary"]["diversity_live"]
    assert {r["day"] for r in live} == set(range(DAYS))
    assert {r["version"] for r in live if r["day"] >= 2} == {"v1", "v2", "v3"}
    for r in live:
        assert 0 < r["coverage"] <= 1 and 0 <= r["gini"] < 1
    assert set(demo_run["truth"]["diversity"]) == {"v1", "v2", "v3"}


def test_the_consistency_of_the_experiment_days_is_printed_and_embedded(
        demo_run: dict[str, Any]) -> None:
    """Serving logged every request's features; the check ran over the experiment days."""
    consistency = demo_run["summary"]["consistency"]
    assert consistency is not None
    line = consistency["line"]
    assert line.startswith("Consistency ") and line in demo_run["stdout"]
    page = Path(consistency["html"])
    assert page.is_file() and "<svg" in page.read_text()
    doc = json.loads(page.with_name("consistency.json").read_text())
    assert doc["compared_rows"] > 0
    assert doc["logs"]["malformed"] == 0
    # every experiment request was sampled (rate 1) and none of its logs was lost
    assert doc["missing_logs"]["missing_requests"] == 0
    embedded = demo_run["report"].get("consistency") or []
    assert [d["slice"] for d in embedded] == [doc["slice"]]
