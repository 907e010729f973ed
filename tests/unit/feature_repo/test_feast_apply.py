"""`feast apply` accepts the feature definitions on a fresh repo (the Feast CLI, SQLite)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import feature_repo

REPO = Path(feature_repo.__file__).parent


def test_feast_apply_on_a_fresh_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (repo / "feature_store.yaml").write_text(
        "project: loopline\nprovider: local\n"
        f"registry: {tmp_path}/registry.db\n"
        "online_store:\n"
        "  type: feature_repo.online_stores.NewestWinsSqliteOnlineStore\n"
        f"  path: {tmp_path}/online.db\n"
        "offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    env = {**os.environ, "LOOPLINE_PATHS_HOME": str(tmp_path / "home")}
    for view in ("user_activity", "item_performance"):
        (tmp_path / "home" / "features" / view).mkdir(parents=True)
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run([str(feast), "apply"], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run([str(feast), "feature-views", "list"], cwd=repo, env=env,
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert "user_activity" in listed and "item_performance" in listed
    services = subprocess.run([str(feast), "feature-services", "list"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=120, check=True).stdout
    assert "ranker_v1" in services
