"""Shared test setup: every test session runs against a Loopline home and config of its own.

A developer's shell (LOOPLINE_* variables), ./loopline.toml and ./.loopline never leak into
tests, and tests never write into them: the session gets an empty config file, a temporary
home, and the repository's jars folder by absolute path (so tests do not depend on the cwd).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_loopline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point LOOPLINE_PATHS_HOME at a session temp dir; yield that home."""
    root = tmp_path_factory.mktemp("loopline")
    empty_config = root / "loopline.toml"
    empty_config.write_text("# tests: defaults + LOOPLINE_* set by fixtures only\n")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("LOOPLINE_")]:
            mp.delenv(name)
        mp.setenv("LOOPLINE_CONFIG", str(empty_config))
        mp.setenv("LOOPLINE_PATHS_HOME", str(home))
        mp.setenv("LOOPLINE_PATHS_JARS", str(REPO_ROOT / ".jars"))
        yield home


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests first: fast feedback, and session services start only when needed."""
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
