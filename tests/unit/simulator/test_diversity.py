from __future__ import annotations

import numpy as np
import pytest

from simulator.diversity import ExposureLog, coverage, gini


def brute_gini(x: list[float]) -> float:
    a = np.asarray(x, dtype=float)
    return float(np.abs(a[:, None] - a[None, :]).sum() / (2 * a.size**2 * a.mean()))


@pytest.mark.parametrize(("counts", "expected"), [
    ([1, 1, 1, 1], 0.0),
    ([0, 0, 0, 4], 0.75),  # one item gets everything: (n - 1) / n
    ([1, 2, 3], 2 / 9),
    ([0, 0, 0], 0.0),
])
def test_gini_on_hand_examples(counts: list[int], expected: float) -> None:
    assert gini(np.array(counts)) == pytest.approx(expected)


def test_gini_matches_the_pairwise_definition() -> None:
    x = np.random.default_rng(0).poisson(3.0, size=50).tolist()
    assert gini(np.array(x)) == pytest.approx(brute_gini(x))


def test_coverage_on_hand_examples() -> None:
    assert coverage(np.array([0, 1, 2, 0])) == 0.5
    assert coverage(np.array([3, 1])) == 1.0
    assert coverage(np.array([], dtype=int)) == 0.0


def test_exposure_log_counts_only_items_on_sale() -> None:
    log = ExposureLog(n_items=6)
    log.set_active(0, np.array([0, 1, 2, 3]))  # items 4, 5 not on sale on day 0
    log.add("v1", 0, np.array([0, 1]))
    log.add("v1", 0, np.array([1, 0]))
    log.add("v2", 0, np.array([2, 3]))
    report = log.report()
    v1 = report["v1"]["0"]
    assert (v1["requests"], v1["impressions"], v1["items_shown"], v1["catalogue"]) == (2, 4, 2, 4)
    assert v1["coverage"] == 0.5
    assert v1["gini"] == pytest.approx(gini(np.array([2, 2, 0, 0])))
    assert report["v2"]["0"]["coverage"] == 0.5
