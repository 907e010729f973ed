"""A Flink standalone session cluster from the scripts inside the installed PyFlink package.

FLINK_HOME is the `pyflink` package folder. We never edit it: the cluster reads a conf dir of
our own (<home>/services/flink/conf, built from the shipped one), a lib dir of our own
(symlinks to pyflink/lib plus the connector jars from the jars folder) and a plugins dir of our
own (pyflink/plugins, plus our Prometheus reporter when [metrics] is on), passed to the
scripts as FLINK_CONF_DIR / FLINK_LIB_DIR / FLINK_PLUGINS_DIR. Logs, pid files and temp dirs
are under <home>/services/flink. Readiness: REST /overview reports at least one TaskManager
with slots. Stopping signals the pids in Flink's own pid files (see `down`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from infra import jars, process
from infra.config import ServicesConfig
from infra.errors import FlinkJobError, PortInUseError, ServiceStartError
from infra.java import java_binary
from infra.metrics import MetricsConfig, flink_reporter_config, load_metrics
from infra.service import RUNNING, STOPPED, UNHEALTHY, ServiceStatus
from loopline.paths import PathsConfig

IDENT = "loopline"  # FLINK_IDENT_STRING: names the pid and log files
JM_DAEMON = "standalonesession"
TM_DAEMON = "taskexecutor"
_TM_MAIN_CLASS = "TaskManagerRunner"
_CONF_FILES_COPIED = ("log4j.properties", "log4j-cli.properties", "log4j-console.properties",
                      "log4j-session.properties", "logback.xml", "logback-console.xml",
                      "logback-session.xml")  # fmt: skip


def flink_home() -> Path:
    """The installed `pyflink` package folder, with the run bit set on its scripts.

    The wheel installs pyflink/bin/* without the execute bit on some pip versions, and the
    cluster scripts call each other directly, so we set it (idempotent, cheap).
    """
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceStartError(
            "flink: expected the apache-flink package (pyflink) in this Python, found none; "
            "run `make venv`"
        )
    home = Path(next(iter(spec.submodule_search_locations)))
    for script in (home / "bin").iterdir():
        if script.suffix in ("", ".sh") and script.is_file():
            mode = script.stat().st_mode
            wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            if mode != wanted:
                script.chmod(wanted)
    return home


class FlinkCluster:
    """The local standalone session cluster (one JobManager, one TaskManager)."""

    name = "flink"

    def __init__(
        self, cfg: ServicesConfig, paths: PathsConfig, metrics: MetricsConfig | None = None
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.metrics = metrics or load_metrics()
        self.root = paths.services / "flink"
        self.plugins_dir = self.root / "plugins"
        self.conf_dir = self.root / "conf"
        self.lib_dir = self.root / "lib"
        self.log_dir = self.root / "log"
        self.pid_dir = self.root / "pid"
        self.tmp_dir = self.root / "tmp"

    # -- addresses -------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.flink_rest_port}"

    def script_env(self) -> dict[str, str]:
        """Environment for Flink's shell scripts and the `flink` CLI against this cluster."""
        home = flink_home()
        java = java_binary()
        env = dict(os.environ)
        env.update(
            FLINK_HOME=str(home),
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LIB_DIR=str(self.lib_dir),
            FLINK_OPT_DIR=str(home / "opt"),
            FLINK_PLUGINS_DIR=str(self.plugins_dir),
            FLINK_IDENT_STRING=IDENT,
            JAVA_HOME=str(java.resolve().parent.parent),
        )
        return env

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> ServiceStatus:
        with process.locked(self.root / ".lock"):
            if self._daemon_pids(JM_DAEMON):
                if not self._daemon_pids(TM_DAEMON):
                    self._start_taskmanager()  # repair, e.g. after a test killed it
                if self._wait_ready(self.cfg.start_timeout_s):
                    return self.status()
                raise ServiceStartError(
                    f"flink: the JobManager runs but {self.rest_url}/overview reports no "
                    f"TaskManager after {self.cfg.start_timeout_s:.0f}s; `loopline infra down "
                    f"flink` then up again (logs: {self.log_dir})",
                    details=self._log_tail(),
                )
            self._kill_leftovers()  # e.g. a TaskManager whose JobManager was killed
            self._check_ports_free()
            self.prepare()
            out = subprocess.run(
                [str(flink_home() / "bin" / "start-cluster.sh")],
                env=self.script_env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                # Own session: a Ctrl-C in the caller's terminal must not reach the cluster.
                start_new_session=True,
                check=False,
            )
            if out.returncode != 0:
                output = (out.stderr or out.stdout).strip()
                raise ServiceStartError(
                    f"flink: start-cluster.sh exited {out.returncode}: "
                    f"{output.splitlines()[-1] if output else 'no output'}",
                    details=output,
                )
            if not self._wait_ready(self.cfg.start_timeout_s):
                tail = self._log_tail()
                self._kill_leftovers()
                raise ServiceStartError(
                    f"flink: expected {self.rest_url}/overview to report a TaskManager within "
                    f"{self.cfg.start_timeout_s:.0f}s; it did not (logs: {self.log_dir})",
                    details=tail,
                )
            return self.status()

    def down(self) -> ServiceStatus:
        # stop-cluster.sh would send the same SIGTERM (flink-daemon.sh `kill`, `kill -9` after
        # 10 s) but first starts a JVM per script just to parse config.yaml: ~3 JVMs, 10-25 s.
        # Signalling the pids from its pid files directly is equivalent and takes a second.
        with process.locked(self.root / ".lock"):
            self._kill_leftovers()
        return self.status()

    def status(self) -> ServiceStatus:
        jm, tms = self._daemon_pids(JM_DAEMON), self._daemon_pids(TM_DAEMON)
        overview = self.overview() if jm else None
        if not jm and not tms:
            state, detail = STOPPED, ""
        elif jm and tms and overview and overview.get("taskmanagers", 0) >= 1:
            state = RUNNING
            detail = (f"{overview['taskmanagers']} taskmanager(s), "
                      f"{overview.get('slots-available', '?')}/{overview.get('slots-total', '?')}"
                      f" slots free, {overview.get('jobs-running', 0)} job(s) running")  # fmt: skip
        else:
            missing = [n for n, p in (("jobmanager", jm), ("taskmanager", tms)) if not p]
            state = UNHEALTHY
            detail = f"no {' and no '.join(missing)} process" if missing else "REST not answering"
        return ServiceStatus(
            name=self.name,
            state=state,
            pids=tuple(jm + tms),
            endpoints={"rest": self.rest_url, "rpc": f"{self.cfg.host}:{self.cfg.flink_rpc_port}"},
            data_dir=str(self.root),
            log=str(self.log_dir),
            detail=detail,
        )

    def wipe(self) -> None:
        if self._daemon_pids(JM_DAEMON) or self._daemon_pids(TM_DAEMON):
            raise ServiceStartError("flink: expected a stopped cluster before wiping, it runs")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers for jobs and reliability tests ---------------------------------------------
    def jobmanager_pids(self) -> list[int]:
        return self._daemon_pids(JM_DAEMON)

    def taskmanager_pids(self) -> list[int]:
        """Pids of live TaskManager JVMs (kill one to simulate a worker crash)."""
        return self._daemon_pids(TM_DAEMON)

    def start_taskmanager(self) -> int:
        """Start one more TaskManager (e.g. after a test killed one); return its pid."""
        with process.locked(self.root / ".lock"):
            return self._start_taskmanager()

    def _start_taskmanager(self) -> int:
        before = set(process.read_pids(self._pid_file(TM_DAEMON)))  # dead ones too
        out = subprocess.run(
            [str(flink_home() / "bin" / "taskmanager.sh"), "start"],
            env=self.script_env(),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
            check=False,
        )
        # flink-daemon.sh records the pid of its `java ... &` child, which may still be the
        # forked shell when the script returns: wait until that pid is the JVM, so callers
        # (and the next pid-file read) see a TaskManager, not a process mid-exec.
        new = [p for p in process.read_pids(self._pid_file(TM_DAEMON)) if p not in before]
        if out.returncode == 0 and new and process.wait_until(
            lambda: _TM_MAIN_CLASS in process.cmdline(new[-1]),
            30,
            lambda: process.is_alive(new[-1]),
            0.1,
        ):
            return new[-1]
        raise ServiceStartError(
            f"flink: `taskmanager.sh start` (exit {out.returncode}) left no new "
            f"TaskManager JVM (logs: {self.log_dir})",
            details=(out.stdout + out.stderr).strip() + "\n" + self._log_tail(),
        )

    def overview(self) -> dict[str, Any] | None:
        """REST /overview, or None when the REST endpoint does not answer."""
        try:
            return self.rest("GET", "/overview", timeout_s=3)
        except FlinkJobError:
            return None

    def rest(self, method: str, path: str, timeout_s: float = 10) -> Any:
        """Call the JobManager REST API; JSON body of the answer (None when empty)."""
        request = urllib.request.Request(self.rest_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise FlinkJobError(f"flink REST {method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise FlinkJobError(
                f"flink REST {method} {path}: expected an answer from {self.rest_url}, got {exc}"
            ) from exc
        return json.loads(body) if body else None

    # -- configuration -----------------------------------------------------------------------
    def prepare(self) -> None:
        """(Re)write conf dir and lib dir from the installed PyFlink and ServicesConfig."""
        home = flink_home()
        for folder in (self.conf_dir, self.lib_dir, self.log_dir, self.pid_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for name in _CONF_FILES_COPIED:
            if (home / "conf" / name).exists():
                shutil.copyfile(home / "conf" / name, self.conf_dir / name)
        shipped = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
        merged = _deep_merge(shipped, self._overrides())
        merged = _deep_merge(merged, _nested(flink_reporter_config(self.metrics)))
        header = "# Written by infra/flink_cluster.py on every start; change ServicesConfig.\n"
        (self.conf_dir / "config.yaml").write_text(header + yaml.safe_dump(merged, sort_keys=True))
        (self.conf_dir / "masters").write_text(f"{self.cfg.host}:{self.cfg.flink_rest_port}\n")
        # "localhost"/"127.0.0.1" workers are started locally by start-cluster.sh, without ssh.
        (self.conf_dir / "workers").write_text(f"{self.cfg.host}\n")
        for link in self.lib_dir.iterdir():
            link.unlink()
        for jar in [*sorted((home / "lib").glob("*.jar")), *jars.flink_connector_jars(self.paths)]:
            (self.lib_dir / jar.name).symlink_to(jar.resolve())
        # Reporters are plugins (own class loader each), created by every JVM at start.
        shutil.rmtree(self.plugins_dir, ignore_errors=True)
        self.plugins_dir.mkdir(parents=True)
        for plugin in sorted((home / "plugins").iterdir()):
            if plugin.is_dir():
                (self.plugins_dir / plugin.name).symlink_to(plugin.resolve())
        if self.metrics.enabled:
            reporter = jars.prometheus_reporter_jar(self.paths)
            (self.plugins_dir / "loopline-metrics-prometheus").mkdir()
            (self.plugins_dir / "loopline-metrics-prometheus" / reporter.name).symlink_to(
                reporter.resolve()
            )

    def _overrides(self) -> dict[str, Any]:
        host, python = self.cfg.host, sys.executable
        return {
            "jobmanager": {
                "bind-host": host,
                "rpc": {"address": host, "port": self.cfg.flink_rpc_port},
                "memory": {"process": {"size": self.cfg.flink_jobmanager_memory}},
            },
            "taskmanager": {
                "bind-host": host,
                "host": host,
                "numberOfTaskSlots": self.cfg.flink_slots,
                "memory": {"process": {"size": self.cfg.flink_taskmanager_memory}},
            },
            "rest": {"address": host, "bind-address": host, "port": self.cfg.flink_rest_port},
            # A dead TaskManager is declared lost after 2 failed heartbeat RPCs in a row
            # (heartbeat.rpc-failure-threshold): at a 2 s interval a crash is noticed in ~4 s
            # instead of ~20 s. The timeout for a slow but live one stays the default 50 s.
            "heartbeat": {"interval": 2000},
            "env": {"log": {"dir": str(self.log_dir)}, "pid": {"dir": str(self.pid_dir)},
                    "java": {"opts": {"taskmanager": self.cfg.flink_taskmanager_java_opts}}},
            "io": {"tmp": {"dirs": str(self.tmp_dir)}},
            "web": {"tmpdir": str(self.tmp_dir / "web")},
            # Python UDF workers and the job client run in this venv (pyflink + our packages).
            "python": {"executable": python, "client": {"executable": python}},
            "classloader": {
                # The connector is in lib/; a job that also lists it in pipeline.jars must not
                # load a second copy child-first (ClassCastException between the two copies).
                "parent-first-patterns": {
                    "additional": ["org.apache.kafka.", "org.apache.flink.connector.kafka."]
                }
            },
        }

    # -- internals -------------------------------------------------------------------------
    def _pid_file(self, daemon: str) -> Path:
        return self.pid_dir / f"flink-{IDENT}-{daemon}.pid"

    def _daemon_pids(self, daemon: str) -> list[int]:
        """Live pids listed in Flink's pid file for `daemon` (guarded against pid reuse)."""
        marker = str(self.conf_dir)  # the daemons get -Dlog4j... paths under our conf dir
        return [
            p
            for p in process.read_pids(self._pid_file(daemon))
            if process.is_alive(p, marker=marker)
        ]

    def _kill_leftovers(self) -> None:
        """SIGTERM/SIGKILL whatever the scripts left: daemons and their Python workers."""
        pids = set(self._daemon_pids(JM_DAEMON) + self._daemon_pids(TM_DAEMON))
        for pid in list(pids):
            sid = process.session_of(pid)
            if sid is not None and sid != os.getsid(0):
                pids.update(process.session_members(sid))
        process.terminate(pids, self.cfg.stop_timeout_s, "flink")
        for pid_file in self.pid_dir.glob("*.pid"):
            pid_file.unlink()

    def _check_ports_free(self) -> None:
        for port, key in ((self.cfg.flink_rest_port, "FLINK_REST_PORT"),
                          (self.cfg.flink_rpc_port, "FLINK_RPC_PORT")):  # fmt: skip
            if process.port_open(self.cfg.host, port):
                raise PortInUseError(
                    f"flink: expected {self.cfg.host}:{port} to be free, but "
                    f"{process.describe_port_holder(self.cfg.host, port)}; stop it or set "
                    f"LOOPLINE_SERVICES_{key}"
                )

    def _wait_ready(self, timeout_s: float) -> bool:
        def ready() -> bool:
            if not self._daemon_pids(TM_DAEMON):
                return False
            overview = self.overview() or {}
            # Slots are announced a moment after the TaskManager registers; jobs need them.
            return overview.get("taskmanagers", 0) >= 1 and overview.get("slots-total", 0) >= 1

        return process.wait_until(ready, timeout_s, lambda: bool(self._daemon_pids(JM_DAEMON)), 0.5)

    def _log_tail(self) -> str:
        logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        return "\n".join(f"== {p.name}\n{process.tail(p, 8)}" for p in logs[-2:])


def _nested(flat: dict[str, str]) -> dict[str, Any]:
    """{"a.b.c": v} -> {"a": {"b": {"c": v}}}: config.yaml is nested like the shipped one."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
