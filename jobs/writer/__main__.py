"""Child-process entry of WriterProcess: `python -m jobs.writer WORKDIR`.

Reads WORKDIR/spec.json, touches WORKDIR/ready once consuming can start, runs until SIGTERM
(stop after the batch in hand) or SIGUSR1 (drain to the end offsets present then, and stop),
and writes WORKDIR/stats.json.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from jobs.writer.background import DRAIN_SIGNAL, STOP_SIGNAL, configs_of
from jobs.writer.loop import FeatureWriter


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # group chatter drowns our lines
    workdir = Path(argv[0])
    config, kafka, feast, paths = configs_of(json.loads((workdir / "spec.json").read_text()))
    stop, drain = threading.Event(), threading.Event()
    signal.signal(STOP_SIGNAL, lambda *_: stop.set())
    signal.signal(DRAIN_SIGNAL, lambda *_: drain.set())
    parent = json.loads((workdir / "spec.json").read_text()).get("parent_pid")
    if parent is not None:
        threading.Thread(target=watch_parent, args=(int(parent), stop), daemon=True,
                         name="parent-watch").start()
    with FeatureWriter(config, kafka, feast, paths) as writer:
        (workdir / "ready").write_text(writer.run_id)
        stats = writer.run(stop, drain)
    (workdir / "stats.json").write_text(json.dumps(stats.as_dict()))
    return 0


def watch_parent(parent_pid: int, stop: threading.Event, interval_s: float = 1.0) -> None:
    """Stop (after the batch in hand; what is not committed is replayed by the next writer)
    once the process that started us is gone: a test or job client that died without
    stopping its writer left one polling a vanished broker at 70 % of a core for good."""
    while not stop.wait(interval_s):
        if os.getppid() != parent_pid:
            logging.getLogger(__name__).warning(
                "the process that started this writer (pid %d) is gone: stopping", parent_pid)
            stop.set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
