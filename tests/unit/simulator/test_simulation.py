from __future__ import annotations

from collections.abc import Sequence

import pytest

from jobs.transforms.decode import validate_interaction, validate_serving
from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec
from simulator import policies
from simulator.errors import RecommenderError, SimulationOrderError
from simulator.events import INTERACTION, SERVING, Emitted
from simulator.policies import Slate, SlateItem
from simulator.simulation import Simulation
from simulator.world import DAY_MS, World
from tests.unit.simulator.conftest import T0, small_config

MATURITY_MS = 30 * 60_000


def encoded(events: list[Emitted]) -> list[bytes]:
    codec = default_codec()
    return [codec.encode(SERVING_EVENT if kind == SERVING else INTERACTION_EVENT, event)
            for kind, event in events]


def run(seed: int) -> list[Emitted]:
    world = World.build(small_config(seed=seed, users=40))
    return list(Simulation(world).run(policies.popularity(world, epsilon=0.3)))


def test_same_seed_gives_byte_identical_streams() -> None:
    first, second, other = run(5), run(5), run(6)
    assert encoded(first) == encoded(second)
    assert encoded(first) != encoded(other)


def test_every_event_is_a_valid_contract_record(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    codec = default_codec()
    for (kind, event), data in zip(events, encoded(events), strict=True):
        _, decoded = codec.decode(data)
        assert decoded == event
        problem = validate_serving(event) if kind == SERVING else validate_interaction(event)
        assert problem is None, (problem, event)
    kinds = {e["type"] for k, e in events if k == INTERACTION}
    assert kinds == {"view", "click", "add_to_cart", "purchase"}


def test_events_are_time_ordered_and_inside_the_horizon(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    times = [e["event_time"] for _, e in events]
    assert times == sorted(times)
    assert times[0] >= T0 and times[-1] < T0 + 2 * DAY_MS + 3 * 3_600_000


def test_interactions_link_to_their_slate(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    slates = {e["request_id"]: e for k, e in events if k == SERVING}
    funnel: dict[tuple[str, int], dict[str, int]] = {}
    organic = 0
    for kind, e in events:
        if kind != INTERACTION:
            continue
        assert (e["revenue"] > 0) == (e["type"] == "purchase")
        if e["request_id"] is None:
            organic += 1
            assert e["position"] is None
            continue
        slate = slates[e["request_id"]]
        shown = {i["item_id"]: i["position"] for i in slate["slate"]}
        assert shown[e["item_id"]] == e["position"]
        assert (e["user_id"], e["session_id"]) == (slate["user_id"], slate["session_id"])
        assert e["event_time"] > slate["event_time"]
        funnel.setdefault((e["request_id"], e["position"]), {})[e["type"]] = e["event_time"]
    assert organic > 0
    order = ["click", "view", "add_to_cart", "purchase"]
    for steps in funnel.values():
        seen = [s for s in order if s in steps]
        assert seen == order[: len(seen)]  # no purchase without cart, no cart without click
        assert [steps[s] for s in seen] == sorted(steps[s] for s in seen)


def test_most_purchases_mature_within_the_window(
        popularity_run: tuple[Simulation, list[Emitted]]) -> None:
    _, events = popularity_run
    served = {e["request_id"]: e["event_time"] for k, e in events if k == SERVING}
    delays = [e["event_time"] - served[e["request_id"]] for k, e in events
              if k == INTERACTION and e["type"] == "purchase" and e["request_id"]]
    late = sum(d > MATURITY_MS for d in delays) / len(delays)
    assert 0 < late < 0.1
    assert min(delays) >= 1_000


def test_events_after_midnight_wait_for_the_next_day(world: World) -> None:
    sim = Simulation(world)
    recommender = policies.popularity(world)
    day0 = list(sim.run_day(0, recommender))
    assert max(e["event_time"] for _, e in day0) < world.day_start(1)
    day1 = list(sim.run_day(1, recommender))
    rest = list(sim.drain())
    assert min(e["event_time"] for _, e in day1) >= world.day_start(1)
    assert all(e["event_time"] >= world.day_start(2) for _, e in rest)


def test_days_run_in_order_and_to_the_end(world: World) -> None:
    sim = Simulation(world)
    recommender = policies.uniform_random(world)
    with pytest.raises(SimulationOrderError):
        sim.run_day(1, recommender)
    events = sim.run_day(0, recommender)
    next(events)
    with pytest.raises(SimulationOrderError, match="consumed"):
        sim.run_day(1, recommender)
    with pytest.raises(SimulationOrderError):
        sim.run_day(world.days, recommender)


class Broken:
    def __init__(self, item: str | None = None, propensity: float = 0.5) -> None:
        self.item, self.propensity = item, propensity

    def __call__(self, user_id: str, session_id: str, candidates: Sequence[str], k: int,
                 event_time: int) -> Slate:
        item = self.item or candidates[0]
        return Slate((SlateItem(item, 0, 1.0, self.propensity),), model_version="broken")


@pytest.mark.parametrize(("recommender", "message"), [
    (Broken(item="not-a-candidate"), "not one of the"),
    (Broken(propensity=0.0), "propensity"),
])
def test_bad_slates_are_refused(world: World, recommender: Broken, message: str) -> None:
    with pytest.raises(RecommenderError, match=message):
        list(Simulation(world).run_day(0, recommender))


def test_request_ids_come_from_the_recommender_when_it_sets_them(world: World) -> None:
    base = policies.popularity(world)

    def serving(user_id: str, session_id: str, candidates: Sequence[str], k: int,
                event_time: int) -> Slate:
        slate = base(user_id, session_id, candidates, k, event_time)
        return Slate(slate.items, slate.model_version, request_id=f"srv-{event_time}-{user_id}")

    events = list(Simulation(world).run_day(0, serving))
    ids = {e["request_id"] for k, e in events if k == SERVING}
    assert all(i.startswith("srv-") for i in ids)
    linked = {e["request_id"] for k, e in events if k == INTERACTION and e["request_id"]}
    assert linked <= ids
