"""A light closed-loop HTTP load generator: `python -m bench.loadgen SPEC OUT`.

N keep-alive connections on one asyncio loop (uvloop when installed), each sending the next
pre-encoded POST as soon as the previous answer arrived (after a 503 it waits
`retry_wait_s`, as a client honouring Retry-After at a finer grain would). No HTTP library:
requests are bytes built once, responses are read by Content-Length and only searched for
`"fallback":true`, so the generator's own CPU stays small beside the server's (it is measured
with getrusage and reported). Loopback only: the spec's host must be a loopback address.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchUsageError
from loopline.net import is_loopback


def encode_requests(host: str, port: int, token: str | None,
                    bodies: list[dict[str, Any]]) -> list[bytes]:
    """HTTP/1.1 keep-alive POST /rank requests, one per body."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    out = []
    for body in bodies:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = (f"POST /rank HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        out.append(head.encode() + data)
    return out


async def _client(host: str, port: int, requests: list[bytes], offset: int, until: float,
                  retry_wait_s: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    latencies, statuses = out["latency_ms"], out["status"]
    try:
        while time.perf_counter() < until:
            payload = requests[i % len(requests)]
            i += 1
            started = time.perf_counter()
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            elapsed = (time.perf_counter() - started) * 1000
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(elapsed)
                if b'"fallback":true' in body:
                    out["fallback"] += 1
            elif status == 503:
                out["shed_ms"].append(elapsed)
                await asyncio.sleep(retry_wait_s)
            else:
                out["errors"].append(f"{status}: {body[:200]!r}")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        out["errors"].append(f"connection: {type(exc).__name__}: {exc}")
    finally:
        writer.close()


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec["host"], int(spec["port"])
    requests = encode_requests(host, port, spec.get("token"), spec["bodies"])
    out: dict[str, Any] = {"latency_ms": [], "status": {}, "fallback": 0, "shed_ms": [],
                           "errors": []}
    until = time.perf_counter() + float(spec["duration_s"])
    started = time.perf_counter()
    await asyncio.gather(*(
        _client(host, port, requests, c * 7919, until, float(spec.get("retry_wait_s", 0.05)),
                out) for c in range(int(spec["concurrency"]))))
    out["wall_s"] = time.perf_counter() - started
    return out


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(spec: dict[str, Any]) -> dict[str, Any]:
    if not is_loopback(spec["host"]):
        raise BenchUsageError(f"the load generator only targets loopback, got {spec['host']!r}")
    factory: Any = None
    try:
        import uvloop

        factory, loop_kind = uvloop.new_event_loop, "uvloop"
    except ImportError:
        loop_kind = "asyncio"
    cpu = _cpu_s()
    # A runner of its own (not uvloop.install()): a caller's event-loop policy is left alone.
    with asyncio.Runner(loop_factory=factory) as runner:
        raw = runner.run(_run(spec))
    cpu = _cpu_s() - cpu
    answered = np.asarray(raw["latency_ms"])
    total = sum(raw["status"].values())
    return {
        "concurrency": int(spec["concurrency"]), "wall_s": round(raw["wall_s"], 2),
        "requests": total, "answered": int(answered.size),
        "answered_per_s": round(answered.size / raw["wall_s"], 1),
        "model_served_per_s": round((answered.size - raw["fallback"]) / raw["wall_s"], 1),
        "fallback": raw["fallback"], "shed": raw["status"].get(503, 0),
        "status": {str(k): v for k, v in sorted(raw["status"].items())},
        "p50_ms": round(float(np.percentile(answered, 50)), 2) if answered.size else None,
        "p99_ms": round(float(np.percentile(answered, 99)), 2) if answered.size else None,
        "shed_p99_ms": (round(float(np.percentile(raw["shed_ms"], 99)), 2)
                        if raw["shed_ms"] else None),
        "loadgen_cpu_s": round(cpu, 2), "loadgen_cpu_share": round(cpu / raw["wall_s"], 3),
        "loop": loop_kind, "errors": raw["errors"][:5], "error_count": len(raw["errors"]),
    }


def main(argv: list[str] | None = None) -> int:
    spec_path, out_path = sys.argv[1:] if argv is None else argv
    out = run(json.loads(Path(spec_path).read_text()))
    Path(out_path).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
