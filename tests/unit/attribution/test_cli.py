"""`loopline attribute` end to end on synthetic Parquet slices, lineage and a user table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.attribution_files import WrittenFiles, write_contracts
from bench.attribution_world import SimulationSpec, VersionSpec, default_versions, simulate
from cli.main import main

WINDOW = 48  # hours; short windows keep the number of hourly partitions small


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> WrittenFiles:
    v1, v2, v3 = default_versions()
    # v3 registered without lineage: the report must fail that check, not crash.
    versions = (v1, v2, VersionSpec(**{**v3.__dict__, "has_lineage": False}))
    spec = SimulationSpec(
        n_users=3_000,
        versions=versions,
        window_hours=WINDOW,
        pre_period_hours=WINDOW,
        negative_control_hours=WINDOW / 2,
    )
    return write_contracts(
        simulate(spec, seed=7), tmp_path_factory.mktemp("home"), exposure_hours=24
    )


@pytest.fixture(autouse=True)
def short_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_ATTRIBUTION_WINDOW_HOURS", str(WINDOW))
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_PRE_PERIOD_HOURS", str(WINDOW))
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_REFUTER_SIMULATIONS", "4")
    monkeypatch.setenv("LOOPLINE_ATTRIBUTION_REFUTER_MAX_UNITS", "1500")


def test_attribute_writes_html_and_json(
    files: WrittenFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "attribute",
            "--home",
            str(files.home),
            "--since",
            files.since.isoformat(),
            "--until",
            files.until.isoformat(),
            "--out",
            str(out),
            "--users",
            str(files.users_path),
            "--expected-split",
            "control=1,treatment_a=1,treatment_b=1",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "NOT TRUSTWORTHY" in stdout and "failed check: v3: lineage" in stdout
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    assert report["data"]["users"] == 3_000 and report["control_version"] == "v1"
    assert report["period"]["since"] == files.since.isoformat()
    assert report["data"]["segment_source"] == "user table"
    assert report["data"]["impressions"]["manifests"] == report["data"]["impressions"]["partitions"]
    # The rollout gave v1 ~40 % of users, not the configured third: SRM must say so.
    srm = next(c for c in report["checks"] if c["name"] == "sample_ratio_mismatch")
    assert srm["status"] == "fail"
    v3 = next(v for v in report["versions"] if v["model_version"] == "v3")
    assert v3["feedback_slice"] is None and v3["trustworthy"] is False
    assert html.index("Validity gate") < html.index("Headline")
    assert "missing lineage" in html


def test_attribute_without_user_table_uses_activity_tiers(
    files: WrittenFiles, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code = main(
        [
            "attribute",
            "--home",
            str(files.home),
            "--since",
            files.since.isoformat(),
            "--until",
            files.until.isoformat(),
            "--out",
            str(out),
            "--no-refuters",
            "--control",
            "v1",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["segment_source"] == "pre-exposure activity tiers"
    assert all(not v["refuters"] for v in report["versions"])


def test_attribute_any_metric_and_a_power_plan(
    files: WrittenFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    period = ["--since", files.since.isoformat(), "--until", files.until.isoformat()]
    out = tmp_path / "report"
    argv = ["attribute", "--home", str(files.home), *period, "--no-refuters", "--control", "v1"]
    assert main([*argv, "--out", str(out), "--metric", "ctr"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "ctr" and "clicks per impression" in report["outcome"]
    v2 = next(v for v in report["versions"] if v["model_version"] == "v2")
    assert v2["estimates"][0]["estimator"] == "ratio_of_adjusted_means"
    assert set(v2["metrics"]) == {"revenue", "clicks", "purchases", "conversion", "ctr"}
    capsys.readouterr()
    assert main([*argv, "--plan", "100000", "--uplift", "2"]) == 0
    printed = capsys.readouterr().out
    assert "power plan for revenue per user vs v1" in printed
    assert "with 100,000 users the smallest uplift detected at 80% power" in printed
    assert "+2 needs" in printed and "days at the observed rate" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--uplift", "3"], "--uplift needs --plan USERS"),
        (["--plan", "0"], "expected a positive number of users"),
        (["--metric", "dwell"], "invalid choice: 'dwell'"),
        (["--since", "yesterday-ish"], "expected an ISO-8601 time"),
        (["--since", "2026-11-03", "--until", "2026-11-02"], "must be before --until"),
        (["--users", "/nonexistent/users.parquet"], "no such file"),
        (["--control", "v9"], "control version 'v9' has no exposed users"),
        (["--since", "2030-01-01", "--until", "2030-01-02"], "no labelled-impression partitions"),
        (["--expected-split", "v1"], "expected_split must look like"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    files: WrittenFiles,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code = main(
        [
            "attribute",
            "--home",
            str(files.home),
            "--out",
            str(tmp_path / "r"),
            "--no-refuters",
            *argv,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_out_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attribute"]) == 2
    assert "--out" in capsys.readouterr().err


@pytest.fixture(scope="module")
def new_users_clicks_only(tmp_path_factory: pytest.TempPathFactory) -> WrittenFiles:
    """Shaped like a public bandit log: every user new, clicks but no purchases or revenue,
    two arms neither of which is named "control"."""
    v1, v2, _ = default_versions()
    versions = (
        VersionSpec(**{**v1.__dict__, "arm": "uniform"}),
        VersionSpec(**{**v2.__dict__, "arm": "thompson"}),
    )
    spec = SimulationSpec(
        n_users=1_500,
        versions=versions,
        assignment="random",
        window_hours=WINDOW,
        pre_period_hours=WINDOW,
        negative_control_hours=WINDOW / 2,
    )
    sim = simulate(spec, seed=9)
    users = sim.users
    for col in ("pre_revenue", "pre_events", "pre_purchases", "nc_revenue", "revenue"):
        users[col] = 0
    for col in ("attributed_purchases", "organic_purchases", "purchases", "converted"):
        users[col] = 0
    users[["attributed_revenue", "organic_revenue"]] = 0.0
    return write_contracts(sim, tmp_path_factory.mktemp("bandit"), exposure_hours=24)


def test_a_log_unlike_the_simulator_still_gets_a_report(
    new_users_clicks_only: WrittenFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = new_users_clicks_only
    argv = [
        "attribute",
        "--home",
        str(files.home),
        "--since",
        files.since.isoformat(),
        "--until",
        files.until.isoformat(),
        "--control",
        "v1",
    ]
    assert main([*argv, "--out", str(tmp_path / "revenue")]) == 0
    report = json.loads((tmp_path / "revenue" / "report.json").read_text())
    assert not report["trustworthy"]
    failed = report["headline"]["failed_checks"]
    assert "v2: estimation" in failed and "NOT ESTIMATED" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "clicks"), "--metric", "clicks"]) == 0
    clicks = json.loads((tmp_path / "clicks" / "report.json").read_text())
    v2 = clicks["versions"][1]
    assert v2["estimates"][0]["estimator"] == "backdoor.linear_regression"
    assert v2["estimates"][0]["se"] > 0
    assert {s["estimator"] for s in v2["skipped_estimators"]} == {"backdoor.doubly_robust"}
