"""The shop: users with latent tastes and segments, a catalogue whose appeal drifts by day.

Everything is drawn once from the seed when the world is built (users, items, every day's
appeal and which items are on sale), so a world is a pure function of its config and can be
rebuilt anywhere, e.g. by ground truth re-simulating the same days under another policy.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from simulator import rng
from simulator.config import SEGMENTS, SimulatorConfig
from simulator.errors import SimulationOrderError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

APPEAL_SD = 0.7  # stationary spread of item appeal (log-odds of relevance)
NEW_ITEM_POPULARITY = -1.0  # the shop knows nothing about an item on its first day: rank low
CATEGORY_SPREAD = 0.8  # how much of an item's taste vector its category explains
PRICE_MEDIAN = 30.0
PRICE_CATEGORY_SD = 0.6  # lognormal spread of category median prices
PRICE_ITEM_SD = 0.35  # lognormal spread of prices inside a category
BUDGET_SD = 0.5
SENSITIVITY_SD = 0.3
FAVOURITE_CATEGORIES = 3
# Heavy users convert more readily (odds multiplier on purchase given add-to-cart).
SEGMENT_PURCHASE_ODDS = (0.8, 1.0, 1.3)
# Sessions per day are Gamma-distributed around the segment mean (shape: how alike users are).
ACTIVITY_SHAPE = 3.0
AFFINITY_TABLE_MAX = 8_000_000  # cells (64 MB) of precomputed affinities; larger: on demand


@dataclass(frozen=True)
class Users:
    """Who shops: taste vectors, segment, activity, money and price sensitivity."""

    ids: tuple[str, ...]
    segment: np.ndarray  # index into SEGMENTS
    activity: np.ndarray  # mean sessions per day
    preference: np.ndarray  # (users, latent_dim)
    budget: np.ndarray  # typical price they are comfortable paying
    price_sensitivity: np.ndarray  # how fast conversion drops above budget
    purchase_log_odds: np.ndarray  # segment shift of P(purchase | cart)
    favourite_categories: np.ndarray  # (users, FAVOURITE_CATEGORIES)


@dataclass(frozen=True)
class Catalogue:
    """What is sold: category, price, taste vector, on-sale days and daily appeal."""

    ids: tuple[str, ...]
    category: np.ndarray
    price: np.ndarray  # rounded to cents, so revenue = price x quantity is exact
    latent: np.ndarray  # (items, latent_dim)
    born: np.ndarray  # first day on sale
    retired: np.ndarray  # first day no longer on sale (horizon if never)
    appeal: np.ndarray  # (days, items): drifting log-odds boost of relevance


def default_start_ms(days: int, now_ms: int | None = None) -> int:
    """(now rounded down to the hour) - (days + 1) days: the last event is ~1 day old."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return now - now % HOUR_MS - (days + 1) * DAY_MS


class World:
    """Users, catalogue and the simulated clock; read-only once built."""

    def __init__(self, config: SimulatorConfig, users: Users, items: Catalogue,
                 start_ms: int) -> None:
        self.config = config
        self.users = users
        self.items = items
        self.start_ms = start_ms
        self.user_index = {u: i for i, u in enumerate(users.ids)}
        self.item_index = {it: i for i, it in enumerate(items.ids)}
        # Ids of this run's requests and sessions: unique per (seed, start), stable across runs.
        digest = hashlib.sha256(f"{config.seed}:{start_ms}".encode()).hexdigest()
        self.run_tag = digest[:8]

    @classmethod
    def build(cls, config: SimulatorConfig) -> World:
        start = config.start_ms if config.start_ms is not None else default_start_ms(config.days)
        gen = rng.stream(config.seed, rng.WORLD)
        centres = gen.normal(size=(config.categories, config.latent_dim))
        users = _users(config, gen, centres)
        items = _catalogue(config, gen, centres)
        return cls(config, users, items, start)

    # --- clock -------------------------------------------------------------------------------
    @property
    def days(self) -> int:
        return self.config.days

    def day_start(self, day: int) -> int:
        return self.start_ms + day * DAY_MS

    def day_of(self, time_ms: int) -> int:
        """The simulated day an event time falls in (clamped to the horizon)."""
        return min(max((time_ms - self.start_ms) // DAY_MS, 0), self.days - 1)

    def check_day(self, day: int) -> None:
        if not 0 <= day < self.days:
            raise SimulationOrderError(
                f"day must be in [0, {self.days}) for this world, got {day}"
            )

    # --- catalogue on a day ------------------------------------------------------------------
    def active(self, day: int) -> np.ndarray:
        """Indices of the items on sale on `day`."""
        self.check_day(day)
        return np.flatnonzero((self.items.born <= day) & (self.items.retired > day))

    def popularity(self, day: int, items: np.ndarray) -> np.ndarray:
        """What the shop knows of popularity on `day`: yesterday's appeal (new items: low)."""
        if day == 0:
            return self.items.appeal[0, items]
        known = self.items.born[items] < day
        return np.where(known, self.items.appeal[day - 1, items], NEW_ITEM_POPULARITY)

    def affinity(self, user: int, items: np.ndarray) -> np.ndarray:
        """Taste match of one user with items, ~N(0, 1) over random pairs."""
        table = self._affinity_table
        if table is not None:
            return table[user, items]
        dim = self.config.latent_dim
        return self.items.latent[items] @ self.users.preference[user] / np.sqrt(dim)

    @cached_property
    def _affinity_table(self) -> np.ndarray | None:
        """Every user x item affinity, when that fits in AFFINITY_TABLE_MAX cells."""
        if len(self.users.ids) * len(self.items.ids) > AFFINITY_TABLE_MAX:
            return None
        dim = self.config.latent_dim
        return self.users.preference @ self.items.latent.T / np.sqrt(dim)

    # --- tables ------------------------------------------------------------------------------
    @cached_property
    def segment_names(self) -> np.ndarray:
        return np.asarray(SEGMENTS, dtype=object)[self.users.segment]

    def user_table(self) -> pd.DataFrame:
        """user_id and segment: the shop's CRM view (attribution's user table)."""
        return pd.DataFrame({"user_id": list(self.users.ids), "segment": self.segment_names})

    def item_table(self) -> pd.DataFrame:
        return pd.DataFrame({
            "item_id": list(self.items.ids), "category": self.items.category,
            "price": self.items.price, "born_day": self.items.born,
            "retired_day": self.items.retired,
        })


def _users(config: SimulatorConfig, gen: np.random.Generator, centres: np.ndarray) -> Users:
    n = config.users
    segment = gen.choice(len(SEGMENTS), size=n, p=np.asarray(config.segment_shares))
    mean_sessions = np.asarray(config.sessions_per_day)[segment]
    activity = mean_sessions * gen.gamma(ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE, size=n)
    preference = gen.normal(size=(n, config.latent_dim))
    budget = PRICE_MEDIAN * np.exp(gen.normal(0.0, BUDGET_SD, size=n))
    sensitivity = np.exp(gen.normal(0.0, SENSITIVITY_SD, size=n))
    favourite = np.argsort(-(preference @ centres.T), axis=1)[:, :FAVOURITE_CATEGORIES]
    return Users(
        ids=tuple(f"u{i:06d}" for i in range(n)),
        segment=segment.astype(np.int64),
        activity=activity,
        preference=preference,
        budget=budget,
        price_sensitivity=sensitivity,
        purchase_log_odds=np.log(np.asarray(SEGMENT_PURCHASE_ODDS))[segment],
        favourite_categories=favourite,
    )


def _new_items(config: SimulatorConfig, gen: np.random.Generator, centres: np.ndarray,
               category_price: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    category = gen.integers(0, config.categories, size=n)
    noise = gen.normal(size=(n, config.latent_dim))
    latent = CATEGORY_SPREAD * centres[category] + np.sqrt(1 - CATEGORY_SPREAD**2) * noise
    price = category_price[category] * np.exp(gen.normal(0.0, PRICE_ITEM_SD, size=n))
    return category, latent, np.maximum(np.round(price, 2), 1.0)


def _catalogue(config: SimulatorConfig, gen: np.random.Generator,
               centres: np.ndarray) -> Catalogue:
    days, n0 = config.days, config.items
    category_price = PRICE_MEDIAN * np.exp(gen.normal(0.0, PRICE_CATEGORY_SD, config.categories))
    churn = round(config.item_churn * n0)
    total = n0 + churn * (days - 1)
    category, latent, price = _new_items(config, gen, centres, category_price, total)
    born = np.zeros(total, dtype=np.int64)
    retired = np.full(total, days, dtype=np.int64)

    # Appeal: AR(1) walks with stationary sd APPEAL_SD, so drift reshuffles without inflating.
    drift = rng.stream(config.seed, rng.DRIFT)
    rho = np.sqrt(max(0.0, 1.0 - (config.drift_sd / APPEAL_SD) ** 2))
    appeal = np.empty((days, total))
    appeal[0] = drift.normal(0.0, APPEAL_SD, size=total)
    for d in range(1, days):
        appeal[d] = rho * appeal[d - 1] + drift.normal(0.0, config.drift_sd, size=total)
        # Churn: the least appealing items are the likeliest to fade out; new ones replace them.
        if churn:
            on_sale = np.flatnonzero((born <= d - 1) & (retired > d - 1))
            weights = np.exp(-appeal[d, on_sale] / APPEAL_SD)
            fading = drift.choice(on_sale, size=churn, replace=False, p=weights / weights.sum())
            retired[fading] = d
            born[n0 + churn * (d - 1): n0 + churn * d] = d
    return Catalogue(
        ids=tuple(f"i{i:06d}" for i in range(total)),
        category=category.astype(np.int64),
        price=price,
        latent=latent,
        born=born,
        retired=retired,
        appeal=appeal,
    )
