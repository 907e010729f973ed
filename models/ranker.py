"""A trained ranker: the LightGBM booster plus the spec that says how to feed it.

Position bias: a binary ranker is trained with the slate position as an extra feature, so the
trees absorb "shown higher → clicked more"; when scoring, that column is pinned to position 0,
which ranks every candidate as if it were shown on top (position-free relevance). A lambdarank
ranker instead gets positions through LightGBM's unbiased-lambdarank position input and
never sees them as a feature. Either way serving needs no position.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import features
from models.errors import RegistryError

MODEL_FILE = "model.txt"
SPEC_FILE = "features.json"
POSITION = "position"
OBJECTIVES = ("binary", "lambdarank")


@dataclass(frozen=True)
class ModelSpec:
    """features.json: inputs, their order, and the training-only position feature."""

    objective: str
    feature_service: str
    features: tuple[str, ...]
    columns: tuple[str, ...]
    position_serving_value: int | None  # None: position is not an input (lambdarank)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"], out["columns"] = list(self.features), list(self.columns)
        return out

    @classmethod
    def for_objective(cls, objective: str) -> ModelSpec:
        with_position = objective == "binary"
        return cls(
            objective=objective,
            feature_service=features.FEATURE_SERVICE,
            features=features.FEATURE_REFS,
            columns=(*features.COLUMNS, POSITION) if with_position else features.COLUMNS,
            position_serving_value=0 if with_position else None,
        )


class Ranker:
    """Scores feature rows (in features.COLUMNS order) the way serving does."""

    def __init__(self, booster: lgb.Booster, spec: ModelSpec) -> None:
        self.booster = booster
        self.spec = spec

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds for binary) for rows of features.COLUMNS values."""
        if self.spec.position_serving_value is not None:
            pinned = np.full((len(matrix), 1), float(self.spec.position_serving_value))
            matrix = np.hstack([matrix, pinned])
        return np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=1))

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score(frame[list(features.COLUMNS)].to_numpy(dtype=float))

    def save(self, directory: Path) -> None:
        self.booster.save_model(str(directory / MODEL_FILE))
        (directory / SPEC_FILE).write_text(json.dumps(self.spec.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        try:
            raw = json.loads((directory / SPEC_FILE).read_text())
            spec = ModelSpec(
                objective=raw["objective"], feature_service=raw["feature_service"],
                features=tuple(raw["features"]), columns=tuple(raw["columns"]),
                position_serving_value=raw["position_serving_value"],
            )
            booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        except (OSError, KeyError, ValueError, lgb.basic.LightGBMError) as exc:
            raise RegistryError(
                f"cannot load the model in {directory}: {type(exc).__name__}: {exc}") from exc
        if tuple(booster.feature_name()) != spec.columns:
            raise RegistryError(f"{directory}: model inputs {booster.feature_name()} differ from "
                                f"{SPEC_FILE} columns {list(spec.columns)}")
        if spec.features != features.FEATURE_REFS:
            raise RegistryError(f"{directory}: trained on features {list(spec.features)}, but the "
                                "feature repo now serves a different list; retrain")
        return cls(booster, spec)
