"""Which online/offline consistency reports belong in an attribution report: those of the
slices overlapping the attributed period (`loopline consistency` writes them). A reviewer
reading an uplift should see whether the versions were trained on the features they served
with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from loopline.paths import PathsConfig
from models import consistency_report


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _bounds(slice_text: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    start, _, end = slice_text.partition("..")
    try:
        return _utc(start), _utc(end)
    except ValueError:
        return None


def reports_for(paths: PathsConfig, since: datetime | pd.Timestamp | None,
                until: datetime | pd.Timestamp | None) -> list[dict[str, Any]]:
    """Consistency reports whose slice overlaps [since, until) (None: unbounded), each with
    `html` = the path of its own page."""
    out = []
    for doc in consistency_report.reports(paths):
        bounds = _bounds(str(doc.get("slice", "")))
        if bounds is None:
            continue
        start, end = bounds
        if (until is not None and start >= _utc(until)) or \
                (since is not None and end <= _utc(since)):
            continue
        path = doc.pop("_path")
        out.append(doc | {"html": path.replace(consistency_report.JSON_FILE,
                                               consistency_report.HTML_FILE)})
    return out
