"""Compaction: only the newest update per entity of a batch is worth a Feast write."""

from __future__ import annotations

from collections.abc import Iterable

from jobs.writer.updates import Update


def compact(updates: Iterable[Update]) -> list[Update]:
    """The newest update per (view, entity_id): highest event time, a tie to the later offset.

    Feast's write costs ~100 µs per entity row, so compacting before any frame is built is
    the writer's main lever. Older updates would lose in the store anyway (newest event time
    wins there too), so dropping them here changes nothing but the cost. Output keeps the
    order in which entities were first seen, so a batch always compacts the same way.
    """
    newest: dict[tuple[str, str], Update] = {}
    for update in updates:
        key = (update.view, update.entity_id)
        current = newest.get(key)
        if current is None or (update.event_ms, update.offset) > (current.event_ms,
                                                                  current.offset):
            newest[key] = update
    return list(newest.values())


def by_view(updates: Iterable[Update]) -> dict[str, list[Update]]:
    grouped: dict[str, list[Update]] = {}
    for update in updates:
        grouped.setdefault(update.view, []).append(update)
    return grouped
