"""Privacy: pseudonymous user identifiers and the retention of raw feedback slices
([privacy] / LOOPLINE_PRIVACY_*).

Raw user ids stay where the product needs them (slices, Feast entity keys). Everything meant
to be read more widely — lineage records, attribution reports — names a user only by a keyed
hash: HMAC-SHA256(key, user_id). The same key gives the same pseudonym, so records stay
joinable inside one deployment; without the key a pseudonym can be neither reversed nor
recomputed from a guessed id (a plain hash could be, by hashing every candidate id).

The key comes from config (`pseudonym_key`, best from LOOPLINE_PRIVACY_PSEUDONYM_KEY); without
one, a random key is created once in <home>/secrets/pseudonym.key (mode 600), so a local setup
is pseudonymous too without any configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline import settings
from loopline.errors import ConfigError
from loopline.paths import PathsConfig

# Fields that hold a user (or the user's session) identifier wherever they appear.
IDENTIFIER_FIELDS = frozenset({"user_id", "user", "session_id", "user_ids"})
PREFIX = "pu_"  # marks a pseudonym, so it is never mistaken for (or re-hashed as) a raw id
_DIGEST_CHARS = 32  # 128 bits of the HMAC: collisions are not a concern at any user count
# `user_id=u1`, `'user_id': 'u1'`, `"session_id": "s-9"` inside free text (error messages).
_IN_TEXT = re.compile(
    r"""(?P<lead>['"]?(?:user_id|session_id)['"]?\s*[:=]\s*['"]?)(?P<id>[^'",;)}\]\s]+)"""
)


@dataclass(frozen=True)
class PrivacyConfig:
    """Pseudonymisation key and raw-slice retention."""

    # Secret. None: a random per-home key (see the module docstring).
    pseudonym_key: str | None = None
    # Raw slice partitions whose newest event is older than this many days are deleted by
    # `loopline job purge-slices` (jobs.sinks.slice_log.purge_expired). None keeps them all.
    slice_retention_days: float | None = None

    def __post_init__(self) -> None:
        if self.pseudonym_key is not None and len(self.pseudonym_key) < 16:
            raise ConfigError("privacy.pseudonym_key must be at least 16 characters when set")
        if self.slice_retention_days is not None and not self.slice_retention_days > 0:
            raise ConfigError(
                f"privacy.slice_retention_days must be > 0 when set, "
                f"got {self.slice_retention_days}"
            )

    def __repr__(self) -> str:  # never print the key
        key = "None" if self.pseudonym_key is None else "'***'"
        return (f"PrivacyConfig(pseudonym_key={key}, "
                f"slice_retention_days={self.slice_retention_days!r})")


def load_privacy(**overrides: object) -> PrivacyConfig:
    return settings.load(PrivacyConfig, "privacy", **overrides)


def key_file(paths: PathsConfig) -> Path:
    return paths.home / "secrets" / "pseudonym.key"


def resolve_key(cfg: PrivacyConfig, paths: PathsConfig) -> bytes:
    """The configured key, else this home's random key (created on first use, mode 600)."""
    if cfg.pseudonym_key is not None:
        return cfg.pseudonym_key.encode()
    path = key_file(paths)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:  # O_EXCL: two processes creating it at once end up with one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"{path}: expected a pseudonymisation key, found {len(key)} characters")
    return key.encode()


class Pseudonymiser:
    """user id -> 'pu_' + 32 hex chars of HMAC-SHA256(key, id); deterministic per key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ConfigError("a pseudonymisation key needs at least 16 bytes")
        self._key = key

    def __call__(self, identifier: str) -> str:
        if identifier.startswith(PREFIX):
            return identifier  # already a pseudonym
        digest = hmac.new(self._key, identifier.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()
        return PREFIX + digest[:_DIGEST_CHARS]

    def __repr__(self) -> str:
        return "Pseudonymiser(key=***)"

    def scrub(self, value: Any) -> Any:
        """A copy of a JSON-like value with every user identifier pseudonymised: the values
        of IDENTIFIER_FIELDS (strings or lists of strings), and `user_id=...`-style mentions
        inside free text such as error messages."""
        return _scrub(value, self, None)


def pseudonymiser(cfg: PrivacyConfig | None = None,
                  paths: PathsConfig | None = None) -> Pseudonymiser:
    """The deployment's pseudonymiser, from [privacy] and [paths] unless given."""
    from loopline.paths import load_paths

    return Pseudonymiser(resolve_key(cfg or load_privacy(), paths or load_paths()))


def _scrub(value: Any, hide: Callable[[str], str], field: str | None) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, hide, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, hide, field) for v in value]
    if isinstance(value, str):
        if field in IDENTIFIER_FIELDS:
            return hide(value) if value else value
        return _IN_TEXT.sub(lambda m: m.group("lead") + hide(m.group("id")), value)
    return value
