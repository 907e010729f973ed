"""Load frozen config dataclasses from a TOML file and LOOPLINE_* environment variables.

Precedence (lowest to highest): dataclass defaults, the TOML file named by $LOOPLINE_CONFIG
(or ./loopline.toml when present), environment variables LOOPLINE_<SECTION>_<FIELD>.
Each boundary (Kafka clients, the job, Feast, serving, ...) owns one frozen dataclass; this
module only knows how to fill one from those sources, so no endpoint is hard-coded in a job.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from loopline.errors import ConfigError

T = TypeVar("T")

CONFIG_ENV = "LOOPLINE_CONFIG"
DEFAULT_CONFIG_FILE = "loopline.toml"


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
    from_file = _file_section(section)
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
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
