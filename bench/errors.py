"""Errors of the benchmark tooling (the CLI prints them as one line)."""

from __future__ import annotations

from loopline.errors import LooplineError


class BenchError(LooplineError):
    """Base of every error a benchmark raises on purpose."""


class BenchUsageError(BenchError):
    """An option of `loopline bench` is out of range or contradicts another one."""


class BenchRunError(BenchError):
    """A measured run (job, baseline, producer) failed; the message names which and why."""
