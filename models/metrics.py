"""Ranking metrics on logged slates (AUC, NDCG@k) and a score-drift measure (PSI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def relevance(frame: pd.DataFrame) -> np.ndarray:
    """Graded relevance of an impression: purchase 3, add-to-cart 2, click 1, nothing 0."""
    return np.select(
        [frame["purchased"].to_numpy(bool), frame["added_to_cart"].to_numpy(bool),
         frame["clicked"].to_numpy(bool)],
        [3, 2, 1], default=0,
    ).astype(int)


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present."""
    labels = np.asarray(labels, dtype=int)
    if labels.min(initial=0) == labels.max(initial=0):
        return None
    return float(roc_auc_score(labels, scores))


def ndcg(groups: np.ndarray, rel: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    """Mean NDCG@k over groups (slates) that hold at least one relevant item."""
    frame = pd.DataFrame({"g": groups, "rel": rel, "s": scores})
    gain = 2.0 ** frame["rel"] - 1.0

    def dcg(order: str) -> pd.Series:
        ranked = frame.assign(gain=gain).sort_values(["g", order], ascending=[True, False],
                                                     kind="stable")
        rank = ranked.groupby("g").cumcount()
        discounted = np.where(rank < k, ranked["gain"] / np.log2(rank + 2.0), 0.0)
        return pd.Series(discounted, index=ranked.index).groupby(ranked["g"]).sum()

    ideal = dcg("rel")
    actual = dcg("s")
    relevant = ideal > 0
    if not relevant.any():
        return None
    return float((actual[relevant] / ideal[relevant]).mean())


def quantile_edges(scores: np.ndarray, bins: int = 10) -> list[float]:
    """Inner bin edges of equal-mass bins of `scores` (the drift reference)."""
    return [float(x) for x in np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1])]


def psi(edges: list[float], scores: np.ndarray) -> float:
    """Population stability index of `scores` against equal-mass bins with inner `edges`."""
    expected = np.full(len(edges) + 1, 1.0 / (len(edges) + 1))
    counts = np.bincount(np.searchsorted(edges, scores, side="right"), minlength=len(expected))
    actual = np.maximum(counts / max(len(scores), 1), 1e-4)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
