"""The writer as a child process, for unbounded runs: start it beside the job, stop it after.

A child process, not a thread: Feast's write path is CPU-bound Python (proto conversion per
value), so in a thread it would share one GIL with the runner (and, in loopback mode, with
PyFlink's worker threads); its Feast, SQLite/Redis and Kafka clients stay out of the caller's
process; a crash or hang is isolated and can be killed; and committed offsets let a restarted
child resume where the last one committed. The price is ~3 s of imports at start.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from feature_repo.store import FeastConfig
from jobs.errors import WriterError
from jobs.writer.config import WriterConfig
from jobs.writer.stats import WriterStats
from loopline.kafka import KafkaConfig
from loopline.paths import PathsConfig

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_SIGNAL = signal.SIGTERM  # finish the batch in hand, commit, exit
DRAIN_SIGNAL = signal.SIGUSR1  # write up to the end offsets present now, then exit


def _jsonable(config: Any) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v
            for k, v in dataclasses.asdict(config).items()}


def spec_of(config: WriterConfig, kafka: KafkaConfig, feast: FeastConfig,
            paths: PathsConfig) -> dict[str, Any]:
    """Everything the child needs, as JSON (the configs are frozen dataclasses)."""
    return {"writer": _jsonable(config), "kafka": _jsonable(kafka), "feast": _jsonable(feast),
            "paths": _jsonable(paths)}


def configs_of(spec: dict[str, Any]) -> tuple[WriterConfig, KafkaConfig, FeastConfig,
                                              PathsConfig]:
    paths = {k: Path(v) for k, v in spec["paths"].items()}
    return (WriterConfig(**spec["writer"]), KafkaConfig(**spec["kafka"]),
            FeastConfig(**spec["feast"]), PathsConfig(**paths))


class WriterProcess:
    """A running writer child (`python -m jobs.writer`). Use start(), then stop()."""

    def __init__(self, process: subprocess.Popen[bytes], workdir: Path, log: IO[bytes]) -> None:
        self.process = process
        self.workdir = workdir
        self._log = log

    @property
    def stats_path(self) -> Path:
        return self.workdir / "stats.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "writer.log"

    @classmethod
    def start(cls, config: WriterConfig, kafka: KafkaConfig, feast: FeastConfig,
              paths: PathsConfig, ready_timeout_s: float = 120.0) -> WriterProcess:
        """Spawn the child and wait until it is consuming (imports and Feast set up)."""
        workdir = Path(tempfile.mkdtemp(prefix="loopline-writer-"))
        spec = {**spec_of(config, kafka, feast, paths), "parent_pid": os.getpid()}
        (workdir / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "LOOPLINE_PATHS_HOME": str(paths.home)}  # definitions read it
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                          env.get("PYTHONPATH")]))
        log = open(workdir / "writer.log", "wb")  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs.writer", str(workdir)], env=env, cwd=REPO_ROOT,
            stdout=log, stderr=subprocess.STDOUT)
        child = cls(process, workdir, log)
        child._wait_ready(ready_timeout_s)
        return child

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not (self.workdir / "ready").exists():
            if self.process.poll() is not None:
                raise WriterError(f"the writer process exited with {self.process.returncode} "
                                  f"before it was ready: {self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise WriterError(f"the writer process was not ready after {timeout_s:.0f} s: "
                                  f"{self._tail()}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, drain: bool = True, timeout_s: float = 300.0) -> WriterStats:
        """Ask the child to stop (after draining to the end offsets present now, by default),
        wait for it, and return its stats. Raises WriterError if it failed or hung."""
        if self.alive:
            self.process.send_signal(DRAIN_SIGNAL if drain else STOP_SIGNAL)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise WriterError(f"the writer process did not stop within {timeout_s:.0f} s "
                              f"(killed; uncommitted batches will be replayed): {self._tail()}"
                              ) from None
        finally:
            self._log.close()
        if code != 0 or not self.stats_path.exists():
            raise WriterError(f"the writer process failed (exit {code}, log {self.log_path}): "
                              f"{self._tail()}")
        stats = WriterStats.from_dict(json.loads(self.stats_path.read_text()))
        if (drain and not stats.complete) or not stats.records_in:
            # Short of the end offsets, or nothing read at all (drained or not: a live writer
            # that never got a record is what its log must explain): keep the log.
            log.warning("the writer drained %d records (complete: %s); its log: %s (last "
                        "lines: %s)", stats.records_in, stats.complete, self.log_path,
                        self._tail())
            return stats
        shutil.rmtree(self.workdir, ignore_errors=True)  # kept only when something failed
        return stats

    def kill(self) -> None:
        """SIGKILL: what a crash looks like; a restart replays from the last commit."""
        if self.alive:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def _tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"
