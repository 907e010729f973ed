"""Softmax (Plackett-Luce) exploration over scores, and the exact propensities it logs.

Serving draws a slate of k items without replacement, each next item with probability
proportional to w_a = exp(score_a / t) among the items not yet placed (Gumbel-top-k draws the
same distribution in one vectorised step). The propensity logged for a shown item is its
*marginal* probability of being at exactly that position under this policy:

    P(a at 0) = w_a / Σ_b w_b                                   (the one-factor product form)
    P(a at j) = Σ over ordered prefixes p of j other items of P(p) · w_a / (W − w(p))

The sum over prefixes is computed exactly with the exponential-race form of Plackett-Luce:
item b "arrives" at an independent Exp(w_b) time and the slate is the arrival order, so

    P(a at j) = ∫ w_a e^{−w_a τ} · P(exactly j of the other items arrived by τ) dτ,

a one-dimensional integral of a Poisson-binomial probability, evaluated with the trapezoid
rule in log τ (exponentially accurate for this smooth, fast-decaying integrand).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numba
import numpy as np

from models.errors import ModelsError

# Weights below this (relative to the largest) are raised to it: an item 69 temperatures
# below the best is never drawn in practice, and the floor bounds the integration range.
_MIN_WEIGHT = 1e-30
_LOG_STEP = 0.2  # trapezoid step in log τ: column sums within 1e-12 of 1 (tested)
_POLICY_RE = re.compile(r"^softmax\(t=([0-9.eE+-]+)\)$")


@dataclass(frozen=True)
class SoftmaxPolicy:
    """Plackett-Luce sampling with P(next = a) ∝ exp(score_a / temperature)."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise ModelsError(f"softmax temperature must be > 0, got {self.temperature!r}")

    @property
    def name(self) -> str:
        """The `policy` string logged with every slate (parsed back by `parse`)."""
        return f"softmax(t={self.temperature:g})"

    @classmethod
    def parse(cls, name: str) -> SoftmaxPolicy:
        match = _POLICY_RE.match(name.strip())
        if not match:
            raise ModelsError(f"expected a policy like 'softmax(t=0.5)', got {name!r}")
        return cls(float(match.group(1)))

    def weights(self, scores: np.ndarray) -> np.ndarray:
        """exp(score / t) scaled so the largest weight is 1 (floored at 1e-30)."""
        z = np.asarray(scores, dtype=float) / self.temperature
        return np.maximum(np.exp(z - np.max(z)), _MIN_WEIGHT)

    def sample(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of a slate of k drawn without replacement (Gumbel-top-k = Plackett-Luce)."""
        keys = np.log(self.weights(scores)) + rng.gumbel(size=len(scores))
        top = np.argpartition(-keys, k - 1)[:k] if k < len(keys) else np.arange(len(keys))
        return top[np.argsort(-keys[top], kind="stable")]

    def propensities(self, scores: np.ndarray, slate: np.ndarray) -> np.ndarray:
        """P(slate[j] at position j) for every j: the propensities serving logs."""
        slate = np.asarray(slate, dtype=int)
        return position_marginals(self.weights(scores), slate, np.arange(len(slate)))


def _log_grid(w: np.ndarray, query_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Integration nodes τ, evenly spaced in log τ, covering every query item's integrand."""
    lo = np.log(1e-12 / w.sum())  # below: P(anything arrived) < 1e-12
    hi = np.log(50.0 / query_w.min())  # above: e^{-w_a τ} < e^{-50} for every query item
    nodes = int(np.ceil((hi - lo) / _LOG_STEP)) + 1
    return np.exp(np.linspace(lo, hi, nodes)), float((hi - lo) / (nodes - 1))


@numba.njit(cache=True, nogil=True)
def _fold(dist: np.ndarray, out: np.ndarray, arrived: np.ndarray,
          stay: np.ndarray) -> None:  # pragma: no cover - compiled
    """`dist` (count, node) with one more independent item folded in, into `out`:
    P(c) ← P(c)·stay + P(c − 1)·arrived. Two buffers and nodes innermost, so the loop
    vectorises (in place, the rows alias and it runs 3× slower)."""
    for t in range(dist.shape[1]):
        out[0, t] = dist[0, t] * stay[t]
    for c in range(1, dist.shape[0]):
        for t in range(dist.shape[1]):
            out[c, t] = dist[c, t] * stay[t] + dist[c - 1, t] * arrived[t]


@numba.njit(cache=True, nogil=True)
def _count_distributions(arrived: np.ndarray, stay: np.ndarray, query: np.ndarray,
                         kmax: int) -> np.ndarray:  # pragma: no cover - compiled
    """(query item, count, node): P(exactly `count` of the items other than that query item
    arrived by τ), counts 0..kmax, for items arriving by τ with probability `arrived` (1 −
    `stay`), shape (item, node): first every non-query item is folded into one distribution
    shared by the query items, then each query item into every other query item's.
    Compiled: as numpy calls the folds were ~270 small array operations for a slate of 10
    from 100 candidates (1.5 ms of CPU per request); here they are ~0.1 ms of arithmetic."""
    n, nodes = arrived.shape
    in_query = np.zeros(n, dtype=np.bool_)
    for m in query:
        in_query[m] = True
    base = np.zeros((kmax + 1, nodes))
    base[0, :] = 1.0
    spare = np.empty_like(base)
    for m in range(n):
        if not in_query[m]:
            _fold(base, spare, arrived[m], stay[m])
            base, spare = spare, base
    dist = np.empty((len(query), kmax + 1, nodes))
    for qi in range(len(query)):
        mine = base.copy()
        for other in range(len(query)):
            if other != qi:
                _fold(mine, spare, arrived[query[other]], stay[query[other]])
                mine, spare = spare, mine
        dist[qi] = mine
    return dist


def position_marginals(w: np.ndarray, items: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Exact Plackett-Luce P(items[i] at positions[i]) for weights `w` (any positive scale)."""
    w = np.asarray(w, dtype=float)
    w = np.maximum(w / w.max(), _MIN_WEIGHT)
    items = np.asarray(items, dtype=int)
    positions = np.asarray(positions, dtype=int)
    if len(items) == 0:
        return np.zeros(0)
    query, inverse = np.unique(items, return_inverse=True)
    kmax = int(positions.max())
    tau, step = _log_grid(w, w[query])
    wt = np.outer(w, tau)
    arrived = -np.expm1(-wt)  # (n, nodes): P(item arrived by τ)
    stay = np.exp(-wt)
    dist = _count_distributions(arrived, stay, query.astype(np.int64), kmax)
    density = w[query][:, None] * tau * stay[query]  # w_a e^{-w_a τ} dτ/dlog τ
    integrand = density[inverse] * dist[inverse, positions]
    return np.clip(integrand.sum(axis=1) * step, 0.0, 1.0)


def marginal_matrix(w: np.ndarray, k: int) -> np.ndarray:
    """(n, k) matrix of P(item i at position j): every item at every slate position."""
    n = len(w)
    items = np.repeat(np.arange(n), k)
    positions = np.tile(np.arange(k), n)
    return position_marginals(w, items, positions).reshape(n, k)


def conditional_marginals(v: np.ndarray, total: np.ndarray) -> np.ndarray:
    """P(item a at position j | the first m positions hold exactly these m items).

    `v` is (R, m): the Plackett-Luce weights of the m items of R slates; `total` is (R,): the
    weight of *all* candidates each slate was drawn from (Σ v when the slate is the whole
    candidate set). Subset dynamic programming over the 2^m prefixes; returns (R, m, m)
    indexed [request, item, position]. Used by OPE to compare policies on the logged items.
    """
    v = np.asarray(v, dtype=float)
    total = np.asarray(total, dtype=float)
    rows, m = v.shape
    if m > 14:
        raise ModelsError(f"conditional marginals enumerate 2^m prefixes; m={m} is too large")
    full = (1 << m) - 1
    masks = np.arange(1 << m)
    bits = (masks[:, None] >> np.arange(m)) & 1  # (2^m, m)
    size = bits.sum(axis=1)
    vsum = bits @ v.T  # (2^m, R): weight of each prefix set
    remaining = np.maximum(total[None, :] - vsum, 1e-300)

    forward = np.zeros((1 << m, rows))  # Σ over orderings of U of the prefix probability
    forward[0] = 1.0
    backward = np.zeros((1 << m, rows))  # Σ over orderings of S \ U following prefix U
    backward[full] = 1.0
    for s in range(1, m + 1):
        layer = masks[size == s]
        for b in range(m):
            sel = layer[(layer >> b) & 1 == 1]
            prev = sel ^ (1 << b)
            forward[sel] += forward[prev] * v[:, b] / remaining[prev]
    for s in range(m - 1, -1, -1):
        layer = masks[size == s]
        for b in range(m):
            sel = layer[(layer >> b) & 1 == 0]
            backward[sel] += v[:, b] / remaining[sel] * backward[sel | (1 << b)]

    z = forward[full]
    out = np.zeros((rows, m, m))
    for a in range(m):
        for j in range(m):
            sel = masks[(size == j) & ((masks >> a) & 1 == 0)]
            term = forward[sel] * v[:, a] / remaining[sel] * backward[sel | (1 << a)]
            out[:, a, j] = term.sum(axis=0) / z
    return out
