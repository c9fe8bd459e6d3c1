"""The platform's own processes (``kafkaorg worker``, ``kafkaorg bridge``) under the stack."""

from __future__ import annotations

import os
import sys

from kafkaorg.config import Settings

from ._base import Port, Service
from ._processes import port_open, spawn, split_host_port


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
        self.name = command.replace(" ", "-")
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
            [sys.executable, "-m", "kafkaorg.cli", *self.command.split()],
            log_file=self.log_file,
            pid_file=self.pid_file,
            env=settings_env(self.settings),
            cwd=self.settings.state_dir,
        )

    def detail(self, healthy: bool, pid: int | None) -> str:
        base = "running" if healthy else "not running (start with: kafkaorg dev up --workers)"
        if self.command != "bridge":
            return base
        return "; ".join([base, *bridge_backpressure(self.settings)])


def bridge_backpressure(settings: Settings) -> list[str]:
    """The bridge group's total lag (from Kafka) and what running bridges have paused."""
    from kafkaorg.errors import KafkaorgError
    from kafkaorg.lag import bridge_lag, read_bridge_statuses

    parts = []
    host, port = split_host_port(settings.kafka_bootstrap.split(",")[0])
    if port_open(host, port):
        try:
            lags = bridge_lag(settings, timeout=5.0)
        except KafkaorgError as exc:
            parts.append(f"lag unknown ({exc})")
        else:
            behind = [item for item in lags if item.lag]
            parts.append(
                f"lag {sum(item.lag for item in lags)} over {len(behind)} partition(s)"
                if behind
                else "lag 0"
            )
    for status in read_bridge_statuses(settings):
        paused = status.get("paused") or []
        if not paused:
            continue
        reasons = sorted({r for item in paused for r in item.get("reasons", [])})
        shown = ", ".join(reasons[:3]) + (", …" if len(reasons) > 3 else "")
        parts.append(f"pid {status.get('pid')} paused {len(paused)} partition(s): {shown}")
    return parts
