"""Load frozen config dataclasses from a TOML file and LOOPLINE_* environment variables.

Precedence (lowest to highest): dataclass defaults, the TOML file named by $LOOPLINE_CONFIG
(or ./loopline.toml when present), environment variables LOOPLINE_<SECTION>_<FIELD>.
A misspelt key is refused in both places: an unknown key in a [section] table and an unknown
LOOPLINE_<SECTION>_* variable of the section being loaded are errors; a variable or table
naming no known section at all is warned about once (it may belong to a newer config).
Each boundary (Kafka clients, the job, Feast, serving, ...) owns one frozen dataclass; this
module only knows how to fill one from those sources, so no endpoint is hard-coded in a job.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

from loopline.errors import ConfigError

T = TypeVar("T")

CONFIG_ENV = "LOOPLINE_CONFIG"
DEFAULT_CONFIG_FILE = "loopline.toml"
ENV_PREFIX = "LOOPLINE_"
# LOOPLINE_* variables that are not <SECTION>_<FIELD> settings: the config file, and the log
# path infra.process hands to the services it spawns (their Python children inherit it).
NON_SETTING_ENV = frozenset({CONFIG_ENV, "LOOPLINE_SERVICE_LOG"})
# Every [section] a Loopline config loads (the second argument of each `load` call). A new
# config adds its section here; until then its variables only draw a warning, never an error.
SECTIONS = frozenset({
    "attribution", "consistency", "demo", "feast", "job", "kafka", "metrics", "paths",
    "privacy", "retrain", "serving", "services", "simulator", "training", "writer",
})  # fmt: skip

_loaded_sections: set[str] = set()
_warned: set[str] = set()


class ConfigWarning(UserWarning):
    """A LOOPLINE_* variable or a TOML table that no Loopline config reads."""


def _known_sections() -> set[str]:
    return set(SECTIONS) | _loaded_sections


def _owning_section(env_name: str) -> str | None:
    """The longest known section whose LOOPLINE_<SECTION>_ prefix `env_name` has."""
    owners = [s for s in _known_sections() if env_name.startswith(f"{ENV_PREFIX}{s.upper()}_")]
    return max(owners, key=len) if owners else None


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, ConfigWarning, stacklevel=4)


def _check_env(section: str, known_fields: set[str]) -> None:
    """Refuse LOOPLINE_<SECTION>_X when X is no field; warn on variables of no section."""
    prefix = f"{ENV_PREFIX}{section.upper()}_"
    expected = {f"{prefix}{name.upper()}" for name in known_fields}
    for name in sorted(os.environ):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        owner = _owning_section(name)
        if owner is None:
            _warn_once(
                name,
                f"{name} is set but names no Loopline config section (expected "
                f"{ENV_PREFIX}<SECTION>_<FIELD> with SECTION one of "
                f"{sorted(s.upper() for s in _known_sections())}); it is ignored",
            )
        elif owner == section and name not in expected:
            close = difflib.get_close_matches(name, sorted(expected), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{name} is set but [{section}] has no field "
                f"{name[len(prefix):].lower()!r}; expected one of {sorted(expected)}{hint}"
            )


def config_file() -> Path | None:
    """The TOML file in force, if any."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={named} does not name a readable file")
        return path
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.is_file() else None


def _file_section(section: str) -> dict[str, Any]:
    path = config_file()
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for table in sorted(set(data) - _known_sections()):
        _warn_once(
            f"[{table}]",
            f"{path}: [{table}] names no Loopline config section (known: "
            f"{sorted(_known_sections())}); it is ignored",
        )
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{section}] must be a table, got {type(value).__name__}")
    return value


def _coerce(raw: Any, hint: Any, where: str) -> Any:
    """Turn a TOML/env value into the field's declared type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
            return None
        return _coerce(raw, args[0], where)
    if origin is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else str
        return tuple(_coerce(i.strip() if isinstance(i, str) else i, inner, where) for i in items)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected a boolean, got {raw!r}")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is Path:
            return Path(str(raw)).expanduser()
        if hint is str:
            return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: expected {getattr(hint, '__name__', hint)}, got {raw!r}"
        ) from exc
    return raw


def load(cls: type[T], section: str, **overrides: Any) -> T:
    """Build the frozen config `cls` for [section] / LOOPLINE_<SECTION>_*; overrides win."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    _loaded_sections.add(section)
    from_file = _file_section(section)
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    _check_env(section, known)
    unknown = set(from_file) - known
    if unknown:
        raise ConfigError(
            f"[{section}] has unknown keys {sorted(unknown)}; expected some of {sorted(known)}"
        )
    for f in dataclasses.fields(cls):
        env_name = f"LOOPLINE_{section.upper()}_{f.name.upper()}"
        if f.name in overrides and overrides[f.name] is not None:
            values[f.name] = overrides[f.name]
        elif env_name in os.environ:
            values[f.name] = _coerce(os.environ[env_name], hints[f.name], env_name)
        elif f.name in from_file:
            values[f.name] = _coerce(from_file[f.name], hints[f.name], f"[{section}].{f.name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}]: {exc}") from exc
