"""Errors raised by serving; the CLI prints them as one line and exits non-zero."""

from models.errors import ModelsError


class ServingError(ModelsError):
    """Base of every serving error."""


class EventLogError(ServingError):
    """The ServingEvent log cannot be written: topic missing, not writable, broker unreachable."""
