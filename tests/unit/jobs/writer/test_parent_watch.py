"""The writer child stops by itself once the process that started it is gone."""

from __future__ import annotations

import os
import threading
import time

from jobs.writer.__main__ import watch_parent


def test_a_writer_whose_parent_is_gone_stops() -> None:
    stop = threading.Event()
    # Our parent is not pid 1 under pytest: watching "pid 1" sees a different parent at once.
    assert os.getppid() != 1
    watcher = threading.Thread(target=watch_parent, args=(1, stop, 0.01))
    watcher.start()
    assert stop.wait(5), "the watch did not stop a writer whose parent is gone"
    watcher.join(5)


def test_a_writer_whose_parent_lives_keeps_running() -> None:
    stop = threading.Event()
    watcher = threading.Thread(target=watch_parent, args=(os.getppid(), stop, 0.01))
    watcher.start()
    time.sleep(0.3)
    assert not stop.is_set()
    stop.set()  # what SIGTERM does: the watch ends with the writer
    watcher.join(5)
    assert not watcher.is_alive()
