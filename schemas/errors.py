"""Errors raised by the event contracts and their codec."""

from loopline.errors import LooplineError


class SchemaError(LooplineError):
    """A schema file is unreadable or not valid Avro."""


class IncompatibleSchemaError(SchemaError):
    """A new schema version cannot read old data, or old readers cannot read it."""


class DecodeError(LooplineError):
    """Bytes that are not a Loopline event. `reason` is shown in dead letters."""

    def __init__(self, reason: str, fingerprint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fingerprint = fingerprint


class UnknownSchemaError(DecodeError):
    """The writer's schema fingerprint is not in the schema store."""


class EncodeError(LooplineError):
    """A record does not match the schema it is being written with."""
