"""Named, independent random streams derived from one seed.

Every random quantity comes from a stream keyed by (seed, purpose, day, ...), never from a
shared generator, so a quantity does not change when another part of the simulation draws
more or less. That is what makes runs byte-reproducible and gives ground truth its common
random numbers: the same user, day and request see the same draws under every policy.
"""

from __future__ import annotations

import numpy as np

# Stream purposes (part of the key; never renumber, it would change every run).
WORLD = 1  # users and items
DRIFT = 2  # appeal random walks, item churn
SCHEDULE = 3  # sessions, request times, candidate sets, relevance noise
BEHAVIOUR = 4  # clicks, carts, purchases, delays (per request and replication)
ORGANIC = 5  # organic finds (per day and replication)
POLICY = 6  # reference policies' exploration


def stream(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A generator for one purpose and key path; the same arguments give the same draws."""
    return np.random.default_rng([int(seed), purpose, *(int(k) for k in keys)])
