"""Who decides the slates: the Recommender protocol, and reference policies for tests.

In the demo the real serving path is the recommender; the reference policies here (uniform
random, popularity, an oracle that knows true relevance) bootstrap the loop and give tests
policies of known quality. Each logs the exact propensity of every shown item at its slot.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from simulator import behaviour, rng
from simulator.errors import RecommenderError, SimulatorConfigError
from simulator.world import World


@dataclass(frozen=True)
class SlateItem:
    item_id: str
    position: int  # 0-based
    score: float  # ranking score before exploration
    propensity: float  # P(the policy put this item at this position), in (0, 1]


@dataclass(frozen=True)
class Slate:
    """What a recommender answers: the ServingEvent minus who/when (the simulator knows)."""

    items: tuple[SlateItem, ...]
    model_version: str
    arm: str = ""
    policy: str = ""
    fallback: bool = False
    request_id: str | None = None  # None: the simulator assigns a deterministic one

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Slate:
        """Adopt a ServingEvent-shaped dict (e.g. what serving logged for this request)."""
        items = tuple(SlateItem(str(i["item_id"]), int(i["position"]), float(i["score"]),
                                float(i["propensity"])) for i in event["slate"])
        return cls(items, str(event["model_version"]), str(event.get("arm") or ""),
                   str(event.get("policy") or ""), bool(event.get("fallback", False)),
                   event.get("request_id"))


    @classmethod
    def from_object(cls, slate: Any) -> Slate:
        """Adopt any slate object with the same attribute names (e.g. serving's own Slate)."""
        items = tuple(SlateItem(str(i.item_id), int(i.position), float(i.score),
                                float(i.propensity)) for i in slate.items)
        return cls(items, str(slate.model_version), str(slate.arm or ""),
                   str(slate.policy or ""), bool(slate.fallback),
                   getattr(slate, "request_id", None))


class Recommender(Protocol):
    """Anything that ranks candidates for a user at a (simulated) time."""

    def __call__(self, user_id: str, session_id: str, candidates: Sequence[str], k: int,
                 event_time: int) -> Slate: ...


Scorer = Callable[[int, int, np.ndarray], np.ndarray]
"""(day, user index, item indices) -> one score per item; higher is shown first."""


class EpsilonGreedy:
    """Top-k by score; with probability epsilon a uniformly random slate instead.

    Exact propensity of item a at slot j: (1 - e) * [a is the greedy item at j] + e / n,
    since a uniformly random ordered k-subset of n candidates puts any item at any slot
    with probability 1/n.
    """

    def __init__(self, world: World, scorer: Scorer, *, epsilon: float, version: str,
                 arm: str = "") -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise SimulatorConfigError(f"epsilon must be in [0, 1], got {epsilon}")
        self.world = world
        self.scorer = scorer
        self.epsilon = epsilon
        self.version = version
        self.arm = arm
        self.policy = "uniform" if epsilon == 1.0 else f"epsilon_greedy(e={epsilon:g})"
        self._rng = rng.stream(world.config.seed, rng.POLICY, zlib.crc32(version.encode()))

    def __call__(self, user_id: str, session_id: str, candidates: Sequence[str], k: int,
                 event_time: int) -> Slate:
        world = self.world
        items = np.fromiter((world.item_index[c] for c in candidates), dtype=np.int64,
                            count=len(candidates))
        n = len(items)
        k = min(k, n)
        scores = np.asarray(self.scorer(world.day_of(event_time), world.user_index[user_id],
                                        items), dtype=float)
        greedy = np.argsort(-scores, kind="stable")[:k]
        explore = self.epsilon > 0 and self._rng.random() < self.epsilon
        shown = self._rng.permutation(n)[:k] if explore else greedy
        propensity = self.epsilon / n + (1.0 - self.epsilon) * (shown == greedy)
        return Slate(
            tuple(SlateItem(candidates[c], j, float(scores[c]), float(propensity[j]))
                  for j, c in enumerate(shown)),
            model_version=self.version, arm=self.arm, policy=self.policy,
        )


def uniform_random(world: World, version: str = "random") -> EpsilonGreedy:
    """Uniformly random slates: the unbiased logging policy OPE likes."""
    return EpsilonGreedy(world, lambda day, user, items: np.zeros(len(items)), epsilon=1.0,
                         version=version)


def popularity(world: World, epsilon: float = 0.0, version: str = "popularity") -> EpsilonGreedy:
    """Bestsellers first (yesterday's appeal): the shop's baseline, blind to taste."""
    return EpsilonGreedy(world, lambda day, user, items: world.popularity(day, items),
                         epsilon=epsilon, version=version)


def oracle(world: World, epsilon: float = 0.0, version: str = "oracle") -> EpsilonGreedy:
    """Sorts by true expected revenue per examination (without the request's noise)."""

    def score(day: int, user: int, items: np.ndarray) -> np.ndarray:
        return behaviour.value(behaviour.probabilities(world, day, user, items))

    return EpsilonGreedy(world, score, epsilon=epsilon, version=version)


@dataclass(frozen=True)
class Arm:
    name: str
    recommender: Recommender
    share: float


class Split:
    """Route each user to one arm by a stable hash; optionally skewed by segment.

    `segment_shares` (segment -> one share per arm) makes a non-random rollout, e.g. a new
    version shown mostly to heavy users: the confounded case attribution must see through.
    """

    def __init__(self, world: World, arms: Sequence[Arm], salt: str = "split",
                 segment_shares: Mapping[str, Sequence[float]] | None = None) -> None:
        if not arms or abs(sum(a.share for a in arms) - 1.0) > 1e-9:
            raise SimulatorConfigError(
                f"arm shares must sum to 1, got {[(a.name, a.share) for a in arms]}")
        self.world = world
        self.arms = tuple(arms)
        self.salt = salt
        self.segment_shares = {s: tuple(v) for s, v in (segment_shares or {}).items()}
        for segment, shares in self.segment_shares.items():
            if len(shares) != len(arms) or abs(sum(shares) - 1.0) > 1e-9:
                raise SimulatorConfigError(
                    f"segment_shares[{segment!r}] needs {len(arms)} shares summing to 1, "
                    f"got {shares}")

    def assign(self, user_id: str) -> Arm:
        digest = hashlib.sha256(f"{self.salt}\x1f{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2.0**64
        segment = str(self.world.segment_names[self.world.user_index[user_id]])
        shares = self.segment_shares.get(segment, tuple(a.share for a in self.arms))
        edge = 0.0
        for arm, share in zip(self.arms, shares, strict=True):
            edge += share
            if point < edge:
                return arm
        return self.arms[-1]

    def __call__(self, user_id: str, session_id: str, candidates: Sequence[str], k: int,
                 event_time: int) -> Slate:
        arm = self.assign(user_id)
        slate = arm.recommender(user_id, session_id, candidates, k, event_time)
        return replace(slate, arm=arm.name)


def resolve(slate: Slate, column: Mapping[str, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Check a slate against its request; return (candidate columns, positions) of its items."""
    items = slate.items
    if not items:
        raise RecommenderError(f"{slate.model_version}: empty slate (expected 1..{k} items)")
    if len(items) > k:
        raise RecommenderError(
            f"{slate.model_version}: slate has {len(items)} items, more than k={k}")
    cols = np.empty(len(items), dtype=np.int64)
    positions = np.empty(len(items), dtype=np.int64)
    for n, item in enumerate(items):
        col = column.get(item.item_id)
        if col is None:
            raise RecommenderError(
                f"{slate.model_version}: slate item {item.item_id!r} is not one of the "
                f"{len(column)} candidates of the request")
        if not (math.isfinite(item.propensity) and 0.0 < item.propensity <= 1.0):
            raise RecommenderError(
                f"{slate.model_version}: propensity of {item.item_id} must be in (0, 1], "
                f"got {item.propensity}")
        if not math.isfinite(item.score):
            raise RecommenderError(
                f"{slate.model_version}: score of {item.item_id} must be finite, "
                f"got {item.score}")
        cols[n], positions[n] = col, item.position
    if positions.min() < 0 or len(set(positions.tolist())) != len(items):
        raise RecommenderError(
            f"{slate.model_version}: positions must be distinct and >= 0, "
            f"got {positions.tolist()}")
    if len(set(cols.tolist())) != len(items):
        raise RecommenderError(f"{slate.model_version}: slate lists an item more than once")
    return cols, positions
