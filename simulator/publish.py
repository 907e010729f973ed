"""Send simulated events to Kafka through the project's producer, with a progress bar.

Serving events go to the serving topic and interactions to the interactions topic, each
stamped with its event time by `schemas.producer.EventProducer`. The producer is flushed
every `flush_every` events and at the end, so a refused record fails the run early and
loudly instead of vanishing. When the real serving path already logged its ServingEvents,
pass `serving=False` so slates are not published twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol

from tqdm import tqdm

from loopline.errors import LooplineError
from simulator.errors import PublishError
from simulator.events import SERVING, Emitted


class Producer(Protocol):
    """What publish needs of `schemas.producer.EventProducer`."""

    def serving(self, event: dict[str, Any]) -> None: ...

    def interaction(self, event: dict[str, Any]) -> None: ...

    def flush(self, timeout_s: float = ...) -> int: ...


def publish(events: Iterable[Emitted], producer: Producer, *, serving: bool = True,
            desc: str = "events", total: int | None = None, flush_every: int = 20_000,
            progress: bool = True) -> Counter[str]:
    """Produce `events` (e.g. `sim.run_day(...)`); returns counts per kind (and skipped)."""
    counts: Counter[str] = Counter()
    sent = 0
    with tqdm(events, desc=desc, total=total, unit="ev", disable=not progress,
              leave=False) as bar:
        for kind, event in bar:
            try:
                if kind == SERVING:
                    if not serving:
                        counts["skipped_serving"] += 1
                        continue
                    producer.serving(event)
                else:
                    producer.interaction(event)
            except LooplineError as exc:  # encode errors, connection errors
                raise PublishError(f"cannot publish {kind} event at "
                                   f"{event.get('event_time')}: {exc}") from exc
            counts[kind] += 1
            sent += 1
            if sent % flush_every == 0:
                _flush(producer, sent)
    _flush(producer, sent)
    return counts


def _flush(producer: Producer, sent: int) -> None:
    try:
        producer.flush()
    except LooplineError as exc:
        raise PublishError(f"Kafka refused a record (within the first {sent} sent): {exc}"
                           ) from exc
