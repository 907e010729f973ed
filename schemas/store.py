"""The schema store: every writer schema Loopline knows, by name, version and fingerprint.

Source of truth is the `.avsc` files in schemas/avro (append-only: a new version is a new
file `name.vN.avsc`, old files are never edited). A store can also learn schemas at run time
(e.g. from the compacted schemas topic), but only after they pass the full-compatibility check
against every version already registered under the same name.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import to_parsing_canonical_form

from schemas.compatibility import full_compatibility_problems
from schemas.errors import IncompatibleSchemaError, SchemaError
from schemas.fingerprint import fingerprint_bytes

AVRO_DIR = Path(__file__).parent / "avro"
_FILE_NAME = re.compile(r"^(?P<stem>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


def _strip_logical_types(schema: Any) -> Any:
    """Drop logicalType so timestamps travel as epoch-millisecond ints in Python.

    Parsing Canonical Form excludes logicalType, so fingerprints are unchanged.
    """
    if isinstance(schema, list):
        return [_strip_logical_types(s) for s in schema]
    if isinstance(schema, dict):
        out = {k: _strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
        if set(out) == {"type"} and isinstance(out["type"], str):
            return out["type"]
        return out
    return schema


@dataclass(frozen=True)
class StoredSchema:
    """One registered writer schema."""

    name: str  # full name, e.g. io.loopline.events.ServingEvent
    version: int
    raw: dict[str, Any] = field(repr=False)
    parsed: Any = field(repr=False, compare=False)
    fingerprint: bytes = b""

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @classmethod
    def from_json(cls, raw: dict[str, Any], version: int) -> StoredSchema:
        try:
            parsed = fastavro.parse_schema(_strip_logical_types(copy.deepcopy(raw)))
            canonical = to_parsing_canonical_form(raw)
        except Exception as exc:  # fastavro raises several unrelated types here
            raise SchemaError(f"not a valid Avro schema: {exc}") from exc
        name = raw["name"] if "." in raw["name"] else f"{raw.get('namespace', '')}.{raw['name']}"
        return cls(name.strip("."), version, raw, parsed, fingerprint_bytes(canonical))


class SchemaStore:
    """Registered schemas, with lookup by fingerprint for decoding."""

    def __init__(self) -> None:
        self._by_fp: dict[bytes, StoredSchema] = {}
        self._by_name: dict[str, list[StoredSchema]] = {}

    @classmethod
    def from_directory(cls, directory: Path = AVRO_DIR) -> SchemaStore:
        store = cls()
        files = []
        for path in sorted(directory.glob("*.avsc")):
            match = _FILE_NAME.match(path.name)
            if not match:
                raise SchemaError(f"{path.name}: schema files are named <name>.v<N>.avsc")
            files.append((int(match["version"]), path))
        for version, path in sorted(files):
            try:
                raw = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{path}: not JSON: {exc}") from exc
            store.register(raw, version=version)
        return store

    def register(self, raw: dict[str, Any], version: int | None = None) -> StoredSchema:
        """Add a writer schema after checking it is fully compatible with its predecessors."""
        candidate = StoredSchema.from_json(raw, version or 0)
        if candidate.fingerprint in self._by_fp:
            return self._by_fp[candidate.fingerprint]
        history = self._by_name.get(candidate.name, [])
        for old in history:
            problems = full_compatibility_problems(raw, old.raw)
            if problems:
                raise IncompatibleSchemaError(
                    f"{candidate.name}: new version is not compatible with v{old.version}: "
                    + "; ".join(problems)
                )
        if version is None:
            candidate = StoredSchema(
                candidate.name,
                max((s.version for s in history), default=0) + 1,
                candidate.raw,
                candidate.parsed,
                candidate.fingerprint,
            )
        self._by_fp[candidate.fingerprint] = candidate
        self._by_name[candidate.name] = sorted([*history, candidate], key=lambda s: s.version)
        return candidate

    def by_fingerprint(self, fingerprint: bytes) -> StoredSchema | None:
        return self._by_fp.get(fingerprint)

    def latest(self, name: str) -> StoredSchema:
        """Newest version of a schema, by full or short name."""
        versions = self._by_name.get(name) or next(
            (v for k, v in self._by_name.items() if k.rsplit(".", 1)[-1] == name), None
        )
        if not versions:
            raise SchemaError(f"no schema named {name!r}; known: {sorted(self._by_name)}")
        return versions[-1]

    def version(self, name: str, version: int) -> StoredSchema:
        latest = self.latest(name)
        for stored in self._by_name[latest.name]:
            if stored.version == version:
                return stored
        raise SchemaError(f"{name} has no version {version}")

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all(self) -> list[StoredSchema]:
        return [s for versions in self._by_name.values() for s in versions]
