"""CLI commands of the models package: train, evaluate, models (list/rollout/rollback),
lineage show, serve, retrain-check. `register(subparsers)` adds them to `loopline`.

Every handler takes the parsed args and returns an exit code; failures are LooplineError
subclasses, which the entry point prints as one line without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from loopline.errors import LooplineError


def _progress() -> bool:
    return sys.stderr.isatty()


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _paths() -> Any:
    from loopline.paths import load_paths

    return load_paths()


def _store(paths: Any) -> Any:
    from feature_repo.store import feature_store, load_feast

    return feature_store(load_feast(), paths, apply=True)


# ---- train / evaluate ---------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from loopline.kafka import load_kafka
    from models.slices import SliceRange
    from models.training import load_training, train

    cfg = load_training(objective=args.objective,
                        emit_lineage=True if args.emit_lineage else None)
    rng = SliceRange.parse(args.slice)
    paths = _paths()
    result = train(paths, rng, _store(paths), cfg, parent=args.parent,
                   kafka=load_kafka() if cfg.emit_lineage else None, progress=_progress(),
                   features_from=getattr(args, "features", None) or "point-in-time")
    if args.json:
        _print_json({"version": result.version, "run_id": result.run_id,
                     "metrics": result.metrics, "lineage": result.lineage})
        return 0
    m = result.metrics
    k = next(key for key in m if key.startswith("ndcg@"))
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"registered {result.version}  (parent {result.lineage['parent_version'] or '-'}, "
          f"{cfg.objective}, {result.lineage['slice']['row_count']} rows from "
          f"{len(result.lineage['slice']['partitions'])} partitions, features: "
          f"{result.lineage['features']['source']})")
    print(f"  holdout AUC {fmt(m['auc'])} (logged {fmt(m['logged_auc'])})   "
          f"{k.upper()} {fmt(m[k])} (logged {fmt(m['logged_' + k])})")
    print(f"  lineage: loopline lineage show {result.version}   (mirror {result.lineage_mirror})")
    return 0


class EvaluateUsageError(LooplineError):
    """`loopline evaluate` arguments that contradict each other."""


def _read_target(path: str) -> Any:
    import pandas as pd

    from models.logged_policy import LOGGING, read_target

    if path == LOGGING:
        return None
    try:
        frame = pd.read_csv(path) if path.lower().endswith(".csv") else pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise EvaluateUsageError(
            f"--target-policy {path}: expected a parquet/csv table of request_id, item_id, "
            f"[position,] probability: {exc}") from exc
    return read_target(frame)


def _evaluate(args: argparse.Namespace) -> int:
    from models.evaluation import evaluate, evaluate_logged
    from models.logged_policy import Selection
    from models.slices import SliceRange

    if (args.version is None) == (args.target_policy is None):
        raise EvaluateUsageError("give either a candidate VERSION or --target-policy FILE "
                                 "(or --target-policy logging), not both or neither")
    if args.confidence is not None and not 0 < args.confidence < 1:
        raise EvaluateUsageError(f"--confidence must be in (0, 1), got {args.confidence}")
    rng = SliceRange.parse(args.slice)
    paths = _paths()
    selection = Selection(tuple(args.logged_version or ()), tuple(args.logged_arm or ()))
    if args.target_policy is not None:
        report = evaluate_logged(paths, rng, _read_target(args.target_policy),
                                 args.target_policy, selection, confidence=args.confidence)
    else:
        from models.serving.config import load_serving

        temperature = args.temperature or load_serving().temperature
        report = evaluate(paths, rng, _store(paths), args.version, temperature,
                          positions=args.positions, confidence=args.confidence,
                          progress=_progress(), selection=selection)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.text())
    return 0


# ---- models list / rollout / rollback -----------------------------------------------------
def _models_list(args: argparse.Namespace) -> int:
    from models.registry import Registry
    from models.rollout import Rollout

    registry = Registry.from_paths(_paths())
    status = Rollout(registry).status()
    rows = []
    for version in registry.versions():
        lin, met = registry.lineage(version), registry.metrics(version)
        rows.append({
            "version": version, "parent": lin["parent_version"], "trained_at": lin["trained_at"],
            "objective": met.get("objective"), "rows": lin["slice"]["row_count"],
            "slice": f"{lin['slice']['start']}..{lin['slice']['end']}", "auc": met.get("auc"),
            "rollout": status.get(version, "-"),
        })
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no model versions in {registry.root}")
        return 0
    print(f"{'version':<8} {'parent':<7} {'trained_at':<21} {'objective':<10} {'rows':>8} "
          f"{'auc':>6}  {'rollout':<26} slice")
    for r in rows:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        print(f"{r['version']:<8} {r['parent'] or '-':<7} {r['trained_at']:<21} "
              f"{r['objective'] or '-':<10} {r['rows']:>8} {auc:>6}  {r['rollout']:<26} "
              f"{r['slice']}")
    return 0


def _models_register_external(args: argparse.Namespace) -> int:
    from models.registry import Registry

    doc = Registry.from_paths(_paths()).register_external(
        args.name, args.policy, args.description or ""
    )
    if args.json:
        _print_json(doc)
    else:
        print(f"registered external policy {doc['model_version']}: {doc['policy']} "
              "(no training slice; attribution does not ask it for lineage)")
    return 0


def _print_state(state: Any) -> None:
    arms = ", ".join(f"{a.name}={a.version} {a.weight * 100:g}%" for a in state.arms)
    print(f"rollout {state.experiment}: {arms}")


def _models_rollout(args: argparse.Namespace) -> int:
    from models.registry import Registry
    from models.rollout import Rollout

    rollout = Rollout(Registry.from_paths(_paths()))
    state = rollout.full(args.version) if args.full else rollout.canary(args.version, args.canary)
    _print_state(state)
    return 0


def _models_rollback(args: argparse.Namespace) -> int:
    from models.registry import Registry
    from models.rollout import Rollout

    _print_state(Rollout(Registry.from_paths(_paths())).rollback())
    return 0


# ---- lineage ------------------------------------------------------------------------------
def _lineage_show(args: argparse.Namespace) -> int:
    from models import lineage
    from models.registry import Registry

    doc = Registry.from_paths(_paths()).lineage(args.version)
    if args.json:
        _print_json(doc)
    else:
        print(lineage.describe(doc))
    return 0


# ---- serve / retrain-check ----------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from feature_repo.store import load_feast
    from loopline.kafka import load_kafka
    from models.serving.config import load_serving
    from models.serving.server import (
        build_service,
        check_event_log,
        run,
        run_workers,
        with_auth,
        worker_count,
    )

    cfg, generated = with_auth(load_serving(host=args.host, port=args.port,
                                            workers=args.workers,
                                            kafka_enabled=False if args.no_kafka else None))
    kafka = load_kafka() if cfg.kafka_enabled else None
    check_event_log(cfg, kafka)  # before anything listens: no topic, no serving
    workers = worker_count(cfg)
    service = build_service(cfg, _paths(), load_feast(), kafka) if workers == 1 else None
    paths = "POST /rank, GET /healthz" + (", GET /metrics" if cfg.metrics_enabled else "")
    print(f"serving on http://{cfg.host}:{cfg.port} with {workers} worker process"
          f"{'es' if workers > 1 else ''}  ({paths})", flush=True)
    if generated:
        print(f"auth token for this run (set serving.auth_token to choose one): {generated}",
              flush=True)
    elif cfg.auth_token is None:
        print("WARNING: no authentication (serving.allow_unauthenticated, local development)",
              flush=True)
    if service is None:
        run_workers(cfg)
    else:
        run(cfg, service)
    return 0


def _retrain_check(args: argparse.Namespace) -> int:
    from models.triggers import check, load_triggers

    paths = _paths()
    decision = check(paths, load_triggers(min_new_rows=args.min_new_rows))
    if args.json:
        _print_json(decision.to_dict())
    else:
        print(decision.text())
    if args.train and decision.retrain and decision.proposed_slice:
        train_args = argparse.Namespace(slice=decision.proposed_slice, parent=None,
                                        objective=None, emit_lineage=args.emit_lineage,
                                        json=args.json, features="point-in-time")
        return _train(train_args)
    return 0


# ---- wiring -------------------------------------------------------------------------------
def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a percentage like 10, got {text!r}") from exc
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (one per core) or more, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the models commands to the `loopline` parser's subparsers."""
    p = subparsers.add_parser("train", help="train a LightGBM ranker on a feedback slice")
    p.add_argument("--slice", required=True, metavar="START..END",
                   help="event-time range of final partitions, e.g. 2026-01-01T10..2026-01-01T14")
    p.add_argument("--parent", metavar="VERSION",
                   help="version this one succeeds (default: the production version)")
    p.add_argument("--objective", choices=("binary", "lambdarank"),
                   help="binary on clicks (default) or lambdarank on graded outcomes")
    p.add_argument("--emit-lineage", action="store_true",
                   help="also send the LineageRecord to Kafka (config [kafka])")
    p.add_argument("--features", choices=("point-in-time", "logged"), default="point-in-time",
                   help="feature values: Feast's offline history as of each impression "
                   "(default), or the vectors serving logged for it, as the feedback job "
                   "joined them into the slice ([job] feature_log_topic; impressions "
                   "without a log are left out)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="off-policy estimates for a version on a slice")
    p.add_argument("version", nargs="?",
                   help="candidate model version (re-ranks logged softmax slates)")
    p.add_argument("--target-policy", metavar="FILE|logging",
                   help="stored action probabilities (request_id, item_id, [position], "
                   "probability) to evaluate on any logs with propensities; 'logging' = the "
                   "logging policy itself (IPS = observed mean)")
    p.add_argument("--logged-version", action="append", metavar="V",
                   help="only impressions served by this model_version (repeatable)")
    p.add_argument("--logged-arm", action="append", metavar="ARM",
                   help="only impressions of this experiment arm (repeatable)")
    p.add_argument("--slice", required=True, metavar="START..END")
    p.add_argument("--positions", type=int, default=5, help="top positions evaluated (2-12)")
    p.add_argument("--temperature", type=float,
                   help="softmax temperature of the candidate (default: [serving] temperature)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("models", help="list model versions, roll out, roll back")
    sub = p.add_subparsers(dest="models_command", required=True)
    q = sub.add_parser("list", help="versions with metrics and rollout state")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_models_list)
    q = sub.add_parser("rollout", help="canary or full rollout of a version")
    q.add_argument("version")
    how = q.add_mutually_exclusive_group(required=True)
    how.add_argument("--canary", type=_percent, metavar="PERCENT",
                     help="share of users (by stable hash) sent to the version")
    how.add_argument("--full", action="store_true", help="serve the version to everyone")
    q.set_defaults(func=_models_rollout)
    q = sub.add_parser("rollback", help="drop the canary, or return to the previous version")
    q.set_defaults(func=_models_rollback)
    q = sub.add_parser("register-external",
                       help="register a baseline/external policy that has no training slice")
    q.add_argument("name", help="the model_version its logs carry, e.g. popularity, ts-bandit")
    q.add_argument("--policy", required=True,
                   help="what it is, e.g. 'thompson sampling over 80 items'")
    q.add_argument("--description", help="free text shown in reports")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_models_register_external)

    p = subparsers.add_parser("lineage", help="trace a model version to its slice and offsets")
    sub = p.add_subparsers(dest="lineage_command", required=True)
    q = sub.add_parser("show", help="version → slice → job runs → Kafka offsets")
    q.add_argument("version")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_lineage_show)

    p = subparsers.add_parser("serve", help="run the HTTP ranker")
    p.add_argument("--host", help="listen address (default [serving] host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default [serving] port, 8000)")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help="worker processes on the port (default [serving] workers, 1; 0 = one "
                        "per core)")
    p.add_argument("--no-kafka", action="store_true", help="do not log ServingEvents")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("retrain-check", help="decide whether to retrain, and why")
    p.add_argument("--min-new-rows", type=int, help="override [retrain] min_new_rows")
    p.add_argument("--train", action="store_true", help="train on the proposed slice if yes")
    p.add_argument("--emit-lineage", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_retrain_check)
