"""`loopline demo`: the closed loop end to end on the embedded default stack (local Kafka,
Flink mini-cluster, SQLite Feast), with the simulator's ground truth next to the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from loopline.errors import LooplineError


class DemoUsageError(LooplineError):
    """An argument of `loopline demo` is out of range."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="the closed-loop demo: simulate, serve, stream, retrain, roll out, attribute",
        description=(
            "Simulate a shop whose shoppers get their slates from the real serving path; the "
            "streaming job turns what they do into feedback slices and fresh Feast features; "
            "v1 is trained on a bootstrap day, v2 and v3 on later slices and rolled out next "
            "to v1; the attribution report estimates each version's revenue uplift, and "
            "ground_truth.json holds the simulator's true uplift to compare. Starts the local "
            "Kafka broker if none answers at the configured address."
        ),
    )
    parser.add_argument("--seed", type=int, help="simulation seed (default 7)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="demo folder, wiped first (default .loopline/demo)")
    parser.add_argument("--users", type=_positive, help="simulated shoppers (default 400)")
    parser.add_argument("--days", type=_positive,
                        help="simulated days, at least 3: bootstrap, baseline, experiment "
                             "(default 4)")
    parser.add_argument("--scenario", choices=("default", "exploitation"),
                        help="default: softmax exploration; exploitation: near-greedy serving, "
                             "to watch catalogue coverage shrink")
    parser.add_argument("--no-refuters", action="store_true",
                        help="skip the DoWhy refuters in the report (faster)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from demo.config import load_demo
    from demo.errors import DemoConfigError

    try:
        cfg = load_demo(seed=args.seed, out=args.out, users=args.users, days=args.days,
                        scenario=args.scenario, refuters=False if args.no_refuters else None)
    except DemoConfigError as exc:
        raise DemoUsageError(str(exc)) from exc

    from demo import phases, summary
    from infra.config import load_services
    from loopline.kafka import load_kafka
    from loopline.paths import load_paths

    outcome = phases.run(cfg, load_services(), load_paths(), load_kafka())
    data = summary.build(outcome)
    summary.write(data, outcome.folder.summary)
    print(summary.render(data))
    return 0
