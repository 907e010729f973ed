"""Off-policy estimators on synthetic logs whose true target value is known exactly."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from models import ope
from models.errors import EvaluationError
from models.policy import SoftmaxPolicy

N, M = 6, 3  # candidates per request, slate positions
EXAMINATION = 1.0 / (1.0 + np.arange(M))  # position bias of the click model
BUY_RATE = 0.3


def pl_tables(w: np.ndarray, m: int) -> np.ndarray:
    """(R, n, m) exact P(item at position) per request, by enumerating every ordered slate."""
    rows, n = w.shape
    out = np.zeros((rows, n, m))
    total = w.sum(axis=1)
    for slate in itertools.permutations(range(n), m):
        p, left = np.ones(rows), total.copy()
        for a in slate:
            p *= w[:, a] / left
            left -= w[:, a]
        for j, a in enumerate(slate):
            out[:, a, j] += p
    return out


def draw_slates(w: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """Plackett-Luce slates (Gumbel-top-m), one row per request."""
    keys = np.log(w) + rng.gumbel(size=w.shape)
    return np.argsort(-keys, axis=1)[:, :m]


@dataclass
class World:
    appeal: np.ndarray  # (R, N) click probability at the top position
    price: np.ndarray  # (R, N)
    target: np.ndarray  # (R, N, M) target policy's exact marginals

    def q(self, reward: str) -> np.ndarray:
        """(R, N, M) expected reward of each item at each position."""
        clicks = self.appeal[:, :, None] * EXAMINATION[None, None, :]
        return clicks if reward == "clicked" else clicks * BUY_RATE * self.price[:, :, None]

    def truth(self, reward: str) -> float:
        """Value per impression of the target policy on these contexts, exactly."""
        return float(np.mean(np.sum(self.target * self.q(reward), axis=1)))


def make_world(requests: int, rng: np.random.Generator) -> World:
    appeal = rng.beta(2.0, 5.0, (requests, N))
    price = rng.uniform(5, 50, (requests, N))
    target_scores = np.log(appeal / (1 - appeal)) + rng.normal(0, 0.3, (requests, N))
    w1 = np.exp(target_scores / 0.5)
    return World(appeal, price, pl_tables(w1, M))


def log(world: World, logging_w: np.ndarray | None, rng: np.random.Generator,
        q_bias: float = 1.25, noiseless: bool = False) -> dict[str, ope.LoggedImpressions]:
    """Serve with the logging policy (uniform when logging_w is None), draw outcomes (or
    take their expectation when noiseless), and return OPE inputs per reward; q̂ is the true
    q scaled by q_bias (a biased reward model)."""
    requests = len(world.appeal)
    if logging_w is None:
        slates = np.argsort(rng.random((requests, N)), axis=1)[:, :M]
        p0 = np.full((requests, M), 1.0 / N)
    else:
        slates = draw_slates(logging_w, M, rng)
        table = pl_tables(logging_w, M)
        p0 = table[np.arange(requests)[:, None], slates, np.arange(M)[None, :]]
    r_idx = np.arange(requests)[:, None]
    pos = np.arange(M)[None, :]
    p1 = world.target[r_idx, slates, pos]
    click_p = world.appeal[r_idx, slates] * EXAMINATION[None, :]
    clicked = rng.random(click_p.shape) < click_p
    bought = clicked & (rng.random(click_p.shape) < BUY_RATE)
    rewards = {"clicked": clicked.astype(float), "revenue": bought * world.price[r_idx, slates]}
    if noiseless:
        rewards = {"clicked": click_p, "revenue": click_p * BUY_RATE * world.price[r_idx, slates]}
    out = {}
    for name, r in rewards.items():
        q_hat = world.q(name) * q_bias
        out[name] = ope.LoggedImpressions(
            request=np.repeat(np.arange(requests), M),
            reward=r.ravel(),
            logging_propensity=p0.ravel(),
            target_propensity=p1.ravel(),
            q_logged=q_hat[r_idx, slates, pos].ravel(),
            q_target=np.sum(world.target * q_hat, axis=1).ravel(),
        )
    return out


def logging_weights(world: World, rng: np.random.Generator) -> np.ndarray:
    scores = np.log(world.appeal / (1 - world.appeal)) + rng.normal(0, 1.5, world.appeal.shape)
    return np.exp(scores)  # softmax(t=1) over noisy scores: a weaker, more exploratory ranker


@pytest.mark.parametrize("reward", ["clicked", "revenue"])
def test_estimates_cover_the_known_truth(reward: str) -> None:
    rng = np.random.default_rng(11)
    world = make_world(6000, rng)
    inp = log(world, logging_weights(world, rng), rng)[reward]
    truth = world.truth(reward)
    logged_mean = float(inp.reward.mean())
    for est in ope.estimate_all(inp):
        assert est.ci_low <= truth <= est.ci_high, (est, truth)
        assert 0 < est.ess <= est.impressions
    # the target is the better ranker: the estimate must see it, the logged mean cannot
    assert truth > logged_mean * 1.05


def test_intervals_have_their_nominal_coverage() -> None:
    rng = np.random.default_rng(12)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    trials = 40
    for _ in range(trials):
        world = make_world(400, rng)
        inp = log(world, logging_weights(world, rng), rng)["clicked"]
        truth = world.truth("clicked")
        for est in ope.estimate_all(inp):
            hits[est.estimator] += est.ci_low <= truth <= est.ci_high
    assert all(h >= 0.85 * trials for h in hits.values()), hits  # 95% nominal


def test_ips_on_uniform_logs_equals_the_on_policy_mean() -> None:
    rng = np.random.default_rng(13)
    world = make_world(6000, rng)
    ips = ope.ips(log(world, None, rng)["clicked"])
    # serve the target policy itself on the same contexts and average what happens
    slates = np.zeros((len(world.appeal), M), dtype=int)
    u = rng.random((len(world.appeal), M))
    cum = np.cumsum(world.target, axis=1)  # per position: item CDF of the target marginals
    for j in range(M):  # a marginal draw per position is enough for a per-impression mean
        slates[:, j] = (u[:, j:j + 1] > cum[:, :, j]).sum(axis=1)
    click_p = world.appeal[np.arange(len(slates))[:, None], slates] * EXAMINATION
    clicks = rng.random(click_p.shape) < click_p
    on = ope.on_policy(np.repeat(np.arange(len(slates)), M), clicks.ravel().astype(float))
    assert abs(ips.value - on.value) <= 1.96 * np.hypot(ips.se, on.se), (ips, on)


def test_a_good_reward_model_removes_the_variance_of_the_weights() -> None:
    # Rewards without outcome noise: all of IPS's spread comes from the importance weights,
    # which an exact reward model cancels; what is left is the spread across contexts.
    rng = np.random.default_rng(14)
    world = make_world(3000, rng)
    inp = log(world, logging_weights(world, rng), rng, q_bias=1.0, noiseless=True)["revenue"]
    ips, dr = ope.ips(inp), ope.doubly_robust(inp)
    assert dr.se < 0.5 * ips.se
    assert dr.ci_low <= world.truth("revenue") <= dr.ci_high


def test_logged_propensities_here_are_the_policy_module_ones() -> None:
    rng = np.random.default_rng(15)
    scores = rng.normal(size=N)
    w = np.exp(scores)
    slate = SoftmaxPolicy(1.0).sample(scores, M, rng)
    table = pl_tables(w[None, :], M)[0]
    np.testing.assert_allclose(SoftmaxPolicy(1.0).propensities(scores, slate),
                               table[slate, np.arange(M)], rtol=1e-9)


def test_inputs_are_validated() -> None:
    ones = np.ones(4)
    with pytest.raises(EvaluationError, match=r"\(0, 1\]"):
        ope.LoggedImpressions(np.arange(4), ones, np.array([0.5, 0.0, 0.5, 0.5]), ones)
    with pytest.raises(EvaluationError, match="expected 4"):
        ope.LoggedImpressions(np.arange(3), ones, ones, ones)
    with pytest.raises(EvaluationError, match="both"):
        ope.LoggedImpressions(np.arange(4), ones, ones, ones, q_logged=ones)
    with pytest.raises(EvaluationError, match="no weight"):
        ope.snips(ope.LoggedImpressions(np.arange(4), ones, ones, np.zeros(4)))
