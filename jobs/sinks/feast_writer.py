"""Batched writes of feature rows into the Feast online store (the Feast writer process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import pandas as pd

from feature_repo import names
from feature_repo.store import FeastConfig, feature_store
from jobs.errors import SinkError
from loopline.paths import PathsConfig


class OnlineRow(Protocol):
    """What a frame is built from (the writer's decoded FeatureUpdate)."""

    @property
    def entity_id(self) -> str: ...
    @property
    def event_ms(self) -> int: ...
    @property
    def values(self) -> dict[str, Any]: ...


class FeastWriter:
    """Writes the newest row per entity of a batch; the store itself keeps newest-wins."""

    def __init__(self, feast: FeastConfig, paths: PathsConfig) -> None:
        self.store = feature_store(feast, paths)

    @staticmethod
    def frame(view: str, rows: Sequence[OnlineRow]) -> pd.DataFrame:
        key = names.KEY_BY_VIEW[view]
        frame = pd.DataFrame([r.values for r in rows], columns=list(names.FEATURES_BY_VIEW[view]))
        frame.insert(0, key, [r.entity_id for r in rows])
        frame[names.TIMESTAMP_FIELD] = pd.to_datetime(
            [r.event_ms for r in rows], unit="ms", utc=True
        )
        return frame

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
