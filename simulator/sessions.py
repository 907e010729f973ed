"""A day's schedule: who visits when, which slots they load, and what candidates each gets.

The schedule never depends on the policy (sessions, request times, candidate sets and the
per-request relevance noise come from the SCHEDULE stream), so the same day can be replayed
under any policy with exactly the same users, requests and candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from simulator import behaviour, rng
from simulator.world import DAY_MS, HOUR_MS, World

# Relative session starts per hour of day (UTC): quiet nights, a lunch bump, evening peak.
DIURNAL = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2, 2.2, 2.3, 2.5,
                    3, 2.8, 2.5, 2.4, 2.5, 2.8, 3.4, 4, 4.2, 3.8, 2.8, 1.8])
REQUEST_GAP = (40_000.0, 0.7)  # lognormal median ms and log-sd between slots in a session
ORGANIC_TAIL_MS = 5 * 60_000  # organic finds happen up to 5 min after the last slot
# Candidate mix: bestsellers, the user's favourite categories, the rest random.
POPULAR_SHARE = 0.4
CATEGORY_SHARE = 0.4
POPULAR_POOL = 3  # bestsellers are drawn from the top POPULAR_POOL x (their count)


@dataclass(frozen=True)
class DayPlan:
    """Every session and request of one day, requests sorted by time."""

    day: int
    start_ms: int
    session_user: np.ndarray
    session_start: np.ndarray  # epoch ms
    session_end: np.ndarray  # time of the session's last request
    session_organic: np.ndarray  # organic finds in the session
    request_time: np.ndarray  # epoch ms, non-decreasing
    request_user: np.ndarray
    request_session: np.ndarray
    candidates: np.ndarray  # (requests, candidates) item indices
    noise: np.ndarray  # (requests, candidates) relevance noise
    active: np.ndarray  # items on sale this day

    @property
    def requests(self) -> int:
        return len(self.request_time)

    @property
    def sessions(self) -> int:
        return len(self.session_user)


def plan_day(world: World, day: int) -> DayPlan:
    """Draw day `day`'s schedule from the seed (pure: the same world gives the same plan)."""
    cfg = world.config
    world.check_day(day)
    gen = rng.stream(cfg.seed, rng.SCHEDULE, day)
    start = world.day_start(day)

    per_user = gen.poisson(world.users.activity)
    session_user = np.repeat(np.arange(cfg.users), per_user)
    n_sessions = len(session_user)
    hour = gen.choice(24, size=n_sessions, p=DIURNAL / DIURNAL.sum())
    session_start = start + hour * HOUR_MS + gen.integers(0, HOUR_MS, size=n_sessions)
    slots = 1 + gen.poisson(cfg.requests_per_session - 1, size=n_sessions)

    owner = np.repeat(np.arange(n_sessions), slots)
    gaps = REQUEST_GAP[0] * np.exp(gen.normal(0.0, REQUEST_GAP[1], size=len(owner)))
    first = np.concatenate(([0], np.cumsum(slots)[:-1]))
    gaps[first] = 0.0  # a session opens with a slate
    cumulative = np.cumsum(gaps)
    offset = cumulative - np.repeat(cumulative[first], slots)
    times = session_start[owner] + offset.astype(np.int64)
    keep = times < start + DAY_MS  # sessions late in the evening are cut at midnight
    owner, times = owner[keep], times[keep]
    order = np.argsort(times, kind="stable")
    owner, times = owner[order], times[order]
    session_end = session_start.copy()
    np.maximum.at(session_end, owner, times)

    active = world.active(day)
    candidates = _candidates(world, day, gen, session_user[owner], active)
    noise = gen.normal(0.0, behaviour.RELEVANCE_NOISE_SD, size=candidates.shape)
    organic = gen.poisson(cfg.organic_per_session, size=n_sessions)
    return DayPlan(day, start, session_user, session_start, session_end, organic, times,
                   session_user[owner], owner, candidates, noise, active)


def _candidates(world: World, day: int, gen: np.random.Generator, request_user: np.ndarray,
                active: np.ndarray) -> np.ndarray:
    """Per request: bestsellers + favourite-category items + random items, no duplicates."""
    n = world.config.candidates
    n_pop, n_cat = round(POPULAR_SHARE * n), round(CATEGORY_SHARE * n)
    popular = active[np.argsort(-world.popularity(day, active), kind="stable")]
    popular = popular[: min(len(popular), POPULAR_POOL * max(n_pop, 1))]
    by_category = {c: active[world.items.category[active] == c]
                   for c in range(world.config.categories)}
    favourites: dict[int, np.ndarray] = {}
    out = np.empty((len(request_user), n), dtype=np.int64)
    for r, user in enumerate(request_user):
        pool_cat = favourites.get(user)
        if pool_cat is None:
            cats = world.users.favourite_categories[user]
            pool_cat = favourites[user] = np.concatenate([by_category[c] for c in cats])
        draw = np.concatenate((
            gen.choice(popular, size=min(n_pop, len(popular)), replace=False),
            gen.choice(pool_cat, size=min(n_cat, len(pool_cat)), replace=False),
            gen.choice(active, size=n, replace=False),
        ))
        _, first = np.unique(draw, return_index=True)
        out[r] = draw[np.sort(first)[:n]]
    return out


class RequestContext:
    """One request as the world sees it: who, when, which candidates, and their truth."""

    def __init__(self, world: World, plan: DayPlan, index: int) -> None:
        self.world = world
        self.day = plan.day
        self.index = index
        self.time_ms = int(plan.request_time[index])
        self.user = int(plan.request_user[index])
        self.user_id = world.users.ids[self.user]
        self.session_id = session_id(world, plan.day, int(plan.request_session[index]))
        self.candidates = plan.candidates[index]
        self.noise = plan.noise[index]
        ids = world.items.ids
        self.candidate_ids = [ids[i] for i in self.candidates]

    @cached_property
    def probs(self) -> behaviour.Probabilities:
        """True behaviour probabilities of every candidate in this request."""
        return behaviour.probabilities(self.world, self.day, self.user, self.candidates,
                                       self.noise)

    @cached_property
    def column(self) -> dict[str, int]:
        """item id -> column in `candidates`."""
        return {item: c for c, item in enumerate(self.candidate_ids)}

    @property
    def request_id(self) -> str:
        """The simulator's own id for this request (used when the recommender sets none)."""
        return f"{self.world.run_tag}-{self.day}-r{self.index:06d}"


def session_id(world: World, day: int, session: int) -> str:
    return f"{world.run_tag}-{day}-s{session:06d}"
