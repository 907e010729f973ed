"""What every suite gets: the services, a scratch home, progress/profiling switches, and a way
to run a measured child process (`bench.worker`) with memory sampling around it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchRunError
from bench.memory import MemorySampler
from bench.services import Services
from bench.worker import REPO_ROOT, python_path

OURS = ("flink", "writer")  # child kinds measured as "job"; every other kind is a baseline


@dataclass
class BenchContext:
    services: Services
    home: Path  # scratch space of this benchmark run (per-run Loopline homes live below)
    cache: Path  # generated events, reused across runs
    progress: bool = True
    profile_dir: Path | None = None  # py-spy raw profiles of the measured children
    run_tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def run_home(self, name: str) -> Path:
        path = self.home / "runs" / f"{name}-{self.run_tag}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def spawn(self, kind: str, name: str, spec: dict[str, Any], *, watch_services: bool = True,
              timeout_s: float = 24 * 3600.0) -> tuple[subprocess.Popen[bytes], Path, Path]:
        """Start `python -m bench.worker kind` for one measured run; returns (proc, out, log)."""
        home = self.run_home(name)
        spec = {**spec, "t_spawn": time.time()}
        spec_path, out_path, log_path = home / "spec.json", home / "out.json", home / "child.log"
        spec_path.write_text(json.dumps(spec, default=str))
        env = dict(os.environ)
        env["LOOPLINE_PATHS_HOME"] = str(home / "loopline")
        env["LOOPLINE_PATHS_JARS"] = str(REPO_ROOT / ".jars")
        # Thread mode runs Python inside the JVM (PEMJA): the embedded interpreter finds the
        # job's modules and the venv's packages only through PYTHONPATH, read at JVM start.
        env["PYTHONPATH"] = python_path()
        env.update({k: str(v) for k, v in spec.get("env", {}).items()})
        cmd = [sys.executable, "-m", "bench.worker", kind, str(spec_path), str(out_path)]
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            pyspy = Path(sys.executable).with_name("py-spy")
            prof = self.profile_dir / f"{name}-{self.run_tag}.txt"
            cmd = [str(pyspy), "record", "--gil", "--rate", "50", "--format", "raw",
                   "--output", str(prof), "--", *cmd]
        log = log_path.open("wb")
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return proc, out_path, log_path

    def run_child(self, kind: str, name: str, spec: dict[str, Any],
                  timeout_s: float = 24 * 3600.0) -> dict[str, Any]:
        """Run a measured child to completion with the stack's memory sampled around it."""
        with MemorySampler() as memory:
            for service, pid in self.services.pids.items():
                memory.watch(service, pid)
            proc, out_path, log_path = self.spawn(kind, name, spec)
            memory.watch("job" if kind in OURS else "baseline", proc.pid)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                proc.terminate()
                proc.wait(30)
                raise BenchRunError(f"{name}: no result within {timeout_s:.0f}s") from exc
        if proc.returncode != 0 or not out_path.exists():
            tail = log_path.read_text(errors="replace").splitlines()[-25:]
            raise BenchRunError(
                f"{name}: the measured child exited with {proc.returncode} "
                f"(log {log_path}): {' | '.join(line.strip() for line in tail[-6:])}")
        out: dict[str, Any] = json.loads(out_path.read_text())
        out["memory"] = memory.report()
        out["log"] = str(log_path)
        return out
