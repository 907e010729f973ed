"""What a writer run did: counts a runner can report and a benchmark can divide."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("poll", "decode", "compact", "write", "commit")


@dataclass(frozen=True)
class WriterStats:
    """Totals of one drain() or run(); `complete` says a drain reached its end offsets."""

    run_id: str
    records_in: int = 0
    rows_written: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    complete: bool = False
    # Commits refused after a rebalance: those records are in Feast and the partition's new
    # owner replays them, which newest-wins makes harmless; counted so a runner can see it.
    commit_failures: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rows_total(self) -> int:
        return sum(self.rows_written.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_total": self.rows_total}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WriterStats:
        return cls(**{k: v for k, v in data.items() if k != "rows_total"})


class Tally:
    """The running totals behind a WriterStats (mutable; one per run, one thread)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.records_in = self.dead_letters = self.batches = self.commit_failures = 0
        self.rows_written: dict[str, int] = {}
        self.stage_seconds = dict.fromkeys(STAGES, 0.0)

    def add_rows(self, view: str, rows: int) -> None:
        self.rows_written[view] = self.rows_written.get(view, 0) + rows

    def freeze(self, seconds: float, complete: bool) -> WriterStats:
        return WriterStats(
            run_id=self.run_id, records_in=self.records_in, rows_written=dict(self.rows_written),
            dead_letters=self.dead_letters, batches=self.batches, seconds=round(seconds, 3),
            complete=complete, commit_failures=self.commit_failures,
            stage_seconds={k: round(v, 3) for k, v in self.stage_seconds.items()},
        )
