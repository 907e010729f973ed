"""The demo's timeline, phase by phase (simulated days are numbered from 0):

    setup        Kafka (started if none answers), this run's topics, Feast, the streaming job
    day 0        bootstrap: no model yet, serving ranks by the job's popularity features
    train v1     on day 0's final slice; full rollout
    day 1        baseline: v1 for everyone
    train v2/v3  v2 on day 1's slice (v1's own feedback), v3 on days 0-1; both succeed v1
    day 2..      experiment: v1 control, v2 and v3 canaries by stable user hash; ground
                 truth shadows all three on the same requests; a scheduled retrain after
                 each day but the last registers a candidate (held back: the experiment runs)
    drain        the last late purchases, then the job is stopped with a drain (end of event
                 time: the last windows close), and its outputs are reconciled
    attribution  DoWhy report over the experiment days, ground_truth.json next to it

`run` returns the facts the summary prints (demo/summary.py).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from demo import feedback, home, stack
from demo.config import DemoConfig
from demo.errors import DemoError
from demo.serving import LiveRecommender, ServedLog, SharedLookup, shadow
from infra.config import ServicesConfig
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig, load_paths

CONTROL, CANDIDATES = "v1", ("v2", "v3")
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
ARM_NAMES = {"v1": "control", "v2": "canary-1", "v3": "canary-2"}


def say(text: str) -> None:
    """A phase line on stderr (progress bars live there too; the summary goes to stdout)."""
    tqdm.write(text, file=sys.stderr)


def point_home_at(path: Path) -> PathsConfig:
    """Make the demo folder's home the Loopline home of this process and of the Flink workers
    it starts (Feast's definitions read it when imported, so re-read them if they were)."""
    os.environ["LOOPLINE_PATHS_HOME"] = str(path)
    module = sys.modules.get("feature_repo.definitions")
    if module is not None:
        importlib.reload(module)
    return load_paths()


@dataclass
class VersionInfo:
    version: str
    role: str
    trained_on: str
    parent: str | None
    slice: str
    rows: int
    partitions: int
    auc: float | None
    fingerprint: str
    seconds: float
    rollout: str = "-"


@dataclass
class Outcome:
    """What happened, for the summary."""

    cfg: DemoConfig
    folder: home.DemoFolder
    paths: PathsConfig
    kafka: str
    kafka_state: str
    job_run_id: str = ""
    versions: list[VersionInfo] = field(default_factory=list)
    days: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    reconciliation: dict[str, Any] = field(default_factory=dict)
    published: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)
    exposure: dict[str, Any] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    report_html: Path | None = None
    consistency: dict[str, Any] | None = None


class _TopicProducer:
    """schemas.producer.EventProducer aimed at this run's topics (what simulator.publish needs)."""

    def __init__(self, producer: Any, serving_topic: str, interactions_topic: str) -> None:
        self.producer = producer
        self.serving_topic = serving_topic
        self.interactions_topic = interactions_topic

    def serving(self, event: dict[str, Any]) -> None:
        self.producer.serving(event, topic=self.serving_topic)

    def interaction(self, event: dict[str, Any]) -> None:
        self.producer.interaction(event, topic=self.interactions_topic)

    def flush(self, timeout_s: float = 60.0) -> int:
        return int(self.producer.flush(timeout_s))


@contextlib.contextmanager
def timed(outcome: Outcome, name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        outcome.timings[name] = round(time.monotonic() - started, 1)


class Loop:
    """One demo run: owns the simulation, serving, the job handle and the registry."""

    def __init__(self, cfg: DemoConfig, folder: home.DemoFolder, paths: PathsConfig,
                 kafka: KafkaConfig, outcome: Outcome) -> None:
        from feature_repo.store import feature_store, load_feast
        from models.registry import Registry
        from models.rollout import Rollout
        from simulator import Simulation, World, load_simulator

        self.cfg, self.folder, self.paths, self.kafka, self.outcome = (
            cfg, folder, paths, kafka, outcome)
        self.show = sys.stderr.isatty() if cfg.progress is None else cfg.progress
        self.world = World.build(load_simulator(users=cfg.users, days=cfg.days, seed=cfg.seed,
                                                start_ms=start_of_days(cfg.days)))
        self.sim = Simulation(self.world)
        self.feast = load_feast(online_store="sqlite")
        self.store = feature_store(self.feast, paths, apply=True)
        self.registry = Registry.from_paths(paths)
        self.rollout = Rollout(self.registry)
        self.run_tag = self.world.run_tag  # request ids: stable for a seed and start day
        # topics: new for every run, so a rerun never reads an earlier run's events
        self.job = stack.job_config(f"{self.run_tag}{uuid.uuid4().hex[:6]}")
        self.streaming: stack.StreamingJob | None = None
        self.truth: Any = None
        self._closers: list[Callable[[], None]] = []

    # ---- setup ----------------------------------------------------------------------------
    def start(self, input_partitions: int) -> None:
        from models.serving.config import load_serving
        from models.serving.events import KafkaSink
        from models.serving.feature_log import FeatureLogger
        from models.serving.service import SlateService
        from schemas.codec import FEATURE_LOG
        from schemas.producer import EventProducer

        stack.create_demo_topics(self.kafka, self.job, input_partitions)
        self.folder.write_marker({"run": self.job.run_id, "topics": stack.demo_topics(self.job),
                                  "started_at": _now_iso()})
        self.streaming = stack.start_job(self.job, self.kafka, self.feast, self.paths)
        self.job_started = time.monotonic()
        self._closers.append(self._cancel_job)
        self.outcome.job_run_id = self.streaming.run_id
        sink = KafkaSink(self.kafka, topic=self.job.serving_topic)
        self.served = ServedLog(sink, self.job.slice_partition_ms)
        self.lookup = SharedLookup(self.store)
        serving_cfg = load_serving(temperature=self.cfg.serving_temperature,
                                   score_timeout_ms=self.cfg.score_timeout_ms,
                                   seed=self.cfg.seed, rollout_refresh_s=0.0,
                                   feature_log_topic=stack.feature_log_topic(self.job))
        # the served feature vectors, for the consistency check of the experiment days
        self.feature_sink = (KafkaSink(self.kafka, topic=serving_cfg.feature_log_topic,
                                       schema=FEATURE_LOG)
                             if serving_cfg.feature_log_sample_rate > 0 else None)
        self.feature_rate = serving_cfg.feature_log_sample_rate
        self.service = SlateService(
            serving_cfg, self.registry, self.lookup, self.served,  # type: ignore[arg-type]
            feature_log=(FeatureLogger(self.feature_sink, self.feature_rate)
                         if self.feature_sink is not None else None))
        self._closers.append(self.service.close)
        self.service.warm()
        self.live = LiveRecommender(self.service, self.lookup, self.run_tag)
        self.producer = _TopicProducer(EventProducer(self.kafka), self.job.serving_topic,
                                       self.job.interactions_topic)
        self._closers.append(self.producer.producer.close)

    def _cancel_job(self) -> None:
        if self.streaming is not None:
            with contextlib.suppress(Exception):
                self.streaming.cancel()

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        self._closers.clear()

    # ---- days -----------------------------------------------------------------------------
    def simulate(self, day: int, label: str, observer: Any = None) -> None:
        """Serve and publish one simulated day (the job consumes it as it arrives)."""
        from simulator import publish

        plan = self.sim.plan(day)
        bar = tqdm(total=plan.requests, desc=f"day {day} · {label}", unit="req",
                   disable=not self.show, leave=False, file=sys.stderr)
        self.live.on_request = lambda: bar.update(1)
        started = time.monotonic()
        try:
            counts = publish(self.sim.run_day(day, self.live, observer), self.producer,
                             serving=False, progress=False)
        finally:
            bar.close()
        self.served.wait_sent()
        seconds = time.monotonic() - started
        self.outcome.days.append({
            "day": day, "label": label, "requests": plan.requests,
            "interactions": counts.get("interaction", 0), "seconds": round(seconds, 1)})
        say(f"day {day} · {label}: {plan.requests:,} requests served, "
            f"{counts.get('interaction', 0):,} interactions published ({seconds:.0f}s)")

    def catch_up(self, day: int) -> int:
        """Wait until the job has finalised every slice partition it can; return the end (ms)
        of the newest final partition."""
        assert self.streaming is not None
        mark = feedback.watermark(self.kafka, self.job)
        expected = feedback.due(self.served.impressions, mark, self.job)
        if not expected:
            raise DemoError(f"day {day}: no slice partition can be final yet (watermark {mark})")
        bar = tqdm(total=len(expected), desc=f"feedback job · day {day} slices", unit="hour",
                   disable=not self.show, leave=False, file=sys.stderr)
        started = time.monotonic()

        def progress(n: int) -> None:
            bar.update(n - bar.n)

        try:
            feedback.wait_final(self.paths, expected, self.streaming.check_running,
                                self.cfg.catch_up_timeout_s, progress)
            # training joins point-in-time features: the feature sink must have caught up too
            feedback.wait_features(self.paths, max(expected), self.streaming.check_running,
                                   self.cfg.catch_up_timeout_s)
        finally:
            bar.close()
        end = max(expected) + self.job.slice_partition_ms
        say(f"feedback job: {len(expected)} hourly slices final up to "
            f"{feedback.hour_name(end)} (waited {time.monotonic() - started:.0f}s)")
        return end

    # ---- models ---------------------------------------------------------------------------
    def train(self, expected: str, start_ms: int, end_ms: int, role: str, trained_on: str,
              parent: str | None) -> VersionInfo:
        from models.slices import SliceRange
        from models.training import load_training, train

        rng = SliceRange(_dt(start_ms), _dt(end_ms))
        cfg = load_training(num_boost_round=self.cfg.num_boost_round, seed=self.cfg.seed)
        started = time.monotonic()
        feedback.compact_feature_log(self.paths)
        result = train(self.paths, rng, self.store, cfg, parent=parent, progress=self.show)
        if result.version != expected:
            raise DemoError(f"expected the registry to name the new version {expected}, "
                            f"got {result.version} (is the demo home shared?)")
        s = result.lineage["slice"]
        info = VersionInfo(result.version, role, trained_on, parent, str(rng), s["row_count"],
                           len(s["partitions"]), result.metrics.get("auc"), s["fingerprint"],
                           round(time.monotonic() - started, 1))
        self.outcome.versions.append(info)
        auc = "-" if info.auc is None else f"{info.auc:.3f}"
        say(f"trained {info.version} on {trained_on} ({info.rows:,} impressions, "
            f"{info.partitions} hourly partitions, holdout AUC {auc}, {info.seconds:.0f}s)")
        return info

    def roll_out_experiment(self) -> None:
        """v1 keeps the control share, v2 and v3 split the rest, by a stable user hash."""
        from models.rollout import Arm, Rollout, RolloutState

        split = self.cfg.split
        arms = tuple(Arm(ARM_NAMES[v], v, split[v]) for v in (CONTROL, *CANDIDATES))
        # models.rollout offers full/canary (two arms); a three-arm split is written the
        # same way under the rollout lock, with history kept.
        with self.rollout._locked() as data:
            experiment, _ = self.rollout._new_experiment(data)
            salt = f"{experiment}:demo-seed-{self.cfg.seed}"  # the same split for a seed
            Rollout._push(data, RolloutState(experiment, salt, arms, _now_iso()))
        for info in self.outcome.versions:
            if info.version in split:
                info.rollout = f"{ARM_NAMES[info.version]} {split[info.version]:.0%}"

    def scheduled_retrain(self, day: int, end_ms: int) -> None:
        """The daily schedule: ask the trigger, then train a candidate on the newest day."""
        from models.triggers import check, load_triggers

        decision = check(self.paths, load_triggers())
        self.outcome.decisions.append({"after_day": day, **decision.to_dict()})
        reasons = "; ".join(decision.reasons) or "no trigger fired"
        say(f"retrain check after day {day}: {'YES' if decision.retrain else 'no'} "
            f"({reasons}); the daily schedule retrains anyway")
        n = len(self.registry.versions()) + 1
        info = self.train(f"v{n}", self.world.day_start(day), end_ms, "candidate",
                          f"day {day} (the experiment's feedback)", CONTROL)
        info.rollout = "held back (experiment running)"

    # ---- ground truth ---------------------------------------------------------------------
    def start_truth(self) -> None:
        from simulator import Truth

        self.truth = Truth(self.world, {v: shadow(self.live, v, self.cfg.seed)
                                        for v in (CONTROL, *CANDIDATES)})


def start_of_days(days: int, now_ms: int | None = None) -> int:
    """Day 0 starts at a UTC midnight such that the last day, plus the late purchases that
    spill up to two hours past it, ends in the past (Kafka refuses records stamped more than
    an hour ahead), so simulated days are calendar days and the shop's diurnal curve is UTC."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    latest = now - 3 * HOUR_MS
    return latest - latest % DAY_MS - days * DAY_MS


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run(cfg: DemoConfig, services: ServicesConfig, base: PathsConfig,
        kafka: KafkaConfig) -> Outcome:
    """The whole demo; returns what the summary needs."""
    started = time.monotonic()
    previous = home.previous_run(cfg.out.expanduser().resolve())
    folder = home.prepare(cfg.out)
    paths = point_home_at(folder.home)
    outcome = Outcome(cfg, folder, paths, kafka.bootstrap_servers, "")
    with timed(outcome, "setup"):
        outcome.kafka_state = stack.ensure_kafka(kafka, services, base)
        say(f"kafka: {kafka.bootstrap_servers} ({outcome.kafka_state})")
        if previous:
            stack.drop_topics(kafka, list(previous.get("topics") or []))
        loop = Loop(cfg, folder, paths, kafka, outcome)
        try:
            loop.start(services.kafka_input_partitions)
        except BaseException:
            loop.close()
            raise
        say(f"feedback job {outcome.job_run_id} running in the Flink mini-cluster; demo home "
            f"{paths.home}")
    try:
        _timeline(loop, outcome)
    finally:
        loop.close()
    outcome.timings["total"] = round(time.monotonic() - started, 1)
    return outcome


def _timeline(loop: Loop, outcome: Outcome) -> None:
    from jobs.reconcile import reconcile

    cfg, world = loop.cfg, loop.world
    with timed(outcome, "day 0"):
        loop.simulate(0, "bootstrap (no model: popularity)")
        end = loop.catch_up(0)
    with timed(outcome, "train v1"):
        loop.train("v1", world.day_start(0), end, "baseline", "day 0 (popularity logs)", None)
        loop.rollout.full(CONTROL)
        outcome.versions[-1].rollout = "full, then control"
    with timed(outcome, "day 1"):
        loop.simulate(1, "baseline v1 for everyone")
        end = loop.catch_up(1)
    with timed(outcome, "train v2, v3"):
        loop.train("v2", world.day_start(1), end, "candidate", "day 1 (v1's own feedback)",
                   CONTROL)
        loop.train("v3", world.day_start(0), end, "candidate", "days 0-1", CONTROL)
        loop.roll_out_experiment()
        loop.start_truth()
    last = cfg.days - 1
    for day in cfg.experiment_days:
        with timed(outcome, f"day {day}"):
            loop.simulate(day, "experiment v1 / v2 / v3", loop.truth)
            if day < last and cfg.retrain_during_experiment:
                end = loop.catch_up(day)
                loop.scheduled_retrain(day, end)
    with timed(outcome, "drain"):
        _drain(loop, outcome)
        counts = reconcile(loop.kafka, loop.job)
        outcome.reconciliation = counts.as_dict()
        assert loop.streaming is not None
        stack.complete_lineage(loop.kafka, loop.paths, loop.streaming,
                               time.monotonic() - loop.job_started, outcome.reconciliation)
        say(f"reconciled: input {counts.input:,} = joined {counts.joined:,} + unmatched "
            f"{counts.unmatched:,} + late {counts.late:,} + dead-lettered "
            f"{counts.dead_lettered:,} ({'balanced' if counts.balanced else 'NOT balanced'})")
    outcome.exposure = loop.sim.exposure.report()
    outcome.serving = {**loop.service.health()["counts"],
                       "fallback_reasons": dict(loop.service.fallback_reasons),
                       "lookups": loop.lookup.lookups, "lookups_shared": loop.lookup.reused}
    with timed(outcome, "consistency"):
        _consistency(loop, outcome)
    with timed(outcome, "ground truth"):
        outcome.truth = loop.truth.write(loop.folder.ground_truth, control=CONTROL,
                                         days=cfg.experiment_days,
                                         versions=[CONTROL, *CANDIDATES])
    with timed(outcome, "attribution"):
        _attribute(loop, outcome)


def _drain(loop: Loop, outcome: Outcome) -> None:
    from simulator import publish

    counts = publish(loop.sim.drain(), loop.producer, serving=False, progress=False)
    outcome.published = sum(loop.sim.counts.values())
    assert loop.streaming is not None
    say(f"published the last {counts.get('interaction', 0)} late interactions; stopping the "
        "job with a drain (end of event time closes the last windows)")
    bar = tqdm(total=1, desc="draining the feedback job", disable=not loop.show, leave=False,
               file=sys.stderr)
    try:
        # a drain stops the source where it is: first let it read everything published
        feedback.wait_consumed(loop.kafka, loop.job, loop.streaming.check_running,
                               loop.cfg.catch_up_timeout_s)
        loop.streaming.drain(loop.paths.home / "savepoints")
    finally:
        bar.update(1)
        bar.close()


def _consistency(loop: Loop, outcome: Outcome) -> None:
    """Logged online features vs point-in-time history over the experiment days."""
    from models import consistency, consistency_report, feature_logs
    from models.slices import SliceRange

    if loop.feature_sink is None:
        return
    deadline = time.monotonic() + 120
    while loop.feature_sink.stats()["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)  # every logged vector acknowledged before it is read back
    cfg, world = loop.cfg, loop.world
    rng = SliceRange(_dt(world.day_start(cfg.experiment_days[0])), _dt(world.day_start(cfg.days)))
    logged = feature_logs.read_topic(loop.kafka, stack.feature_log_topic(loop.job),
                                     rng.start_ms, rng.end_ms)
    report = consistency.run(loop.paths, rng, loop.store, logged,
                             consistency.load_consistency(), loop.feature_rate)
    _, html = consistency_report.write(report, loop.paths)
    outcome.consistency = {"line": consistency.summary_line(report), "html": str(html),
                           "ok": report["ok"], "breaches": report["breaches"]}
    say(outcome.consistency["line"])


def _attribute(loop: Loop, outcome: Outcome) -> None:
    import pandas as pd

    from attribution import pipeline, report
    from attribution.config import load_config
    from attribution.consistency import reports_for
    from attribution.data import load_analysis_table

    cfg, world = loop.cfg, loop.world
    world.user_table().to_parquet(loop.folder.users, index=False)
    split = ",".join(f"{v}={s:g}" for v, s in cfg.split.items())
    acfg = load_config(control_version=CONTROL, expected_split=split,
                       run_refuters=cfg.refuters, seed=cfg.seed)
    since = pd.Timestamp(world.day_start(cfg.experiment_days[0]), unit="ms", tz="UTC")
    until = pd.Timestamp(world.day_start(cfg.days), unit="ms", tz="UTC")
    say(f"attribution: users first exposed {since:%Y-%m-%d %H:%M} → {until:%Y-%m-%d %H:%M} UTC")
    table = load_analysis_table(loop.paths.slices, since, until, acfg, loop.folder.users)
    document = pipeline.run(table, loop.paths.models, acfg, progress=loop.show)
    document["consistency"] = reports_for(loop.paths, since, until)
    _, html = report.write(document, loop.folder.report)
    outcome.report = document
    outcome.report_html = html
