"""Arize Phoenix, the local trace backend: its UI and OTLP/HTTP receiver on one port.

Phoenix lives in a virtualenv of its own (``<cache_dir>/phoenix-venv``, made by
``scripts/install.sh``): its dependencies are many and must never meet the project's.
Without that virtualenv ``kafkaorg dev up`` says so in one line and carries on.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from kafkaorg.config import Settings

from ._base import Port, Service
from ._models import StackError
from ._processes import port_open, spawn


def phoenix_venv(settings: Settings) -> Path:
    return settings.cache_dir / "phoenix-venv"


def phoenix_binary(settings: Settings) -> Path:
    return phoenix_venv(settings) / "bin" / "phoenix"


class PhoenixService(Service):
    name = "phoenix"
    title = "Phoenix (traces)"
    timeout_s = 120.0
    """Its first start migrates its database: ~35 s here."""
    marker = "phoenix serve"
    stop_timeout_s = 15.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = "127.0.0.1", settings.phoenix_port
        self.working_dir = settings.state_dir / "phoenix"

    @property
    def address(self) -> str:
        return self.settings.phoenix_url

    @property
    def otlp_endpoint(self) -> str:
        """What ``KAFKAORG_OTLP_ENDPOINT`` is set to for the processes the stack starts."""
        return self.address

    def installed(self) -> bool:
        return phoenix_binary(self.settings).is_file()

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.address}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def preflight(self) -> None:
        if not self.installed():
            raise StackError(
                f"Phoenix is not installed ({phoenix_venv(self.settings)} is missing; "
                "scripts/install.sh makes it)"
            )

    def ports(self) -> list[Port]:
        return [
            Port(self.host, self.port, "Phoenix's UI and OTLP/HTTP", "KAFKAORG_PHOENIX_PORT"),
            Port(self.host, self.settings.phoenix_grpc_port, "Phoenix's OTLP/gRPC",
                 "KAFKAORG_PHOENIX_GRPC_PORT"),
        ]  # fmt: skip

    def launch(self) -> None:
        self.working_dir.mkdir(parents=True, exist_ok=True)
        spawn(
            [str(phoenix_binary(self.settings)), "serve"],
            log_file=self.log_file,
            pid_file=self.pid_file,
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(self.working_dir),
                "PHOENIX_HOST": self.host,
                "PHOENIX_PORT": str(self.port),
                "PHOENIX_GRPC_PORT": str(self.settings.phoenix_grpc_port),
                "PHOENIX_WORKING_DIR": str(self.working_dir),
                # No usage tracking (FullStory, Scarf): nothing here reaches the internet.
                "PHOENIX_TELEMETRY_ENABLED": "false",
            },
            cwd=self.working_dir,
            detach=True,
        )

    def detail(self, healthy: bool, pid: int | None) -> str:
        if healthy:
            return f"traces in {self.address}" if pid else "running (not ours)"
        if not self.installed():
            return "not installed (scripts/install.sh)"
        return "starting or unhealthy" if pid else "down"
