"""Serving test scaffolding shared by the overload and Prometheus tests."""

from __future__ import annotations

import json
from pathlib import Path

from models.registry import LINEAGE_FILE, POPULARITY_FILE, Registry


def broken_version(registry: Registry) -> str:
    """A registered version whose model file is unreadable: its arm is served by popularity."""
    def write(directory: Path, version: str) -> None:
        (directory / "model.txt").write_text("not a model")
        (directory / "features.json").write_text("{}")
        (directory / POPULARITY_FILE).write_text("{}")
        (directory / LINEAGE_FILE).write_text(json.dumps({"model_version": version}))

    return registry.register(write)
