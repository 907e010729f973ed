"""Baselines and external policies in the registry, and the rollout as an experiment design."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from models.errors import RegistryError
from models.registry import Registry
from models.rollout import Rollout
from tests.unit.models.conftest import loopline_home


def test_register_external_records_a_policy_without_lineage(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    doc = registry.register_external("ts-bandit", "thompson sampling", now="2026-11-29T00:00:00Z")
    assert registry.external("ts-bandit") == doc and doc["kind"] == "external"
    assert registry.externals() == ["ts-bandit"] and registry.versions() == []
    assert registry.external("popularity") is None
    with pytest.raises(RegistryError, match="not vN"):
        registry.register_external("v7", "x")
    with pytest.raises(RegistryError, match="--policy must say"):
        registry.register_external("popularity", " ")


def test_register_external_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with loopline_home(tmp_path):
        code = main(
            ["models", "register-external", "popularity", "--policy", "top items", "--json"]
        )
        assert code == 0
        assert json.loads(capsys.readouterr().out)["policy"] == "top items"
        assert main(["models", "register-external", "bad name!", "--policy", "x"]) == 2
        err = capsys.readouterr().err
        assert "expected an external policy name" in err and len(err.strip().splitlines()) == 1


def _version(registry: Registry, name: str) -> None:
    (registry.root / name).mkdir(parents=True)
    (registry.root / name / "lineage.json").write_text("{}")


def test_split_for_finds_the_newest_split_serving_the_versions(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    for v in ("v1", "v2", "v3"):
        _version(registry, v)
    rollout = Rollout(registry)
    assert rollout.split_for({"v1", "v2"}) is None
    rollout.full("v1")
    rollout.canary("v2", 30)
    rollout.canary("v3", 10)  # a later experiment, other versions
    state = rollout.split_for({"v1", "v2"})
    assert state is not None and [a.version for a in state.arms] == ["v1", "v2"]
    assert [a.weight for a in state.arms] == pytest.approx([0.7, 0.3])
    assert rollout.split_for({"v1", "v3"}).arms[1].weight == pytest.approx(0.1)  # type: ignore[union-attr]
    assert rollout.split_for({"v2", "v3"}) is None
