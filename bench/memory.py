"""Memory high-water mark of the local stack, sampled from /proc (psutil) in a thread.

Each watched root pid counts with all its descendants (the job's Python client, the Flink
JVM it starts and that JVM's Python workers; the broker; Redis). The peak of the sum is taken
over simultaneous samples, so it is a real moment's total, not a sum of separate peaks. RSS
counts shared pages once per process, so the total slightly overstates physical use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

MIB = 1024 * 1024


def tree_rss(pid: int, cpu: dict[int, float] | None = None) -> tuple[int, dict[str, int]]:
    """RSS bytes of `pid` and its descendants, plus a by-kind split (java/python/other).

    With `cpu`, also records each process's cumulative CPU seconds (user + system) by pid.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, {}
    total, kinds = 0, dict[str, int]()
    for proc in procs:
        try:
            rss = proc.memory_info().rss
            name = proc.name()
            if cpu is not None:
                times = proc.cpu_times()
                cpu[proc.pid] = max(cpu.get(proc.pid, 0.0), times.user + times.system)
        except psutil.Error:
            continue
        kind = "java" if "java" in name else "python" if "python" in name else name
        kinds[kind] = kinds.get(kind, 0) + rss
        total += rss
    return total, kinds


def _constant(pid: int) -> Callable[[], int | None]:
    return lambda: pid


class MemorySampler:
    """Samples RSS of named process trees every `interval_s` while running."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self._roots: dict[str, Callable[[], int | None]] = {}
        self.peak: dict[str, int] = {}
        self.peak_kinds: dict[str, dict[str, int]] = {}
        self.peak_total = 0
        self.samples = 0
        # CPU seconds used while watched, per component (last cumulative value per pid,
        # minus the value at first sight for processes that existed before watching).
        self._cpu: dict[str, dict[int, float]] = {}
        self._cpu_start: dict[str, dict[int, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def watch(self, name: str, pid: int | Callable[[], int | None]) -> None:
        """Watch a process tree; `pid` may be a callable for a process started later."""
        with self._lock:
            self._roots[name] = pid if callable(pid) else _constant(pid)

    def sample(self) -> None:
        with self._lock:
            roots = dict(self._roots)
        total = 0
        for name, get_pid in roots.items():
            pid = get_pid()
            if pid is None:
                continue
            cpu = self._cpu.setdefault(name, {})
            seen = set(cpu)
            rss, kinds = tree_rss(pid, cpu)
            start = self._cpu_start.setdefault(name, {})
            for new_pid in set(cpu) - seen:
                # A process already running when first seen (a service) counts from now.
                start[new_pid] = cpu[new_pid] if self.samples == 0 else 0.0
            total += rss
            if rss > self.peak.get(name, 0):
                self.peak[name] = rss
                self.peak_kinds[name] = kinds
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()

    def cpu_seconds(self) -> dict[str, float]:
        return {name: round(sum(v - self._cpu_start.get(name, {}).get(p, 0.0)
                                for p, v in pids.items()), 2)
                for name, pids in self._cpu.items()}

    def report(self) -> dict[str, Any]:
        return {
            "cpu_seconds_by_component": self.cpu_seconds(),
            "peak_total_mib": round(self.peak_total / MIB, 1),
            "peak_by_component_mib": {k: round(v / MIB, 1) for k, v in self.peak.items()},
            "peak_by_process_kind_mib": {
                name: {k: round(v / MIB, 1) for k, v in kinds.items()}
                for name, kinds in self.peak_kinds.items()
            },
            "interval_s": self.interval_s,
            "samples": self.samples,
            "note": "RSS of each process tree (shared pages counted per process); "
                    "peak_total is the largest simultaneous sum",
        }


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
