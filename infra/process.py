"""Process plumbing shared by the service modules: spawn detached, find, stop, wait, ports.

Process and socket tables come from psutil. The services run on the Debian development and
CI machines (POSIX sessions, flock).
Services are started in a session of their own so a Ctrl-C in the terminal that ran
`loopline infra up` does not reach them, and so `down` can find every process they forked
(e.g. PyFlink's Python workers) by session id.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from infra.errors import ServiceStopError

# `"$@"` keeps every argument intact; `echo $!` hands the service pid back before the shell
# exits, so the service is re-parented away from us and never lingers as our zombie.
_SPAWN_SCRIPT = '"$@" >>"$LOOPLINE_SERVICE_LOG" 2>&1 </dev/null & echo $!'


def spawn_detached(
    cmd: Sequence[str], log_file: Path, cwd: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start `cmd` in a new session with output appended to `log_file`; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env["LOOPLINE_SERVICE_LOG"] = str(log_file)
    out = subprocess.run(
        ["/bin/sh", "-c", _SPAWN_SCRIPT, "sh", *cmd],
        cwd=cwd,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
        check=True,
    )
    return int(out.stdout.strip())


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except (psutil.NoSuchProcess, ValueError):
        return None


def _running(proc: psutil.Process) -> bool:
    """Alive and not a zombie (a zombie has exited; only its exit status is left)."""
    try:
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def cmdline(pid: int) -> str:
    """The command line of `pid` joined by spaces; '' when gone, hidden or mid-exec."""
    proc = _process(pid)
    if proc is None:
        return ""
    try:
        return " ".join(proc.cmdline()).strip()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


# While a process execs (a shell script's `java ... &` child turning into the JVM), the kernel
# shows an empty command line for a moment; a bare read then would call a live daemon dead.
_EXEC_GRACE_S = 2.0


def is_alive(pid: int, marker: str | None = None) -> bool:
    """True if `pid` runs (zombies count as dead) and its command line contains `marker`.

    The marker guards against pid reuse: a stale pid file must not make us kill a stranger.
    An empty command line is re-read for up to _EXEC_GRACE_S (exec in progress) before the
    marker is judged missing.
    """
    proc = _process(pid)
    if proc is None or not _running(proc):
        return False
    if marker is None:
        return True
    deadline = time.monotonic() + _EXEC_GRACE_S
    while True:
        line = cmdline(pid)
        if line or time.monotonic() >= deadline or not _running(proc):
            return marker in line
        time.sleep(0.05)


def session_members(sid: int) -> list[int]:
    """Live pids whose session id is `sid`."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(proc.pid) == sid and _running(proc):
                members.append(proc.pid)
    return members


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _reap(pid: int) -> None:
    # Only possible when we are the parent (e.g. a test spawned it directly); harmless otherwise.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate(pids: Iterable[int], timeout_s: float, what: str) -> None:
    """SIGTERM `pids`, wait up to `timeout_s`, then SIGKILL survivors; raise if any remain."""
    pending = [p for p in set(pids) if is_alive(p)]
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig, wait_s in ((None, timeout_s), (signal.SIGKILL, 10.0)):
        if sig is not None:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pending and time.monotonic() < deadline:
            for pid in pending:
                _reap(pid)
            pending = [p for p in pending if is_alive(p)]
            if pending:
                time.sleep(0.1)
        if not pending:
            return
    raise ServiceStopError(f"{what}: expected pids {pending} to exit after SIGKILL; they still run")


def stop_group(proc: subprocess.Popen[Any], timeout_s: float = 60.0,
               kill_wait_s: float = 10.0) -> None:
    """Stop a child started with `start_new_session=True` and everything it forked (uvicorn's
    workers, say): SIGTERM to its process group, up to `timeout_s` for the child to exit,
    then SIGKILL to the group. The child may already have exited on its own."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(kill_wait_s)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def read_pids(path: Path) -> list[int]:
    """All pids in a pid file (Flink's daemon script writes one per line)."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        return []
    return [int(x) for x in lines if x.isdigit()]


def write_pid(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _listeners(port: int) -> list[Any]:
    """Every TCP socket in LISTEN state on `port` (IPv4 and IPv6)."""
    return [
        conn
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
    ]


def listen_addresses(port: int) -> set[str]:
    """IP addresses listening on TCP `port` (to prove a service is bound to loopback only)."""
    found = set()
    for conn in _listeners(port):
        address = ipaddress.ip_address(conn.laddr.ip.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        found.add(str(address))
    return found


def port_owner(port: int) -> str:
    """Best-effort 'pid N (command)' of the process listening on `port`, '' if unknown."""
    for conn in _listeners(port):
        if conn.pid is not None:
            return f"pid {conn.pid} ({cmdline(conn.pid)[:120]})"
    return ""


def describe_port_holder(host: str, port: int) -> str:
    owner = port_owner(port)
    return f"{host}:{port} is held by {owner}" if owner else f"{host}:{port} is already in use"


def wait_until(
    ready: Callable[[], bool],
    timeout_s: float,
    still_starting: Callable[[], bool] = lambda: True,
    interval_s: float = 0.25,
) -> bool:
    """Poll `ready` until it is true (True), `still_starting` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return True
        if not still_starting():
            return ready()
        time.sleep(interval_s)
    return ready()


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, for error messages; '' when there is no log."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialise up/down of one service across processes (two terminals, parallel tests)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
