"""The throughput suite's rates from a job child's timestamps and REST timeline."""

from __future__ import annotations

from typing import Any

import pytest

from bench.suites.throughput import rates


def _out(**extra: Any) -> dict[str, Any]:
    base = {"status": "FINISHED", "t_process": 0.0, "t_first_input": 10.0, "t_end": 30.0,
            "timeline": [{"t": 12.0, "read": [40, 40]}, {"t": 16.0, "read": [60, 55]},
                         {"t": 20.0, "read": [100, 100]}]}
    return {**base, **extra}


def test_sustained_and_second_half_rates() -> None:
    r = rates(_out(), 100)
    assert r["sustained_events_per_s"] == pytest.approx(100 / 20)
    # the decoder (second vertex) had read half the input at t=16
    assert r["second_half_events_per_s"] == pytest.approx(50 / 14)
    assert r["end_to_end_events_per_s"] == pytest.approx(100 / 30)


def test_no_second_half_rate_without_a_timeline_or_a_finished_job() -> None:
    assert rates(_out(timeline=[]), 100)["second_half_events_per_s"] is None
    assert rates(_out(status="FAILED"), 100)["second_half_events_per_s"] is None
    short = _out(timeline=[{"t": 12.0, "read": [40, 40]}])
    assert rates(short, 100)["second_half_events_per_s"] is None
