"""Operator variants for bench/patches.py (imports PyFlink, so only loaded when applied).

Module-level classes: cloudpickle pickles them by reference, so Python workers and PEMJA
(thread mode) import this module and find the same class.
"""

from __future__ import annotations

from typing import Any

from pyflink.common import Types
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from jobs.feedback import functions as fn

_SEP = "\x1f"


class MapStateFeastOnlineSink(fn.FeastOnlineSink):
    """FeastOnlineSink with the batch buffer in MapState: O(1) state work per row."""

    def open(self, runtime_context: Any) -> None:
        super().open(runtime_context)
        self.rows = runtime_context.get_map_state(
            MapStateDescriptor("buffer_rows", Types.STRING(), fn.PICKLED))
        self.size = runtime_context.get_state(ValueStateDescriptor("buffer_size", Types.INT()))

    def process_element(self, row: Any, ctx: Any) -> Any:
        size = self.size.value() or 0
        if size == 0:
            timers = ctx.timer_service()
            timers.register_processing_time_timer(
                timers.current_processing_time() + self.run.job.feast_flush_interval_ms)
            timers.register_event_time_timer(fn.END_OF_INPUT_TIMER)
        key = f"{row.view}{_SEP}{row.entity_id}"
        current = self.rows.get(key)
        if current is None:
            size += 1
        if current is None or row.event_ms >= current.event_ms:
            self.rows.put(key, row)
        if self.run.job.offline_feature_log:
            self.history.add(row)
        if size >= self.run.job.feast_flush_rows:
            yield from self._flush_map()
        else:
            self.size.update(size)

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        if self.size.value():
            yield from self._flush_map()

    def _flush_map(self) -> Any:
        buffer = {tuple(k.split(_SEP, 1)): v for k, v in self.rows.items()}
        self.rows.clear()
        self.size.clear()
        yield from self._flush(buffer)
