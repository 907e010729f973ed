"""Job variants the benchmark can measure *before* they land in jobs/feedback (proposals).

Each patch is applied in the benchmark's child process only, before the pipeline is built,
and is recorded by name in the result, so a figure is never attributed to the code as
committed when it was measured with a proposal applied. Functions defined here are pickled
by reference (module `bench.patches`), so Python workers and PEMJA import this same code.

* `thread_mode_sink_row`: in thread mode (PEMJA, Python inside the JVM) the sink row's
  timestamp must be a java.time.Instant; pyflink's Python `Instant` cannot be cast
  (ClassCastException: pemja PyObject → java.time.Instant). The fix builds the Java Instant
  when running embedded and keeps the PyFlink one in process mode.
* `feast_sink_map_state`: FeastOnlineSink keeps its batch buffer in MapState (one entry per
  view/entity) instead of one pickled dict in ValueState. The committed sink reads and
  rewrites the whole dict for every row; in thread mode (no Python-side state cache) that is a
  full unpickle + pickle of up to feast_flush_rows entries per row, i.e. quadratic per batch.
  Same semantics: newest row per entity, flush at feast_flush_rows / interval / end of input,
  buffer checkpointed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.transforms.records import SinkRecord

_JAVA_INSTANT: Any = None


def _java_instant() -> Any:
    """java.time.Instant when running inside the JVM (thread mode), else None."""
    global _JAVA_INSTANT
    if _JAVA_INSTANT is None:
        try:
            from pemja import findClass  # only importable inside PEMJA

            _JAVA_INSTANT = findClass("java.time.Instant")
        except Exception:  # process mode: no PEMJA
            _JAVA_INSTANT = False
    return _JAVA_INSTANT or None


def to_row_any_mode(record: SinkRecord) -> Any:
    """jobs.feedback.pipeline._to_row, correct in both execution modes."""
    from pyflink.common import Row
    from pyflink.common.time import Instant

    ts: Any = None
    if record.timestamp_ms is not None:
        java = _java_instant()
        ts = (java.ofEpochMilli(record.timestamp_ms) if java is not None
              else Instant.of_epoch_milli(record.timestamp_ms))
    return Row(k=record.key, v=record.value, topic=record.topic, ts=ts)


def _feast_sink_map_state() -> None:
    from bench.patched_functions import MapStateFeastOnlineSink
    from jobs.feedback import functions as fn

    fn.FeastOnlineSink = MapStateFeastOnlineSink  # type: ignore[misc]


def _thread_mode_sink_row() -> None:
    from jobs.feedback import pipeline

    pipeline._to_row = to_row_any_mode


PATCHES: dict[str, Callable[[], None]] = {
    "thread_mode_sink_row": _thread_mode_sink_row,
    "feast_sink_map_state": _feast_sink_map_state,
}


def apply(names: list[str]) -> None:
    for name in names:
        PATCHES[name]()
