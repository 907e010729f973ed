"""The model registry: one immutable directory per version under the models dir.

    <models>/v3/model.txt        LightGBM booster
               features.json     feature service, feature refs, input columns (ranker.ModelSpec)
               metrics.json      held-out metrics and the drift reference
               popularity.json   item → popularity score from the slice (static fallback)
               lineage.json      version → slice → job runs → Kafka offsets (lineage.document)

Versions are v1, v2, ... A version is written into a staging directory and renamed into
place, so a directory that has lineage.json is complete; a number is claimed with an
exclusive mkdir, so two concurrent trainings never share one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopline.paths import PathsConfig
from models.errors import RegistryError
from models.ranker import Ranker

LINEAGE_FILE = "lineage.json"
# A baseline or external policy (popularity, a bandit): registered by name, trained on no slice.
EXTERNAL_FILE = "external.json"
_EXTERNAL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
METRICS_FILE = "metrics.json"
POPULARITY_FILE = "popularity.json"
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")


def version_number(version: str) -> int:
    match = _VERSION_RE.match(version)
    if not match:
        raise RegistryError(f"expected a model version like v3, got {version!r}")
    return int(match.group(1))


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class Registry:
    """Read and add model versions under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_paths(cls, paths: PathsConfig) -> Registry:
        return cls(paths.models)

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [d.name for d in self.root.iterdir()
                 if _VERSION_RE.match(d.name) and (d / LINEAGE_FILE).is_file()]
        return sorted(found, key=version_number)

    def latest(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def directory(self, version: str) -> Path:
        version_number(version)
        path = self.root / version
        if not (path / LINEAGE_FILE).is_file():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"model version {version} is not registered in {self.root} "
                                f"(known: {known})")
        return path

    def _json(self, version: str, name: str) -> dict[str, Any]:
        path = self.directory(version) / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{path}: expected a JSON object")
        return data

    def lineage(self, version: str) -> dict[str, Any]:
        return self._json(version, LINEAGE_FILE)

    def metrics(self, version: str) -> dict[str, Any]:
        return self._json(version, METRICS_FILE)

    def popularity(self, version: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in self._json(version, POPULARITY_FILE).items()}

    def ranker(self, version: str) -> Ranker:
        return Ranker.load(self.directory(version))

    def register_external(
        self, name: str, policy: str, description: str = "", now: str | None = None
    ) -> dict[str, Any]:
        """Record a policy that serves traffic without a training slice (a baseline, a bandit,
        another team's ranker) so attribution knows it claims no lineage."""
        if not _EXTERNAL_RE.match(name) or _VERSION_RE.match(name):
            raise RegistryError(
                f"expected an external policy name like 'popularity' or 'ts-bandit' (letters, "
                f"digits, '._-', not vN, which trained versions use), got {name!r}"
            )
        if not policy.strip():
            raise RegistryError("--policy must say what the external policy is, got ''")
        folder = self.root / name
        if (folder / LINEAGE_FILE).is_file():
            raise RegistryError(f"{name} is a trained version with lineage, not external")
        folder.mkdir(parents=True, exist_ok=True)
        doc = {
            "model_version": name,
            "kind": "external",
            "policy": policy,
            "description": description,
            "registered_at": now or datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(folder / EXTERNAL_FILE, doc)
        return doc

    def external(self, name: str) -> dict[str, Any] | None:
        """The external registration of `name`, None when it has none."""
        path = self.root / name / EXTERNAL_FILE
        if not _EXTERNAL_RE.match(name) or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: unreadable: {exc}") from exc
        if not isinstance(data, dict) or data.get("kind") != "external":
            raise RegistryError(f"{path}: expected an object with kind 'external'")
        return data

    def externals(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if (d / EXTERNAL_FILE).is_file())

    def register(self, write: Callable[[Path, str], None]) -> str:
        """Claim the next version, let `write(directory, version)` fill it, publish it."""
        self.root.mkdir(parents=True, exist_ok=True)
        number = max((version_number(d.name) for d in self.root.iterdir()
                      if _VERSION_RE.match(d.name)), default=0) + 1
        while True:
            try:
                (self.root / f"v{number}").mkdir()  # exclusive claim of the number
                break
            except FileExistsError:
                number += 1
        version = f"v{number}"
        staging = self.root / f".staging-{version}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            write(staging, version)
            if not (staging / LINEAGE_FILE).is_file():
                raise RegistryError(f"{version}: nothing wrote {LINEAGE_FILE}")
            os.replace(staging, self.root / version)  # replaces the empty claimed directory
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            (self.root / version).rmdir()
            raise
        return version
