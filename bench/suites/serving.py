"""Suite `serving`: `loopline serve` under a bounded concurrency sweep, beside the raw path.

Per online store (SQLite, Redis): a home with a trained LightGBM version and its online
features (bench/serving_child.py prepare), then
* baseline, same run: the raw path — the store's own client (user row + 100 item rows, no
  cache) and LightGBM on the candidate matrix, in a loop on one thread (serving_child raw);
* ours: `loopline serve --workers W` (real Kafka log, real store) driven by bench/loadgen.py
  at each concurrency level for a few seconds: answered and model-served requests/s, p50/p99
  of answered requests, fallback and 503 shares, server CPU per request (psutil over the
  serving processes), the load generator's own CPU, and /proc/loadavg before each level.
The knee is the last level whose answered p99 is within the 30 ms target with no fallback
and no 503; above it p99 of answered requests should stay within 100 ms (shed, not queued).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from bench import jobspec, machine, results
from bench.context import BenchContext
from bench.errors import BenchRunError, BenchUsageError
from bench.worker import REPO_ROOT
from infra import process
from loopline.net import free_port

STORES = ("sqlite", "redis")
P99_TARGET_MS, P99_OVERLOAD_MS, RATE_TARGET = 30.0, 100.0, 300.0


@dataclass(frozen=True)
class Options:
    stores: tuple[str, ...] = STORES
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 32)
    level_s: float = 6.0
    workers: int = 0  # 0 = one per core
    candidates: int = 100
    k: int = 10
    items: int = 1_000
    users: int = 500
    raw_requests: int = 300
    smoke: bool = False

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1 or max(self.concurrency) > 512:
            raise BenchUsageError(f"--concurrency levels must be within 1..512, got "
                                  f"{list(self.concurrency)}")
        if not 1 <= self.level_s <= 600:
            raise BenchUsageError(f"--level-seconds must be within 1..600, got {self.level_s}")
        if self.workers < 0 or self.candidates < self.k or self.candidates > self.items:
            raise BenchUsageError("--serving-workers must be >= 0 and k <= candidates <= items")
        bad = [s for s in self.stores if s not in STORES]
        if bad or not self.stores:
            raise BenchUsageError(f"--store must be among {STORES}, got {list(self.stores)}")


def _env(ctx: BenchContext, home: Path, feast: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env.update({
        "LOOPLINE_PATHS_HOME": str(home / "loopline"),
        "LOOPLINE_PATHS_JARS": str(REPO_ROOT / ".jars"),
        "LOOPLINE_KAFKA_BOOTSTRAP_SERVERS": ctx.services.kafka.bootstrap_servers,
        "LOOPLINE_FEAST_ONLINE_STORE": feast["online_store"],
        "LOOPLINE_FEAST_PROJECT": feast["project"],
    })
    if "redis_connection_string" in feast:
        env["LOOPLINE_FEAST_REDIS_CONNECTION_STRING"] = feast["redis_connection_string"]
    if "LOOPLINE_CONFIG" in os.environ:  # the caller's config file, if any, stays in force
        env["LOOPLINE_CONFIG"] = os.environ["LOOPLINE_CONFIG"]
    return env


def _child(module: str, args: list[str], spec: dict[str, Any], home: Path, env: dict[str, str],
           name: str, timeout_s: float) -> dict[str, Any]:
    spec_path, out_path, log_path = (home / f"{name}.spec.json", home / f"{name}.out.json",
                                     home / f"{name}.log")
    spec_path.write_text(json.dumps(spec))
    with log_path.open("wb") as log:
        done = subprocess.run([sys.executable, "-m", module, *args, str(spec_path),
                               str(out_path)], cwd=REPO_ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    if done.returncode != 0 or not out_path.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-4:]
        raise BenchRunError(f"{name}: exited {done.returncode} (log {log_path}): "
                            f"{' | '.join(t.strip() for t in tail)}")
    out: dict[str, Any] = json.loads(out_path.read_text())
    return out


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _serving_processes(root: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [root, *root.children(recursive=True)]
    return [root]


@contextlib.contextmanager
def _serve(env: dict[str, str], home: Path, port: int, token: str,
           workers: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**env, "LOOPLINE_SERVING_PORT": str(port), "LOOPLINE_SERVING_AUTH_TOKEN": token,
           "LOOPLINE_SERVING_TEMPERATURE": "0.5", "LOOPLINE_SERVING_METRICS_ENABLED": "true"}
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--workers",
                             str(workers)], cwd=REPO_ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                tail = (home / "serve.log").read_text(errors="replace").splitlines()[-4:]
                raise BenchRunError(f"loopline serve exited {proc.returncode}: "
                                    f"{' | '.join(t.strip() for t in tail)}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
                if len(health.get("workers", [None])) >= workers:
                    break
            if time.monotonic() > deadline:
                raise BenchRunError("loopline serve did not become ready within 300 s")
            time.sleep(0.5)
        yield proc
    finally:
        process.stop_group(proc)


def settled(health: dict[str, Any], since: float) -> bool:
    """Whether a /healthz body holds the final counts of load that ended at `since` (epoch
    seconds): every live worker's counts were taken at or after it (a sibling of the worker
    that answers reports the counts of its last published snapshot, up to half a second old,
    models/serving/workers.py) and no ServingEvent is still undelivered. One worker: its
    body has no "workers" and its counts are live."""
    fresh = all(not w["alive"] or w["reported_at"] >= since for w in health.get("workers", []))
    return fresh and not (health.get("events") or {}).get("pending")


def final_health(url: str, since: float, timeout_s: float = 60.0) -> dict[str, Any]:
    """/healthz once settled() (the last body after `timeout_s`, marked settled=False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        health: dict[str, Any] = httpx.get(url, timeout=30).json()
        done = settled(health, since)
        if done or time.monotonic() > deadline:
            return {**health, "settled": done}
        time.sleep(0.25)


def knee(levels: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last level (in concurrency order) within the p99 target, no fallback, no 503."""
    best = None
    for level in sorted(levels, key=lambda lv: lv["concurrency"]):
        if (level["p99_ms"] is not None and level["p99_ms"] <= P99_TARGET_MS
                and level["fallback"] == 0 and level["shed"] == 0):
            best = level
    return best


def _measure_store(ctx: BenchContext, opts: Options, store: str) -> dict[str, Any]:
    home = ctx.run_home(f"serving-{store}")
    feast = jobspec.feast_fields(store, ctx.services, f"bench_{ctx.run_tag}_serving")
    env = _env(ctx, home, feast)
    made = _child("bench.serving_child", ["prepare"], {"feast": feast, "items": opts.items,
                                                        "users": opts.users},
                  home, env, "prepare", 1800)
    users, items = made["users"], made["items"][:opts.items]
    raw = _child("bench.serving_child", ["raw"], {
        "feast": feast, "users": users, "items": items, "candidates": opts.candidates,
        "requests": opts.raw_requests}, home, env, "raw", 1800)
    gen = np.random.default_rng(7)
    bodies = [{"user_id": users[i % len(users)], "session_id": f"bench-{i}",
               "candidates": [str(c) for c in gen.choice(items, opts.candidates,
                                                         replace=False)],
               "k": opts.k} for i in range(512)]
    workers = opts.workers or os.cpu_count() or 1
    port, token = free_port(28500), secrets.token_urlsafe(24)
    topic = f"bench.{ctx.run_tag}.{store}.served"  # never a shared broker's default topic
    ctx.services.create_topics([topic], 1)
    env["LOOPLINE_SERVING_EVENT_TOPIC"] = topic
    levels = []
    with _serve(env, home, port, token, workers) as proc:
        root = psutil.Process(proc.pid)
        for c in opts.concurrency:
            procs = _serving_processes(root)
            load = machine.load_average()
            cpu = _cpu(procs)
            out = _child("bench.loadgen", [], {
                "host": "127.0.0.1", "port": port, "token": token, "bodies": bodies,
                "concurrency": c, "duration_s": opts.level_s}, home, env, f"load-c{c}",
                opts.level_s + 120)
            cpu = _cpu(procs) - cpu
            out["load_average_before"] = load
            out["server_cpu_s"] = round(cpu, 2)
            out["server_cpu_ms_per_request"] = (round(cpu / out["requests"] * 1000, 3)
                                                if out["requests"] else None)
            out["fallback_share"] = round(out["fallback"] / max(out["answered"], 1), 4)
            out["shed_share"] = round(out["shed"] / max(out["requests"], 1), 4)
            levels.append(out)
        # Every response of the sweep has arrived: serving counted each one before sending
        # it, so counts taken from now on are final (other workers' may still be older).
        ended = time.time()
        health = final_health(f"http://127.0.0.1:{port}/healthz", ended)
    ctx.services.delete_topics([topic])
    return {"workers": workers, "raw": raw, "levels": levels, "knee": knee(levels),
            "health": {k: health.get(k) for k in ("status", "reasons", "counts",
                                                  "fallback_reasons", "events", "workers",
                                                  "settled")},
            "setup_s": made["setup_s"]}


def run(ctx: BenchContext, opts: Options) -> dict[str, Any]:
    doc = results.new_document("serving", {
        "stores": list(opts.stores), "concurrency": list(opts.concurrency),
        "level_s": opts.level_s, "workers": opts.workers or os.cpu_count(),
        "candidates": opts.candidates, "k": opts.k, "items": opts.items, "users": opts.users,
        "smoke": opts.smoke,
        "baseline": "raw path: store client (user + item rows, no cache) + LightGBM, one thread",
    })
    loads = [machine.load_average()[0]]
    for store in opts.stores:
        if store == "redis" and ctx.services.redis is None:
            doc["notes"].append("redis: skipped (no Redis server available)")
            continue
        detail = _measure_store(ctx, opts, store)
        doc["details"][store] = detail
        at = detail["knee"]
        raw_rate = detail["raw"]["per_s"]
        doc["figures"].append(results.figure(
            f"serving model-served req/s at the knee (p99 <= 30 ms), {store}", "req/s",
            at["model_served_per_s"] if at else None, raw_rate, True,
            ours_label=f"loopline serve, {detail['workers']} workers, HTTP",
            baseline_label="raw path, one thread, no HTTP", store=store,
            target=">= 300 req/s", note=(f"concurrency {at['concurrency']}, p99 "
                                          f"{at['p99_ms']} ms" if at else "no level met it")))
        loads += [lv["load_average_before"][0] for lv in detail["levels"]]
        top = max(detail["levels"], key=lambda lv: lv["concurrency"])
        doc["figures"].append(results.figure(
            f"serving answered p99 at concurrency {top['concurrency']}, {store}", "ms",
            top["p99_ms"], detail["raw"]["ms"]["p99"], False,
            ours_label="loopline serve (answered requests)", baseline_label="raw path p99",
            store=store, target="p99 <= 100 ms",
            note=f"503 share {top['shed_share']}, fallback share {top['fallback_share']}"))
        for level in detail["levels"]:
            doc["notes"].append(
                f"{store} c={level['concurrency']}: {level['answered_per_s']} answered/s, "
                f"{level['model_served_per_s']} model-served/s, p50 {level['p50_ms']} ms, "
                f"p99 {level['p99_ms']} ms, fallback {level['fallback_share']:.1%}, "
                f"503 {level['shed_share']:.1%}, server CPU {level['server_cpu_ms_per_request']}"
                f" ms/req, load generator {level['loadgen_cpu_share']:.0%} of a core, "
                f"loadavg before {level['load_average_before']}")
    busy = max(loads) > (os.cpu_count() or 1) * 0.5
    doc["notes"].append(
        "load generator: one asyncio process (uvloop), closed loop, keep-alive, waits 50 ms "
        "after a 503" + ("; MACHINE BUSY (load average above half the cores): figures are "
                         "lower bounds" if busy else ""))
    return results.finish(doc)
