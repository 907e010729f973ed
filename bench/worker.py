"""Child-process side of a measured run: `python -m bench.worker {flink,naive} SPEC OUT`.

Each measured run gets a fresh process (a fresh Flink gateway JVM and mini-cluster), so JVM
warm-up, memory high-water marks and Python state never leak from one run into the next, and
thread mode can set PYTHONPATH before the JVM starts. The parent samples memory and reads the
JSON the child writes to OUT.
"""

from __future__ import annotations

import json
import os
import site
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def python_path() -> str:
    """Repo root + this interpreter's site-packages: what PEMJA (thread mode) needs to import
    the job's modules inside the JVM, and what process-mode workers inherit."""
    parts = [str(REPO_ROOT), *site.getsitepackages()]
    current = os.environ.get("PYTHONPATH")
    if current:
        parts.append(current)
    return os.pathsep.join(dict.fromkeys(parts))


def _lineage_feast_writes(path: Path) -> list[dict[str, Any]]:
    """Feast batch lineage events (wall time of each write, rows per view) from the mirror."""
    writes: list[dict[str, Any]] = []
    if not path.exists():
        return writes
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        outs = [o for o in record.get("outputs", []) if o["namespace"].startswith("feast://")]
        if record.get("event_type") == "RUNNING" and outs:
            writes.append({"t_ms": record["event_time"],
                           "rows": sum(int(o["facets"].get("rows", 0)) for o in outs)})
    return writes


def _root_cause(exc: BaseException) -> str:
    """The Java 'Caused by' chain of a failed job (the first lines of a Py4J error are noise)."""
    text = str(exc)
    causes = [line.strip() for line in text.splitlines() if line.startswith("Caused by")]
    return " | ".join(causes[-3:])[:3000] if causes else f"{type(exc).__name__}: {text[:1500]}"


def run_flink(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the feedback job as `jobs.feedback.run.run(wait=False)` and watch it to the end.

    Its Feast writer runs beside it the whole time, as in production (a bounded run gets
    one here too), and the run ends when the writer has written the last update: the
    measured path is Kafka → job → Feast, not Kafka → job → Kafka."""
    t_process = float(spec["t_spawn"])
    from bench import flink_rest
    from feature_repo.store import FeastConfig
    from jobs.config import JobConfig
    from jobs.feedback.run import run, writer_config
    from jobs.writer import WriterProcess
    from loopline.kafka import KafkaConfig
    from loopline.paths import load_paths

    job = JobConfig(**spec["job"])
    feast = FeastConfig(**spec["feast"])
    paths = load_paths()
    kafka = KafkaConfig(bootstrap_servers=spec["bootstrap_servers"])
    expected = int(spec.get("expected_input") or 0)
    stop_file = Path(spec["stop_file"]) if spec.get("stop_file") else None
    t_call = time.time()
    result = run(job, kafka, feast, paths, wait=False)
    writer = result.writer or WriterProcess.start(
        writer_config(job, feast, result.run_id), kafka, feast, paths)
    t_submitted = time.time()
    client = result.client
    progress: flink_rest.JobProgress | None = None
    skip: set[int] = set()

    def discover() -> flink_rest.JobProgress | None:
        # The REST endpoint of the mini-cluster comes up with the job; look each poll.
        for jvm in flink_rest.java_children(os.getpid()):
            base = flink_rest.find_rest(jvm, skip)
            if base:
                return flink_rest.JobProgress(base, str(result.job_id))
        return None
    t_first_input: float | None = None
    done: dict[str, Any] = {}

    def wait_result() -> None:
        # The per-job mini-cluster shuts down with a bounded job, after which status calls
        # fail: the execution-result future is the reliable end signal.
        try:
            client.get_job_execution_result().result()
            done["status"] = "FINISHED"
        except Exception as exc:  # a failed or cancelled job, reported in the result
            done["status"] = "FAILED"
            done["error"] = _root_cause(exc)
        done["t"] = time.time()

    waiter = threading.Thread(target=wait_result, name="bench-job-result", daemon=True)
    waiter.start()
    status = "RUNNING"
    poll_s = float(spec.get("poll_s", 1.0))
    ready_file = Path(spec["ready_file"]) if spec.get("ready_file") else None
    while waiter.is_alive():
        if progress is None:
            progress = discover()
        sample = progress.poll() if progress else None
        if sample and t_first_input is None and progress and progress.source_consumed(sample) > 0:
            t_first_input = sample["t"]
        if ready_file is not None and not ready_file.exists():
            deployed = bool(sample and sample["vertices"] and all(
                v["status"] == "RUNNING" for v in sample["vertices"]))
            if deployed or (progress is None and time.time() - t_submitted > 90):
                ready_file.write_text(str(time.time()))  # every task running (or no REST)
        if stop_file is not None and stop_file.exists():
            client.cancel().result()
            waiter.join(60)
            done["status"] = "CANCELED_BY_BENCH"
            break
        waiter.join(poll_s)
    status = done.get("status", status)
    t_end = done.get("t", time.time())
    last = progress.last if progress else None
    end_ms = last.get("end_time_ms") if last else None
    if end_ms and end_ms > 0:
        t_end = min(t_end, end_ms / 1000)
    t_job_end = t_end
    writer_stats = writer.stop(drain=status == "FINISHED").as_dict()
    if status == "FINISHED":
        t_end = time.time()  # the last update is in Feast
    writes = _lineage_feast_writes(paths.lineage / f"{result.run_id}.jsonl")
    t_first_output = min((w["t_ms"] for w in writes), default=None)
    counters: dict[str, Any] = {}
    if spec.get("reconcile") and status == "FINISHED":
        from jobs.reconcile import reconcile

        t0 = time.time()
        totals = reconcile(kafka, JobConfig(**{**spec["job"], "run_id": result.run_id}))
        counters = {**totals.as_dict(), "seconds": round(time.time() - t0, 1)}
    return {
        "status": status,
        "error": done.get("error"),
        "run_id": result.run_id,
        "job_id": result.job_id,
        "expected_input": expected,
        "t_process": t_process,
        "t_call": t_call,
        "t_submitted": t_submitted,
        "t_first_input": t_first_input,
        "t_first_output": t_first_output / 1000 if t_first_output else None,
        "t_end": t_end,
        "flink_start_time_ms": last.get("start_time_ms") if last else None,
        "flink_end_time_ms": end_ms,
        "rest": progress.base if progress else None,
        "vertices": last["vertices"] if last else [],
        "timeline": progress.timeline if progress else [],
        "feast_writes": writes,
        "t_job_end": t_job_end,
        "writer": writer_stats,
        "reconciled": counters,
    }


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import naive

    return naive.run_from_spec(spec)


def run_naive_equal(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import naive_equal

    return naive_equal.run_from_spec(spec)


def run_serving(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import serving_child

    return serving_child.run_from_spec(spec)


def run_feature_log(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import feature_log_child

    return feature_log_child.run_from_spec(spec)


def run_writer(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import writer_child

    return writer_child.run_writer(spec)


def run_naive_writer(spec: dict[str, Any]) -> dict[str, Any]:
    from bench import writer_child

    return writer_child.run_naive_writer(spec)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind, spec_path, out_path = args
    spec = json.loads(Path(spec_path).read_text())
    runner = {"flink": run_flink, "naive": run_naive, "naive_equal": run_naive_equal,
              "serving": run_serving, "feature_log": run_feature_log,
              "writer": run_writer, "naive_writer": run_naive_writer}[kind]
    out = runner(spec)
    Path(out_path).write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
