"""Errors of the demo; the CLI prints them as one line."""

from loopline.errors import ConfigError, LooplineError


class DemoError(LooplineError):
    """Base of every demo error."""


class DemoConfigError(DemoError, ConfigError):
    """A demo setting is out of range, or the output folder cannot be used."""


class DemoStackError(DemoError):
    """Kafka or the streaming job could not be brought up, or failed while the demo ran."""


class DemoTimeoutError(DemoError):
    """The streaming job did not produce the expected final slices in time."""
