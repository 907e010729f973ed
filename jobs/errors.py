"""Errors raised by the jobs and their submission."""

from loopline.errors import LooplineError


class JobError(LooplineError):
    """A job could not be built, submitted or run."""


class JobConfigError(JobError):
    """A job setting is out of range or inconsistent."""


class SinkError(JobError):
    """A sink (Feast, slice log) failed to write; names the sink and what it was writing."""


class WriterConfigError(JobConfigError):
    """A Feast writer setting ([writer] / LOOPLINE_WRITER_*) is out of range or inconsistent."""


class WriterError(JobError):
    """The Feast writer could not consume, commit or hand off a batch; names the step."""
