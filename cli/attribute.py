"""`loopline attribute`: revenue uplift per model version for a review period, as
DIR/report.html (for people) and DIR/report.json (for machines, docs/report-schema.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from loopline.errors import LooplineError


class AttributeUsageError(LooplineError):
    """An argument of `loopline attribute` is inconsistent with the others or the disk."""


def _iso(text: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time like 2026-11-01T00:00Z, got {text!r}"
        ) from exc
    if ts is pd.NaT:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time, got {text!r}")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of users, got {text!r}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "attribute",
        help="attribute revenue uplift to model versions and feedback slices (HTML + JSON)",
        description=(
            "Estimate revenue uplift per user of each model version against the control with "
            "DoWhy (explicit graph, two estimators, refuters), check validity (SRM, overlap, "
            "refuters, lineage), tie each version to its training slice and split the change "
            "into mechanisms. Writes DIR/report.html and DIR/report.json."
        ),
    )
    parser.add_argument("--since", type=_iso, help="first exposure at or after this time (ISO)")
    parser.add_argument("--until", type=_iso, help="first exposure before this time (ISO)")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="report folder (required unless --plan)"
    )
    parser.add_argument("--control", metavar="VERSION", help="control model version")
    parser.add_argument(
        "--users",
        type=Path,
        metavar="PATH",
        help="user table (parquet/csv): user_id, segment, numeric covariates",
    )
    parser.add_argument(
        "--home",
        type=Path,
        metavar="DIR",
        help="Loopline home (default: paths.home / LOOPLINE_PATHS_HOME)",
    )
    parser.add_argument(
        "--expected-split",
        metavar="V=SHARE,...",
        help="intended split for the SRM test, e.g. v1=0.5,v2=0.5",
    )
    parser.add_argument(
        "--metric",
        choices=("revenue", "clicks", "purchases", "conversion", "ctr"),
        help="outcome per user (ctr: clicks per impression, delta method); default revenue",
    )
    parser.add_argument(
        "--plan",
        type=_positive_int,
        metavar="USERS",
        help="instead of a report: the minimum detectable effect with USERS users (and with "
        "--uplift, the users/days needed), from the variance observed in the period",
    )
    parser.add_argument(
        "--uplift",
        type=float,
        metavar="X",
        help="with --plan: the uplift (in metric units) the experiment should detect",
    )
    parser.add_argument(
        "--no-refuters",
        action="store_true",
        help="skip DoWhy refuters (faster; the report says they were not run)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from attribution import pipeline, report
    from attribution.config import load_config
    from attribution.data import load_analysis_table
    from loopline.paths import load_paths

    if args.since is not None and args.until is not None and args.since >= args.until:
        raise AttributeUsageError(f"--since {args.since} must be before --until {args.until}")
    if args.users is not None and not args.users.is_file():
        raise AttributeUsageError(f"--users {args.users}: no such file (expected parquet or csv)")
    if args.out is None and args.plan is None:
        raise AttributeUsageError("--out DIR is required (or --plan USERS for a power plan)")
    if args.uplift is not None and args.plan is None:
        raise AttributeUsageError("--uplift needs --plan USERS")
    if args.uplift is not None and args.uplift == 0:
        raise AttributeUsageError("--uplift must be non-zero")
    paths = load_paths(home=args.home) if args.home is not None else load_paths()
    cfg = load_config(
        control_version=args.control,
        expected_split=args.expected_split,
        metric=args.metric,
        run_refuters=False if args.no_refuters or args.plan else None,
    )
    progress = sys.stderr.isatty()
    table = load_analysis_table(paths.slices, args.since, args.until, cfg, args.users)
    document = pipeline.run(table, paths.models, cfg, progress=progress)
    if args.plan is not None:
        from attribution.power import plan

        print(f"power plan for {cfg.outcome.label} vs {document['control_version']}:")
        for p in plan(document, args.plan, args.uplift, cfg.alpha, cfg.power):
            print(f"  {p.text(cfg.outcome.label, cfg.power)}")
        return 0
    from attribution.consistency import reports_for

    document["consistency"] = reports_for(paths, args.since, args.until)
    json_path, html_path = report.write(document, args.out)
    gate = "trustworthy" if document["trustworthy"] else "NOT TRUSTWORTHY (see failed checks)"
    users, control = document["data"]["users"], document["control_version"]
    print(f"attribution of {users:,} users vs {control}: {gate}")
    for failed in document["headline"]["failed_checks"]:
        print(f"  failed check: {failed}")
    for statement in document["headline"]["statements"]:
        print(f"  {statement['text']}")
    print(f"wrote {html_path} and {json_path}")
    return 0
