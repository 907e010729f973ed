"""Pure transforms of the feedback job: no Flink import, state passed in and returned."""
