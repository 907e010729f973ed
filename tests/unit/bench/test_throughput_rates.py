"""The throughput suite's rates from a job child's timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from bench.suites.throughput import rates


def _out(**extra: Any) -> dict[str, Any]:
    base = {"status": "FINISHED", "t_process": 0.0, "t_first_input": 10.0,
            "t_first_output": 12.0, "t_end": 30.0}
    return {**base, **extra}


def test_sustained_counts_from_the_first_activity_end_to_end_from_the_process_start() -> None:
    r = rates(_out(), 100)
    assert r["sustained_events_per_s"] == pytest.approx(100 / 20)
    assert r["end_to_end_events_per_s"] == pytest.approx(100 / 30)
    assert r["startup_s"] == pytest.approx(10.0)
    # a first Feast write before the decoder was seen reading counts as the first activity
    assert rates(_out(t_first_output=8.0), 100)["sustained_events_per_s"] == pytest.approx(100 / 22)


def test_no_rate_for_a_run_that_did_not_finish() -> None:
    r = rates(_out(status="FAILED"), 100)
    assert r["sustained_events_per_s"] is None and r["end_to_end_events_per_s"] is None
