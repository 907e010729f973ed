"""infra.process on real processes and sockets of this machine (no services needed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import process


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[int]:
    """A detached `sleep` in a session of its own, stopped afterwards."""
    pid = process.spawn_detached(["sleep", "300"], tmp_path / "sleep.log", tmp_path)
    yield pid
    process.terminate([pid], 5, "sleeper")


def test_a_detached_process_is_alive_in_its_own_session(sleeper: int) -> None:
    assert process.is_alive(sleeper)
    assert process.is_alive(sleeper, marker="sleep 300")
    assert not process.is_alive(sleeper, marker="not-in-the-command-line")
    assert process.cmdline(sleeper) == "sleep 300"
    sid = process.session_of(sleeper)
    assert sid is not None and sid != os.getsid(0)
    assert process.session_members(sid) == [sleeper]


def test_terminated_and_reaped_processes_are_dead(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "300"])
    assert process.is_alive(child.pid)
    child.kill()
    # Not yet reaped: a zombie must count as dead (a pid file of a crashed daemon).
    assert process.wait_until(lambda: not process.is_alive(child.pid), 10, interval_s=0.05)
    child.wait()
    assert process.cmdline(child.pid) == ""
    assert process.session_of(child.pid) is None


def test_listen_addresses_and_owner_of_a_loopback_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert process.listen_addresses(port) == {"127.0.0.1"}
        assert process.port_owner(port).startswith(f"pid {os.getpid()} ")
        assert process.port_open("127.0.0.1", port)
    assert process.listen_addresses(port) == set()
    assert process.port_owner(port) == ""


def test_an_ipv6_wildcard_listener_is_reported_as_such() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::", 0))
        server.listen()
        assert process.listen_addresses(server.getsockname()[1]) == {"::"}


def test_an_empty_command_line_is_read_again_before_the_marker_is_judged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon caught mid-exec shows an empty command line for a moment; it is alive."""
    reads = iter(["", "", "java -cp x TaskManagerRunner"])
    monkeypatch.setattr(process, "cmdline", lambda pid: next(reads))
    assert process.is_alive(os.getpid(), marker="TaskManagerRunner")


def test_spawned_python_keeps_its_arguments(tmp_path: Path) -> None:
    pid = process.spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(300)", "two words"],
        tmp_path / "py.log", tmp_path,
    )
    try:
        assert process.wait_until(lambda: "two words" in process.cmdline(pid), 10)
    finally:
        process.terminate([pid], 5, "python")
    assert not process.is_alive(pid)


def _group(script: str) -> tuple[subprocess.Popen[bytes], int]:
    """A shell in a session of its own running `script` with a `sleep` it forked; returns
    the shell and the sleep's pid (printed by the shell)."""
    proc = subprocess.Popen(["/bin/sh", "-c", f"{script}; sleep 300 & echo $!; wait"],
                            stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_stop_group_stops_the_child_and_what_it_forked() -> None:
    proc, grandchild = _group(":")
    process.stop_group(proc, timeout_s=10)
    assert proc.returncode is not None
    assert process.wait_until(lambda: not process.is_alive(grandchild), 10, interval_s=0.05)


def test_stop_group_kills_a_group_that_ignores_sigterm() -> None:
    proc, grandchild = _group("trap '' TERM")  # the shell and its sleep ignore SIGTERM
    process.stop_group(proc, timeout_s=0.5)
    assert proc.returncode == -9  # SIGKILLed after the wait
    assert process.wait_until(lambda: not process.is_alive(grandchild), 10, interval_s=0.05)


def test_stop_group_of_a_child_that_already_exited() -> None:
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    process.stop_group(proc, timeout_s=1)  # nothing left to signal: no error
    assert proc.returncode == 0
