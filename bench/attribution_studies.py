"""Runtime and estimator checks on simulated rollouts (not used by the CLI).

    python -m bench.attribution_studies runtime --users 100000 1000000
    python -m bench.attribution_studies files --users 100000
    python -m bench.attribution_studies bias --seeds 100 --users 5000 [--strong]

`runtime` times the attribution core (per-user table → report document, refuters included);
`files` times writing and loading the Parquet contracts; `bias` runs every supported
estimator over many seeds against the planted uplift and prints bias, spread and coverage.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from attribution import causal, pipeline, report
from attribution.config import SUPPORTED_ESTIMATORS, AttributionConfig
from attribution.data import load_analysis_table, prepare_table
from attribution.stats import difference_in_means
from bench.attribution_files import write_contracts, write_lineage
from bench.attribution_world import SimulationSpec, simulate

T = TypeVar("T")

# Almost deterministic rollout: v2 to 94 % of heavy users, 5 % of new ones.
STRONG_ROLLOUT = {
    "v1": (0.90, 0.50, 0.04),
    "v2": (0.05, 0.25, 0.94),
    "v3": (0.05, 0.25, 0.02),
}


def _timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def runtime(users: list[int], refute: bool) -> None:
    cfg = AttributionConfig()
    for n in users:
        sim = simulate(SimulationSpec(n_users=n), seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            write_lineage(sim, Path(tmp) / "models")
            table, w1, c1 = _timed(prepare_table, sim.users, cfg)
            document, w2, c2 = _timed(pipeline.run, table, Path(tmp) / "models", cfg, refute)
            _, w3, c3 = _timed(report.write, document, Path(tmp) / "out")
        print(
            f"{n:>9,} users: core {w1 + w2 + w3:6.1f} s wall / {c1 + c2 + c3:6.1f} s CPU "
            f"(table {w1:.1f}, estimate+refute+checks {w2:.1f}, report {w3:.1f}); "
            f"refuter sample {cfg.refuter_max_units:,} × {cfg.refuter_simulations} sims"
        )
        for key, value in document["timings_seconds"].items():
            print(f"    {key}: {value:.1f} s")


def files(users: list[int]) -> None:
    cfg = AttributionConfig()
    for n in users:
        sim = simulate(SimulationSpec(n_users=n, window_hours=168), seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            written, w1, _ = _timed(write_contracts, sim, Path(tmp), exposure_hours=24)
            _, w2, c2 = _timed(
                load_analysis_table,
                Path(tmp) / "slices",
                written.since,
                written.until,
                cfg,
                written.users_path,
            )
        print(
            f"{n:>9,} users ({written.impressions:,} impressions, {written.unmatched:,} unmatched "
            f"rows): write {w1:.1f} s, load into per-user table {w2:.1f} s wall / {c2:.1f} s CPU"
        )


def bias(seeds: int, users: int, strong: bool) -> None:
    cfg = AttributionConfig(estimators=SUPPORTED_ESTIMATORS)
    spec = SimulationSpec(n_users=users)
    if strong:
        spec = SimulationSpec(n_users=users, rollout=dict(STRONG_ROLLOUT))
    errors: dict[str, list[float]] = {m: [] for m in (*SUPPORTED_ESTIMATORS, "naive")}
    covered: dict[str, int] = dict.fromkeys(errors, 0)
    truths = []
    for seed in range(seeds):
        sim = simulate(spec, seed=seed)
        table = prepare_table(sim.users, cfg)
        truth = sim.planted_uplift("v2")
        truths.append(truth)
        res = causal.estimate_version(table.users, table.covariates, "v2", "v1", cfg, refute=False)
        rows = table.users[table.users["version"].isin(["v1", "v2"])]
        naive = difference_in_means(
            rows["revenue"].to_numpy(), (rows["version"] == "v2").to_numpy(), "naive", cfg.alpha
        )
        for est in [*res.estimates, naive]:
            errors[est.estimator].append(est.effect - truth)
            covered[est.estimator] += est.covers(truth)
    label = "strongly confounded" if strong else "confounded"
    print(
        f"{label} rollout, {seeds} seeds × {users:,} users, mean planted uplift "
        f"{np.mean(truths):.3f} revenue/user"
    )
    for name, errs in errors.items():
        e = np.asarray(errs)
        print(
            f"  {name:38s} bias {e.mean():+8.3f} (±{1.96 * e.std() / np.sqrt(e.size):.3f})  "
            f"sd {e.std():6.3f}  95% CI coverage {covered[name] / e.size:5.1%}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.attribution_studies")
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("runtime")
    r.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    r.add_argument("--no-refuters", action="store_true")
    f = sub.add_parser("files")
    f.add_argument("--users", type=int, nargs="+", default=[100_000])
    b = sub.add_parser("bias")
    b.add_argument("--seeds", type=int, default=100)
    b.add_argument("--users", type=int, default=5_000)
    b.add_argument("--strong", action="store_true")
    args = parser.parse_args(argv)
    if args.what == "runtime":
        runtime(args.users, not args.no_refuters)
    elif args.what == "files":
        files(args.users)
    else:
        bias(args.seeds, args.users, args.strong)


if __name__ == "__main__":
    main()
