"""The simulator's truth: what each model version would earn per user, and its uplift.

Method (analytic, with common random numbers): every version is asked for a slate for the
*same* requests (same users, sessions, times, candidate sets and per-request relevance
noise), and the behaviour model's exact expectation of clicks, purchases and revenue given
that slate is summed per user; organic revenue (policy-independent) is added as its exact
expectation. What remains random is only each version's own exploration draw and which
users happen to be in the population, so the per-user paired difference gives the uplift's
95 % CI (over users). Optionally, Monte-Carlo replications redraw behaviour (uniforms shared
across versions) around the same slates: their CI must cover the analytic value (tested).

Two ways in: `Truth` is a request observer, so the demo can shadow the real versions on the
real requests during `Simulation.run_day` (each version pinned, not logging); `evaluate`
replays days under self-contained policies (the reference policies, or anything stateless).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator import behaviour, rng
from simulator.diversity import ExposureLog
from simulator.errors import GroundTruthError
from simulator.policies import Recommender, resolve
from simulator.sessions import DayPlan, RequestContext, plan_day
from simulator.world import DAY_MS, World

SCHEMA_VERSION = 1
Z95 = 1.959963984540054
_MC_KEY = 1  # behaviour stream key of the MC replications (the emitted run uses none)
METHOD = ("analytic expectation of the behaviour model per request, every version on the "
          "same requests (common random numbers); CI over users from paired differences")


@dataclass
class _Totals:
    """Per-user sums for one (version, day)."""

    n_users: int
    replications: int
    requests: np.ndarray = field(init=False)
    impressions: np.ndarray = field(init=False)
    clicks: np.ndarray = field(init=False)
    purchases: np.ndarray = field(init=False)
    revenue: np.ndarray = field(init=False)
    mc_revenue: np.ndarray = field(init=False)  # (replications, users)

    def __post_init__(self) -> None:
        n = self.n_users
        self.requests = np.zeros(n, dtype=np.int64)
        self.impressions = np.zeros(n, dtype=np.int64)
        self.clicks, self.purchases, self.revenue = np.zeros(n), np.zeros(n), np.zeros(n)
        self.mc_revenue = np.zeros((self.replications, n))


class Truth:
    """Ground truth of several versions on the same requests (a `RequestObserver`)."""

    def __init__(self, world: World, versions: Mapping[str, Recommender],
                 replications: int = 0) -> None:
        if not versions:
            raise GroundTruthError("ground truth needs at least one version")
        if replications < 0 or replications == 1:
            raise GroundTruthError(
                f"replications must be 0 (analytic only) or >= 2 (for a CI), got {replications}")
        self.world = world
        self.versions = dict(versions)
        self.replications = replications
        self.exposure = ExposureLog(len(world.items.ids))
        self._slates: dict[tuple[str, int], _Totals] = {}
        self._organic: dict[int, _Totals] = {}
        self._day: int | None = None

    def add_version(self, name: str, recommender: Recommender) -> None:
        """Shadow another version from the next day on (e.g. a version trained on day 1)."""
        self.versions[name] = recommender

    # --- observer ----------------------------------------------------------------------------
    def begin_day(self, plan: DayPlan) -> None:
        """Register the day's organic expectation (the same under every version)."""
        self._day = plan.day
        self.exposure.set_active(plan.day, plan.active)
        for version in self.versions:
            self._slates[(version, plan.day)] = _Totals(len(self.world.users.ids),
                                                        self.replications)
        self._organic[plan.day] = _organic(self.world, plan, self.replications)

    def observe(self, ctx: RequestContext) -> None:
        """Ask every version for this request's slate and add its expected outcome."""
        if ctx.day != self._day:
            raise GroundTruthError(f"request of day {ctx.day} observed before begin_day")
        cfg = self.world.config
        k, eta = cfg.slate_size, cfg.position_eta
        draws = None
        if self.replications:
            gen = rng.stream(cfg.seed, rng.BEHAVIOUR, ctx.day, ctx.index, _MC_KEY)
            draws = behaviour.draw(gen, len(ctx.candidates), k, cfg.late_purchase_share,
                                   reps=self.replications)
        for version, recommender in self.versions.items():
            slate = recommender(ctx.user_id, ctx.session_id, ctx.candidate_ids, k, ctx.time_ms)
            cols, positions = resolve(slate, ctx.column, k)
            expected = behaviour.expected(ctx.probs, cols, positions, eta)
            totals = self._slates[(version, ctx.day)]
            u = ctx.user
            totals.requests[u] += 1
            totals.impressions[u] += len(cols)
            totals.clicks[u] += expected.clicks
            totals.purchases[u] += expected.purchases
            totals.revenue[u] += expected.revenue
            if draws is not None:
                realized = behaviour.realize(ctx.probs, cols, positions, draws, eta)
                totals.mc_revenue[:, u] += realized.revenue.sum(axis=-1)
            self.exposure.add(version, ctx.day, ctx.candidates[cols])

    # --- results -----------------------------------------------------------------------------
    @property
    def days(self) -> list[int]:
        return sorted(self._organic)

    def observed(self, version: str) -> list[int]:
        """Days on which `version` was shadowed."""
        return sorted(d for v, d in self._slates if v == version)

    def summary(self, control: str, days: Iterable[int] | None = None,
                versions: Iterable[str] | None = None) -> dict[str, Any]:
        """The ground_truth.json document: per-version expected revenue and uplift.

        `days` defaults to every observed day, `versions` to those observed on all of them.
        """
        chosen = self.days if days is None else sorted(set(days))
        missing = sorted(set(chosen) - set(self.days))
        if not chosen or missing:
            raise GroundTruthError(
                f"ground truth observed days {self.days}; asked for {chosen} (missing {missing})")
        names = ([v for v in self.versions if set(chosen) <= set(self.observed(v))]
                 if versions is None else list(versions))
        if control not in names:
            raise GroundTruthError(
                f"control {control!r} is not a ground-truth version observed on days {chosen}; "
                f"have {sorted(names)}")
        per_user = {v: self._per_user(v, chosen) for v in names}
        population = per_user[control]["requests"] > 0
        n = int(population.sum())
        if n < 2:
            raise GroundTruthError(f"only {n} users had requests on days {chosen}")
        base = per_user[control]
        summaries = {v: _version_summary(per_user[v], base, population) for v in names}
        start = self.world.day_start(chosen[0])
        return {
            "schema_version": SCHEMA_VERSION,
            "seed": self.world.config.seed,
            "control": control,
            "method": "analytic+monte_carlo" if self.replications else "analytic",
            "method_note": METHOD,
            "replications": self.replications,
            "days": chosen,
            "period": {"start_ms": start, "end_ms": self.world.day_start(chosen[-1]) + DAY_MS},
            "population": {"users": n, "requests": int(base["requests"][population].sum())},
            "versions": summaries,
            "diversity": {v: d for v, d in self.exposure.report().items() if v in names},
        }

    def write(self, path: Path, control: str, days: Iterable[int] | None = None,
              versions: Iterable[str] | None = None) -> dict[str, Any]:
        doc = self.summary(control, days, versions)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return doc

    def _per_user(self, version: str, days: list[int]) -> dict[str, np.ndarray]:
        n, reps = len(self.world.users.ids), self.replications
        out: dict[str, np.ndarray] = {
            "requests": np.zeros(n, dtype=np.int64), "impressions": np.zeros(n),
            "clicks": np.zeros(n), "purchases": np.zeros(n), "revenue": np.zeros(n),
            "mc_revenue": np.zeros((reps, n)),
        }
        for day in days:
            totals = self._slates.get((version, day))
            if totals is None:
                raise GroundTruthError(
                    f"version {version!r} was not observed on day {day} "
                    f"(observed on {self.observed(version)})")
            organic = self._organic[day]
            out["requests"] += totals.requests
            out["impressions"] += totals.impressions
            out["clicks"] += totals.clicks
            out["purchases"] += totals.purchases + organic.purchases
            out["revenue"] += totals.revenue + organic.revenue
            out["mc_revenue"] += totals.mc_revenue + organic.mc_revenue
        return out


def evaluate(world: World, versions: Mapping[str, Recommender], days: Iterable[int],
             replications: int = 0) -> Truth:
    """Replay `days` under each version (no events): the truth for self-contained policies."""
    truth = Truth(world, versions, replications)
    for day in days:
        plan = plan_day(world, day)
        truth.begin_day(plan)
        for index in range(plan.requests):
            truth.observe(RequestContext(world, plan, index))
    return truth


def _organic(world: World, plan: DayPlan, replications: int) -> _Totals:
    """Expected (and MC-realized) organic purchases and revenue per user for one day."""
    n = len(world.users.ids)
    totals = _Totals(n, replications)
    finds = np.bincount(plan.session_user, weights=plan.session_organic, minlength=n)
    active = plan.active
    for user in np.flatnonzero(finds):
        count = int(finds[user])
        one = behaviour.organic_expected(world, plan.day, int(user), active)
        totals.purchases[user] = count * one.purchases
        totals.revenue[user] = count * one.revenue
        if replications:
            gen = rng.stream(world.config.seed, rng.ORGANIC, plan.day, _MC_KEY, int(user))
            p = behaviour.organic_choice(world, plan.day, int(user), active)
            probs = behaviour.probabilities(world, plan.day, int(user), active)
            picks = gen.choice(len(active), size=(replications, count), p=p)
            bought = ((gen.random(picks.shape) < probs.cart[picks])
                      & (gen.random(picks.shape) < probs.buy[picks]))
            quantity = 1 + gen.poisson(behaviour.QUANTITY_EXTRA, size=picks.shape)
            totals.mc_revenue[:, user] = np.where(bought, probs.price[picks] * quantity,
                                                  0.0).sum(axis=1)
    return totals


def _mean_ci(values: np.ndarray) -> tuple[float, list[float]]:
    mean = float(values.mean())
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
    return mean, [mean - Z95 * se, mean + Z95 * se]


def _version_summary(mine: dict[str, np.ndarray], base: dict[str, np.ndarray],
                     population: np.ndarray) -> dict[str, Any]:
    revenue, control = mine["revenue"][population], base["revenue"][population]
    diff = revenue - control
    uplift, ci = _mean_ci(diff)
    base_mean = float(control.mean())
    ratio: float | None = None
    ci_rel: list[float] | None = None
    if base_mean > 0:
        # Relative uplift: delta method for a ratio of paired means (linearised per user).
        ratio = uplift / base_mean
        _, spread = _mean_ci((diff - ratio * control) / base_mean)
        ci_rel = [ratio + c for c in spread]
    clicks, impressions = mine["clicks"][population].sum(), mine["impressions"][population].sum()
    out: dict[str, Any] = {
        "users": int(population.sum()),
        "expected_revenue_per_user": float(revenue.mean()),
        "expected_clicks_per_user": float(mine["clicks"][population].mean()),
        "expected_purchases_per_user": float(mine["purchases"][population].mean()),
        "expected_ctr": float(clicks / impressions) if impressions else 0.0,
        "uplift_abs": uplift,
        "uplift_rel": ratio,
        "ci": ci,
        "ci_rel": ci_rel,
    }
    reps = mine["mc_revenue"].shape[0]
    if reps:
        mc = mine["mc_revenue"][:, population].mean(axis=1)
        mc_diff = mc - base["mc_revenue"][:, population].mean(axis=1)
        mc_mean, mc_ci = _mean_ci(mc)
        mc_uplift, mc_uplift_ci = _mean_ci(mc_diff)
        out["monte_carlo"] = {"replications": reps, "revenue_per_user": mc_mean,
                              "ci": mc_ci, "uplift_abs": mc_uplift, "uplift_ci": mc_uplift_ci}
    return out
