"""Suite 4: attribution runtime for 100 K and 1 M users, beside a naive difference in means.

Ours = the attribution core behind `loopline attribute`, from the per-user table to the written
report: `attribution.data.prepare_table` → `attribution.pipeline.run` (DoWhy estimates with
refuters, experiment readouts, mechanisms, validity checks) → `attribution.report.write`
(HTML + JSON). Input: `bench.attribution_world.simulate` (planted effects, confounded rollout).
Baseline = what a reviewer without causal tooling computes on the same users: revenue per user
by version, difference in means against the control with a normal CI (`stats.
difference_in_means`). Both run in this process; the process's RSS peak is recorded.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import results
from bench.context import BenchContext
from bench.errors import BenchUsageError
from bench.memory import MemorySampler

TARGET = "<= 60 s for 1 M users"


@dataclass(frozen=True)
class Options:
    users: tuple[int, ...] = (100_000, 1_000_000)
    refuters: bool = True
    smoke: bool = False

    def __post_init__(self) -> None:
        if not self.users or any(n < 1_000 for n in self.users):
            raise BenchUsageError(f"--users must be >= 1000 each, got {list(self.users)}")


def available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in (
        "attribution.pipeline", "bench.attribution_world", "attribution.data",
        "attribution.report"))


def _naive(users: Any, control: str) -> dict[str, Any]:
    from attribution.stats import difference_in_means

    out = {}
    for version in sorted(set(users["version"]) - {control}):
        rows = users[users["version"].isin([version, control])]
        est = difference_in_means(rows["revenue"].to_numpy(),
                                  (rows["version"] == version).to_numpy(), "naive", 0.05)
        out[version] = {"effect": est.effect, "ci": [est.ci_low, est.ci_high]}
    return out


def _one(n: int, refute: bool, home: Path) -> dict[str, Any]:
    from attribution import pipeline, report
    from attribution.config import AttributionConfig
    from attribution.data import prepare_table
    from bench.attribution_files import write_lineage
    from bench.attribution_world import SimulationSpec, simulate

    cfg = AttributionConfig()
    t0 = time.perf_counter()
    sim = simulate(SimulationSpec(n_users=n), seed=0)
    write_lineage(sim, home / "models")
    simulate_s = time.perf_counter() - t0
    with MemorySampler(0.2) as memory:
        memory.watch("process", os.getpid())
        t1, c1 = time.perf_counter(), time.process_time()
        table = prepare_table(sim.users, cfg)
        t2 = time.perf_counter()
        document = pipeline.run(table, home / "models", cfg, refute)
        t3 = time.perf_counter()
        report.write(document, home / "report")
        t4, c4 = time.perf_counter(), time.process_time()
    t5 = time.perf_counter()
    control = document["control_version"]
    naive = _naive(table.users, control)
    naive_s = time.perf_counter() - t5
    truth = {v.name: sim.planted_uplift(v.name) for v in sim.spec.versions[1:]}
    estimates = {e["model_version"]: (e.get("estimates") or [{}])[0].get("effect")
                 for e in document["versions"] if not e.get("is_control")}
    return {
        "users": n,
        "simulate_s": round(simulate_s, 2),
        "ours_s": round(t4 - t1, 2),
        "ours_cpu_s": round(c4 - c1, 2),
        "stages_s": {"prepare_table": round(t2 - t1, 2), "pipeline": round(t3 - t2, 2),
                     "report": round(t4 - t3, 2)},
        "pipeline_timings_s": {k: round(v, 2) for k, v in document["timings_seconds"].items()},
        "baseline_s": round(naive_s, 3),
        "refuters": refute,
        "trustworthy": document["trustworthy"],
        "planted_uplift": truth,
        "estimated_uplift": estimates,
        "naive_uplift": {v: r["effect"] for v, r in naive.items()},
        "memory": memory.report(),
    }


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    doc = results.new_document("attribution", {
        "users": list(opts.users), "refuters": opts.refuters, "smoke": opts.smoke,
        "ours": "prepare_table → pipeline.run (DoWhy + refuters + checks) → report.write",
        "baseline": "difference in means per version (attribution.stats)",
    })
    if not available():
        doc["notes"].append("attribution: not available yet (attribution package incomplete)")
        return results.finish(doc)
    for n in opts.users:
        with tempfile.TemporaryDirectory(dir=ctx.home) as tmp:
            detail = _one(n, opts.refuters, Path(tmp))
        doc["details"][str(n)] = detail
        doc["figures"].append(results.figure(
            f"attribution runtime, {n:,} users", "s", detail["ours_s"], detail["baseline_s"],
            False, ours_label="attribution core (DoWhy, refuters, report)",
            baseline_label="naive difference in means", users=n,
            target=TARGET if n >= 1_000_000 else None))
        doc["figures"].append(results.figure(
            f"attribution memory peak, {n:,} users", "MiB",
            detail["memory"]["peak_total_mib"], None, False, users=n,
            ours_label="attribution core (DoWhy, refuters, report)",
            baseline_label="naive difference in means",
            note="RSS of the benchmark process (includes the simulated table)"))
    doc["notes"].append("input: bench.attribution_world (confounded rollout, planted uplift), "
                        "per-user table; file loading (slices → table) not included")
    return results.finish(doc)
