"""`loopline consistency --slice START..END`: logged online features vs point-in-time offline
values for a slice's impressions (models/consistency.py); writes consistency.json + .html
under <home>/consistency/ and prints the summary, which `loopline retrain-check` reads."""

from __future__ import annotations

import argparse
import json
from typing import Any

from loopline.errors import LooplineError

EXIT_BREACH = 1


class ConsistencyUsageError(LooplineError):
    """The check cannot run as configured (e.g. feature logging is off)."""


def run(args: argparse.Namespace) -> int:
    from feature_repo.store import feature_store, load_feast
    from loopline.kafka import load_kafka
    from loopline.paths import load_paths
    from models import consistency, consistency_report, feature_logs
    from models.serving.config import load_serving
    from models.slices import SliceRange

    cfg = consistency.load_consistency()
    serving = load_serving()
    rate = cfg.sample_rate if cfg.sample_rate is not None else serving.feature_log_sample_rate
    if rate <= 0:
        raise ConsistencyUsageError(
            "feature logging is off ([serving] feature_log_sample_rate = 0): there is nothing "
            "to compare; set [consistency] sample_rate to the rate the logs were written at")
    rng = SliceRange.parse(args.slice)
    paths = load_paths()
    store = feature_store(load_feast(), paths, apply=True)
    logged = feature_logs.read_topic(load_kafka(), args.topic or serving.feature_log_topic,
                                     rng.start_ms, rng.end_ms)
    report: dict[str, Any] = consistency.run(paths, rng, store, logged, cfg, rate)
    json_path, html_path = consistency_report.write(report, paths)
    if args.json:
        print(json.dumps(json.loads(json_path.read_text()), indent=2, sort_keys=True))
    else:
        print(consistency.summary_line(report))
        for breach in report["breaches"]:
            print(f"  breach: {breach}")
        print(f"wrote {html_path} and {json_path}")
    return EXIT_BREACH if args.fail_on_breach and not report["ok"] else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "consistency", help="compare logged online features with point-in-time offline values")
    p.add_argument("--slice", required=True, metavar="START..END",
                   help="event-time range of final partitions, e.g. 2026-01-01T10..2026-01-01T14")
    p.add_argument("--topic", help="FeatureLog topic (default [serving] feature_log_topic)")
    p.add_argument("--fail-on-breach", action="store_true",
                   help=f"exit {EXIT_BREACH} when a threshold is breached")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)
