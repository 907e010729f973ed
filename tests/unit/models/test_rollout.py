"""Traffic split by stable user hash: stability, proportions, canary growth, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.errors import RegistryError, RolloutError
from models.registry import LINEAGE_FILE, Registry
from models.rollout import Arm, Rollout, RolloutState, bucket

USERS = [f"user-{i}" for i in range(20_000)]


@pytest.fixture
def rollout(tmp_path: Path) -> Rollout:
    for version in ("v1", "v2", "v3"):
        (tmp_path / version).mkdir()
        (tmp_path / version / LINEAGE_FILE).write_text("{}")
    return Rollout(Registry(tmp_path))


def share(state: RolloutState, arm: str) -> float:
    return float(np.mean([state.assign(u).name == arm for u in USERS]))


def test_bucket_is_stable_and_salted() -> None:
    assert bucket("exp1:abc", "user-7") == bucket("exp1:abc", "user-7")
    # pinned: the hash must not change across releases, or users would switch arms
    assert bucket("exp1:abc", "user-7") == pytest.approx(0.857989, abs=1e-6)
    assert bucket("exp1:abc", "user-7") != bucket("exp2:def", "user-7")
    values = np.array([bucket("s", u) for u in USERS])
    assert values.min() >= 0 and values.max() < 1
    assert np.histogram(values, bins=10, range=(0, 1))[0].min() > 1_850  # ~2000 each


def test_canary_gets_its_share_and_keeps_its_users_as_it_grows(rollout: Rollout) -> None:
    rollout.full("v1")
    ten = rollout.canary("v2", 10)
    assert abs(share(ten, "canary") - 0.10) < 3 * np.sqrt(0.1 * 0.9 / len(USERS))
    in_canary = {u for u in USERS if ten.assign(u).name == "canary"}
    fifty = rollout.canary("v2", 50)
    assert fifty.experiment == ten.experiment and fifty.salt == ten.salt
    assert abs(share(fifty, "canary") - 0.5) < 3 * np.sqrt(0.25 / len(USERS))
    assert all(fifty.assign(u).name == "canary" for u in in_canary)
    assert fifty.arm_label(fifty.assign(next(iter(in_canary)))) == "canary"


def test_a_new_canary_version_starts_a_new_experiment(rollout: Rollout) -> None:
    rollout.full("v1")
    first = rollout.canary("v2", 20)
    second = rollout.canary("v3", 20)
    assert second.experiment != first.experiment and second.salt != first.salt
    a = {u for u in USERS if first.assign(u).name == "canary"}
    b = {u for u in USERS if second.assign(u).name == "canary"}
    assert len(a & b) / len(a) < 0.3  # reshuffled: ~20% overlap by chance, not 100%


def test_rollback_drops_the_canary_then_returns_to_the_previous_version(rollout: Rollout) -> None:
    rollout.full("v1")
    rollout.canary("v2", 10)
    back = rollout.rollback()
    assert [(a.name, a.version, a.weight) for a in back.arms] == [("control", "v1", 1.0)]
    rollout.full("v2")
    assert rollout.rollback().control.version == "v1"
    status = rollout.status()
    assert status["v1"].startswith("control 100%") and status["v2"] == "rolled back"


def test_state_survives_a_reload_and_is_plain_json(rollout: Rollout) -> None:
    rollout.full("v1")
    state = rollout.canary("v2", 25)
    again = Rollout(rollout.registry).state()
    assert again == state
    data = json.loads(rollout.path.read_text())
    assert data["current"]["arms"][1] == {"name": "canary", "version": "v2", "weight": 0.25}
    assert len(data["history"]) == 1


def test_refusals(rollout: Rollout) -> None:
    with pytest.raises(RolloutError, match="nothing is rolled out"):
        rollout.canary("v2", 10)
    with pytest.raises(RolloutError, match="nothing is rolled out"):
        rollout.rollback()
    with pytest.raises(RegistryError, match="v9 is not registered"):
        rollout.full("v9")
    rollout.full("v1")
    with pytest.raises(RolloutError, match=r"\(0, 100\)"):
        rollout.canary("v2", 100)
    with pytest.raises(RolloutError, match="control version"):
        rollout.canary("v1", 10)
    with pytest.raises(RolloutError, match="first version"):
        rollout.rollback()
    with pytest.raises(RolloutError, match="sum"):
        RolloutState("e", "s", (Arm("control", "v1", 0.5),), "now")
