"""Errors shared across Loopline packages; each package derives its own from LooplineError."""


class LooplineError(Exception):
    """Base of every error Loopline raises on purpose (the CLI prints these as one line)."""


class ConfigError(LooplineError):
    """A configuration value is missing, malformed or contradictory."""
