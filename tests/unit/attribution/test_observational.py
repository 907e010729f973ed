"""A rollout targeted on something attribution cannot see must not come out "trustworthy";
a randomised one must not be flagged. The negative control (revenue held out before exposure)
and the assignment check are what tell them apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attribution import pipeline
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from attribution.experiment import naive_bias_note
from attribution.stats import make_estimate
from bench.attribution_world import SimulationSpec, default_versions, simulate

V1, _, PLACEBO = default_versions()  # v3 is retrained on another slice but changes nothing


def _report(spec: SimulationSpec, seed: int, split: str | None = None) -> dict[str, Any]:
    cfg = AttributionConfig(run_refuters=False, expected_split=split)
    sim = simulate(spec, seed=seed)
    assert abs(sim.planted_uplift("v3")) < 1e-9
    return pipeline.run(prepare_table(sim.users, cfg), Path("/nonexistent"), cfg)


def _check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["checks"] if c["name"] == name and c["scope"] == "v3")


def test_targeted_on_an_unobservable_is_never_trustworthy() -> None:
    spec = SimulationSpec(
        n_users=6_000, versions=(V1, PLACEBO), assignment="latent", latent_sd=0.7, latent_tilt=1.5
    )
    for seed in range(3):
        doc = _report(spec, seed)
        statement = doc["headline"]["statements"][0]
        # The zero-effect version looks like a winner ...
        assert statement["significant"] and statement["effect"] > 0
        # ... but the gate says why not to believe it.
        assert _check(doc, "negative_control")["status"] == "fail"
        assert statement["trustworthy"] is False and "OBSERVATIONAL" in statement["text"]
        assert "robustness value" in statement["text"] and statement["robustness_value"] > 0
        assert _check(doc, "assignment")["status"] == "warn"  # no randomised split claimed
    # Claimed as a 50/50 randomised split, the imbalance itself fails the assignment check.
    doc = _report(spec, 0, split="v1=0.5,v3=0.5")
    assert _check(doc, "assignment")["status"] == "fail"


def test_a_randomised_rollout_is_not_flagged() -> None:
    spec = SimulationSpec(n_users=4_000, versions=(V1, PLACEBO), assignment="random")
    statuses = []
    for seed in range(6):
        doc = _report(spec, seed, split="v1=0.5,v3=0.5")
        statuses.append(
            (_check(doc, "negative_control")["status"], _check(doc, "assignment")["status"])
        )
        assert "OBSERVATIONAL" not in doc["headline"]["statements"][0]["text"]
    assert statuses == [("pass", "pass")] * 6, statuses


def test_naive_warning_fires_on_imbalance_even_when_its_interval_is_wide() -> None:
    # Heavy tails: the naive interval covers the adjusted value, yet the arms differ before
    # exposure, so the naive number compares different users.
    naive = make_estimate("naive", 10.8, 8.0, 50.0, 0.2, 500, 500, 0.05)
    adjusted = make_estimate("ols", 0.5, 2.0, 50.0, 0.05, 500, 500, 0.05)
    biased, note = naive_bias_note(naive, adjusted, {"pre_revenue": 0.35}, max_smd=0.1)
    assert biased and "pre_revenue standardised difference 0.35" in note
    assert naive_bias_note(naive, adjusted, {"pre_revenue": 0.02}, max_smd=0.1)[0] is False
