"""Several worker processes behind one port: each publishes its /healthz view to a shared
folder, and whichever worker answers /healthz reports them all.

Each worker is a whole, stateless ranker (own store client, item cache, Kafka producer); the
only thing they share is this folder. A probe lands on one worker, so without it a worker
whose log is stuck could hide behind a healthy sibling. Rules of the merge:
* counts, per-arm rows and the log's counters are summed (a worker that exited keeps its
  last counts: nothing it served disappears from the totals);
* any worker degraded → degraded, with that worker's reasons; a live worker silent for more
  than `stale_s` → degraded ("not reporting"); a worker that exited with undelivered events
  → degraded for the loss hold time (those events may be lost);
* otherwise any worker on fallback → fallback.

Another worker's counts are those of its last report (every `interval_s`), so they may lag
its latest requests by that much; each row of "workers" says when its counts were taken
(`reported_at`, epoch seconds), so a reader that needs final counts (the serving bench) waits
until every worker's counts postdate what it is reconciling.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUMMED_EVENTS = ("accepted", "delivered", "dropped", "failed", "pending")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkerBoard:
    """This worker's published snapshot, and the merged view of every worker's."""

    def __init__(self, folder: Path, interval_s: float = 0.5, stale_s: float = 10.0,
                 loss_hold_s: float = 60.0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.interval_s, self.stale_s, self.loss_hold_s = interval_s, stale_s, loss_hold_s
        self._stop = threading.Event()

    def publish(self, snapshot: dict[str, Any], at: float) -> None:
        """Publish `snapshot`, whose counts were read at `at` (epoch seconds)."""
        tmp = self.folder / f".{self.pid}.json.tmp"
        tmp.write_text(json.dumps({**snapshot, "pid": self.pid, "at": at}))
        tmp.replace(self.folder / f"{self.pid}.json")

    def start(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        def loop() -> None:
            while True:
                try:
                    # Stamped before the counts are read: a request counted while the
                    # snapshot is built must never look included in it.
                    at = time.time()
                    self.publish(snapshot(), at)
                except Exception as exc:  # a full disk must not kill the worker; say it
                    log.error("could not publish this worker's health: %s", exc)
                if self._stop.wait(self.interval_s):
                    return

        threading.Thread(target=loop, name="worker-board", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def snapshots(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.folder.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return out

    def merged(self, snapshot: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Every worker's view: this one's taken now, the others' as last published."""
        at = time.time()
        mine = {**snapshot(), "pid": self.pid, "at": at}
        others = [s for s in self.snapshots() if s.get("pid") != self.pid]
        return merge([mine, *others], time.time(), self.stale_s, self.loss_hold_s, _alive)


def merge(snapshots: list[dict[str, Any]], now: float, stale_s: float, loss_hold_s: float,
          alive: Callable[[int], bool]) -> dict[str, Any]:
    """One /healthz body from every worker's (pure but for `alive`)."""
    first = snapshots[0]
    counts: dict[str, int] = {}
    reasons_by_fallback: dict[str, int] = {}
    arms: dict[tuple[str, str], dict[str, Any]] = {}
    events: dict[str, Any] | None = None
    problems: list[str] = []
    fallback = False
    workers = []
    for snap in snapshots:
        pid, age = snap["pid"], now - snap["at"]
        live = alive(pid)
        workers.append({"pid": pid, "alive": live, "status": snap["status"],
                        "reported_s_ago": round(age, 1), "reported_at": snap["at"]})
        for key, n in snap["counts"].items():
            counts[key] = counts.get(key, 0) + n
        for key, n in snap["fallback_reasons"].items():
            reasons_by_fallback[key] = reasons_by_fallback.get(key, 0) + n
        for row in snap["arms"]:
            merged = arms.setdefault((row["arm"], row["version"]),
                                     {"arm": row["arm"], "version": row["version"]})
            for key, value in row.items():
                if key not in ("arm", "version", "fallback_share"):
                    merged[key] = merged.get(key, 0) + value
        if snap.get("events") is not None:
            events = events or {k: 0 for k in _SUMMED_EVENTS} | {"oldest_pending_s": 0.0}
            for key in _SUMMED_EVENTS:
                events[key] += snap["events"][key]
            events["oldest_pending_s"] = max(events["oldest_pending_s"],
                                             snap["events"]["oldest_pending_s"])
        if not live:
            pending = (snap.get("events") or {}).get("pending", 0)
            if pending and age <= loss_hold_s:
                problems.append(f"worker {pid} exited with {pending} ServingEvents "
                                "undelivered (possibly lost)")
            continue
        if age > stale_s:
            problems.append(f"worker {pid} has not reported for {age:.0f} s")
        if snap["status"] == "degraded":
            problems += [f"worker {pid}: {r}" for r in snap["reasons"]]
        fallback = fallback or snap["status"] == "fallback"
    for row in arms.values():
        row["fallback_share"] = round(row["fallback"] / row["requests"], 4)
    status = "degraded" if problems else ("fallback" if fallback else "ok")
    others = list(dict.fromkeys(r for s in snapshots for r in s["reasons"]))
    body = {k: v for k, v in first.items() if k not in ("pid", "at")}
    return {**body, "status": status, "reasons": problems or others,
            "counts": counts, "fallback_reasons": reasons_by_fallback,
            "arms": [arms[k] for k in sorted(arms)], "events": events, "workers": workers}
