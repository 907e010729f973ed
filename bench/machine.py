"""Machine facts recorded with every result: cores, memory, load, versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from loopline.version import REPO

PACKAGES = ("apache-flink", "feast", "kafka-python", "fastavro", "pandas", "pyarrow",
            "lightgbm", "dowhy", "redis")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _java_version() -> str | None:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (out.stderr or out.stdout).splitlines()
    return first[0].strip() if first else None


def _memory_bytes() -> dict[str, int]:
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    info[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return {"total": info.get("MemTotal", 0), "available": info.get("MemAvailable", 0)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def facts() -> dict[str, Any]:
    """What the figures were measured on (call at the start of a run)."""
    dirty = _git("status", "--porcelain")
    return {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "load_average_before": load_average(),
        "python": platform.python_version(),
        "java": _java_version(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
