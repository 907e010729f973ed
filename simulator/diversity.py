"""Exposure diversity: how much of the catalogue a policy shows, and how evenly.

A pure-exploitation policy trained on its own feedback keeps showing what it showed before;
catalogue coverage falls and the Gini coefficient of item exposure rises. Both are reported
per version and day, over the items on sale that day.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np


def coverage(exposures: np.ndarray) -> float:
    """Share of the (on-sale) catalogue shown at least once; `exposures` has one count per item."""
    counts = np.asarray(exposures)
    return float((counts > 0).mean()) if counts.size else 0.0


def gini(exposures: np.ndarray) -> float:
    """Gini coefficient of exposure counts: 0 = every item equally, (n-1)/n = one item only.

    G = sum_i sum_j |x_i - x_j| / (2 n^2 mean), computed in O(n log n) from sorted counts.
    """
    x = np.sort(np.asarray(exposures, dtype=float))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(np.sum((2 * ranks - n - 1) * x) / (n * x.sum()))


class ExposureLog:
    """Counts of slate impressions per (version, day, item)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self._counts: dict[tuple[str, int], np.ndarray] = {}
        self._active: dict[int, np.ndarray] = {}
        self._requests: dict[tuple[str, int], int] = defaultdict(int)

    def set_active(self, day: int, active: np.ndarray) -> None:
        self._active[day] = active

    def add(self, version: str, day: int, items: np.ndarray) -> None:
        counts = self._counts.get((version, day))
        if counts is None:
            counts = self._counts[(version, day)] = np.zeros(self.n_items, dtype=np.int64)
        np.add.at(counts, items, 1)
        self._requests[(version, day)] += 1

    def versions(self) -> list[str]:
        return sorted({v for v, _ in self._counts})

    def report(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{version: {day: {requests, impressions, items_shown, catalogue, coverage, gini}}}."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for (version, day), counts in sorted(self._counts.items()):
            active = self._active.get(day)
            on_sale = counts if active is None else counts[active]
            out.setdefault(version, {})[str(day)] = {
                "requests": self._requests[(version, day)],
                "impressions": int(counts.sum()),
                "items_shown": int((counts > 0).sum()),
                "catalogue": int(on_sale.size),
                "coverage": coverage(on_sale),
                "gini": gini(on_sale),
            }
        return out
