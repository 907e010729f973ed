"""report.html renders in headless Chromium (Debian's `chromium`), with no server, and the
validity gate is what the reader sees first. The screenshot is kept in the test's tmp dir."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from attribution import pipeline, report
from attribution.config import AttributionConfig
from attribution.data import prepare_table
from bench.attribution_files import write_lineage
from bench.attribution_world import SimulationSpec, VersionSpec, default_versions, simulate

pytestmark = pytest.mark.integration

WIDTH, HEIGHT = 1280, 2000
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    v1, v2, v3 = default_versions()
    versions = (v1, v2, VersionSpec(**{**v3.__dict__, "has_lineage": False}))
    sim = simulate(SimulationSpec(n_users=6_000, versions=versions), seed=5)
    root = tmp_path_factory.mktemp("attribution-render")
    write_lineage(sim, root / "models")
    cfg = AttributionConfig(refuter_simulations=5, refuter_max_units=3_000)
    document = pipeline.run(prepare_table(sim.users, cfg), root / "models", cfg)
    _, html = report.write(document, root / "report")
    return html


def test_report_renders_in_headless_chromium(html_report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; `make apt` installs it)")
    png = html_report.parent / "report.png"
    proc = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={png}",
            f"--window-size={WIDTH},{HEIGHT}",
            html_report.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.is_file() and png.stat().st_size > 30_000, f"screenshot too small: {png}"
    print(f"screenshot: {png}")

    import matplotlib.image as mpimg

    pixels = mpimg.imread(png)[..., :3]
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    not_white = (pixels < 0.95).any(axis=2)
    assert not_white.mean() > 0.05, "page looks blank"
    assert len(np.unique((pixels[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    # The failed gate (red border #b3261e) is drawn near the top, above the headline.
    top = pixels[:500]
    red = (top[..., 0] > 0.6) & (top[..., 1] < 0.25) & (top[..., 2] < 0.25)
    assert red.sum() > 500, "validity gate failure box not visible at the top"
