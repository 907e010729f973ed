"""`loopline evaluate --target-policy` on a real slice of single-item, non-softmax logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench import synthetic
from cli.main import main
from jobs.transforms import slices as contract
from schemas import topics
from tests.unit.models.conftest import loopline_home
from tests.unit.models.test_ope_any_logger import single_item_log

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
SLICE = "2026-01-01T00..2026-01-01T02"


def _rows(logs: pd.DataFrame, arm: str, first: int) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(logs.itertuples(index=False)):
        n = first + i
        out.append({
            "request_id": f"{arm}-{r.request_id}", "item_id": r.item_id, "user_id": f"u{n}",
            "session_id": f"s{n}", "model_version": r.model_version, "arm": arm,
            "policy": r.model_version, "fallback": False, "position": 0, "score": 0.0,
            "propensity": float(r.propensity), "served_at": START_MS + n * 1_000,
            "clicked": bool(r.clicked), "added_to_cart": False, "purchased": r.revenue > 0,
            "revenue": float(r.revenue), "dwell_ms": 0, "interaction_count": int(r.clicked),
            "label_window_ms": 60_000, "source_topic": topics.SERVING, "source_partition": 0,
            "source_offset": n, contract.REFS_FIELD: [(topics.SERVING, 0, n)],
        })
    return out


@pytest.fixture
def home(tmp_path: Path) -> Any:
    uniform, target = single_item_log("uniform", 5)
    thompson, _ = single_item_log("thompson", 6)
    uniform, thompson = uniform.iloc[:2_000], thompson.iloc[:2_000]
    with loopline_home(tmp_path) as paths:
        synthetic.write_slices(paths, [*_rows(uniform, "a", 0), *_rows(thompson, "b", 2_000)])
        t = target[target["request_id"].isin(uniform["request_id"])]
        t.assign(request_id="a-" + t["request_id"]).to_parquet(tmp_path / "target.parquet")
        yield tmp_path, uniform, thompson


def test_evaluate_a_stored_policy_on_single_item_logs_selected_by_arm(
    home: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, thompson = home
    argv = ["evaluate", "--slice", SLICE, "--json"]
    assert main([*argv, "--target-policy", str(path / "target.parquet"),
                 "--logged-arm", "a"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 2_000 and report["skipped"] == {"not selected": 2_000}
    names = [e["estimator"] for e in report["estimates"]["clicked"]]
    assert names == ["ips", "snips", "dr", "dm"]
    # The logging policy on its own logs: IPS is exactly the observed mean, per selection.
    assert main([*argv, "--target-policy", "logging", "--logged-version", "thompson"]) == 0
    report = json.loads(capsys.readouterr().out)
    ips = report["estimates"]["clicked"][0]
    assert ips["value"] == pytest.approx(thompson["clicked"].mean(), rel=1e-12)


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give either a candidate VERSION or --target-policy"),
    (["v1", "--target-policy", "logging"], "not both or neither"),
    (["--target-policy", "/nonexistent.parquet"], "expected a parquet/csv table"),
    (["--target-policy", "logging", "--logged-arm", "zzz"], "no logged impressions match"),
])
def test_bad_evaluate_arguments_are_one_line_errors(
    home: Any, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["evaluate", "--slice", SLICE, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
