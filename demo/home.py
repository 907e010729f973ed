"""The demo folder: everything one run writes, wiped when the next run starts.

    <out>/report/report.html, report.json   the attribution report
    <out>/ground_truth.json                 the simulator's true per-version uplift
    <out>/summary.json                      what the closing summary prints, as data
    <out>/users.parquet                     the shop's user table (segments) for attribution
    <out>/home/                             the run's own Loopline home: slices, features,
                                            Feast, models + lineage, checkpoints
    <out>/.loopline-demo.json               marker: which run wrote this, its Kafka topics

A folder that is not empty and has no marker is refused, so --out never wipes someone's data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo.errors import DemoConfigError

MARKER = ".loopline-demo.json"


@dataclass(frozen=True)
class DemoFolder:
    out: Path

    @property
    def home(self) -> Path:
        return self.out / "home"

    @property
    def report(self) -> Path:
        return self.out / "report"

    @property
    def ground_truth(self) -> Path:
        return self.out / "ground_truth.json"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"

    @property
    def users(self) -> Path:
        return self.out / "users.parquet"

    @property
    def marker(self) -> Path:
        return self.out / MARKER

    def write_marker(self, data: dict[str, Any]) -> None:
        self.marker.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def previous_run(out: Path) -> dict[str, Any] | None:
    """The marker of the run that last used `out` (None: fresh folder)."""
    marker = out / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def prepare(out: Path) -> DemoFolder:
    """Empty `out` (a previous demo run's folder, or new) and return its layout."""
    out = out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise DemoConfigError(f"--out {out}: expected a folder, found a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DemoConfigError(
            f"--out {out}: expected an empty folder or one a previous demo wrote "
            f"(with {MARKER}); it holds other files, so the demo will not wipe it")
    if out.is_dir():
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    folder = DemoFolder(out)
    folder.home.mkdir()
    return folder
