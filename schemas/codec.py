"""The one Avro codec every Loopline component uses (producers, jobs, tests, tools).

Wire format: Avro single-object encoding, as the Avro specification defines it:

    0xC3 0x01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | body

The body is the Avro binary encoding of the record under the writer schema. Readers look the
fingerprint up in the schema store and resolve writer → reader schema, so a consumer on an
older or newer (fully compatible) version reads the record. Timestamps are epoch milliseconds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fastavro

from schemas.errors import DecodeError, EncodeError, UnknownSchemaError
from schemas.store import SchemaStore, StoredSchema

MAGIC = b"\xc3\x01"
HEADER_LEN = 10

SERVING_EVENT = "io.loopline.events.ServingEvent"
INTERACTION_EVENT = "io.loopline.events.InteractionEvent"
LABELLED_IMPRESSION = "io.loopline.events.LabelledImpression"
DEAD_LETTER = "io.loopline.events.DeadLetter"
FEATURE_UPDATE = "io.loopline.events.FeatureUpdate"
FEATURE_LOG = "io.loopline.events.FeatureLog"
LINEAGE_RECORD = "io.loopline.lineage.LineageRecord"


def fingerprint_of(data: bytes) -> bytes | None:
    """The writer fingerprint in a single-object header, or None if there is no header."""
    if len(data) >= HEADER_LEN and data[:2] == MAGIC:
        return data[2:HEADER_LEN]
    return None


@dataclass
class Codec:
    """Encode/decode records of the store's schemas in single-object encoding."""

    store: SchemaStore

    def encode(self, name: str, record: dict[str, Any], version: int | None = None) -> bytes:
        """Write `record` with the latest (or the given) version of schema `name`."""
        schema = self.store.latest(name) if version is None else self.store.version(name, version)
        return self.encode_with(schema, record)

    @staticmethod
    def encode_with(schema: StoredSchema, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(buf, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(
                f"record does not match {schema.name} v{schema.version}: {exc}"
            ) from exc
        return buf.getvalue()

    def decode(self, data: bytes, reader: str | None = None) -> tuple[StoredSchema, dict[str, Any]]:
        """Decode `data`; with `reader`, resolve into the latest version of that schema.

        Returns the writer schema and the record. Raises DecodeError with a reason fit for a
        dead letter on anything that is not a well-formed record of a known schema.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        fp = fingerprint_of(data)
        if fp is None:
            raise DecodeError(
                f"no Avro single-object header: expected C3 01 + 8-byte fingerprint, "
                f"got {data[:HEADER_LEN].hex() or 'empty value'}"
            )
        writer = self.store.by_fingerprint(fp)
        if writer is None:
            raise UnknownSchemaError(f"unknown writer schema fingerprint {fp.hex()}", fp.hex())
        reader_schema = writer if reader is None else self.store.latest(reader)
        if reader is not None and reader_schema.name != writer.name:
            raise DecodeError(
                f"expected a {reader_schema.short_name}, got a {writer.short_name} "
                f"(fingerprint {fp.hex()})",
                fp.hex(),
            )
        body = io.BytesIO(data[HEADER_LEN:])
        try:
            record = fastavro.schemaless_reader(
                body,
                writer.parsed,
                None if reader_schema is writer else reader_schema.parsed,
            )
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise DecodeError(
                f"corrupt {writer.short_name} v{writer.version} body: {type(exc).__name__}: {exc}",
                fp.hex(),
            ) from exc
        if body.tell() != len(data) - HEADER_LEN:
            raise DecodeError(
                f"{writer.short_name} v{writer.version}: {len(data) - HEADER_LEN - body.tell()} "
                "trailing bytes after the record",
                fp.hex(),
            )
        if not isinstance(record, dict):
            raise DecodeError(f"expected a record, got {type(record).__name__}", fp.hex())
        return writer, record


@lru_cache(maxsize=1)
def default_codec() -> Codec:
    """The codec over the schemas shipped in schemas/avro (cached per process)."""
    return Codec(SchemaStore.from_directory())
