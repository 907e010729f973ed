"""Closed-loop shop simulator: users, catalogue, position-biased behaviour and ground truth.

    cfg = load_simulator(users=400, days=3, seed=7)
    world = World.build(cfg)
    sim = Simulation(world)
    truth = Truth(world, {"v1": rec_v1, "v2": rec_v2})      # optional shadow ground truth
    for day in range(cfg.days):
        publish(sim.run_day(day, recommender, truth), producer)
    publish(sim.drain(), producer)
    truth.write(out / "ground_truth.json", control="v1", days=[1, 2])
"""

from simulator.config import SimulatorConfig, load_simulator
from simulator.events import INTERACTION, SERVING, Emitted
from simulator.ground_truth import Truth, evaluate
from simulator.policies import Arm, Recommender, Slate, SlateItem, Split
from simulator.publish import publish
from simulator.simulation import Simulation
from simulator.world import World

__all__ = [
    "INTERACTION",
    "SERVING",
    "Arm",
    "Emitted",
    "Recommender",
    "Simulation",
    "SimulatorConfig",
    "Slate",
    "SlateItem",
    "Split",
    "Truth",
    "World",
    "evaluate",
    "load_simulator",
    "publish",
]
