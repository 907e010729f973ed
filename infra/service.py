"""What every local service looks like to the stack and the CLI: up, down, status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

RUNNING = "running"
STOPPED = "stopped"
UNHEALTHY = "unhealthy"  # process alive but not answering: starting, hung or misconfigured


@dataclass(frozen=True)
class ServiceStatus:
    """What runs where, as `loopline infra status` reports it."""

    name: str
    state: str
    pids: tuple[int, ...] = ()
    endpoints: dict[str, str] = field(default_factory=dict)
    data_dir: str = ""
    log: str = ""
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["pids"] = list(self.pids)
        return data

    def line(self) -> str:
        """One human-readable line for the terminal."""
        parts = [f"{self.name:<6} {self.state:<9}"]
        if self.pids:
            parts.append("pid " + ",".join(str(p) for p in self.pids))
        parts.extend(f"{k}={v}" for k, v in self.endpoints.items())
        if self.data_dir:
            parts.append(f"dir={self.data_dir}")
        if self.detail:
            parts.append(f"({self.detail})")
        return "  ".join(parts)


class Service(Protocol):
    """A local service the stack can start and stop idempotently."""

    name: str

    def up(self) -> ServiceStatus:
        """Start if not running and healthy; wait until ready."""
        ...

    def down(self) -> ServiceStatus:
        """Stop and leave no process behind."""
        ...

    def status(self) -> ServiceStatus:
        ...

    def wipe(self) -> None:
        """Delete the service's state (data, logs); only when stopped."""
        ...
