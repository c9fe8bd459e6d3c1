"""The platform's own processes (``kafkaorg worker``, ``kafkaorg bridge``) under the stack."""

from __future__ import annotations

import os
import sys

from kafkaorg.config import Settings

from ._base import Port, Service
from ._processes import spawn


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the settings, so children use the same stack."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKAORG_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "KAFKAORG_TEMPORAL_ADDRESS": settings.temporal_address,
            "KAFKAORG_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "KAFKAORG_DATABASE_URL": settings.database_url,
            "KAFKAORG_STATE_DIR": str(settings.state_dir),
            "KAFKAORG_CACHE_DIR": str(settings.cache_dir),
        }
    )
    return env


class PlatformProcess(Service):
    """A ``python -m kafkaorg.cli <command>`` process; healthy while it runs."""

    timeout_s = 3.0
    """How long it must survive after start to count as started (catches import errors)."""
    stop_timeout_s = 20.0

    def __init__(self, settings: Settings, command: str) -> None:
        self.name = command
        self.title = f"kafkaorg {command}"
        self.command = command
        self.marker = f"kafkaorg.cli {command}"
        super().__init__(settings)

    @property
    def address(self) -> str:
        return "-"

    def healthy(self) -> bool:
        return self.our_pid() is not None

    def preflight(self) -> None:
        return None

    def ports(self) -> list[Port]:
        return []

    def launch(self) -> None:
        spawn(
            [sys.executable, "-m", "kafkaorg.cli", self.command],
            log_file=self.log_file,
            pid_file=self.pid_file,
            env=settings_env(self.settings),
            cwd=self.settings.state_dir,
        )

    def detail(self, healthy: bool, pid: int | None) -> str:
        return "running" if healthy else "not running (start with: kafkaorg dev up --workers)"
