"""`loopline bench SUITE`: measure a suite beside its baseline, print both, write JSON.

Suites: throughput, freshness, lookup, serving, attribution, soak, writer; `table` prints (or
writes into bench/README.md) the latest figures of each suite. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loopline.errors import LooplineError

SUITES = ("throughput", "freshness", "lookup", "serving", "attribution", "soak", "writer")


class BenchArgumentError(LooplineError):
    """An argument of `loopline bench` is out of range or inconsistent."""


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(float(v)) for v in text.replace("_", "").split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 5000,20000, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return values


def _setting(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    value: Any = raw
    for parse in (int, float):
        try:
            value = parse(raw)
            break
        except ValueError:
            continue
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    return key.strip(), value


def register(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks: throughput, freshness, lookup, serving, attribution, soak, writer "
             "(each beside a baseline)",
        description=(
            "Run a benchmark suite and its baseline in the same run, print them side by side "
            "with the ratio, and write a JSON result (machine facts, load, versions) under "
            "bench/results/. Suites start their own Kafka/Redis on free ports unless told "
            "otherwise. `table` prints the latest figures (--write: into bench/README.md)."
        ),
    )
    parser.add_argument("suite", choices=(*SUITES, "table"), help="what to measure")
    parser.add_argument("--json", action="store_true", help="print the result document as JSON")
    out = parser.add_argument_group("output")
    out.add_argument("--results-dir", type=Path, metavar="DIR",
                     help="where result JSON goes (default: bench/results; the README table "
                          "is refreshed only for the default)")
    out.add_argument("--write", action="store_true",
                     help="table: write the table into bench/README.md")
    out.add_argument("--no-readme", action="store_true",
                     help="do not refresh the README table after a run")
    env = parser.add_argument_group("environment")
    env.add_argument("--home", type=Path, metavar="DIR",
                     help="scratch folder for services and run homes (default: a temp dir, "
                          "removed afterwards)")
    env.add_argument("--cache", type=Path, metavar="DIR",
                     help="generated-event cache (default: <loopline home>/bench-cache)")
    env.add_argument("--kafka", metavar="HOST:PORT",
                     help="use this broker instead of starting one (its pid is watched if local)")
    env.add_argument("--redis", metavar="HOST:PORT", help="use this Redis instead of starting one")
    env.add_argument("--profile", type=Path, metavar="DIR",
                     help="record py-spy profiles (raw, GIL-holding samples) of measured children")
    data = parser.add_argument_group("data and stores")
    data.add_argument("--events", type=int,
                      help="throughput: events to pre-load (100,000: the default run, job + "
                           "both baselines on both stores, stays within ~5 minutes); writer: "
                           "updates (100,000)")
    data.add_argument("--store", action="append", choices=("sqlite", "redis"),
                      help="online store(s) to measure (repeatable; default: both, "
                           "freshness: sqlite)")
    data.add_argument("--no-baseline", action="store_true", help="skip the baseline runs")
    data.add_argument("--baseline", dest="baselines", action="append",
                      choices=("features", "equal-work"),
                      help="throughput: which baseline(s) to run (repeatable; default both): "
                           "features = the naive loop computing the features only; "
                           "equal-work = the same loop + label join, slices and Kafka outputs")
    data.add_argument("--no-verify", action="store_true",
                      help="throughput: skip comparing job and baseline features")
    data.add_argument("--reconcile", action="store_true",
                      help="throughput: recount the job's outputs after the run (slow)")
    job = parser.add_argument_group("job variant (throughput, freshness)")
    job.add_argument("--set", dest="settings", type=_setting, action="append", default=[],
                     metavar="FIELD=VALUE",
                     help="a JobConfig field, e.g. online_flush_ms=500 (repeatable)")
    fresh = parser.add_argument_group("freshness")
    fresh.add_argument("--rates", type=_ints, help="events/s to produce (5000,20000)")
    fresh.add_argument("--warmup", type=float, default=30.0,
                       help="seconds produced before measuring (30: on 2 cores the job JVM's "
                            "C2 compiler still takes a third of a core 10 s in)")
    fresh.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    fresh.add_argument("--drain", type=float, default=60.0,
                       help="seconds to wait for the last probes after producing stops")
    look = parser.add_argument_group("lookup")
    look.add_argument("--entities", type=int, default=100_000,
                      help="users in the filled store (items: a tenth)")
    look.add_argument("--requests", type=int, default=2_000, help="timed lookups per case")
    look.add_argument("--serving-requests", type=int, default=1_000,
                      help="timed serving requests per store")
    look.add_argument("--no-serving", action="store_true", help="skip the serving request")
    srv = parser.add_argument_group("serving (`loopline serve` under a concurrency sweep)")
    srv.add_argument("--concurrency", type=_ints,
                     help="concurrent clients per level (1,2,4,8,32)")
    srv.add_argument("--level-seconds", type=float, default=6.0,
                     help="seconds measured per level (6)")
    srv.add_argument("--serving-workers", type=int, default=0,
                     help="`loopline serve --workers` (0 = one per core)")
    attr = parser.add_argument_group("attribution")
    attr.add_argument("--users", type=_ints, help="users per run (100000,1000000)")
    attr.add_argument("--no-refuters", action="store_true", help="skip DoWhy refuters")
    soak = parser.add_argument_group(
        "soak (TaskManager killed mid-stream on the standalone cluster; starts its own)")
    soak.add_argument("--kills", type=int, default=10, help="TaskManager kills (10)")
    soak.add_argument("--slates", type=int, default=6_000,
                      help="served slates in the stream (6000; about 1.7 events each)")
    writer = parser.add_argument_group("writer (FeatureUpdate topic → Feast through jobs/writer)")
    writer.add_argument("--writer-entities", type=int, default=50_000,
                        help="distinct entities the updates are drawn from (50000; --events "
                             "sets the updates, default 100000)")
    parser.add_argument("--smoke", action="store_true",
                        help="mark the result as a smoke run (left out of the README table)")
    parser.set_defaults(func=handle)
    return parser


def _variant(args: argparse.Namespace) -> Any:
    from bench.jobspec import JobVariant

    return JobVariant(overrides=tuple(args.settings))


def _options(args: argparse.Namespace) -> Any:
    stores = tuple(dict.fromkeys(args.store)) if args.store else None
    if args.suite == "throughput":
        from bench.suites import throughput

        return throughput.Options(
            events=args.events or throughput.DEFAULT_EVENTS, stores=stores or throughput.STORES,
            variant=_variant(args), baseline=not args.no_baseline, verify=not args.no_verify,
            baselines=tuple(dict.fromkeys(args.baselines)) if args.baselines
            else throughput.BASELINES,
            reconcile=args.reconcile, smoke=args.smoke)
    if args.suite == "freshness":
        from bench.suites import freshness

        return freshness.Options(
            rates=args.rates or (5_000, 20_000), stores=stores or ("sqlite",),
            warmup_s=args.warmup, measure_s=args.duration, drain_s=args.drain,
            variant=_variant(args), baseline=not args.no_baseline, smoke=args.smoke)
    if args.suite == "lookup":
        from bench.suites import lookup

        return lookup.Options(
            stores=stores or lookup.STORES, entities=args.entities, requests=args.requests,
            serving=not args.no_serving, serving_requests=args.serving_requests,
            smoke=args.smoke)
    if args.suite == "writer":
        from bench.suites import writer

        return writer.Options(updates=args.events or 100_000, entities=args.writer_entities,
                              stores=stores or writer.STORES, baseline=not args.no_baseline,
                              smoke=args.smoke)
    if args.suite == "serving":
        from bench.suites import serving

        return serving.Options(
            stores=stores or serving.STORES,
            concurrency=args.concurrency or serving.Options.concurrency,
            level_s=args.level_seconds, workers=args.serving_workers, smoke=args.smoke)
    if args.suite == "soak":
        from bench.suites import soak

        return soak.Options(kills=args.kills, requests=args.slates,
                            baseline=not args.no_baseline, smoke=args.smoke)
    from bench.suites import attribution

    return attribution.Options(users=args.users or (100_000, 1_000_000),
                               refuters=not args.no_refuters, smoke=args.smoke)


def _endpoint(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise BenchArgumentError(f"{flag}: expected HOST:PORT, got {text!r}")
    return host, int(port)


@contextlib.contextmanager
def _services(args: argparse.Namespace, home: Path, needs: tuple[bool, bool, bool]
              ) -> Iterator[Any]:
    from bench import services
    from infra.redis_server import RedisEndpoint
    from loopline.kafka import KafkaConfig

    kafka_needed, redis_needed, flink_needed = needs
    if flink_needed and args.kafka:
        raise BenchArgumentError(
            f"bench {args.suite} starts its own Kafka and Flink cluster: drop --kafka")
    if args.kafka or not kafka_needed:
        redis = None
        if args.redis:
            redis = RedisEndpoint(*_endpoint(args.redis, "--redis"))
        if args.kafka:
            _endpoint(args.kafka, "--kafka")
            yield services.attach(KafkaConfig(bootstrap_servers=args.kafka), redis)
        else:
            yield services.Services(KafkaConfig(), redis, {})
        return
    with services.own(home, redis=redis_needed and not args.redis, flink=flink_needed) as own:
        if args.redis:
            own.redis = RedisEndpoint(*_endpoint(args.redis, "--redis"))
        yield own


def handle(args: argparse.Namespace) -> int:
    from bench import results

    if args.suite == "table":
        folder = args.results_dir or results.RESULTS_DIR
        if args.write:
            changed = results.update_readme(results.README, folder)
            print(f"{results.README}: {'updated' if changed else 'already current'}")
        else:
            print(results.markdown_table(results.latest(folder)))
        return 0
    if args.events is not None and args.events < 100:
        raise BenchArgumentError(f"--events must be at least 100, got {args.events}")
    opts = _options(args)  # validates before anything starts
    from bench.context import BenchContext
    from bench.errors import BenchError
    from loopline.paths import load_paths

    stores = getattr(opts, "stores", ())
    needs = {  # kafka, redis, flink cluster
        "throughput": (True, "redis" in stores, False),
        "freshness": (True, "redis" in stores, False),
        "lookup": (bool(getattr(opts, "serving", False)), "redis" in stores, False),
        "serving": (True, "redis" in stores, False),
        "attribution": (False, False, False),
        "soak": (True, False, True),
        "writer": (True, "redis" in stores, False),
    }[args.suite]
    # A terminated run (timeout, kill) still stops the services it started: SystemExit runs
    # the finally blocks below, where a default SIGTERM would leave a broker behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    keep = args.home is not None
    home = args.home or Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    cache = args.cache or load_paths().home / "bench-cache"
    progress = sys.stderr.isatty()
    try:
        with _services(args, home, needs) as svc:
            ctx = BenchContext(svc, home.resolve(), cache.resolve(), progress=progress,
                               profile_dir=args.profile.resolve() if args.profile else None)
            module = __import__(f"bench.suites.{args.suite}", fromlist=["run"])
            doc = module.run(ctx, opts)
    except BenchError:
        raise
    except LooplineError as exc:
        raise BenchArgumentError(f"bench {args.suite}: {exc}") from exc
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    folder = args.results_dir or results.RESULTS_DIR
    path = results.write(doc, folder)
    if args.results_dir is None and not args.no_readme and not args.smoke:
        results.update_readme(results.README, folder)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(results.table(doc))
        print(f"wrote {os.path.relpath(path)}")
    return 0
