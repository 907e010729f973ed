"""The models commands through the real `loopline` entry point (cli.main)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import synthetic
from cli.main import main
from models.registry import Registry
from tests.unit.models.conftest import SLICE, START_MS, Shop, loopline_home


@pytest.fixture
def empty_home(tmp_path: Path) -> Iterator[None]:
    with loopline_home(tmp_path):
        yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_list_show_rollout_evaluate(shop: Shop, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "--slice", SLICE)
    assert code == 0, err
    version = out.split()[1]
    assert out.startswith(f"registered {version}") and "holdout AUC" in out

    code, out, _ = run(capsys, "lineage", "show", version, "--json")
    assert code == 0 and json.loads(out) == Registry.from_paths(shop.paths).lineage(version)
    code, out, _ = run(capsys, "lineage", "show", version)
    assert "loopline.serving[0]  0 .. " in out and "synthetic-run-1" in out

    assert run(capsys, "models", "rollout", version, "--full")[0] == 0
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "control 100%" in out and version in out
    code, out, _ = run(capsys, "models", "list", "--json")
    assert json.loads(out)[-1]["rollout"].startswith("control 100%")

    code, out, err = run(capsys, "evaluate", version, "--slice", SLICE, "--positions", "3",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {e["estimator"] for e in report["estimates"]["revenue"]} == {"ips", "snips", "dr"}

    code, out, _ = run(capsys, "retrain-check", "--json", "--min-new-rows", "1")
    assert code == 0 and json.loads(out)["production_version"] == version
    assert not json.loads(out)["retrain"]  # nothing after the slice it was trained on

    # an hour of new feedback arrives: the check says why, and --train trains on exactly it
    later = synthetic.simulate(shop.world, START_MS + 3 * 3_600_000, 1, 60, 20, 5, seed=8,
                               first_offset=50_000)
    synthetic.write_slices(shop.paths, later, run_id="synthetic-run-2")
    code, out, err = run(capsys, "retrain-check", "--min-new-rows", "300", "--train")
    assert code == 0, err
    assert f"because slice size: {len(later)} new rows >= 300" in out
    assert "proposed slice: 2026-01-01T13:00:00Z..2026-01-01T14:00:00Z" in out
    newest = Registry.from_paths(shop.paths).latest()
    lineage = Registry.from_paths(shop.paths).lineage(str(newest))
    assert lineage["parent_version"] == version and lineage["slice"]["row_count"] == len(later)
    assert lineage["slice"]["job_run_ids"] == ["synthetic-run-2"]


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--slice", "yesterday"], "expected a slice like 2026-01-01T10..2026-01-01T12"),
    (["train", "--slice", SLICE, "--parent", "latest"], "expected a model version like v3"),
    (["lineage", "show", "v404"], "model version v404 is not registered"),
    (["models", "rollback"], "nothing is rolled out"),
    (["models", "rollout", "v1"], "one of the arguments --canary --full is required"),
    (["models", "rollout", "v1", "--canary", "lots"], "expected a percentage like 10"),
    (["evaluate", "v1", "--slice", SLICE, "--positions", "1"], "--positions must be at least 2"),
])
def test_bad_input_is_one_line_without_traceback(empty_home: None,
                                                 capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], message: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_consistency_says_what_is_wrong_in_one_line(
        empty_home: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run(capsys, "consistency", "--slice", "2026-01-01T12..2026-01-01T10")
    assert code == 2 and "END must be after START" in err
    monkeypatch.setenv("LOOPLINE_SERVING_FEATURE_LOG_SAMPLE_RATE", "0")
    code, _, err = run(capsys, "consistency", "--slice", SLICE)
    assert code == 2 and "feature logging is off" in err and len(err.splitlines()) == 1
    monkeypatch.setenv("LOOPLINE_CONSISTENCY_MAX_MISMATCH_RATE", "2")
    code, _, err = run(capsys, "consistency", "--slice", SLICE)
    assert code == 2 and "max_mismatch_rate must be in [0, 1]" in err
