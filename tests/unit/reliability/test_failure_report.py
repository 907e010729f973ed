"""infra.flink_jobs.failure_report: a failed job's REST exception history as one clear line
per failure (operator, why), headed by the restart strategy's verdict."""

from __future__ import annotations

from typing import Any

from infra.flink_jobs import _causes, failure_report

WORKER_LOST = """org.apache.flink.util.SerializedThrowable: org.apache.flink.runtime.taskmanager.\
AsynchronousException: Caught exception while processing timer.
\tat org.apache.flink.streaming.runtime.tasks.StreamTask.handleAsyncException(StreamTask.java:1708)
Caused by: org.apache.flink.util.SerializedThrowable: org.apache.flink.streaming.runtime.tasks.\
TimerException: java.lang.RuntimeException: Error while waiting for BeamPythonFunctionRunner flush
Caused by: org.apache.flink.util.SerializedThrowable: java.lang.RuntimeException: Error while \
waiting for BeamPythonFunctionRunner flush
Caused by: org.apache.flink.util.SerializedThrowable: java.lang.RuntimeException: Failed to close \
remote bundle
Caused by: org.apache.flink.util.SerializedThrowable: java.util.concurrent.ExecutionException: \
org.apache.beam.vendor.grpc.v1p60p1.io.grpc.StatusRuntimeException: CANCELLED: client cancelled
\t... 5 more
"""
SUPPRESSED = ("org.apache.flink.runtime.JobException: Recovery is suppressed by "
              "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts=2, "
              "backoffTimeMS=1000)\n\tat org.apache.flink.runtime.executiongraph.X.y(X.java:1)\n"
              "Caused by: " + WORKER_LOST)


class FakeCluster:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def rest(self, method: str, path: str, timeout_s: float = 10) -> Any:
        assert (method, path) == ("GET", "/jobs/j1/exceptions")
        return {"exceptionHistory": {"entries": self.entries, "truncated": False}}


def test_causes_are_short_and_deduplicated() -> None:
    assert _causes(WORKER_LOST) == [
        "AsynchronousException: Caught exception while processing timer.",
        "RuntimeException: Error while waiting for BeamPythonFunctionRunner flush",
        "RuntimeException: Failed to close remote bundle",
        "StatusRuntimeException: CANCELLED: client cancelled",
    ]


def test_report_names_the_operator_the_cause_and_the_verdict() -> None:
    task = "decode-validate -> (_stream_key_by_map_operator, Map, Map) (1/1) - execution #2"
    cluster = FakeCluster([
        {"exceptionName": "JobException", "stacktrace": SUPPRESSED, "taskName": None,
         "concurrentExceptions": [{"taskName": task, "stacktrace": WORKER_LOST}]},
        {"exceptionName": "AsynchronousException", "stacktrace": WORKER_LOST,
         "taskName": task.replace("#2", "#1")},
    ])
    report = failure_report("j1", cluster)  # type: ignore[arg-type]
    assert report.startswith("job j1 failed 2 time(s); restarts exhausted: JobException: "
                             "Recovery is suppressed by FixedDelayRestartBackoffTimeStrategy("
                             "maxNumberRestartAttempts=2")
    assert report.count("operator 'decode-validate -> (_stream_key_by_map_operator, Map, Map)' "
                        "failed (its Python worker died: killed, out of memory or crashed): "
                        "RuntimeException: Error while waiting for BeamPythonFunctionRunner "
                        "flush <- RuntimeException: Failed to close remote bundle <- "
                        "StatusRuntimeException: CANCELLED: client cancelled") == 2
    assert "\n" not in report


def test_a_job_that_never_failed_has_no_report() -> None:
    assert failure_report("j1", FakeCluster([])) == ""  # type: ignore[arg-type]
