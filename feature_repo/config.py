"""[feast] configuration, apart from Feast itself: the Flink job's Python worker unpickles it
with every run context, and importing Feast there took ~10 s of CPU at its first chunk."""

from __future__ import annotations

from dataclasses import dataclass

from feature_repo.errors import FeatureStoreError
from loopline import settings

STORE_TYPES = {
    "sqlite": "feature_repo.online_stores.NewestWinsSqliteOnlineStore",
    "redis": "feature_repo.online_stores.NewestWinsRedisOnlineStore",
}


@dataclass(frozen=True)
class FeastConfig:
    """Online store selection ([feast] / LOOPLINE_FEAST_*)."""

    online_store: str = "sqlite"
    redis_connection_string: str = "127.0.0.1:6379"
    project: str = "loopline"

    def __post_init__(self) -> None:
        if self.online_store not in STORE_TYPES:
            raise FeatureStoreError(
                f"feast.online_store must be one of {sorted(STORE_TYPES)}, "
                f"got {self.online_store!r}"
            )


def load_feast(**overrides: object) -> FeastConfig:
    return settings.load(FeastConfig, "feast", **overrides)
