"""Inputs unlike the simulator still end in a report: no covariates (every user new), a
constant outcome, fallback traffic that differs by arm, versions without a training slice,
and a control/split that comes from the registry's rollout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attribution import pipeline, report
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from attribution.errors import InputDataError
from attribution.schema import REPORT_SCHEMA
from bench.attribution_files import write_lineage
from bench.attribution_world import SimulationSpec, VersionSpec, default_versions, simulate
from models.registry import Registry
from models.rollout import Rollout

jsonschema = pytest.importorskip("jsonschema")
CFG = AttributionConfig(refuter_simulations=4, refuter_max_units=1_500)
TWO = default_versions()[:2]
RANDOM = {"assignment": "random", "versions": TWO}


def _run(users: Any, models: Path, cfg: AttributionConfig = CFG, **kw: Any) -> dict[str, Any]:
    doc = pipeline.run(prepare_table(users, cfg), models, cfg, **kw)
    out = models.parent / f"report-{len(list(models.parent.iterdir()))}"
    json_path, _ = report.write(doc, out)  # the HTML renders too
    jsonschema.validate(json.loads(json_path.read_text()), REPORT_SCHEMA)
    return doc


def _check(doc: dict[str, Any], name: str, scope: str | None = None) -> dict[str, Any]:
    return next(
        c for c in doc["checks"] if c["name"] == name and (scope is None or c["scope"] == scope)
    )


def _all_new(users: Any) -> Any:
    """Every user new: no pre-exposure activity, so no covariate varies."""
    users = users.copy()
    for col in ("pre_revenue", "pre_events", "pre_purchases", "nc_revenue"):
        users[col] = 0
    users["segment"] = "new"
    return users


def test_no_covariates_degrades_to_regression_and_says_what_it_skipped(tmp_path: Path) -> None:
    sim = simulate(SimulationSpec(n_users=3_000, **RANDOM), seed=2)
    write_lineage(sim, tmp_path / "models")
    doc = _run(_all_new(sim.users), tmp_path / "models")
    v2 = doc["versions"][1]
    assert [e["estimator"] for e in v2["estimates"]] == ["backdoor.linear_regression"]
    assert v2["skipped_estimators"][0]["estimator"] == "backdoor.doubly_robust"
    assert "no pre-exposure covariate varies" in v2["skipped_estimators"][0]["reason"]
    estimators = _check(doc, "estimators", "v2")
    assert estimators["status"] == "warn" and "doubly_robust" in estimators["message"]
    assert _check(doc, "negative_control", "v2")["status"] == "skipped"
    # Random split, no covariates, no split on record: nothing shows it was random.
    assert _check(doc, "assignment", "v2")["status"] == "warn"
    truth = sim.planted_uplift("v2")
    assert v2["estimates"][0]["ci_low"] <= truth <= v2["estimates"][0]["ci_high"]


def test_constant_outcome_is_a_failed_check_never_a_zero_interval(tmp_path: Path) -> None:
    sim = simulate(SimulationSpec(n_users=1_000, **RANDOM), seed=3)
    write_lineage(sim, tmp_path / "models")
    users = sim.users.copy()
    users[["revenue", "attributed_revenue", "organic_revenue"]] = 0.0
    doc = _run(users, tmp_path / "models")
    check = _check(doc, "estimation", "v2")
    assert check["status"] == "fail" and "revenue is 0 for every user" in check["message"]
    assert doc["trustworthy"] is False and doc["versions"][1]["estimates"] == []
    statement = doc["headline"]["statements"][0]
    assert statement["effect"] is None and "NOT ESTIMATED" in statement["text"]
    # The clicks in the same data still have an interval, in the metric table of another run.
    clicks = _run(
        users, tmp_path / "models", AttributionConfig(metric="clicks", run_refuters=False)
    )
    assert clicks["versions"][1]["estimates"][0]["se"] > 0


def test_fallback_share_gap_between_arms_fails_the_gate(tmp_path: Path) -> None:
    v1, v2 = TWO
    skewed = (v1, VersionSpec(**{**v2.__dict__, "fallback_share": 0.25}))
    cfg = AttributionConfig(run_refuters=False)
    for versions, status in ((TWO, "pass"), (skewed, "fail")):
        sim = simulate(SimulationSpec(n_users=2_000, assignment="random", versions=versions), 1)
        write_lineage(sim, tmp_path / "models")
        doc = _run(sim.users, tmp_path / "models", cfg)
        check = _check(doc, "fallback_balance")
        assert check["status"] == status, check["message"]
        shares = doc["data"]["fallback_by_arm"]
        assert set(shares) == {"control", "treatment_a"}
        assert shares["treatment_a"]["version"] == "v2"
        expected = 0.25 if status == "fail" else 0.05
        assert abs(shares["treatment_a"]["share"] - expected) < 0.02
        assert abs(doc["versions"][1]["fallback_share"] - expected) < 0.02


def test_version_without_slice_passes_only_when_registered_as_external(tmp_path: Path) -> None:
    v1, v2 = TWO
    bandit = VersionSpec(**{**v2.__dict__, "name": "ts-bandit", "has_lineage": False})
    sim = simulate(SimulationSpec(n_users=2_000, assignment="random", versions=(v1, bandit)), 4)
    models = tmp_path / "models"
    write_lineage(sim, models)
    cfg = AttributionConfig(run_refuters=False)
    before = _run(sim.users, models, cfg)
    assert _check(before, "lineage", "ts-bandit")["status"] == "fail"
    assert "register-external" in _check(before, "lineage", "ts-bandit")["message"]
    Registry(models).register_external("ts-bandit", "thompson sampling over 80 items")
    after = _run(sim.users, models, cfg)
    lineage = _check(after, "lineage", "ts-bandit")
    assert lineage["status"] == "pass" and "thompson sampling" in lineage["message"]
    assert after["versions"][1]["external_policy"]["policy"].startswith("thompson")


def test_control_and_split_come_from_the_registry_rollout(tmp_path: Path) -> None:
    v1, v2 = TWO
    # Arms not named "control": only the rollout can say which version is the reference.
    versions = (VersionSpec(**{**v1.__dict__, "arm": "a"}), VersionSpec(**{**v2.__dict__}))
    spec = SimulationSpec(n_users=4_000, assignment="random", split=(0.3, 0.7), versions=versions)
    sim = simulate(spec, seed=5)
    models = tmp_path / "models"
    write_lineage(sim, models)
    rollout = Rollout(Registry(models))
    rollout.full("v1")
    rollout.canary("v2", 70)
    cfg = AttributionConfig(run_refuters=False)
    doc = _run(sim.users, models, cfg)
    assert doc["control_version"] == "v1"
    assert doc["design"]["control_source"].startswith("registry rollout")
    assert doc["design"]["expected_split"] == pytest.approx({"v1": 0.3, "v2": 0.7})
    assert _check(doc, "sample_ratio_mismatch")["status"] == "pass"
    # The same data against a rollout that promised 50/50: SRM fails.
    rollout.canary("v2", 50)
    assert _check(_run(sim.users, models, cfg), "sample_ratio_mismatch")["status"] == "fail"


def test_a_tie_never_chooses_the_control(tmp_path: Path) -> None:
    sim = simulate(SimulationSpec(n_users=200, assignment="random", versions=TWO), seed=0)
    users = sim.users.copy()
    users["arm"] = users["version"]
    users["version"] = ["v1", "v2"] * 100
    users["arm"] = users["version"]
    with pytest.raises(InputDataError, match=r"cannot choose a control.*--control"):
        pipeline.run(prepare_table(users, CFG), tmp_path, CFG, refute=False)
    doc = pipeline.run(
        prepare_table(users, CFG), tmp_path, AttributionConfig(control_version="v2"), refute=False
    )
    assert doc["control_version"] == "v2" and doc["design"]["control_source"] == "argument"
