"""Build a Feast FeatureStore from Loopline config and keep its registry applied.

The same definitions serve both stores: [feast] online_store = "sqlite" (embedded default) or
"redis" (scaled), each wrapped so the newest event time wins (feature_repo/online_stores.py).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feast import FeatureStore, RepoConfig

from feature_repo.config import STORE_TYPES, FeastConfig, load_feast
from feature_repo.errors import FeatureStoreError
from loopline.paths import PathsConfig, load_paths

REPO_DIR = Path(__file__).parent

def repo_config(feast: FeastConfig, paths: PathsConfig) -> RepoConfig:
    online: dict[str, Any] = {"type": STORE_TYPES[feast.online_store]}
    if feast.online_store == "sqlite":
        online["path"] = str(paths.feast / "online.db")
    else:
        online["connection_string"] = feast.redis_connection_string
    return RepoConfig(
        project=feast.project,
        provider="local",
        registry=str(paths.feast / "registry.db"),
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(REPO_DIR),
    )


def feature_store(
    feast: FeastConfig | None = None, paths: PathsConfig | None = None, apply: bool = False
) -> FeatureStore:
    """A FeatureStore over Loopline's repo; with apply=True, register the definitions first."""
    feast = feast or load_feast()
    paths = paths or load_paths()
    paths.feast.mkdir(parents=True, exist_ok=True)
    try:
        store = FeatureStore(config=repo_config(feast, paths))
        if apply:
            apply_definitions(store, paths)
    except FeatureStoreError:
        raise
    except Exception as exc:  # Feast raises many unrelated types on bad config/connections
        raise FeatureStoreError(
            f"could not open the Feast store ({feast.online_store}): {type(exc).__name__}: {exc}"
        ) from exc
    return store


@contextmanager
def registry_lock(store: FeatureStore) -> Iterator[None]:
    """Exclusive use of the store's file registry, across threads and processes.

    Feast rewrites registry.db in place on apply: another apply at the same moment (two
    writers starting on a fresh home) interleaves with it, and a read during it fails with
    "Error parsing message with type 'feast.core.Registry'". Not reentrant.
    """
    lock_path = Path(str(store.config.registry.path)).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apply_definitions(store: FeatureStore, paths: PathsConfig) -> None:
    """Register entities, views and services (idempotent) and create online tables.

    The batch sources are pointed at this store's home: the definitions module reads the
    paths config once per process, and a process may open stores of several homes (tests,
    a replay beside a live run)."""
    from feature_repo import definitions, names  # imported late: it reads the paths config

    for source, view in ((definitions.user_activity_source, names.USER_ACTIVITY),
                         (definitions.item_performance_source, names.ITEM_PERFORMANCE)):
        source.file_options.uri = str(paths.features_offline / view)
        Path(source.path).mkdir(parents=True, exist_ok=True)

    with registry_lock(store):
        store.apply(
            [
                definitions.user,
                definitions.item,
                definitions.user_activity_source,
                definitions.item_performance_source,
                definitions.user_activity,
                definitions.item_performance,
                definitions.ranker_v1,
            ]
        )
