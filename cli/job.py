"""`loopline job ...` and `loopline submit`: run, submit and audit the feedback job."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SUBMIT_HELP = """Submit the feedback job to the Flink session cluster (`loopline infra up flink`).

The job reads the serving and interaction topics, joins each served slate with the outcomes it
caused, keeps the Feast online store fresh and writes feedback slices, dead letters, late
events and lineage. Settings come from loopline.toml / LOOPLINE_* (see README)."""


def _job_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bounded": True if args.bounded else None,
        "run_id": args.run_id,
        "parallelism": args.parallelism,
        "startup": args.startup,
    }


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the offsets present at start (replay, backfill, tests)")
    parser.add_argument("--run-id", help="this run's id in lineage (default: a new UUID)")
    parser.add_argument("--parallelism", type=int, help="operator parallelism (default 1)")
    parser.add_argument("--startup", choices=("group-offsets", "earliest-offset",
                                              "latest-offset"),
                        help="where to start reading (default: the group's committed offsets)")


def _run(args: argparse.Namespace) -> int:
    from feature_repo.store import load_feast
    from jobs.config import load_job
    from jobs.feedback.run import run
    from loopline.kafka import load_kafka
    from loopline.paths import load_paths

    feast = load_feast(online_store=args.store)
    result = run(load_job(**_job_overrides(args)), load_kafka(), feast, load_paths())
    print(json.dumps({"run_id": result.run_id, "job_id": result.job_id,
                      "seconds": round(result.seconds, 2)}))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from infra.flink_jobs import flink_run
    from jobs.feedback import run as job_run

    script_args = []
    if args.bounded:
        script_args.append("--bounded")
    if args.run_id:
        script_args += ["--run-id", args.run_id]
    if args.parallelism:
        script_args += ["--parallelism", str(args.parallelism)]
    if args.startup:
        script_args += ["--startup", args.startup]
    if not args.attached:
        script_args.append("--detached")
    submitted = flink_run(Path(job_run.__file__), script_args, detached=not args.attached,
                          conf=_cluster_conf(args))
    print(json.dumps({"job_id": submitted.job_id}))
    return 0


def _cluster_conf(args: argparse.Namespace) -> dict[str, str]:
    conf: dict[str, str] = {}
    if args.savepoint:
        conf["execution.state-recovery.path"] = args.savepoint
    return conf


def _reconcile(args: argparse.Namespace) -> int:
    from jobs.config import load_job
    from jobs.reconcile import reconcile
    from loopline.kafka import load_kafka

    counts = reconcile(load_kafka(), load_job())
    if args.json:
        print(json.dumps(counts.as_dict(), indent=2))
    else:
        d = counts.as_dict()
        print(f"input {d['input']} = joined {d['joined']} (serving {d['joined_serving']}, "
              f"interactions {d['joined_interactions']}, feature logs "
              f"{d['joined_feature_logs']}) + unmatched {d['unmatched']} "
              f"+ late {d['late']} + dead-lettered {d['dead_lettered']}: "
              f"{'balanced' if counts.balanced else 'NOT BALANCED'}")
    return 0 if counts.balanced else 1


def _purge_slices(args: argparse.Namespace) -> int:
    from jobs.sinks.slice_log import purge_expired
    from loopline.errors import ConfigError
    from loopline.paths import load_paths
    from loopline.privacy import load_privacy

    days = args.days if args.days is not None else load_privacy().slice_retention_days
    if days is None:
        raise ConfigError("no retention set: pass --days or set privacy.slice_retention_days "
                          "(LOOPLINE_PRIVACY_SLICE_RETENTION_DAYS)")
    if not days > 0:
        raise ConfigError(f"--days must be > 0, got {days}")
    root = load_paths().slices
    gone = purge_expired(root, days, dry_run=args.dry_run)
    verb = "expired (dry run, kept)" if args.dry_run else "deleted"
    print(json.dumps({"retention_days": days, verb: [str(p.relative_to(root)) for p in gone]}))
    return 0


WRITE_FEATURES_HELP = """Write feature updates from Kafka into the Feast online store.

The feedback job publishes compacted online feature updates (FeatureUpdate records, newest
values per entity) to a Kafka topic; this writer reads them in batches, keeps the newest
update per entity, writes Feast, and only then commits its consumer group's offsets, so a
crash replays a batch instead of losing it (the online store keeps the newest event time per
key, which makes replays harmless). Records that do not decode or break the contract go to
the dead-letter topic with the reason and their topic/partition/offset.

Without --drain it runs until interrupted (Ctrl-C or SIGTERM finishes the batch in hand).
With --drain it writes what the topic holds now and exits, printing its stats as JSON.
Settings: [writer] in loopline.toml or LOOPLINE_WRITER_* (batch rows, batch wait, poll
timeout, dead-letter and lineage topics); [feast] and [kafka] as for `loopline job run`."""


def _write_features(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from feature_repo.store import load_feast
    from jobs.writer import FeatureWriter, load_writer
    from loopline.kafka import load_kafka
    from loopline.paths import load_paths

    config = load_writer(topic=args.topic, group_id=args.group)
    feast = load_feast(online_store=args.store)
    with FeatureWriter(config, load_kafka(), feast, load_paths()) as writer:
        if args.drain:
            stats = writer.drain(progress=_progress_line(sys.stderr))
        else:
            stop = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
            print(f"writing {config.topic} → Feast ({feast.online_store}) as group "
                  f"{config.group_id}; Ctrl-C to stop", file=sys.stderr)
            stats = writer.run(stop)
    print(json.dumps(stats.as_dict()))
    return 0 if stats.complete else 1


def _progress_line(stream: Any) -> Any:
    """progress(done, total) → one self-overwriting line on a terminal, else nothing."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        share = f"{100 * done / total:5.1f}%" if total else "  -  "
        end = "\n" if done >= total else ""
        stream.write(f"\rwrite-features [{'#' * filled}{'.' * (width - filled)}] {share} "
                     f"{done:,}/{total:,} records{end}")
        stream.flush()

    return show


def register(subparsers: Any) -> None:
    job = subparsers.add_parser("job", help="run or audit the feedback job locally",
                                description="Run the feedback job in the embedded Flink "
                                            "mini-cluster, or reconcile its outputs.")
    actions = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    run_p = actions.add_parser("run", help="run in the local Flink mini-cluster",
                               description="Run the feedback job in this process (Flink "
                                           "mini-cluster). Unbounded unless --bounded.")
    _add_job_options(run_p)
    run_p.add_argument("--store", choices=("sqlite", "redis"),
                       help="Feast online store (default: [feast] online_store, sqlite)")
    run_p.set_defaults(func=_run)
    rec = actions.add_parser("reconcile", help="check input = joined + unmatched + late + DLQ",
                             description="Count the job's durable outputs (deduplicated by "
                                         "key) against its inputs. Exit 1 when unbalanced.")
    rec.add_argument("--json", action="store_true", help="machine-readable output")
    rec.set_defaults(func=_reconcile)
    purge = actions.add_parser(
        "purge-slices", help="delete raw slice partitions older than the retention",
        description="Delete feedback-slice partitions (labelled impressions, unmatched "
                    "interactions) whose newest event is older than --days (default: "
                    "[privacy] slice_retention_days).")
    purge.add_argument("--days", type=float, help="retention in days")
    purge.add_argument("--dry-run", action="store_true", help="list, do not delete")
    purge.set_defaults(func=_purge_slices)
    write = actions.add_parser(
        "write-features", help="write the job's feature updates from Kafka into Feast",
        description=WRITE_FEATURES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    write.add_argument("--drain", action="store_true",
                       help="write what the topic holds now, then exit (after a bounded run)")
    write.add_argument("--group", metavar="G",
                       help="consumer group: its committed offsets say what this store already "
                            "holds (default: [writer] group_id, loopline-feast-writer)")
    write.add_argument("--topic", metavar="T",
                       help="feature-updates topic (default: loopline.features.updates)")
    write.add_argument("--store", choices=("sqlite", "redis"),
                       help="Feast online store (default: [feast] online_store, sqlite)")
    write.set_defaults(func=_write_features)

    submit = subparsers.add_parser("submit", help="submit the feedback job to a Flink cluster",
                                   description=SUBMIT_HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_job_options(submit)
    submit.add_argument("--attached", action="store_true",
                        help="wait for the job to finish (with --bounded)")
    submit.add_argument("--savepoint", help="resume from this savepoint/checkpoint path")
    submit.set_defaults(func=_submit)
