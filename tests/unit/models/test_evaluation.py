"""`evaluate` on slices: the candidate re-orders the logged items; both policies' propensities
given those items are exact, so the estimates cover the known value of that re-ordering."""

from __future__ import annotations

import numpy as np

from models import ope, slices
from models.evaluation import evaluate, slate_propensities
from models.training import TrainingConfig, train
from tests.unit.models.conftest import SLICE, Shop

N, M = 10, 3
EXAMINATION = 1.0 / (1.0 + np.arange(M))


def test_reordering_estimates_cover_the_true_value() -> None:
    rng = np.random.default_rng(21)
    requests = 5000
    appeal = rng.beta(2.0, 5.0, (requests, N))
    logit = np.log(appeal / (1 - appeal))
    logged_scores_all = logit + rng.normal(0, 1.5, (requests, N))
    w = np.exp(logged_scores_all)  # logging: softmax(t=1) over all N candidates
    slates = np.argsort(-(np.log(w) + rng.gumbel(size=w.shape)), axis=1)[:, :M]
    r = np.arange(requests)[:, None]
    top_propensity = w[r[:, 0], slates[:, 0]] / w.sum(axis=1)  # what serving logs at position 0
    clicks = rng.random((requests, M)) < appeal[r, slates] * EXAMINATION

    p0, p1 = slate_propensities(logged_scores_all[r, slates], top_propensity,
                                np.ones(requests), logit[r, slates], temperature=0.5)
    diag = np.arange(M)
    inp = ope.LoggedImpressions(np.repeat(np.arange(requests), M), clicks.ravel().astype(float),
                                p0[:, diag, diag].ravel(), p1[:, diag, diag].ravel())
    q = appeal[r, slates][:, :, None] * EXAMINATION[None, None, :]  # [request, item, position]
    truth = float(np.mean(np.sum(p1 * q, axis=1)))
    logged = float(clicks.mean())
    assert truth > logged * 1.05  # the candidate orders the same items better
    for est in (ope.ips(inp), ope.snips(inp)):
        assert est.ci_low <= truth <= est.ci_high, (est, truth, logged)


def test_the_logging_policy_reordering_its_own_items_has_weight_one() -> None:
    rng = np.random.default_rng(22)
    scores = rng.normal(size=(200, M))  # the slate *is* the candidate set: W = Σ w
    w = np.exp(scores)
    top = w[:, 0] / w.sum(axis=1)
    p0, p1 = slate_propensities(scores, top, np.ones(200), scores, temperature=1.0)
    np.testing.assert_allclose(p0, p1, rtol=1e-10)


def test_evaluate_a_version_on_a_slice(shop: Shop) -> None:
    rng = slices.SliceRange.parse(SLICE)
    version = train(shop.paths, rng, shop.store, TrainingConfig(num_boost_round=40)).version
    report = evaluate(shop.paths, rng, shop.store, version, temperature=1.0, positions=4)
    assert report.requests == len(shop.rows) // 5 and report.skipped == {}
    for reward in ("clicked", "revenue"):
        assert [e.estimator for e in report.estimates[reward]] == ["ips", "snips", "dr"]
        logged = report.logged[reward]
        assert logged.impressions == report.requests * 4
        for e in report.estimates[reward]:
            assert np.isfinite([e.value, e.ci_low, e.ci_high]).all() and e.ess > 0
    assert "re-orders the logged top-4" in report.text()
    assert report.to_dict()["estimates"]["clicked"][0]["estimator"] == "ips"
