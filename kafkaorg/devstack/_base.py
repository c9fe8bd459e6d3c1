"""What every service of the local stack offers the stack that starts it."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from kafkaorg.config import Settings

from ._models import ServiceStatus
from ._processes import PidFile, is_alive, terminate


@dataclass(frozen=True)
class Port:
    """A port a service binds, and the setting that moves it (named in port-taken errors)."""

    host: str
    port: int
    what: str
    setting: str


class Service(ABC):
    """One process of the local stack, started detached and tracked by a pid file."""

    name: str
    title: str
    timeout_s: float
    marker: str
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs_dir = settings.state_dir / "logs"
        self.run_dir = settings.state_dir / "run"
        self.pid_file = PidFile(self.run_dir, self.name, self.marker)

    @property
    def log_file(self) -> Path:
        return self.logs_dir / f"{self.name}.log"

    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients reach it."""

    @abstractmethod
    def healthy(self) -> bool:
        """Whether a real client of this service gets an answer (fast when the port is closed)."""

    @abstractmethod
    def preflight(self) -> None:
        """Raise StackError if what it needs to start (binaries, jars) is missing."""

    @abstractmethod
    def ports(self) -> list[Port]:
        """Ports that must be free before it starts."""

    @abstractmethod
    def launch(self) -> None:
        """Prepare its files and start it detached; do not wait for health."""

    def ready(self) -> bool:
        """Whether start-up is over (may be earlier than healthy(), before after_healthy())."""
        return self.healthy()

    def after_healthy(self) -> None:  # noqa: B027 - optional hook
        """Work done once it answers (roles, search attributes); idempotent."""

    def detail(self, healthy: bool, pid: int | None) -> str:
        """The status line's free text."""
        if healthy:
            return "running" if pid else "running (not started by kafkaorg dev; left alone)"
        return "starting or unhealthy" if pid else "down"

    def our_pid(self) -> int | None:
        return self.pid_file.read()

    def status(self) -> ServiceStatus:
        pid = self.our_pid()
        healthy = self.healthy()
        return ServiceStatus(
            name=self.name,
            healthy=healthy,
            address=self.address,
            pid=pid,
            detail=self.detail(healthy, pid),
            log=str(self.log_file),
        )

    def stop(self) -> bool:
        """Stop it if we started it; True if something was stopped. Never raises when down."""
        pid = self.our_pid()
        if pid is None:
            self.pid_file.remove()
            return False
        terminate(pid, self.stop_timeout_s, self.stop_signal)
        if not is_alive(pid):
            self.pid_file.remove()
        return True
