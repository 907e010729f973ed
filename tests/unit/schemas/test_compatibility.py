"""schemas/compatibility.py against two references: the Apache `avro` package's
ReaderWriterCompatibilityChecker (the Java SchemaCompatibility port) and fastavro actually
decoding writer data with the reader schema (what our codec does at run time).

We keep our own checker because the `avro` port compares a reader's alias as written with the
writer's full name, so a short alias inside a namespace (the spec resolves it relative to that
namespace) is refused there; and because fastavro resolves a reader field's alias before its
name, so a reader alias that names another writer field must be refused for our decoder
(hypothesis found this one: fastavro fails or reads the wrong field; `avro` accepts it).
KNOWN_DIFFERENCES pins exactly those cases. Everything else must agree, on the hand-picked
corpus and on generated schema pairs.
"""

from __future__ import annotations

import io
import json
from typing import Any

import avro.schema
import fastavro
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.compatibility import full_compatibility_problems, read_problems

NS = "io.loopline.test"


def avro_says_compatible(reader: Any, writer: Any) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return result.compatibility is SchemaCompatibilityType.compatible


def fastavro_reads(reader: Any, writer: Any, count: int = 20) -> bool:
    """Random data written with `writer` decodes with `reader` (fastavro's resolution)."""
    parsed_writer = fastavro.parse_schema(writer)
    parsed_reader = fastavro.parse_schema(reader)
    for record in generate_many(parsed_writer, count):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_writer, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, parsed_writer, parsed_reader)
        except UnicodeDecodeError:
            # Resolved, but the spec's bytes -> string promotion assumes UTF-8 content and
            # the generator draws arbitrary bytes: a property of the data, not the schemas.
            continue
        except Exception:  # fastavro raises several types for a failed resolution
            return False
    return True


def record(name: str, fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": NS, "fields": fields, **extra}


def one(field_type: Any, **extra: Any) -> dict[str, Any]:
    """A record with a single field `f` of `field_type`."""
    return record("R", [{"name": "f", "type": field_type, **extra}])


def enum(symbols: list[str], name: str = "E", **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": name, "symbols": symbols, **extra}


def fixed(size: int, name: str = "F") -> dict[str, Any]:
    return {"type": "fixed", "name": name, "size": size}


# (reader, writer) pairs named by what they exercise.
CORPUS: dict[str, tuple[Any, Any]] = {
    # promotions, both ways
    "int read as long": (one("long"), one("int")),
    "int read as double": (one("double"), one("int")),
    "long read as float": (one("float"), one("long")),
    "float read as double": (one("double"), one("float")),
    "long read as int": (one("int"), one("long")),
    "double read as float": (one("float"), one("double")),
    "string read as bytes": (one("bytes"), one("string")),
    "bytes read as string": (one("string"), one("bytes")),
    "boolean read as int": (one("int"), one("boolean")),
    # unions
    "union writer subset": (one(["null", "int", "string"]), one(["null", "int"])),
    "union writer superset": (one(["null", "int"]), one(["null", "int", "string"])),
    "plain into union by promotion": (one(["null", "double"]), one("int")),
    "plain into union without match": (one(["null", "string"]), one("int")),
    "union into plain, one branch fits": (one("long"), one(["null", "int"])),
    "union into plain, all branches fit": (one("long"), one(["int", "long"])),
    "union reordered": (one(["string", "null"]), one(["null", "string"])),
    # enums
    "enum same": (one(enum(["A", "B"])), one(enum(["A", "B"]))),
    "enum reader gains symbol": (one(enum(["A", "B", "C"])), one(enum(["A", "B"]))),
    "enum writer gains symbol": (one(enum(["A"])), one(enum(["A", "B"]))),
    "enum writer gains symbol, reader default": (
        one(enum(["A", "U"], default="U")), one(enum(["A", "B"]))),
    "enum renamed": (one(enum(["A"], name="E2")), one(enum(["A"]))),
    # fixed
    "fixed same": (one(fixed(4)), one(fixed(4))),
    "fixed resized": (one(fixed(8)), one(fixed(4))),
    "fixed renamed": (one(fixed(4, "G")), one(fixed(4))),
    # records: defaults, aliases, names
    "field added with default": (
        record("R", [{"name": "a", "type": "int"}, {"name": "b", "type": "int", "default": 0}]),
        record("R", [{"name": "a", "type": "int"}])),
    "field added without default": (
        record("R", [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]),
        record("R", [{"name": "a", "type": "int"}])),
    "field removed": (
        record("R", [{"name": "a", "type": "int"}]),
        record("R", [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}])),
    "field renamed with alias": (
        record("R", [{"name": "b", "type": "int", "aliases": ["a"]}]),
        record("R", [{"name": "a", "type": "int"}])),
    "field renamed without alias": (
        record("R", [{"name": "b", "type": "int"}]), record("R", [{"name": "a", "type": "int"}])),
    "record renamed with full alias": (
        record("New", [{"name": "a", "type": "int"}], aliases=[f"{NS}.R"]),
        record("R", [{"name": "a", "type": "int"}])),
    "record renamed without alias": (
        record("New", [{"name": "a", "type": "int"}]), record("R", [{"name": "a", "type": "int"}])),
    "record renamed with short alias": (
        record("New", [{"name": "a", "type": "int"}], aliases=["R"]),
        record("R", [{"name": "a", "type": "int"}])),
    "field alias names another writer field": (
        record("R", [{"name": "a", "type": "int", "aliases": ["b"]}]),
        record("R", [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}])),
    # named types: references, nesting, recursion
    "named reference reused": (
        record("R", [{"name": "p", "type": fixed(4)}, {"name": "q", "type": f"{NS}.F"}]),
        record("R", [{"name": "p", "type": fixed(4)}, {"name": "q", "type": f"{NS}.F"}])),
    "nested record field added": (
        one(record("N", [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}])),
        one(record("N", [{"name": "x", "type": "int"}]))),
    "nested record renamed": (
        one(record("M", [{"name": "x", "type": "int"}])),
        one(record("N", [{"name": "x", "type": "int"}]))),
    "recursive list": (
        record("L", [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "L"]}]),
        record("L", [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "L"]}])),
    "recursive list, value widened": (
        record("L", [{"name": "v", "type": "long"}, {"name": "next", "type": ["null", "L"]}]),
        record("L", [{"name": "v", "type": "int"}, {"name": "next", "type": ["null", "L"]}])),
    "array items promoted": (one({"type": "array", "items": "long"}),
                             one({"type": "array", "items": "int"})),
    "map values narrowed": (one({"type": "map", "values": "int"}),
                            one({"type": "map", "values": "long"})),
    "array read as map": (one({"type": "map", "values": "int"}),
                          one({"type": "array", "items": "int"})),
}

# Ours accepts, `avro` refuses: it compares a short record alias with the writer's full name;
# the spec (and fastavro) resolve it within the reader's namespace, so the rename is readable.
ACCEPTED_BY_US_ONLY = {"record renamed with short alias"}
# Ours refuses, `avro` accepts: fastavro cannot decode it (see the module docstring).
REFUSED_BY_US_ONLY = {"field alias names another writer field"}


def ambiguous_alias(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    """A reader field whose name and one of whose aliases are both writer fields."""
    names = {f["name"] for f in writer["fields"]}
    return any(f["name"] in names and set(f.get("aliases", [])) & names
               for f in reader["fields"])


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_verdict_matches_the_avro_package(case: str) -> None:
    reader, writer = CORPUS[case]
    ours = not read_problems(reader, writer)
    if case in ACCEPTED_BY_US_ONLY:
        assert ours and not avro_says_compatible(reader, writer)
    elif case in REFUSED_BY_US_ONLY:
        assert not ours and avro_says_compatible(reader, writer)
        assert not fastavro_reads(reader, writer)
    else:
        assert ours == avro_says_compatible(reader, writer), read_problems(reader, writer)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_corpus_compatible_pairs_decode_with_fastavro(case: str) -> None:
    """A pair we accept must decode at run time; a refused one we do not test (fastavro may
    read some data of an incompatible writer, e.g. a union whose bad branch was not drawn)."""
    reader, writer = CORPUS[case]
    if not read_problems(reader, writer):
        assert fastavro_reads(reader, writer)


def test_problems_name_the_field_and_the_direction() -> None:
    reader, writer = CORPUS["field added without default"]
    assert full_compatibility_problems(reader, writer) == [
        "backward: R.b: reader field has no default and the writer lacks it"
    ]
    reader, writer = CORPUS["enum writer gains symbol"]
    [forward_ok, *_] = full_compatibility_problems(writer, reader) or [""]
    assert forward_ok.startswith("forward: R.f: reader enum lacks symbols ['B']")


# -- generated pairs ---------------------------------------------------------------------

_PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_DEFAULTS = {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0,
             "double": 0.0, "bytes": "", "string": ""}  # fmt: skip


def _field_type(field: str) -> st.SearchStrategy[Any]:
    """Types for field `field`; named types are named after the field (unique per schema),
    with an occasional rename so name mismatches are generated too."""
    prim = st.sampled_from(_PRIMITIVES)
    name = st.sampled_from([f"T_{field}", f"T_{field}", f"U_{field}"])
    enums = st.builds(
        lambda n, syms, dflt: enum(syms, n, **({"default": syms[0]} if dflt else {})),
        name, st.lists(st.sampled_from("ABC"), min_size=1, max_size=3, unique=True),
        st.booleans(),
    )
    fixeds = st.builds(fixed, st.sampled_from([2, 4]), name)
    unions = st.lists(prim, min_size=1, max_size=3, unique=True)
    containers = st.one_of(
        st.builds(lambda t: {"type": "array", "items": t}, prim),
        st.builds(lambda t: {"type": "map", "values": t}, prim),
    )
    return st.one_of(prim, unions, enums, fixeds, containers)


@st.composite
def _field(draw: st.DrawFn, name: str) -> dict[str, Any]:
    field_type = draw(_field_type(name))
    spec: dict[str, Any] = {"name": name, "type": field_type}
    # Defaults only where they are simple to make valid (a union's default is its first type).
    first = field_type[0] if isinstance(field_type, list) else field_type
    if isinstance(first, str) and draw(st.booleans()):
        spec["default"] = _DEFAULTS[first]
    if draw(st.integers(0, 4)) == 0:
        spec["aliases"] = [draw(st.sampled_from(["a", "b", "c"]))]
    return spec


@st.composite
def _schema(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    fields = [draw(_field(n)) for n in names]
    taken = set(names)
    for f in fields:  # a field name or alias names one field only (else it is ambiguous)
        f["aliases"] = [a for a in f.get("aliases", []) if a not in taken]
        taken.update(f["aliases"])
        if not f["aliases"]:
            del f["aliases"]
    return record("R", fields)


# Derandomized: the same 300 pairs every run, so CI never fails on a new draw; a 4,000-pair
# random exploration (2026-11-29) agreed too, after the ambiguous-alias refusal it found.
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_schema(), _schema())
def test_generated_pairs_agree_with_the_avro_package_and_decode(
    reader: dict[str, Any], writer: dict[str, Any]
) -> None:
    ours = not read_problems(reader, writer)
    if ambiguous_alias(reader, writer):
        assert not ours
    else:
        assert ours == avro_says_compatible(reader, writer), read_problems(reader, writer)
    if ours:
        assert fastavro_reads(reader, writer, count=5)
