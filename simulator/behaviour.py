"""Ground-truth behaviour: what a user examines, clicks, puts in the cart and buys, and when.

Position-based model: the item at slate position j is examined with probability
1/(1+j)^eta and, once examined, clicked with its relevance
sigmoid(intercept + user·item affinity + item appeal (drifting) + per-request noise).
Given a click, add-to-cart falls with price above the user's budget; purchase given cart
depends on the user's segment; an order is 1 + Poisson(QUANTITY_EXTRA) units at the item's
price. The same probabilities give both the draws and their exact expectation, which is
what ground truth sums.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simulator.world import World

RELEVANCE_INTERCEPT = -3.0  # a random item in a random slot is clicked ~2.5% of the time
RELEVANCE_NOISE_SD = 0.3  # per-request mood noise on relevance; policies never see it
CART_INTERCEPT = -1.2
CART_AFFINITY = 0.5  # liked items are added to the cart more often
PURCHASE_INTERCEPT = 0.0
QUANTITY_EXTRA = 0.15  # mean extra units per order (Poisson)
ORGANIC_TEMPERATURE = 1.0  # users' own search: softmax over affinity + appeal

# Delays (ms). Lognormal medians and log-sds: seconds to minutes after the slate.
CLICK_DELAY = (6_000.0, 0.8)
SCAN_MS_PER_POSITION = 1_500  # lower slots are reached later
VIEW_GAP = (800.0, 0.5)
DWELL = (25_000.0, 0.7)
DWELL_AFFINITY = 0.3
CART_GAP = (2_000.0, 0.6)
PURCHASE_DELAY = (120_000.0, 0.9)
LATE_PURCHASE_MS = (35 * 60_000, 120 * 60_000)  # past the 30 min maturity window


class Probabilities(NamedTuple):
    """Per-item behaviour probabilities for one user on one day (one request)."""

    relevance: np.ndarray  # P(click | examined)
    cart: np.ndarray  # P(add_to_cart | click or organic view)
    buy: np.ndarray  # P(purchase | add_to_cart)
    price: np.ndarray
    affinity: np.ndarray


class Expected(NamedTuple):
    """Expected outcome counts and revenue of one slate (or one organic find)."""

    clicks: float
    carts: float
    purchases: float
    revenue: float


class Draws(NamedTuple):
    """Uniforms and delays of one request, per candidate (per position for examination).

    Drawn per candidate rather than per slot, so an item shown by two policies meets the same
    luck: common random numbers make per-policy differences precise.
    """

    exam: np.ndarray  # (..., k)
    click: np.ndarray  # (..., n)
    cart: np.ndarray
    buy: np.ndarray
    quantity: np.ndarray
    click_delay: np.ndarray
    view_gap: np.ndarray
    dwell: np.ndarray
    cart_gap: np.ndarray
    buy_delay: np.ndarray


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def examination(positions: np.ndarray, eta: float) -> np.ndarray:
    """P(examine slot j) = 1/(1+j)^eta, the position-based model the job also assumes."""
    return (1.0 + np.asarray(positions, dtype=float)) ** -eta


def probabilities(world: World, day: int, user: int, items: np.ndarray,
                  noise: np.ndarray | None = None) -> Probabilities:
    """The truth for `user` and `items` on `day` (with this request's noise, if given)."""
    users = world.users
    affinity = world.affinity(user, items)
    logit = RELEVANCE_INTERCEPT + affinity + world.items.appeal[day, items]
    if noise is not None:
        logit = logit + noise
    price = world.items.price[items]
    over_budget = np.log(price / users.budget[user])
    cart = sigmoid(CART_INTERCEPT + CART_AFFINITY * affinity
                   - users.price_sensitivity[user] * over_budget)
    buy = np.full(len(items), float(sigmoid(PURCHASE_INTERCEPT + users.purchase_log_odds[user])))
    return Probabilities(sigmoid(logit), cart, buy, price, affinity)


def value(probs: Probabilities) -> np.ndarray:
    """Expected revenue of an item if examined: what an all-knowing ranker sorts by."""
    return probs.relevance * probs.cart * probs.buy * probs.price * (1.0 + QUANTITY_EXTRA)


def expected(probs: Probabilities, cols: np.ndarray, positions: np.ndarray,
             eta: float) -> Expected:
    """Exact expectation of a shown slate: items `cols` (candidate indices) at `positions`."""
    clicks = examination(positions, eta) * probs.relevance[cols]
    carts = clicks * probs.cart[cols]
    purchases = carts * probs.buy[cols]
    revenue = purchases * probs.price[cols] * (1.0 + QUANTITY_EXTRA)
    return Expected(float(clicks.sum()), float(carts.sum()), float(purchases.sum()),
                    float(revenue.sum()))


def draw(gen: np.random.Generator, n: int, k: int, late_share: float,
         reps: int | None = None) -> Draws:
    """One request's luck for n candidates and k slots (`reps` independent copies if given)."""
    lead: tuple[int, ...] = () if reps is None else (reps,)
    uniform = gen.random((4, *lead, n))  # click, cart, buy, late
    normal = gen.normal(size=(5, *lead, n))  # log-delays
    specs = (CLICK_DELAY, VIEW_GAP, DWELL, CART_GAP, PURCHASE_DELAY)
    medians = np.array([m for m, _ in specs]).reshape(5, *([1] * (len(lead) + 1)))
    sds = np.array([sd for _, sd in specs]).reshape(medians.shape)
    delays = medians * np.exp(sds * normal)
    lo, hi = LATE_PURCHASE_MS
    late = lo + (hi - lo) * gen.random((*lead, n))
    return Draws(
        exam=gen.random((*lead, k)),
        click=uniform[0],
        cart=uniform[1],
        buy=uniform[2],
        quantity=1 + gen.poisson(QUANTITY_EXTRA, size=(*lead, n)),
        click_delay=delays[0],
        view_gap=delays[1],
        dwell=delays[2],
        cart_gap=delays[3],
        buy_delay=np.where(uniform[3] < late_share, late, delays[4]),
    )


class Realized(NamedTuple):
    """What happened to each shown item (arrays aligned with the slate, leading rep axis)."""

    clicked: np.ndarray
    carted: np.ndarray
    bought: np.ndarray
    revenue: np.ndarray


def realize(probs: Probabilities, cols: np.ndarray, positions: np.ndarray, draws: Draws,
            eta: float) -> Realized:
    """Draw the outcome of a shown slate from this request's uniforms."""
    examined = draws.exam[..., positions] < examination(positions, eta)
    clicked = examined & (draws.click[..., cols] < probs.relevance[cols])
    carted = clicked & (draws.cart[..., cols] < probs.cart[cols])
    bought = carted & (draws.buy[..., cols] < probs.buy[cols])
    revenue = np.where(bought, np.round(probs.price[cols] * draws.quantity[..., cols], 2), 0.0)
    return Realized(clicked, carted, bought, revenue)


def organic_choice(world: World, day: int, user: int, active: np.ndarray) -> np.ndarray:
    """P(an organic find is item a) over `active`: the user's own search, taste and appeal."""
    score = (world.affinity(user, active) + world.items.appeal[day, active]) / ORGANIC_TEMPERATURE
    weights = np.exp(score - score.max())
    return weights / weights.sum()


def organic_expected(world: World, day: int, user: int, active: np.ndarray) -> Expected:
    """Expected outcome of one organic find (a view that may lead to cart and purchase)."""
    p = organic_choice(world, day, user, active)
    probs = probabilities(world, day, user, active)
    carts = p * probs.cart
    purchases = carts * probs.buy
    revenue = purchases * probs.price * (1.0 + QUANTITY_EXTRA)
    return Expected(0.0, float(carts.sum()), float(purchases.sum()), float(revenue.sum()))


def dwell_ms(dwell: float, affinity: float) -> int:
    return max(1_000, int(np.rint(dwell * np.exp(DWELL_AFFINITY * affinity))))
