"""Errors raised while starting, stopping or talking to the local services.

Every message names what was expected and what was found, plus the next step when there is
an obvious one, because the CLI prints it as a single line without a traceback.
"""

from __future__ import annotations

from loopline.errors import LooplineError


class InfraError(LooplineError):
    """Base of every error from the local service tooling.

    `details` holds multi-line context (a log tail) that the CLI shows only with --verbose,
    so the message itself stays one line.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class JavaMissingError(InfraError):
    """No usable Java runtime (17 or newer) for the Kafka broker or Flink."""


class MissingBinaryError(InfraError):
    """A program a service needs (e.g. redis-server) is not installed."""


class MissingJarsError(InfraError):
    """The Maven-resolved jars under the jars folder are absent; `make jars` fetches them."""


class PortInUseError(InfraError):
    """A port a service must bind is held by some other process."""


class ServiceStartError(InfraError):
    """A service did not become ready: it exited, or did not answer before the timeout."""


class ServiceStopError(InfraError):
    """A service process survived SIGTERM and SIGKILL."""


class TopicError(InfraError):
    """Topic creation or inspection failed on the broker."""


class FlinkJobError(InfraError):
    """Submitting, listing or cancelling a Flink job failed."""
