"""Refuter verdicts can fail: each rule on a sound and a broken result, alpha from config,
an erroring refuter failing the gate, and a sound analysis passing all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from attribution import causal, pipeline, validity
from attribution.causal import RefuterResult, refuter_verdict
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from attribution.stats import make_estimate
from bench.attribution_files import write_lineage
from bench.attribution_world import SimulationSpec, default_versions, simulate

CFG = AttributionConfig()
BASE = make_estimate("backdoor.linear_regression", 2.0, 0.5, 10.0, 0.05, 1000, 1000, 0.05)


def test_placebo_fails_when_a_permuted_treatment_still_has_an_effect() -> None:
    # 20 permutations: the mean placebo effect has SD ≈ SE/sqrt(20) ≈ 0.11 around 0.
    assert refuter_verdict("placebo_treatment_refuter", BASE, 0.05, 0.0, 20, CFG)[0] == "pass"
    status, why = refuter_verdict("placebo_treatment_refuter", BASE, 0.6, 0.9, 20, CFG)
    assert status == "fail" and "effect where there is none" in why
    # DoWhy's p-value does not decide it ("significant" there means the real effect stands out).
    assert refuter_verdict("placebo_treatment_refuter", BASE, 0.05, 0.9, 20, CFG)[0] == "pass"


@pytest.mark.parametrize("name", ["random_common_cause", "data_subset_refuter"])
def test_shift_refuters_fail_only_when_rejected_and_moved(name: str) -> None:
    assert refuter_verdict(name, BASE, 2.02, 0.8, 20, CFG)[0] == "pass"
    assert refuter_verdict(name, BASE, 3.5, 0.001, 20, CFG)[0] == "fail"  # rejected, 3 SE
    assert refuter_verdict(name, BASE, 2.1, 0.001, 20, CFG)[0] == "pass"  # within 0.5 SE
    assert refuter_verdict(name, BASE, 3.5, 0.3, 20, CFG)[0] == "pass"  # not rejected


def test_alpha_comes_from_config() -> None:
    strict = AttributionConfig(alpha=0.01, refuter_tolerance_se=0.1)
    assert refuter_verdict("data_subset_refuter", BASE, 3.5, 0.03, 20, CFG)[0] == "fail"
    assert refuter_verdict("data_subset_refuter", BASE, 3.5, 0.03, 20, strict)[0] == "pass"
    # The placebo band is z(1 - alpha/2)·SE/√sims (0.219 at alpha 0.05, 0.288 at 0.01) unless
    # the materiality floor (refuter_tolerance_se · SE) is wider.
    loose = AttributionConfig(refuter_tolerance_se=0.1)
    assert refuter_verdict("placebo_treatment_refuter", BASE, 0.25, None, 20, loose)[0] == "fail"
    assert refuter_verdict("placebo_treatment_refuter", BASE, 0.25, None, 20, CFG)[0] == "pass"
    assert refuter_verdict("placebo_treatment_refuter", BASE, 0.25, None, 20, strict)[0] == "pass"


def test_sensitivity_warns_when_a_hidden_confounder_flips_or_erases_the_effect() -> None:
    name = "add_unobserved_common_cause"
    assert refuter_verdict(name, BASE, 1.9, None, 1, CFG)[0] == "pass"
    assert refuter_verdict(name, BASE, 0.5, None, 1, CFG)[0] == "warn"  # no longer significant
    assert refuter_verdict(name, BASE, -0.2, None, 1, CFG)[0] == "warn"  # sign flips


def test_an_erroring_refuter_is_a_failed_check_unless_opted_out() -> None:
    errored = RefuterResult(
        "placebo_treatment_refuter", "error", 1.0, float("nan"), None, 0, 9, "x"
    )
    assert validity.refuters("v2", [errored])[0].status == "fail"
    assert validity.refuters("v2", [errored], errors_fail=False)[0].status == "warn"


def test_refuters_that_crash_make_the_report_untrustworthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dowhy import CausalModel

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("refuter exploded")

    monkeypatch.setattr(CausalModel, "refute_estimate", broken)
    versions = default_versions()[:2]
    sim = simulate(SimulationSpec(n_users=800, assignment="random", versions=versions), seed=1)
    write_lineage(sim, tmp_path)
    cfg = AttributionConfig(refuter_simulations=2, refuter_max_units=500)
    doc = pipeline.run(prepare_table(sim.users, cfg), tmp_path, cfg)
    refuter_checks = [c for c in doc["checks"] if c["name"].startswith("refuter:")]
    assert len(refuter_checks) == 4 and all(c["status"] == "fail" for c in refuter_checks)
    assert "refuter exploded" in refuter_checks[0]["message"]
    assert doc["trustworthy"] is False
    assert set(doc["glossary"]["refuters"]) >= set(causal.REFUTERS)


def test_a_sound_randomised_analysis_passes_every_refuter() -> None:
    versions = default_versions()[:2]
    sim = simulate(SimulationSpec(n_users=3_000, assignment="random", versions=versions), seed=2)
    cfg = AttributionConfig(refuter_simulations=10, refuter_max_units=3_000)
    table = prepare_table(sim.users, cfg)
    res = causal.estimate_version(table.users, table.covariates, "v2", "v1", cfg, refute=True)
    assert [r.status for r in res.refuters] == ["pass"] * 4, [r.message for r in res.refuters]
