"""Where Loopline keeps local state: one home folder, everything else derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loopline import settings


@dataclass(frozen=True)
class PathsConfig:
    """Local state layout. `home` defaults to ./.loopline (LOOPLINE_PATHS_HOME overrides)."""

    home: Path = Path(".loopline")
    # Resolved by `make jars` next to the code, so commands work from any directory.
    jars: Path = Path(__file__).resolve().parents[1] / ".jars"

    @property
    def slices(self) -> Path:
        """Offline feedback-slice log (Parquet partitioned by event hour, with manifests)."""
        return self.home / "slices"

    @property
    def features_offline(self) -> Path:
        """Offline copy of every feature row the job wrote online (Feast batch sources)."""
        return self.home / "features"

    @property
    def feast(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.home / "feast"

    @property
    def consistency(self) -> Path:
        """Online/offline consistency reports, one folder per checked slice."""
        return self.home / "consistency"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def lineage(self) -> Path:
        """Local mirror of the lineage topic (JSON lines), for offline tools."""
        return self.home / "lineage"

    @property
    def services(self) -> Path:
        """Data dirs, logs and pid files of the local Kafka / Redis / Flink services."""
        return self.home / "services"

    def resolved(self) -> PathsConfig:
        return PathsConfig(home=self.home.resolve(), jars=self.jars.resolve())


def load_paths(**overrides: object) -> PathsConfig:
    return settings.load(PathsConfig, "paths", **overrides).resolved()
