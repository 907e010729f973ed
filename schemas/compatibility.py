"""Avro schema-resolution rules: can a reader schema read data written with a writer schema?

Used to refuse an incompatible schema version before any producer writes with it. Implements
the resolution rules of the Avro specification on plain JSON schemas (dicts/lists/strings).
Kept rather than the `avro` package's ReaderWriterCompatibilityChecker because that one
compares a short record alias with the writer's full name (the spec resolves it within the
namespace), and because fastavro, our decoder, resolves a reader field's alias before its name,
so a reader alias naming another writer field is refused here (the `avro` package accepts it).
tests/unit/schemas/test_compatibility.py checks the two agree everywhere else, and that
accepted pairs decode with fastavro.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

Schema = Any


def _full_name(schema: dict[str, Any], namespace: str | None) -> str:
    name = schema["name"]
    if "." in name:
        return str(name)
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else str(name)


def _collect(schema: Schema, namespace: str | None, names: dict[str, dict[str, Any]]) -> None:
    """Index every named type so that references by name can be followed."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _full_name(schema, namespace)
            names[full] = schema
            names.setdefault(schema["name"], schema)
            inner_ns = full.rsplit(".", 1)[0] if "." in full else None
            for field in schema.get("fields", []):
                _collect(field["type"], inner_ns, names)
        elif kind == "array":
            _collect(schema["items"], namespace, names)
        elif kind == "map":
            _collect(schema["values"], namespace, names)
        elif isinstance(kind, (dict, list)):
            _collect(kind, namespace, names)


class _Checker:
    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_names: dict[str, dict[str, Any]] = {}
        self.writer_names: dict[str, dict[str, Any]] = {}
        _collect(reader, None, self.reader_names)
        _collect(writer, None, self.writer_names)
        self.seen: set[tuple[str, str]] = set()

    def _deref(self, schema: Schema, names: dict[str, dict[str, Any]]) -> Schema:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return names.get(schema, schema)
        if isinstance(schema, dict) and not isinstance(schema.get("type"), str):
            return self._deref(schema["type"], names)
        if isinstance(schema, dict) and schema["type"] in _PRIMITIVES:
            return schema["type"]
        return schema

    @staticmethod
    def _kind(schema: Schema) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        return str(schema["type"])

    def check(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        rk, wk = self._kind(reader), self._kind(writer)
        if wk == "union":
            problems = []
            for branch in writer:
                problems += self.check(reader, branch, path)
            return problems
        if rk == "union":
            for branch in reader:
                if not self.check(branch, writer, path):
                    return []
            return [f"{path}: writer type {wk} matches no branch of the reader's union"]
        if rk in _PRIMITIVES or wk in _PRIMITIVES:
            if rk == wk or rk in _PROMOTIONS.get(wk, set()):
                return []
            return [f"{path}: writer type {wk} cannot be read as {rk}"]
        if rk != wk:
            return [f"{path}: writer type {wk} cannot be read as {rk}"]
        if rk == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if rk == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        if not self._same_name(reader, writer):
            return [f"{path}: writer {rk} {writer['name']} is not reader {rk} {reader['name']}"]
        if rk == "fixed":
            ok = reader["size"] == writer["size"]
            return [] if ok else [f"{path}: fixed size {writer['size']} != {reader['size']}"]
        if rk == "enum":
            missing = set(writer["symbols"]) - set(reader["symbols"])
            if missing and "default" not in reader:
                return [f"{path}: reader enum lacks symbols {sorted(missing)} and has no default"]
            return []
        return self._record(reader, writer, path)

    @staticmethod
    def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
        short = writer["name"].rsplit(".", 1)[-1]
        aliases = {a.rsplit(".", 1)[-1] for a in reader.get("aliases", [])}
        return reader["name"].rsplit(".", 1)[-1] == short or short in aliases

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        key = (reader["name"], writer["name"])
        if key in self.seen:  # recursive types: assume compatible on the second visit
            return []
        self.seen.add(key)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems = []
        for field in reader["fields"]:
            candidates = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[c] for c in candidates if c in writer_fields), None)
            where = f"{path}.{field['name']}"
            aliased = [a for a in field.get("aliases", []) if a in writer_fields]
            if field["name"] in writer_fields and aliased:
                # The spec leaves this open and fastavro (our decoder) resolves the alias over
                # the name, so it reads the wrong field or fails: refuse it.
                problems.append(
                    f"{where}: ambiguous, the writer has both the field and its alias {aliased}"
                )
                continue
            if match is None:
                if "default" not in field:
                    problems.append(f"{where}: reader field has no default and the writer lacks it")
                continue
            problems += self.check(field["type"], match["type"], where)
        return problems


def read_problems(reader: Schema, writer: Schema) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    name = reader.get("name", "schema") if isinstance(reader, dict) else "schema"
    return _Checker(reader, writer).check(reader, writer, str(name))


def full_compatibility_problems(new: Schema, old: Schema) -> list[str]:
    """Problems in either direction: new readers on old data (backward), old on new (forward)."""
    backward = [f"backward: {p}" for p in read_problems(new, old)]
    forward = [f"forward: {p}" for p in read_problems(old, new)]
    return backward + forward
