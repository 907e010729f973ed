"""Which code is running: recorded in lineage (job runs, model versions)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from loopline import __version__

REPO = Path(__file__).resolve().parents[1]


def code_version(paths: Sequence[str] = ()) -> str:
    """The git commit (+ '-dirty' when `paths` have local edits), else the package version
    when not running from a checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *paths],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        return f"loopline-{__version__}"
