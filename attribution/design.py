"""Which version is the control and what split was intended: from the user, else from the
registry's rollout (the experiment as designed), else from the arms' names. Never by a tie."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attribution.errors import InputDataError


@dataclass(frozen=True)
class Design:
    control: str
    control_source: str  # "argument" | "rollout <experiment>" | "arm named control" | ...
    expected_split: dict[str, float] | None  # by version or arm name; None: SRM skipped
    split_source: str


def _rollout(models: Path, versions: set[str]) -> tuple[str, dict[str, float], str] | None:
    from models.errors import RolloutError
    from models.registry import Registry
    from models.rollout import Rollout

    try:
        state = Rollout(Registry(models)).split_for(versions)
    except RolloutError:
        return None
    if state is None:
        return None
    split: dict[str, float] = {}
    for arm in state.arms:
        split[arm.version] = split.get(arm.version, 0.0) + arm.weight
    total = sum(split[v] for v in versions)
    return state.control.version, {v: split[v] / total for v in versions}, state.experiment


def resolve(
    users: pd.DataFrame,
    models: Path,
    requested_control: str | None,
    requested_split: dict[str, float] | None,
) -> Design:
    versions = set(users["version"].astype(str))
    if requested_control is not None and requested_control not in versions:
        raise InputDataError(
            f"control version {requested_control!r} has no exposed users; versions seen: "
            f"{sorted(versions)}"
        )
    registered = _rollout(models, versions)
    if requested_split is not None:
        split, split_source = requested_split, "argument"
    elif registered is not None:
        split, split_source = registered[1], f"registry rollout {registered[2]}"
    else:
        split, split_source = None, "none (no --expected-split, no matching rollout)"
    if requested_control is not None:
        return Design(requested_control, "argument", split, split_source)
    if registered is not None:
        return Design(registered[0], f"registry rollout {registered[2]}", split, split_source)
    named = users.loc[users["arm"] == "control", "version"]
    if len(named) and named.nunique() == 1:
        return Design(str(named.iloc[0]), "arm named control", split, split_source)
    counts = users["version"].value_counts()
    if len(counts) > 1 and counts.iloc[0] == counts.iloc[1]:
        tied = sorted(str(v) for v in counts.index[counts == counts.iloc[0]])
        raise InputDataError(
            f"cannot choose a control: versions {tied} have {int(counts.iloc[0]):,} users each "
            "and no rollout or arm names one; pass --control VERSION"
        )
    return Design(str(counts.index[0]), "largest version", split, split_source)
