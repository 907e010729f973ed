"""Submit PyFlink jobs to the local session cluster and list / cancel / await them via REST."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import jars as jar_files
from infra.config import load_services
from infra.errors import FlinkJobError
from infra.flink_cluster import FlinkCluster, flink_home
from loopline.paths import load_paths

TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELED"})
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str | None  # None only if the client printed no id (e.g. the script never executed)
    output: str


def _cluster(cluster: FlinkCluster | None) -> FlinkCluster:
    return cluster if cluster is not None else FlinkCluster(load_services(), load_paths())


def flink_run(
    py_file: Path | str,
    args: Sequence[str] = (),
    jars: Iterable[Path] = (),
    pyexec: str | None = None,
    detached: bool = True,
    cluster: FlinkCluster | None = None,
    conf: dict[str, str] | None = None,
    timeout_s: float = 600,
) -> SubmittedJob:
    """`flink run -pyexec <python> -py <py_file> [args]` against the local session cluster.

    `jars` become `pipeline.jars` (the Kafka connector is already on the cluster classpath,
    so most jobs need none); `conf` adds `-Dkey=value` options. Detached returns once the
    job is submitted; attached waits until the job ends.
    """
    cluster = _cluster(cluster)
    python = pyexec or sys.executable
    cmd = [str(flink_home() / "bin" / "flink"), "run"]
    if detached:
        cmd.append("--detached")
    jar_list = list(jars)
    options = dict(conf or {})
    if jar_list:
        options["pipeline.jars"] = jar_files.file_urls(jar_list)
    cmd += [f"-D{key}={value}" for key, value in options.items()]
    cmd += ["-pyexec", python, "-pyclientexec", python, "-py", str(py_file), *args]
    try:
        out = subprocess.run(
            cmd,
            env=cluster.script_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FlinkJobError(f"flink run {py_file}: no result within {timeout_s:.0f}s") from exc
    output = out.stdout + out.stderr
    match = _JOB_ID.search(output)
    if out.returncode != 0:
        # The client's own output rarely says which operator failed or that restarts ran out;
        # the cluster knows, when the job got as far as running.
        report = _failure_report_or_none(match.group(1), cluster) if match else None
        raise FlinkJobError(
            f"flink run {py_file} exited {out.returncode}: "
            f"{report or _error_summary(output)}",
            details=output,
        )
    return SubmittedJob(job_id=match.group(1) if match else None, output=output)


def list_jobs(cluster: FlinkCluster | None = None) -> list[dict[str, Any]]:
    """Jobs the cluster knows: dicts with jid, name, state, start-time, ..."""
    return list(_cluster(cluster).rest("GET", "/jobs/overview")["jobs"])


def job_state(job_id: str, cluster: FlinkCluster | None = None) -> str:
    return str(_cluster(cluster).rest("GET", f"/jobs/{job_id}")["state"])


def cancel_job(job_id: str, cluster: FlinkCluster | None = None) -> None:
    _cluster(cluster).rest("PATCH", f"/jobs/{job_id}?mode=cancel")


def wait_for_job(
    job_id: str,
    states: Iterable[str] = TERMINAL_STATES,
    timeout_s: float = 300,
    cluster: FlinkCluster | None = None,
) -> str:
    """Poll until the job reaches one of `states`; return it (FlinkJobError on timeout)."""
    cluster = _cluster(cluster)
    wanted = set(states)
    deadline = time.monotonic() + timeout_s
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_state(job_id, cluster)
        if state in wanted:
            return state
        time.sleep(0.5)
    raise FlinkJobError(
        f"job {job_id}: expected one of {sorted(wanted)} within {timeout_s:.0f}s, still {state}"
    )


def job_exceptions(job_id: str, cluster: FlinkCluster | None = None) -> str:
    """The root exception text of a failed job (for assertion messages and CLI errors)."""
    data = _cluster(cluster).rest("GET", f"/jobs/{job_id}/exceptions")
    history = (data or {}).get("exceptionHistory", {}).get("entries", [])
    return history[0].get("stacktrace", "")[:4000] if history else ""


# A Python operator whose worker process is gone (killed, out of memory, crashed) fails with
# one of these in its cause chain.
_PYTHON_WORKER_LOST = ("Failed to close remote bundle", "Failed to start remote bundle",
                       "Python process exits", "BeamPythonFunctionRunner", "SDK harness",
                       "client cancelled", "call already cancelled")


def failure_report(job_id: str, cluster: FlinkCluster | None = None) -> str:
    """Why a job failed, for people: one line per failure (newest first) naming the task
    (its operator chain, as the job named its operators) and the chain of causes, after a
    headline that says whether the restart strategy gave up. Empty when it never failed."""
    data = _cluster(cluster).rest("GET", f"/jobs/{job_id}/exceptions") or {}
    entries = data.get("exceptionHistory", {}).get("entries", [])
    lines = []
    for entry in entries:
        tasks = [entry.get("taskName")] + [c.get("taskName") for c in
                                          entry.get("concurrentExceptions") or []]
        task = next((t for t in tasks if t), None)
        causes = _causes(entry.get("stacktrace") or "")
        if task is None and causes and causes[0].startswith("JobException: Recovery is suppressed"):
            continue  # the verdict: reported in the headline
        hint = (" (its Python worker died: killed, out of memory or crashed)"
                if any(m in " ".join(causes) for m in _PYTHON_WORKER_LOST) else "")
        lines.append(f"{_task_label(task)} failed{hint}: {' <- '.join(causes[-3:])}")
    if not entries:
        return ""
    verdict = _causes(entries[0].get("stacktrace") or "")[:1]
    suppressed = verdict and "Recovery is suppressed" in verdict[0]
    head = (f"job {job_id} failed {len(lines)} time(s); restarts exhausted: {verdict[0]}"
            if suppressed else f"job {job_id} failed {len(lines)} time(s)")
    return "; ".join([head, *lines])


def _failure_report_or_none(job_id: str, cluster: FlinkCluster, settle_s: float = 15) -> str | None:
    """The report once the cluster has recorded the end: an attached client can exit while
    the job is still FAILING and before the restart strategy's verdict is in the history."""
    try:
        report = failure_report(job_id, cluster)
        if "restarts exhausted" not in report:
            with contextlib.suppress(FlinkJobError):  # still not ended: report what is known
                wait_for_job(job_id, timeout_s=settle_s, cluster=cluster)
            time.sleep(0.5)  # the verdict entry lands just after the state change
            report = failure_report(job_id, cluster)
        return report or None
    except FlinkJobError:  # the cluster is gone or never saw the job
        return None


def _task_label(task: str | None) -> str:
    """'decode-validate -> (...) (1/1) - execution #2' -> "operator 'decode-validate -> (...)'"."""
    if not task:
        return "the job"
    name = re.sub(r" \(\d+/\d+\)( - execution #\d+)?$", "", task)
    return f"operator {name!r}"


_QUALIFIED_EXCEPTION = re.compile(r"^(?:[\w$]+\.)+([\w$]*(?:Exception|Error|Throwable)): ")


def _causes(stacktrace: str) -> list[str]:
    """'Exception: message' of the exception and of each 'Caused by', with short class names;
    a cause that only repeats the message of the one it wraps is dropped."""
    out: list[str] = []
    messages: list[str] = []
    for line in stacktrace.splitlines():
        text = line.strip().removeprefix("Caused by: ")
        if not text or text.startswith(("at ", "...", "Suppressed:")):
            continue
        names = []
        while match := _QUALIFIED_EXCEPTION.match(text):  # "a.B: c.D: message" -> D: message
            names.append(match.group(1))
            text = text[match.end():]
        name = next((n for n in reversed(names) if n != "SerializedThrowable"), "")
        if messages and text in messages[-1]:
            continue
        messages.append(text)
        out.append(f"{name}: {text}"[:200] if name else text[:200])
    return out


def _error_summary(output: str) -> str:
    """The informative lines of a failed `flink run` (Java and Python tracebacks are long)."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    causes = [ln for ln in lines if "Exception" in ln or "Error" in ln]
    return " | ".join((causes or lines)[-4:])[:1500]

