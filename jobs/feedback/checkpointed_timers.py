"""Make PyFlink checkpoint the timers a keyed Python function registers just before a barrier.

PyFlink 2.2 (process mode) hands timer registrations from the Python worker to the task's
mailbox; the registrations of the bundle that is finished for a checkpoint barrier run after
the snapshot, so that checkpoint holds the bundle's state without its timers. A job restored
from it never fires them: in the feedback job, requests served just before the checkpoint
were never labelled (found by the TaskManager-failure test, about one run in five). Our
operator (infra/jvm/flink-python-timers, built by `make jars`, located by
infra.jars.timers_operator_jar) applies the pending registrations before the snapshot;
`install()` makes PyFlink build it wherever it would build its own keyed process operator.
Thread mode registers timers directly and is left alone.
"""

from __future__ import annotations

import functools
from typing import Any

PYFLINK_OPERATOR = (
    "org.apache.flink.streaming.api.operators.python.process.ExternalPythonKeyedProcessOperator"
)


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
