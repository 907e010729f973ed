"""Check that two online stores hold the same features (the job's and the baseline's).

Compared only where both stores hold the same event timestamp for an entity: the job also
re-emits decayed windows for idle entities (timers), which the baseline never does, so an
entity idle for an hour before the end legitimately differs. Entities are sampled from the
tail of the input (recently active).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import events
from feature_repo import names


def sample_entities(paths: list[Path], per_kind: int = 200, tail: int = 20_000
                    ) -> dict[str, list[str]]:
    """User and item ids from the last `tail` events of each shard."""
    import pyarrow.parquet as pq

    from schemas.codec import default_codec

    codec = default_codec()
    users: dict[str, None] = {}
    items: dict[str, None] = {}
    for path in paths:
        table = pq.read_table(path, columns=["kind", "value"])
        start = max(0, table.num_rows - tail)
        kinds = table.column("kind").to_pylist()[start:]
        values = table.column("value").to_pylist()[start:]
        for kind, value in zip(reversed(kinds), reversed(values), strict=True):
            if kind == events.SERVING:
                _, event = codec.decode(value)
                users.setdefault(event["user_id"])
                for item in event["slate"][:2]:
                    items.setdefault(item["item_id"])
            if len(users) >= per_kind * len(paths) and len(items) >= per_kind * len(paths):
                break
    return {"users": list(users)[: per_kind * len(paths)],
            "items": list(items)[: per_kind * len(paths)]}


def _read(store: Any, view: str, key: str, ids: list[str]) -> dict[str, Any]:
    feats = [f"{view}:{f}" for f in names.FEATURES_BY_VIEW[view]]
    return store.get_online_features(
        features=feats, entity_rows=[{key: i} for i in ids]
    ).to_dict(include_event_timestamps=True)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def compare(ours: Any, baseline: Any, entities: dict[str, list[str]]) -> dict[str, Any]:
    """Per view: entities present in both, with equal timestamps, and how many match."""
    report: dict[str, Any] = {}
    for view, key, ids in ((names.USER_ACTIVITY, names.USER_KEY, entities["users"]),
                           (names.ITEM_PERFORMANCE, names.ITEM_KEY, entities["items"])):
        a, b = _read(ours, view, key, ids), _read(baseline, view, key, ids)
        features = [f for f in names.FEATURES_BY_VIEW[view] if f != "user_last_clicked"]
        from feast.online_response import TIMESTAMP_POSTFIX

        ts_col = f"{features[0]}{TIMESTAMP_POSTFIX}"  # whole seconds
        present = same_ts = matched = 0
        mismatches: list[dict[str, Any]] = []
        for i, entity in enumerate(ids):
            if a[features[0]][i] is None or b[features[0]][i] is None:
                continue
            present += 1
            if a.get(ts_col, [None] * len(ids))[i] != b.get(ts_col, [None] * len(ids))[i]:
                continue
            same_ts += 1
            diff = {f: (a[f][i], b[f][i]) for f in features if not _same(a[f][i], b[f][i])}
            if diff:
                if len(mismatches) < 3:
                    mismatches.append({"entity": entity, "differences": diff})
            else:
                matched += 1
        report[view] = {"sampled": len(ids), "in_both_stores": present,
                        "same_event_time": same_ts, "identical": matched,
                        "examples_of_mismatch": mismatches}
    return report
