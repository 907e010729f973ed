"""Plackett-Luce propensities: exact against enumeration, consistent, and what sampling does."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.errors import ModelsError
from models.policy import (
    SoftmaxPolicy,
    conditional_marginals,
    marginal_matrix,
    position_marginals,
)


def enumerate_marginals(w: np.ndarray, k: int) -> np.ndarray:
    """P(item at position) by summing the probability of every ordered slate of k."""
    out = np.zeros((len(w), k))
    for slate in itertools.permutations(range(len(w)), k):
        p, left = 1.0, w.sum()
        for a in slate:
            p *= w[a] / left
            left -= w[a]
        for j, a in enumerate(slate):
            out[a, j] += p
    return out


@pytest.mark.parametrize(("n", "k", "spread"), [(5, 3, 1.0), (6, 4, 3.0), (7, 5, 8.0), (6, 6, 0.1)])
def test_marginals_match_enumeration(n: int, k: int, spread: float) -> None:
    w = np.exp(np.random.default_rng(n).normal(0, spread, n))
    exact = enumerate_marginals(w, k)
    np.testing.assert_allclose(marginal_matrix(w, k), exact, rtol=1e-9, atol=1e-14)


def test_position_zero_is_the_softmax_share() -> None:
    policy = SoftmaxPolicy(0.5)
    scores = np.random.default_rng(1).normal(size=30)
    w = np.exp(scores / 0.5)
    got = position_marginals(policy.weights(scores), np.arange(30), np.zeros(30, dtype=int))
    np.testing.assert_allclose(got, w / w.sum(), rtol=1e-9)


def test_every_position_is_filled_once_and_no_item_twice() -> None:
    scores = np.random.default_rng(2).normal(0, 2, 100)
    m = marginal_matrix(SoftmaxPolicy(0.5).weights(scores), 10)
    np.testing.assert_allclose(m.sum(axis=0), 1.0, atol=1e-9)  # each position holds one item
    assert np.all(m.sum(axis=1) <= 1.0 + 1e-9)  # an item appears at most once


def test_sampling_frequencies_match_the_logged_propensities() -> None:
    rng = np.random.default_rng(3)
    policy = SoftmaxPolicy(0.7)
    scores = rng.normal(size=12)
    k, draws = 4, 40_000
    counts = np.zeros((12, k))
    for _ in range(draws):
        slate = policy.sample(scores, k, rng)
        counts[slate, np.arange(k)] += 1
    exact = marginal_matrix(policy.weights(scores), k)
    se = np.sqrt(exact * (1 - exact) / draws)
    assert np.max(np.abs(counts / draws - exact) / se) < 4.5  # 48 cells, ~N(0,1) each


def test_propensities_of_a_drawn_slate() -> None:
    rng = np.random.default_rng(4)
    policy = SoftmaxPolicy(1.0)
    scores = rng.normal(size=8)
    slate = policy.sample(scores, 3, rng)
    table = marginal_matrix(policy.weights(scores), 3)
    np.testing.assert_allclose(policy.propensities(scores, slate), table[slate, [0, 1, 2]],
                               rtol=1e-12)


def test_conditional_marginals_match_enumeration() -> None:
    w = np.exp(np.random.default_rng(5).normal(size=10))
    shown = [3, 1, 7, 4]
    total = w.sum()
    expected = np.zeros((4, 4))
    for order in itertools.permutations(range(4)):
        p, left = 1.0, total
        for a in order:
            p *= w[shown[a]] / left
            left -= w[shown[a]]
        for j, a in enumerate(order):
            expected[a, j] += p
    expected /= expected[:, 0].sum()  # every ordering fills position 0 once: P(this set)
    got = conditional_marginals(w[shown][None, :], np.array([total]))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got.sum(axis=0), 1.0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0)


def test_conditional_on_the_whole_candidate_set_is_the_plain_marginal() -> None:
    w = np.exp(np.random.default_rng(6).normal(size=5))
    got = conditional_marginals(w[None, :], np.array([w.sum()]))[0]
    np.testing.assert_allclose(got, enumerate_marginals(w, 5), rtol=1e-12)


def test_policy_name_round_trips_and_bad_names_are_refused() -> None:
    assert SoftmaxPolicy.parse(SoftmaxPolicy(0.25).name) == SoftmaxPolicy(0.25)
    with pytest.raises(ModelsError, match="softmax"):
        SoftmaxPolicy.parse("epsilon_greedy(e=0.1)")
    with pytest.raises(ModelsError, match="temperature"):
        SoftmaxPolicy(0.0)
