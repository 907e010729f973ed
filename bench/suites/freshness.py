"""Suite 2: how long after an event is produced its feature is readable online, at a steady rate.

Per rate: fresh topics → the job running unbounded in a child process (or, for the baseline,
the naive consumer loop running live) → a producer process replays simulator events at the
rate, each re-stamped with the wall clock as its event time (and its ids made unique per
replay cycle). Every `probe_interval` one serving event is re-addressed to a fresh probe user
`probe-<n>`, seen nowhere else: its user_activity row appears online exactly when this event
has gone through the pipeline. A poller reads all pending probes with
`get_online_features` every `poll_ms` and records delay = first time visible − event time.

Probes sent during warm-up are ignored. Probes not visible when the drain timeout ends are
censored: they count at the time they had waited, so a percentile they reach is a lower bound
(`*_is_lower_bound`). If the pipeline consumes slower than the producer, delays grow without
bound; the result then says so (consumed vs produced rate) instead of pretending to a p99.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import jobspec, results, update_tap
from bench.context import BenchContext
from bench.errors import BenchRunError, BenchUsageError
from bench.jobspec import JobVariant
from feature_repo import names
from loopline.kafka import KafkaConfig

PROBE_PREFIX = "probe-"


@dataclass(frozen=True)
class Options:
    rates: tuple[int, ...] = (5_000, 20_000)
    stores: tuple[str, ...] = ("sqlite",)
    warmup_s: float = 30.0
    measure_s: float = 60.0
    drain_s: float = 60.0
    probe_interval_s: float = 0.1
    poll_ms: float = 20.0
    pool_events: int = 60_000
    producers: int = 0  # 0: one per 3,000 events/s, at most 4
    variant: JobVariant = field(default_factory=JobVariant)
    baseline: bool = True
    smoke: bool = False

    def __post_init__(self) -> None:
        if not self.rates or any(r <= 0 for r in self.rates):
            raise BenchUsageError(f"--rates must be positive events/s, got {list(self.rates)}")
        if self.measure_s <= 0 or self.warmup_s < 0 or self.drain_s < 0:
            raise BenchUsageError("--measure must be > 0, --warmup and --drain >= 0")
        bad = [s for s in self.stores if s not in ("sqlite", "redis")]
        if bad or not self.stores:
            raise BenchUsageError(f"--store must be sqlite or redis, got {list(self.stores)}")


# ---- producer process ---------------------------------------------------------------------

def _event_pool(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Simulator events in time order (their times are replaced when sent)."""
    from simulator import policies
    from simulator.config import load_simulator
    from simulator.simulation import Simulation
    from simulator.world import World

    users = max(50, n // 50)
    world = World.build(load_simulator(users=users, days=1, seed=seed))
    pool = []
    for kind, event in Simulation(world).run(policies.popularity(world)):
        pool.append((kind, event))
        if len(pool) >= n:
            break
    return pool


def _produce(kafka: KafkaConfig, serving_topic: str, interactions_topic: str, rate: float,
             duration_s: float, probe_interval_s: float, pool_events: int, start_at: Any,
             probes: Any, sent: Any, ready: Any, producer_no: int) -> None:
    """Send `rate` events/s for `duration_s`, stamped with the wall clock (worker process).

    Producer number 0 also sends the probes; others only add load (ids kept unique)."""
    from kafka import KafkaProducer

    from schemas.codec import INTERACTION_EVENT, SERVING_EVENT, default_codec

    codec = default_codec()
    serving_schema = codec.store.latest(SERVING_EVENT)
    interaction_schema = codec.store.latest(INTERACTION_EVENT)
    pool = _event_pool(pool_events, seed=17 + producer_no)
    producer = KafkaProducer(**kafka.client_kwargs(), acks=1, linger_ms=5,
                             batch_size=256 * 1024, retries=5)
    ready.set()
    while start_at.value == 0:
        time.sleep(0.01)
    t0 = start_at.value
    while time.time() < t0:
        time.sleep(0.001)
    count = cycle = probe_no = 0
    next_probe = t0
    pos = 0
    try:
        while True:
            now = time.time()
            if now >= t0 + duration_s:
                break
            due = int((now - t0) * rate)
            if count >= due:
                time.sleep(min(0.002, max(0.0, (count + 1) / rate - (now - t0))))
                continue
            now_ms = int(now * 1000)
            for _ in range(min(due - count, 2000)):
                kind, template = pool[pos]
                pos += 1
                if pos == len(pool):
                    pos, cycle = 0, cycle + 1
                event = dict(template)
                event["event_time"] = now_ms
                probe = None
                if kind == "serving":
                    event["request_id"] = f"{template['request_id']}-p{producer_no}c{cycle}"
                    if producer_no == 0 and now >= next_probe:
                        probe = f"{PROBE_PREFIX}{probe_no}"
                        probe_no += 1
                        next_probe += probe_interval_s
                        event["user_id"] = probe
                    value = codec.encode_with(serving_schema, event)
                    producer.send(serving_topic, value=value, key=event["request_id"].encode(),
                                  timestamp_ms=now_ms)
                    if probe is not None:
                        probes.put((probe, now_ms))
                else:
                    if template.get("request_id"):
                        event["request_id"] = f"{template['request_id']}-p{producer_no}c{cycle}"
                    event["event_id"] = f"{template['event_id']}-p{producer_no}c{cycle}"
                    value = codec.encode_with(interaction_schema, event)
                    key = (event.get("request_id") or event["user_id"]).encode()
                    producer.send(interactions_topic, value=value, key=key, timestamp_ms=now_ms)
                count += 1
            with sent.get_lock():
                sent.value = count
        producer.flush(timeout=60)
    finally:
        producer.close()
        with sent.get_lock():
            sent.value = count
        if producer_no == 0:
            probes.put(None)


# ---- visibility poller --------------------------------------------------------------------

class Poller:
    """Polls pending probe users in the online store; records when each becomes visible."""

    def __init__(self, store: Any, probes: Any, poll_ms: float) -> None:
        self.store = store
        self.probes = probes
        self.poll_s = poll_ms / 1000
        self.sent: dict[str, int] = {}
        self.visible: dict[str, float] = {}
        self.errors = 0
        self.polls = 0
        self.producer_done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def pending(self) -> list[str]:
        return [p for p in self.sent if p not in self.visible]

    def _drain_queue(self) -> None:
        while True:
            try:
                item = self.probes.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self.producer_done = True
            else:
                self.sent[item[0]] = item[1]

    def _loop(self) -> None:
        feature = f"{names.USER_ACTIVITY}:user_impressions_24h"
        while not self._stop.is_set():
            self._drain_queue()
            pending = self.pending()[:500]
            if pending:
                try:
                    got = self.store.get_online_features(
                        features=[feature],
                        entity_rows=[{names.USER_KEY: p} for p in pending]).to_dict()
                    now = time.time()
                    self.polls += 1
                    for probe, value in zip(pending, got["user_impressions_24h"], strict=True):
                        if value is not None:
                            self.visible[probe] = now
                except Exception:  # a store busy with the writer: try again next tick
                    self.errors += 1
            self._stop.wait(self.poll_s)


def delays(poller: Poller, t_measure_start: float, t_end: float) -> dict[str, Any]:
    """Delay statistics (s) of probes produced in the measurement window."""
    values, sent_at, probes_in, censored = [], [], [], 0
    for probe, sent_ms in poller.sent.items():
        sent_s = sent_ms / 1000
        if sent_s < t_measure_start:
            continue
        seen = poller.visible.get(probe)
        if seen is None:
            censored += 1
            values.append(t_end - sent_s)
        else:
            values.append(seen - sent_s)
        sent_at.append(sent_s)
        probes_in.append(probe)
    out: dict[str, Any] = {"probes": len(values), "censored": censored,
                           "poll_errors": poller.errors, "polls": poller.polls}
    visible = [(t, v) for t, v, p in zip(sent_at, values, probes_in, strict=True)
               if p in poller.visible]
    if len(visible) >= 3:
        # Seconds of extra delay per second of running (visible probes): ~0 when the
        # pipeline keeps up, ~(1 - capacity / rate) when a backlog builds.
        t, v = np.asarray(visible).T
        out["delay_growth_s_per_s"] = round(float(np.polyfit(t - t[0], v, 1)[0]), 4)
    if values:
        arr = np.sort(np.asarray(values))
        for pct in (50, 95, 99):
            value = float(np.percentile(arr, pct))
            out[f"p{pct}_s"] = round(value, 3)
            # Censored probes sort last: a percentile at or past the first of them is a bound.
            out[f"p{pct}_is_lower_bound"] = bool(censored) and pct / 100 >= 1 - censored / len(arr)
        out["max_s"] = round(float(arr[-1]), 3)
    return out


# ---- one measured run ---------------------------------------------------------------------

def _open_store(ctx: BenchContext, name: str, feast: dict[str, Any]) -> Any:
    from feature_repo.store import FeastConfig, feature_store
    from loopline.paths import PathsConfig

    home = ctx.run_home(name) / "loopline"
    return feature_store(FeastConfig(**feast), PathsConfig(home=home).resolved())


def _wait_file(path: Path, proc: Any, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise BenchRunError(f"{what} exited with {proc.returncode} before it was ready")
        if time.time() > deadline:
            raise BenchRunError(f"{what} was not ready within {timeout_s:.0f}s")
        time.sleep(0.2)


def _measure(ctx: BenchContext, opts: Options, kind: str, store: str, rate: int
             ) -> dict[str, Any]:
    """One rate through one pipeline (kind 'flink' = the job, 'naive' = baseline)."""
    from bench.memory import MemorySampler

    tag = jobspec.new_tag()
    serving, interactions = jobspec.input_topics(tag)
    ctx.services.create_topics([serving, interactions], 1)
    name = f"fresh-{kind}-{store}-{rate}"
    home = ctx.run_home(name)
    stop_file, ready_file = home / "stop", home / "ready"
    stop_file.unlink(missing_ok=True)
    ready_file.unlink(missing_ok=True)
    project = f"bench_{tag}_{kind}"
    feast = jobspec.feast_fields(store, ctx.services, project)
    topics = [serving, interactions]
    if kind == "flink":
        fields = jobspec.job_fields(tag, serving, interactions, opts.variant, bounded=False)
        topics += jobspec.output_topics(fields)
        ctx.services.create_topics(jobspec.output_topics(fields), 1)
        spec: dict[str, Any] = {
            "job": fields, "feast": feast,
            "env": dict(opts.variant.env), "poll_s": 2.0,
        }
    else:
        spec = {"feast": feast, "serving_topic": serving, "interactions_topic": interactions,
                "group_id": f"bench-{tag}-naive"}
    spec.update({"bootstrap_servers": ctx.services.kafka.bootstrap_servers,
                 "stop_file": str(stop_file), "ready_file": str(ready_file)})
    mp_ctx = mp.get_context("fork")
    probes: Any = mp_ctx.Queue()
    n_prod = opts.producers or min(4, max(1, -(-rate // 3_000)))
    start_at = mp_ctx.Value("d", 0.0)
    sent = [mp_ctx.Value("q", 0) for _ in range(n_prod)]
    ready = [mp_ctx.Event() for _ in range(n_prod)]
    duration = opts.warmup_s + opts.measure_s
    producers = [mp_ctx.Process(
        target=_produce, name=f"bench-freshness-producer-{k}",
        args=(ctx.services.kafka, serving, interactions, rate / n_prod, duration,
              opts.probe_interval_s, opts.pool_events, start_at, probes, sent[k], ready[k], k))
        for k in range(n_prod)]
    for producer in producers:
        producer.start()
    memory = MemorySampler()
    for service, pid in ctx.services.pids.items():
        memory.watch(service, pid)
    proc, out_path, log_path = ctx.spawn(kind, name, spec)
    memory.watch("pipeline", proc.pid)
    poller: Poller | None = None
    tap: update_tap.UpdateTap | None = None
    try:
        with memory:
            _wait_file(ready_file, proc, 600, f"{name} child")
            if not all(r.wait(300) for r in ready):
                raise BenchRunError("the freshness producers did not get ready in 300s")
            if kind == "flink":
                tap = update_tap.UpdateTap(ctx.services.kafka, fields["feature_updates_topic"],
                                           names.USER_ACTIVITY, PROBE_PREFIX)
                tap.start()
            poller = Poller(_open_store(ctx, name, feast), probes, opts.poll_ms)
            poller.start()
            t0 = time.time() + 0.5
            start_at.value = t0
            t_measure = t0 + opts.warmup_s
            for producer in producers:
                producer.join(duration + 120)
            t_produced = time.time()
            deadline = t_produced + opts.drain_s
            while time.time() < deadline and (poller.pending() or not poller.producer_done):
                time.sleep(0.2)
            t_end = time.time()
            poller.stop()
    finally:
        if poller is not None:
            poller.stop()
        if tap is not None:
            tap.stop()
        stop_file.write_text("stop")
        try:
            proc.wait(180)
        except Exception:
            proc.kill()
        for producer in producers:
            if producer.is_alive():
                producer.terminate()
        ctx.services.delete_topics(topics)
    assert poller is not None
    produced = sum(int(v.value) for v in sent)
    stats = delays(poller, t_measure, t_end)
    out: dict[str, Any] = {}
    if out_path.exists():
        import json

        out = json.loads(out_path.read_text())
    consumed = _consumed(out, kind)
    growth = stats.get("delay_growth_s_per_s")
    if tap is not None:
        stats["split"] = {**update_tap.split(poller.sent, tap.seen, poller.visible, t_measure),
                          "tap_records": tap.records, "tap_error": tap.error}
    return {
        "rate_target": rate,
        "produced": produced,
        "produced_rate": round(produced / duration, 1),
        "producer_processes": n_prod,
        "consumed_by_end": consumed,
        # Kept up: delays did not grow over the measurement and nothing was left unseen.
        "kept_up": growth is not None and growth < 0.05 and not stats["censored"],
        "delay": stats,
        "memory": memory.report(),
        "child_status": out.get("status"),
        "writer": out.get("writer"),  # the Feast writer's batches and stage seconds
        "child_log": str(log_path),
    }


def _consumed(out: dict[str, Any], kind: str) -> int | None:
    if kind == "naive":
        return out.get("consumed")
    timeline = out.get("timeline") or []
    if not timeline:
        return None
    reads = timeline[-1].get("read") or []
    return int(reads[1] or 0) if len(reads) > 1 else None


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    doc = results.new_document("freshness", {
        "rates": list(opts.rates), "stores": list(opts.stores), "warmup_s": opts.warmup_s,
        "measure_s": opts.measure_s, "drain_s": opts.drain_s,
        "probe_interval_s": opts.probe_interval_s, "poll_ms": opts.poll_ms,
        "job_variant": opts.variant.label, "smoke": opts.smoke,
        "baseline": "naive consumer loop + pandas (live)",
    })
    for store in opts.stores:
        if store == "redis" and ctx.services.redis is None:
            doc["notes"].append("redis: skipped (no Redis server available)")
            continue
        for rate in opts.rates:
            ours = _measure(ctx, opts, "flink", store, rate)
            base = _measure(ctx, opts, "naive", store, rate) if opts.baseline else None
            doc["details"][f"{store}@{rate}"] = {"job": ours, "baseline": base}
            for pct in ("p50", "p95", "p99"):
                a = ours["delay"].get(f"{pct}_s")
                b = base["delay"].get(f"{pct}_s") if base else None
                bound = ours["delay"].get(f"{pct}_is_lower_bound") or (
                    base is not None and base["delay"].get(f"{pct}_is_lower_bound"))
                doc["figures"].append(results.figure(
                    f"delay {pct} at {rate:,}/s target "
                    f"({ours['produced_rate']:,.0f}/s produced), {store}", "s", a, b, False,
                    ours_label=f"feedback job ({opts.variant.label})",
                    baseline_label="naive consumer loop + pandas",
                    target="p99 <= 1 s at 5,000/s" if pct == "p99" else None,
                    note="lower bound (probes still not visible at the end)" if bound else None,
                    store=store, rate=rate, kept_up=ours["kept_up"],
                    baseline_kept_up=base["kept_up"] if base else None))
            split = ours["delay"].get("split") or {}
            if split.get("job") and split.get("writer_and_poll"):
                job, rest = split["job"], split["writer_and_poll"]
                doc["notes"].append(
                    f"{store}@{rate:,}/s split over {split['probes']} probes: produce → update "
                    f"on the topic (the job) p50 {job['p50_s']} s, p99 {job['p99_s']} s; topic "
                    f"→ visible (Feast writer + poll) p50 {rest['p50_s']} s, p99 "
                    f"{rest['p99_s']} s")
    doc["notes"] += [
        "delay = first poll that sees the probe user's row − the event's produce time "
        f"(poll every {opts.poll_ms:.0f} ms, so delays are overstated by up to that)",
        "kept_up is false when delays grew during the measurement (delay_growth_s_per_s >= "
        "0.05) or probes stayed unseen: such delays grow with the run length; read them as "
        "'falls behind at this rate', not as a latency",
    ]
    return results.finish(doc)
