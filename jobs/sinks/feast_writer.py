"""Batched writes of feature rows into the Feast online store (and the offline feature log)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from jobs.errors import SinkError
from jobs.transforms.records import FeatureRow
from loopline.paths import PathsConfig


class OnlineRow(Protocol):
    """What a frame is built from: FeatureRow (the job) and the writer's Update both fit."""

    @property
    def entity_id(self) -> str: ...
    @property
    def event_ms(self) -> int: ...
    @property
    def values(self) -> dict[str, Any]: ...


class FeastWriter:
    """Writes the newest row per entity of a batch; the store itself keeps newest-wins."""

    def __init__(
        self, feast: FeastConfig, paths: PathsConfig, offline_log: bool, file_prefix: str
    ) -> None:
        self.store = feature_store(feast, paths)
        self.paths = paths
        self.offline_log = offline_log
        self.file_prefix = file_prefix
        self._seq = itertools.count()

    @staticmethod
    def frame(view: str, rows: Sequence[OnlineRow]) -> pd.DataFrame:
        key = names.KEY_BY_VIEW[view]
        frame = pd.DataFrame([r.values for r in rows], columns=list(names.FEATURES_BY_VIEW[view]))
        frame.insert(0, key, [r.entity_id for r in rows])
        frame[names.TIMESTAMP_FIELD] = pd.to_datetime(
            [r.event_ms for r in rows], unit="ms", utc=True
        )
        return frame

    def write(self, rows: list[FeatureRow],
              history: list[FeatureRow] | None = None) -> dict[str, dict[str, Any]]:
        """Write the newest rows online and every row of `history` (default: rows) offline.

        Online only the newest value per entity matters; offline every intermediate value is
        kept, because point-in-time training joins need the value as of each impression.
        Returns per-view counts and event-time ranges of the online write.
        """
        stats: dict[str, dict[str, Any]] = {}
        for view, view_rows in _by_view(rows).items():
            frame = self.frame(view, view_rows)
            self.write_online(view, frame)
            stats[view] = {
                "rows": len(frame),
                "event_time_min": min(r.event_ms for r in view_rows),
                "event_time_max": max(r.event_ms for r in view_rows),
            }
        if self.offline_log:
            for view, view_rows in _by_view(rows if history is None else history).items():
                self._log_offline(view, self.frame(view, view_rows))
        return stats

    def write_online(self, view: str, frame: pd.DataFrame) -> None:
        """One view's frame into the online store only (the Feast writer process: there the
        job keeps the offline log itself, in event-time order)."""
        try:
            self.store.write_to_online_store(view, frame)
        except Exception as exc:  # Feast/Redis/SQLite raise many types; name the sink
            raise SinkError(
                f"Feast online store: writing {len(frame)} rows of {view} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _log_offline(self, view: str, frame: pd.DataFrame) -> None:
        directory = Path(self.paths.features_offline) / view
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.file_prefix}-{next(self._seq):06d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            frame.to_parquet(tmp, index=False)
            tmp.replace(path)
        except OSError as exc:
            raise SinkError(f"offline feature log: could not write {path}: {exc}") from exc


def _by_view(rows: list[FeatureRow]) -> dict[str, list[FeatureRow]]:
    grouped: dict[str, list[FeatureRow]] = {}
    for row in rows:
        grouped.setdefault(row.view, []).append(row)
    return grouped
