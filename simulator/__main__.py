"""`python -m simulator`: generate events with a reference policy (no Kafka), for a look.

Writes the events as JSON lines (with --out), prints counts and generation speed, and with
--truth writes ground truth for the reference policies (control: popularity).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from loopline.errors import LooplineError
from simulator import policies
from simulator.config import load_simulator
from simulator.ground_truth import evaluate
from simulator.policies import Recommender
from simulator.simulation import Simulation
from simulator.world import World

POLICIES: dict[str, Callable[[World], Recommender]] = {
    "random": policies.uniform_random,
    "popularity": policies.popularity,
    "oracle": policies.oracle,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--users", type=int)
    parser.add_argument("--days", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--policy", choices=sorted(POLICIES), default="popularity")
    parser.add_argument("--out", type=Path, help="events as JSON lines")
    parser.add_argument("--truth", type=Path, help="write ground truth of the reference policies")
    parser.add_argument("--replications", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        cfg = load_simulator(users=args.users, days=args.days, seed=args.seed)
        world = World.build(cfg)
        sim = Simulation(world)
        recommender = POLICIES[args.policy](world)
        began, n = time.perf_counter(), 0
        sink = args.out.open("w") if args.out else None
        try:
            for kind, event in sim.run(recommender):
                n += 1
                if sink:
                    sink.write(json.dumps({"kind": kind, **event}) + "\n")
        finally:
            if sink:
                sink.close()
        took = time.perf_counter() - began
        print(f"{n} events in {took:.1f} s ({n / took:,.0f}/s): {dict(sim.counts)}")
        print(f"realized revenue: {dict(sim.revenue)}")
        if args.truth:
            versions = {name: make(world) for name, make in POLICIES.items()}
            truth = evaluate(world, versions, range(cfg.days), args.replications)
            doc = truth.write(args.truth, control="popularity")
            for name, v in doc["versions"].items():
                print(f"{name}: {v['expected_revenue_per_user']:.2f} per user, "
                      f"uplift {v['uplift_abs']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]")
    except LooplineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
