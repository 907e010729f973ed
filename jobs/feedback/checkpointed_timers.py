"""Make PyFlink checkpoint the timers a keyed Python function registers just before a barrier.

PyFlink 2.2 (process mode) hands timer registrations from the Python worker to the task's
mailbox; the registrations of the bundle that is finished for a checkpoint barrier run after
the snapshot, so that checkpoint holds the bundle's state without its timers. A job restored
from it never fires them: in the feedback job, requests served just before the checkpoint
were never labelled (found by the TaskManager-failure test, about one run in five). Our
operator (infra/jvm/flink-python-timers, built by `make jars`) applies the pending
registrations before the snapshot; `install()` makes PyFlink build it wherever it would
build its own keyed process operator. Thread mode registers timers directly and is left alone.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jobs.errors import JobError
from loopline.paths import PathsConfig

OPERATOR = "io.loopline.flink.CheckpointedTimersKeyedProcessOperator"
PYFLINK_OPERATOR = (
    "org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedProcessOperator"
)
JAR_GLOB = "loopline-flink-python-timers*.jar"


def operator_jar(paths: PathsConfig) -> Path:
    """The jar with our operator; it must reach the job's classpath next to flink-python
    (pipeline.jars, not the cluster's lib/, whose loader cannot see flink-python)."""
    jars = sorted((paths.jars / "patches").glob(JAR_GLOB))
    if len(jars) != 1:
        raise JobError(
            f"expected one {JAR_GLOB} in {paths.jars / 'patches'}, found "
            f"{[j.name for j in jars] or 'none'}: run `make jars`"
        )
    return jars[0]


def _substituting(build: Any) -> Any:
    @functools.wraps(build)
    def build_operator(*args: Any, **kwargs: Any) -> Any:
        operator, type_info = build(*args, **kwargs)
        if operator.getClass().getName() == PYFLINK_OPERATOR:
            from pyflink.java_gateway import get_gateway

            jvm = get_gateway().jvm
            operator = jvm.io.loopline.flink.CheckpointedTimersKeyedProcessOperator.of(operator)
        return operator, type_info

    build_operator.loopline_checkpointed_timers = True  # type: ignore[attr-defined]
    return build_operator


def install() -> None:
    """Idempotent; call before the job graph is built (operators are made as it is built)."""
    from pyflink.datastream import data_stream

    current = data_stream._get_one_input_stream_operator
    if not getattr(current, "loopline_checkpointed_timers", False):
        data_stream._get_one_input_stream_operator = _substituting(current)
