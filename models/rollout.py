"""Which model version each user gets: a traffic split persisted in <models>/rollout.json.

A user's bucket is a stable hash of (experiment salt, user id) in [0, 1); arms own
consecutive ranges, control first and canary last. Growing a canary keeps its users (its range
only extends downwards) because the salt stays for the life of an experiment; a new canary
version starts a new experiment with a new salt, so it does not land on the same users again.
Serving logs the arm ("control" / "canary") in every ServingEvent, which is the exposure log.

Changes: full rollout of a version, a canary of a version at p %, rollback (drop the canary,
or return to the previous full version). Every change keeps the previous state in history.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from models.errors import RolloutError
from models.registry import Registry, write_json

ROLLOUT_FILE = "rollout.json"
_HISTORY_KEPT = 50


def bucket(salt: str, user_id: str) -> float:
    """Stable position of a user in [0, 1) for one experiment."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Arm:
    name: str
    version: str
    weight: float


@dataclass(frozen=True)
class RolloutState:
    """One traffic split: experiment id, its salt, arms in bucket order."""

    experiment: str
    salt: str
    arms: tuple[Arm, ...]
    updated_at: str

    def __post_init__(self) -> None:
        total = sum(a.weight for a in self.arms)
        if not self.arms or abs(total - 1.0) > 1e-9 or any(a.weight <= 0 for a in self.arms):
            raise RolloutError(
                f"rollout arms must have positive weights summing to 1, got {self.arms}")

    def assign(self, user_id: str) -> Arm:
        point = bucket(self.salt, user_id)
        edge = 0.0
        for arm in self.arms:
            edge += arm.weight
            if point < edge:
                return arm
        return self.arms[-1]  # float rounding at the very top

    def arm_label(self, arm: Arm) -> str:
        """The `arm` string logged with a slate: the arm's name ("control", "canary"), which
        attribution reads as is; the experiment it belongs to is in rollout.json's history."""
        return arm.name

    @property
    def control(self) -> Arm:
        return self.arms[0]

    @property
    def canary(self) -> Arm | None:
        return self.arms[1] if len(self.arms) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "salt": self.salt, "updated_at": self.updated_at,
                "arms": [{"name": a.name, "version": a.version, "weight": a.weight}
                         for a in self.arms]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutState:
        try:
            arms = tuple(Arm(str(a["name"]), str(a["version"]), float(a["weight"]))
                         for a in data["arms"])
            return cls(str(data["experiment"]), str(data["salt"]), arms, str(data["updated_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RolloutError(f"malformed rollout state: {exc!r}") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Rollout:
    """Reads and changes the persisted rollout of one models directory."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.path = registry.root / ROLLOUT_FILE

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"current": None, "history": [], "experiments": 0, "rolled_back": []}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise RolloutError(f"{self.path}: unreadable: {exc}") from exc
        return dict(data)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock; the yielded dict is written back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            write_json(self.path, data)

    def state(self) -> RolloutState | None:
        current = self._read().get("current")
        return RolloutState.from_dict(current) if current else None

    def states(self) -> list[RolloutState]:
        """Every recorded split, newest first (the current one, then the history)."""
        data = self._read()
        raw = [data.get("current"), *reversed(data.get("history", []))]
        return [RolloutState.from_dict(r) for r in raw if r]

    def split_for(self, versions: set[str]) -> RolloutState | None:
        """The newest recorded split whose arms serve every one of `versions` (an experiment's
        design, for attribution: its control arm and intended shares)."""
        for state in self.states():
            if len(state.arms) > 1 and versions <= {a.version for a in state.arms}:
                return state
        return None

    def mtime(self) -> float:
        try:
            return os.stat(self.path).st_mtime
        except FileNotFoundError:
            return 0.0

    def _new_experiment(self, data: dict[str, Any]) -> tuple[str, str]:
        data["experiments"] = int(data.get("experiments", 0)) + 1
        experiment = f"exp{data['experiments']}"
        return experiment, f"{experiment}:{secrets.token_hex(8)}"

    @staticmethod
    def _push(data: dict[str, Any], state: RolloutState) -> RolloutState:
        if data.get("current"):
            data["history"] = [*data.get("history", []), data["current"]][-_HISTORY_KEPT:]
        data["current"] = state.to_dict()
        return state

    def full(self, version: str) -> RolloutState:
        """Serve `version` to everyone."""
        self.registry.directory(version)
        with self._locked() as data:
            current = RolloutState.from_dict(data["current"]) if data.get("current") else None
            if current and len(current.arms) == 1 and current.control.version == version:
                raise RolloutError(f"{version} already serves 100% of traffic")
            experiment, salt = self._new_experiment(data)
            state = RolloutState(experiment, salt, (Arm("control", version, 1.0),), _now())
            data["rolled_back"] = [v for v in data.get("rolled_back", []) if v != version]
            return self._push(data, state)

    def canary(self, version: str, percent: float) -> RolloutState:
        """Send `percent` % of users to `version`, the rest to the current control version."""
        self.registry.directory(version)
        if not 0 < percent < 100:
            raise RolloutError(
                f"canary percent must be in (0, 100), got {percent:g}; use --full for 100")
        with self._locked() as data:
            if not data.get("current"):
                raise RolloutError("nothing is rolled out yet: start with a full rollout "
                                   f"(loopline models rollout {version} --full)")
            current = RolloutState.from_dict(data["current"])
            if current.control.version == version:
                raise RolloutError(f"{version} is the control version; canary another version")
            p = percent / 100.0
            if current.canary and current.canary.version == version:
                experiment, salt = current.experiment, current.salt  # same users stay in
            else:
                experiment, salt = self._new_experiment(data)
            arms = (Arm("control", current.control.version, 1.0 - p), Arm("canary", version, p))
            return self._push(data, RolloutState(experiment, salt, arms, _now()))

    def rollback(self) -> RolloutState:
        """Drop an active canary; else return to the previous full version."""
        with self._locked() as data:
            if not data.get("current"):
                raise RolloutError("nothing is rolled out: nothing to roll back")
            current = RolloutState.from_dict(data["current"])
            if current.canary:
                back, dropped = current.control.version, current.canary.version
            else:
                dropped = current.control.version
                earlier = [RolloutState.from_dict(h).control.version
                           for h in reversed(data.get("history", []))]
                back = next((v for v in earlier if v != dropped), "")
                if not back:
                    raise RolloutError(f"{dropped} is the first version ever rolled out: "
                                       "there is no previous version to go back to")
            experiment, salt = self._new_experiment(data)
            data["rolled_back"] = sorted({*data.get("rolled_back", []), dropped})
            return self._push(data, RolloutState(experiment, salt, (Arm("control", back, 1.0),),
                                                 _now()))

    def status(self) -> dict[str, str]:
        """version → rollout state text, for `loopline models list`."""
        data = self._read()
        out = {v: "rolled back" for v in data.get("rolled_back", [])}
        for h in data.get("history", []):
            for arm in RolloutState.from_dict(h).arms:
                out.setdefault(arm.version, "retired")
        if data.get("current"):
            state = RolloutState.from_dict(data["current"])
            for arm in state.arms:
                out[arm.version] = f"{arm.name} {arm.weight * 100:g}% ({state.experiment})"
        return out

    def production_version(self) -> str | None:
        """The control version now, else the newest registered version."""
        state = self.state()
        return state.control.version if state else self.registry.latest()
