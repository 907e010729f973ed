"""A small synthetic shop in the exact shape of the job's outputs, for tests and benchmarks
(scaffolding, kept out of the product packages: models/ never imports it).

Items have a true appeal (click probability at the top position) and users an activity level;
a click at position j happens with probability appeal · activity / (1 + j) (position bias).
The feature log describes items and users noisily, so a model can learn appeal from it.
Slices are written with the job's own partition writer (jobs.sinks.slice_log), so their
files, manifests and fingerprints are the real contract, not a copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_repo import names
from jobs.sinks.slice_log import write_partition
from jobs.transforms import slices as contract
from loopline.paths import PathsConfig
from models.policy import SoftmaxPolicy
from schemas import topics

HOUR_MS = 3_600_000
LABEL_WINDOW_MS = 1_800_000


@dataclass(frozen=True)
class World:
    users: tuple[str, ...]
    items: tuple[str, ...]
    appeal: np.ndarray  # per item: click probability at position 0 for an average user
    activity: np.ndarray  # per user: multiplier of click probability
    price: np.ndarray  # per item


def make_world(n_users: int = 40, n_items: int = 60, seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    return World(
        users=tuple(f"u{i}" for i in range(n_users)),
        items=tuple(f"i{i}" for i in range(n_items)),
        appeal=rng.beta(1.5, 6.0, n_items),
        activity=rng.uniform(0.6, 1.4, n_users),
        price=np.round(rng.uniform(5, 80, n_items), 2),
    )


def click_probability(world: World, user: int, item: np.ndarray,
                      position: np.ndarray) -> np.ndarray:
    return np.clip(world.appeal[item] * world.activity[user] / (1.0 + position), 0.0, 1.0)


def feature_frames(world: World, start_ms: int, hours: int, seed: int = 1,
                   step_minutes: int = 30) -> dict[str, pd.DataFrame]:
    """Feature-log rows every `step_minutes` from an hour before `start_ms` to the end."""
    rng = np.random.default_rng(seed)
    times = np.arange(start_ms - HOUR_MS, start_ms + hours * HOUR_MS + 1, step_minutes * 60_000)
    item_rows, user_rows = [], []
    for t in times:
        ts = pd.Timestamp(int(t), unit="ms", tz="UTC")
        for idx, item in enumerate(world.items):
            row: dict[str, Any] = {names.ITEM_KEY: item, names.TIMESTAMP_FIELD: ts}
            for w, scale in (("1h", 1), ("24h", 24)):
                impressions = int(rng.integers(20, 60) * scale)
                ctr = float(np.clip(world.appeal[idx] * 0.55 + rng.normal(0, 0.02), 0, 1))
                clicks = round(impressions * ctr)
                row |= {f"item_impressions_{w}": impressions, f"item_clicks_{w}": clicks,
                        f"item_add_to_cart_{w}": clicks // 3, f"item_purchases_{w}": clicks // 5,
                        f"item_ctr_{w}": ctr, f"item_purchase_rate_{w}": ctr / 5,
                        f"item_debiased_ctr_{w}": ctr * 1.6}
            item_rows.append(row)
        for idx, user in enumerate(world.users):
            row = {names.USER_KEY: user, names.TIMESTAMP_FIELD: ts}
            for w, scale in (("1h", 1), ("24h", 24)):
                impressions = int(rng.integers(5, 30) * scale)
                clicks = int(rng.binomial(impressions, min(0.1 * world.activity[idx], 1.0)))
                row |= {f"user_impressions_{w}": impressions, f"user_clicks_{w}": clicks,
                        f"user_purchases_{w}": clicks // 4,
                        f"user_revenue_{w}": float(clicks // 4) * 30.0}
            row["user_last_clicked"] = ",".join(rng.choice(world.items, 3))
            user_rows.append(row)
    frames = {names.ITEM_PERFORMANCE: pd.DataFrame(item_rows),
              names.USER_ACTIVITY: pd.DataFrame(user_rows)}
    for frame in frames.values():
        frame[names.TIMESTAMP_FIELD] = frame[names.TIMESTAMP_FIELD].astype("datetime64[ms, UTC]")
    return frames


def write_feature_log(paths: PathsConfig, frames: dict[str, pd.DataFrame],
                      tag: str = "synth") -> None:
    """The Feast batch sources: <home>/features/<view>/<tag>.parquet."""
    for view, frame in frames.items():
        directory = Path(paths.features_offline) / view
        directory.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(directory / f"{tag}.parquet", index=False)


def latest_rows(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The newest row per entity of each view (what the online store holds)."""
    out = {}
    for view, frame in frames.items():
        key = names.KEY_BY_VIEW[view]
        out[view] = frame.sort_values(names.TIMESTAMP_FIELD).groupby(key, as_index=False).last()
    return out


def simulate(world: World, start_ms: int, hours: int, requests_per_hour: int, n_candidates: int,
             k: int, temperature: float = 1.0, seed: int = 2, score_noise: float = 1.0,
             first_offset: int = 0, model_version: str = "v0") -> list[dict[str, Any]]:
    """Labelled-impression rows of a softmax logging policy over noisy scores."""
    rng = np.random.default_rng(seed)
    policy = SoftmaxPolicy(temperature)
    rows: list[dict[str, Any]] = []
    offset, interaction_offset = first_offset, 0
    logit = np.log(world.appeal / (1 - world.appeal))
    for r in range(hours * requests_per_hour):
        served = (start_ms + r * (hours * HOUR_MS) // (hours * requests_per_hour)
                  + int(rng.integers(0, 1000)))
        user = int(rng.integers(len(world.users)))
        cands = rng.choice(len(world.items), n_candidates, replace=False)
        scores = logit[cands] + rng.normal(0, score_noise, n_candidates)
        chosen = policy.sample(scores, k, rng)
        props = policy.propensities(scores, chosen)
        p_click = click_probability(world, user, cands[chosen], np.arange(len(chosen)))
        clicked = rng.random(len(chosen)) < p_click
        cart = clicked & (rng.random(len(chosen)) < 0.4)
        bought = clicked & (rng.random(len(chosen)) < 0.25)
        for pos, (c, p) in enumerate(zip(chosen, props, strict=True)):
            item = int(cands[c])
            n_inter = int(clicked[pos]) + int(cart[pos]) + int(bought[pos])
            refs = [(topics.SERVING, 0, offset)]
            refs += [(topics.INTERACTIONS, 0, interaction_offset + i) for i in range(n_inter)]
            interaction_offset += n_inter
            rows.append({
                "request_id": f"r{offset}", "item_id": world.items[item],
                "user_id": world.users[user], "session_id": f"s{user}-{r // 10}",
                "model_version": model_version, "arm": "default", "policy": policy.name,
                "fallback": False, "position": pos, "score": float(scores[c]),
                "propensity": float(p), "served_at": served, "clicked": bool(clicked[pos]),
                "added_to_cart": bool(cart[pos]), "purchased": bool(bought[pos]),
                "revenue": float(world.price[item]) if bought[pos] else 0.0,
                "dwell_ms": int(rng.integers(1000, 60000)) if clicked[pos] else 0,
                "interaction_count": n_inter, "label_window_ms": LABEL_WINDOW_MS,
                "source_topic": topics.SERVING, "source_partition": 0, "source_offset": offset,
                contract.REFS_FIELD: refs,
            })
        offset += 1
    return rows


def write_slices(paths: PathsConfig, rows: list[dict[str, Any]],
                 run_id: str = "synthetic-run-1") -> list[dict[str, Any]]:
    """Write rows as final hourly partitions with the job's writer; returns the manifests."""
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        name, _, _ = contract.partition_of(row["served_at"], HOUR_MS)
        by_partition.setdefault(name, []).append(row)
    job = {"name": "synthetic", "run_id": run_id, "code_version": "synthetic"}
    return [write_partition(paths.slices, contract.LABELLED_DATASET, name, part, job)
            for name, part in sorted(by_partition.items())]
