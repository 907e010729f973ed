"""Read a running job's progress from the Flink REST API of the local mini-cluster.

`jobs.feedback.run.run()` starts a mini-cluster inside the PyFlink gateway JVM; that cluster
serves the REST API on a random port. We find it among the JVM's listening sockets (the port
that answers /config as Flink), then poll per-vertex record counts and busy / back-pressured
/ idle time — where the job's time goes, measured by Flink itself.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

import psutil


def _get(url: str, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read().decode())


def java_children(pid: int) -> list[int]:
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for proc in procs:
        try:
            if "java" in proc.name():
                out.append(proc.pid)
        except psutil.Error:
            continue
    return out


def find_rest(jvm_pid: int, skip: set[int] | None = None) -> str | None:
    """Base URL of the Flink REST endpoint served by `jvm_pid`, or None (one quick pass).

    Ports that answered as something else (the Py4J gateway) are added to `skip`; ports that
    refused or timed out are tried again on the next pass (REST may not be up yet).
    """
    skip = set() if skip is None else skip
    try:
        conns = psutil.Process(jvm_pid).net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in conns:
        if conn.status != psutil.CONN_LISTEN or conn.laddr.port in skip:
            continue
        port = conn.laddr.port
        host = "127.0.0.1" if conn.laddr.ip in ("0.0.0.0", "::", "127.0.0.1") else conn.laddr.ip
        base = f"http://{host}:{port}"
        try:
            config = _get(f"{base}/config", 0.5)
        except (http.client.HTTPException, ValueError):
            skip.add(port)  # answered, but not HTTP/JSON
            continue
        except (OSError, urllib.error.URLError):
            continue
        if isinstance(config, dict) and "flink-version" in config:
            return base
        skip.add(port)
    return None


class JobProgress:
    """Polls /jobs/<id> and keeps a timeline of per-vertex counters."""

    def __init__(self, base: str, job_id: str) -> None:
        self.base = base
        self.job_id = job_id
        self.timeline: list[dict[str, Any]] = []
        self.last: dict[str, Any] | None = None

    def poll(self) -> dict[str, Any] | None:
        try:
            details = _get(f"{self.base}/jobs/{self.job_id}")
        except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
            return None
        now = time.time()
        vertices = []
        for v in details.get("vertices", []):
            m = v.get("metrics", {})
            vertices.append({
                "name": v.get("name"),
                "id": v.get("id"),
                "status": v.get("status"),
                "parallelism": v.get("parallelism"),
                "read_records": m.get("read-records"),
                "write_records": m.get("write-records"),
                "busy_ms": m.get("accumulated-busy-time"),
                "backpressured_ms": m.get("accumulated-backpressured-time"),
                "idle_ms": m.get("accumulated-idle-time"),
            })
        sample = {"t": now, "state": details.get("state"),
                  "start_time_ms": details.get("start-time"),
                  "end_time_ms": details.get("end-time"), "vertices": vertices}
        self.timeline.append({"t": now, "state": sample["state"],
                              "read": [v["read_records"] for v in vertices]})
        self.last = sample
        return sample

    def source_consumed(self, sample: dict[str, Any]) -> int:
        """Records read by the first vertex after the source (the decoder)."""
        vertices = sample["vertices"]
        return int(vertices[1]["read_records"] or 0) if len(vertices) > 1 else 0
