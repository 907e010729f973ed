"""Soak: the feedback job on the standalone cluster with its TaskManager killed again and
again, beside the same stream undisturbed (the baseline), both in this run.

The long variant of tests/integration/reliability/test_taskmanager_failure.py (the procedure
is shared: bench/reliability/taskmanager.py). Figures: labelled output lost and doubled (must
be 0 in both), time until the job has caught up with its input (the cost of the kills), the
recovery time per kill; details keep every kill's figures and both reconciliations.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from typing import Any

from bench import results
from bench.context import BenchContext
from bench.errors import BenchRunError, BenchUsageError
from bench.reliability import taskmanager

TARGET = "0 lost, 0 doubled; reconciliation exact"


@dataclass(frozen=True)
class Options:
    kills: int = 10
    requests: int = 6_000
    baseline: bool = True
    smoke: bool = False

    def __post_init__(self) -> None:
        if self.kills < 1:
            raise BenchUsageError(f"--kills must be >= 1, got {self.kills}")
        if self.requests < 10 * (self.kills + 1):
            raise BenchUsageError(
                f"--slates must be >= {10 * (self.kills + 1)} for {self.kills} kills "
                f"(each part needs slates in flight), got {self.requests}")


def _summary(run: taskmanager.KillRun) -> dict[str, Any]:
    return {
        "exact": run.exact,
        "lost_requests": run.lost_requests,
        "duplicates": run.duplicates,
        "label_mismatches": run.label_mismatches,
        "feature_mismatches": len(run.feature_mismatches),
        "missing": run.missing or None,
        **run.figures,
    }


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    cluster = ctx.services.flink
    if cluster is None:
        raise BenchRunError("soak needs a Flink standalone cluster (started with the services)")
    doc = results.new_document("soak", {
        "kills": opts.kills, "slates": opts.requests, "smoke": opts.smoke,
        "ours": f"feedback job, TaskManager SIGKILLed {opts.kills}x mid-stream",
        "baseline": "the same stream and pacing, undisturbed",
    })

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    kafka = ctx.services.kafka
    plan = taskmanager.KillPlan(kills=opts.kills, requests=opts.requests)
    base = None
    if opts.baseline:
        say("soak: baseline run (no kills)")
        base = taskmanager.run(kafka, cluster, ctx.run_home("baseline"),
                               taskmanager.KillPlan(kills=0, requests=opts.requests,
                                                    parts=plan.part_count), say)
    say(f"soak: {opts.kills} kills")
    ours = taskmanager.run(kafka, cluster, ctx.run_home("kills"), plan, say)
    doc["details"] = {"kills": _summary(ours), "baseline": _summary(base) if base else None}
    labels = {"ours_label": f"{opts.kills} TaskManager kills", "baseline_label": "undisturbed"}
    doc["figures"] += [
        results.figure("labelled requests lost", "requests", ours.lost_requests,
                       base.lost_requests if base else None, False, target=TARGET, **labels),
        results.figure("labelled impressions doubled in the slice log", "rows", ours.duplicates,
                       base.duplicates if base else None, False, **labels),
        results.figure("time until caught up with the input", "s", ours.figures["caught_up_s"],
                       base.figures["caught_up_s"] if base else None, False, **labels,
                       note=f"{plan.part_count} parts of {plan.part_s:.0f} s each"),
    ]
    doc["figures"].append(results.figure(
        "restarts per kill", "restarts", ours.figures["restarts"] / opts.kills, None, False,
        **labels, note="a kill now and then costs a second failover"))
    recovery = [k["tasks_running_s"] for k in ours.figures["kills"]]
    doc["figures"].append(results.figure(
        "kill → all tasks running again (median)", "s", statistics.median(recovery), None, False,
        **labels, note=f"max {max(recovery)} s over {len(recovery)} kills"))
    if not ours.exact or (base is not None and not base.exact):
        doc["notes"].append("NOT EXACT: see details (missing requests, mismatches)")
    return results.finish(doc)
