"""`loopline infra`: start, stop and inspect the local Kafka / Redis / Flink stack."""

from __future__ import annotations

import argparse
import json
import sys

from infra.config import KNOWN_SERVICES
from infra.service import ServiceStatus
from infra.stack import Stack
from infra.topics import create_topics, default_specs
from loopline.kafka import load_kafka

_SERVICES_HELP = (
    f"services to act on, any of {', '.join(KNOWN_SERVICES)} "
    "(default: [services].services from loopline.toml, i.e. all)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infra",
        help="start/stop/inspect the local Kafka, Redis and Flink services",
        description=(
            "Local services bound to loopback: Kafka 4 in KRaft mode (broker+controller), "
            "Redis (Feast online store at scale) and a Flink standalone session cluster. "
            "State, logs and pid files live under <home>/services (LOOPLINE_PATHS_HOME); "
            "ports and sizes come from [services] / LOOPLINE_SERVICES_*."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser(
        "up",
        help="start services (no-op for those already running and healthy)",
        description="Start the named services and wait until each answers; idempotent.",
    )
    up.add_argument("services", nargs="*", metavar="SERVICE", help=_SERVICES_HELP)
    up.add_argument("--json", action="store_true", help="print the resulting status as JSON")
    up.set_defaults(func=_up)

    down = actions.add_parser(
        "down",
        help="stop services and leave no process behind",
        description="Stop the named services (default: all): SIGTERM, then SIGKILL on timeout.",
    )
    down.add_argument("services", nargs="*", metavar="SERVICE", help=_SERVICES_HELP)
    down.add_argument(
        "--wipe", action="store_true", help="also delete their data, logs and config"
    )
    down.set_defaults(func=_down)

    status = actions.add_parser(
        "status",
        help="what runs where: pids, endpoints, data dirs",
        description="Report each service: state, pids, endpoints, data dir and log.",
    )
    status.add_argument("services", nargs="*", metavar="SERVICE", help=_SERVICES_HELP)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    topics = actions.add_parser(
        "topics",
        help="create the Loopline topics (idempotent)",
        description=(
            "Create every topic of schemas.topics that does not exist yet on the configured "
            "Kafka ([kafka] / LOOPLINE_KAFKA_BOOTSTRAP_SERVERS): inputs with "
            "[services].kafka_input_partitions partitions, the schema topic compacted."
        ),
    )
    topics.add_argument(
        "--input-partitions", type=int, default=None,
        help="partitions of the serving and interaction topics (default from [services])",
    )  # fmt: skip
    topics.set_defaults(func=_topics)


def _print(statuses: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        json.dump([s.to_dict() for s in statuses], sys.stdout, indent=2)
        print()
    else:
        for s in statuses:
            print(s.line())


def _up(args: argparse.Namespace) -> int:
    stack = Stack.load()
    statuses = stack.up(args.services)
    _print(statuses, args.json)
    _warn_if_clients_point_elsewhere(stack, args.services)
    return 0


def _down(args: argparse.Namespace) -> int:
    _print(Stack.load().down(args.services, wipe=args.wipe), as_json=False)
    return 0


def _status(args: argparse.Namespace) -> int:
    _print(Stack.load().status(args.services), args.json)
    return 0


def _topics(args: argparse.Namespace) -> int:
    stack = Stack.load()
    partitions = args.input_partitions or stack.cfg.kafka_input_partitions
    report = create_topics(load_kafka(), default_specs(partitions))
    for name in (*report.created, *report.existing):
        verb = "created" if name in report.created else "exists "
        print(f"{verb}  {name}  partitions={report.partitions.get(name, '?')}")
    return 0


def _warn_if_clients_point_elsewhere(stack: Stack, names: list[str]) -> None:
    """Clients read [kafka].bootstrap_servers, not [services]: say so when they differ."""
    if "kafka" not in stack.select(names):
        return
    clients = load_kafka().bootstrap_servers
    broker = stack.kafka.bootstrap_servers
    if broker not in clients.split(","):
        print(
            f"note: the local broker listens on {broker} but clients use {clients}; set "
            f"LOOPLINE_KAFKA_BOOTSTRAP_SERVERS={broker} to point them at it",
            file=sys.stderr,
        )
