"""Run simulated days: serve every request through a recommender, let users react, emit events.

`run_day` is a generator that yields ServingEvents and InteractionEvents in event-time order
(ties in a fixed order), so it can feed Kafka as it goes. Interactions that fall after the
day's end (a late purchase at 23:50) are held back and emitted by the next day's run (or
`drain()` after the last day): each topic then stays in event-time order across days, and no
event lands behind the streaming job's watermark. Days must run in order, each consumed fully.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from simulator import behaviour, rng
from simulator.diversity import ExposureLog
from simulator.errors import SimulationOrderError
from simulator.events import (
    ADD_TO_CART,
    CLICK,
    INTERACTION,
    PURCHASE,
    SERVING,
    VIEW,
    Emitted,
    interaction_event,
    serving_event,
)
from simulator.policies import Recommender, resolve
from simulator.sessions import ORGANIC_TAIL_MS, DayPlan, RequestContext, plan_day, session_id
from simulator.world import DAY_MS, World


class RequestObserver(Protocol):
    """Sees every request of a day (ground truth shadows the same requests under versions)."""

    def begin_day(self, plan: DayPlan) -> None: ...

    def observe(self, ctx: RequestContext) -> None: ...


class Simulation:
    """Drives one world through its days; keeps the events that spill into the next day."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.exposure = ExposureLog(len(world.items.ids))
        self.counts: Counter[str] = Counter()
        self.revenue = {"slate": 0.0, "organic": 0.0}  # realized revenue by origin
        self._plans: dict[int, DayPlan] = {}
        self._carry: list[tuple[int, int, str, dict[str, Any]]] = []
        self._seq = 0
        self._next_day = 0
        self._open = False

    def plan(self, day: int) -> DayPlan:
        if day not in self._plans:
            self._plans[day] = plan_day(self.world, day)
        return self._plans[day]

    def run_day(self, day: int, recommender: Recommender,
                observer: RequestObserver | None = None) -> Iterator[Emitted]:
        """Events of `day` in time order; `observer` (e.g. ground truth) sees each request."""
        self.world.check_day(day)
        if self._open:
            raise SimulationOrderError(
                f"day {self._next_day - 1} has not been consumed to the end yet")
        if day != self._next_day:
            raise SimulationOrderError(f"expected day {self._next_day} next, got day {day}")
        self._next_day, self._open = day + 1, True
        return self._day(self.plan(day), recommender, observer)

    def drain(self) -> Iterator[Emitted]:
        """After the last day: the interactions still pending (late purchases)."""
        if self._open:
            raise SimulationOrderError("the last day has not been consumed to the end yet")
        while self._carry:
            yield self._pop()

    def run(self, recommender: Recommender,
            observer: RequestObserver | None = None) -> Iterator[Emitted]:
        """Every remaining day, then the pending interactions."""
        for day in range(self._next_day, self.world.days):
            yield from self.run_day(day, recommender, observer)
        yield from self.drain()

    # --- internals ---------------------------------------------------------------------------
    def _push(self, event: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._carry, (event["event_time"], self._seq, INTERACTION, event))

    def _pop(self) -> Emitted:
        _, _, kind, event = heapq.heappop(self._carry)
        self.counts[event["type"]] += 1
        return Emitted(kind, event)

    def _day(self, plan: DayPlan, recommender: Recommender,
             observer: RequestObserver | None) -> Iterator[Emitted]:
        world, cfg = self.world, self.world.config
        self.exposure.set_active(plan.day, plan.active)
        if observer is not None:
            observer.begin_day(plan)
        self._organic(plan)
        heap = self._carry
        for index in range(plan.requests):
            ctx = RequestContext(world, plan, index)
            while heap and heap[0][0] <= ctx.time_ms:
                yield self._pop()
            slate = recommender(ctx.user_id, ctx.session_id, ctx.candidate_ids,
                                cfg.slate_size, ctx.time_ms)
            cols, positions = resolve(slate, ctx.column, cfg.slate_size)
            request_id = slate.request_id or ctx.request_id
            self.counts[SERVING] += 1
            self.exposure.add(slate.model_version, plan.day, ctx.candidates[cols])
            yield Emitted(SERVING, serving_event(request_id, ctx.time_ms, ctx.user_id,
                                                 ctx.session_id, slate))
            self._react(ctx, request_id, cols, positions)
            if observer is not None:
                observer.observe(ctx)
        day_end = plan.start_ms + DAY_MS
        while heap and heap[0][0] < day_end:
            yield self._pop()
        self._open = False

    def _react(self, ctx: RequestContext, request_id: str, cols: np.ndarray,
               positions: np.ndarray) -> None:
        """Draw what the user does with the slate and queue the resulting interactions."""
        cfg = self.world.config
        gen = rng.stream(cfg.seed, rng.BEHAVIOUR, ctx.day, ctx.index)
        draws = behaviour.draw(gen, len(ctx.candidates), cfg.slate_size, cfg.late_purchase_share)
        probs = ctx.probs
        outcome = behaviour.realize(probs, cols, positions, draws, cfg.position_eta)
        for n in np.flatnonzero(outcome.clicked):
            col, pos = int(cols[n]), int(positions[n])
            item = ctx.candidate_ids[col]
            t: float = ctx.time_ms + behaviour.SCAN_MS_PER_POSITION * pos + draws.click_delay[col]
            self._queue(ctx, request_id, item, pos, CLICK, t)
            t += draws.view_gap[col]
            dwell = behaviour.dwell_ms(draws.dwell[col], probs.affinity[col])
            self._queue(ctx, request_id, item, pos, VIEW, t, dwell=dwell)
            if outcome.carted[n]:
                t += dwell + draws.cart_gap[col]
                self._queue(ctx, request_id, item, pos, ADD_TO_CART, t)
                if outcome.bought[n]:
                    revenue = float(outcome.revenue[n])
                    self.revenue["slate"] += revenue
                    self._queue(ctx, request_id, item, pos, PURCHASE, t + draws.buy_delay[col],
                                revenue=revenue)

    def _queue(self, ctx: RequestContext, request_id: str, item: str, position: int, kind: str,
               t: float, revenue: float = 0.0, dwell: int | None = None) -> None:
        self._push(interaction_event(f"{request_id}-{position}-{kind}", int(t), ctx.user_id,
                                     ctx.session_id, request_id, item, kind, revenue, dwell,
                                     position))

    def _organic(self, plan: DayPlan) -> None:
        """Queue the day's organic finds: items users reach on their own (no request_id)."""
        world, cfg = self.world, self.world.config
        gen = rng.stream(cfg.seed, rng.ORGANIC, plan.day)
        choice: dict[int, tuple[np.ndarray, behaviour.Probabilities]] = {}
        ids, n = world.items.ids, 0
        for s in np.flatnonzero(plan.session_organic):
            user = int(plan.session_user[s])
            if user not in choice:
                choice[user] = (behaviour.organic_choice(world, plan.day, user, plan.active),
                                behaviour.probabilities(world, plan.day, user, plan.active))
            p, probs = choice[user]
            count = int(plan.session_organic[s])
            lo, hi = int(plan.session_start[s]), int(plan.session_end[s]) + ORGANIC_TAIL_MS
            times = gen.integers(lo, hi, size=count)
            picks = gen.choice(len(plan.active), size=count, p=p)
            u_cart, u_buy = gen.random(count), gen.random(count)
            quantity = 1 + gen.poisson(behaviour.QUANTITY_EXTRA, size=count)
            dwell = behaviour.DWELL[0] * np.exp(gen.normal(0.0, behaviour.DWELL[1], size=count))
            gap = behaviour.CART_GAP[0] * np.exp(gen.normal(0.0, behaviour.CART_GAP[1], count))
            delay = behaviour.PURCHASE_DELAY[0] * np.exp(
                gen.normal(0.0, behaviour.PURCHASE_DELAY[1], size=count))
            sid, uid = session_id(world, plan.day, int(s)), world.users.ids[user]
            for j, col in enumerate(picks):
                n += 1
                base = f"{world.run_tag}-{plan.day}-o{n:06d}"
                item = ids[plan.active[col]]
                t = int(times[j])
                d = behaviour.dwell_ms(dwell[j], probs.affinity[col])
                self._push(interaction_event(f"{base}-{VIEW}", t, uid, sid, None, item, VIEW,
                                             dwell_ms=d))
                if u_cart[j] < probs.cart[col]:
                    t += d + int(gap[j])
                    self._push(interaction_event(f"{base}-{ADD_TO_CART}", t, uid, sid, None,
                                                 item, ADD_TO_CART))
                    if u_buy[j] < probs.buy[col]:
                        revenue = round(float(probs.price[col]) * int(quantity[j]), 2)
                        self.revenue["organic"] += revenue
                        self._push(interaction_event(f"{base}-{PURCHASE}", t + int(delay[j]),
                                                     uid, sid, None, item, PURCHASE, revenue))
