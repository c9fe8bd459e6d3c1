"""Prometheus (Debian's ``prometheus``) scraping the platform's processes.

Optional: when the binary is missing ``kafkaorg dev up`` says so and goes on; the
console then reads the processes' metrics directly.
"""

from __future__ import annotations

import urllib.request
from importlib import resources
from pathlib import Path

from kafkaorg.config import Settings
from kafkaorg.metrics import metrics_dir

from ._base import Port, Service
from ._models import StackError
from ._processes import find_binary, port_open, spawn


class PrometheusService(Service):
    name = "prometheus"
    title = "Prometheus"
    timeout_s = 30.0
    marker = "prometheus"
    stop_timeout_s = 15.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = "127.0.0.1", settings.prometheus_port
        self.home = settings.state_dir / "prometheus"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _binary(self) -> Path:
        binary = find_binary("prometheus")
        if binary is None:
            raise StackError(
                "Prometheus is not installed (Debian package prometheus): run scripts/install.sh"
            )
        return binary

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def preflight(self) -> None:
        self._binary()

    def ports(self) -> list[Port]:
        return [Port(self.host, self.port, "Prometheus", "KAFKAORG_PROMETHEUS_PORT")]

    def config_file(self) -> Path:
        """The shipped config with this stack's metrics folder filled in."""
        template = resources.files("kafkaorg.devstack").joinpath("prometheus.yml").read_text()
        folder = metrics_dir(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        path = self.home / "prometheus.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.replace("{metrics_dir}", str(folder)))
        return path

    def detail(self, healthy: bool, pid: int | None) -> str:
        if healthy:
            return f"{self.url} (scrapes {metrics_dir(self.settings)}/*.json)"
        return "starting or unhealthy" if pid else "down"

    def launch(self) -> None:
        spawn(
            [
                str(self._binary()),
                f"--config.file={self.config_file()}",
                f"--storage.tsdb.path={self.home / 'data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={self.host}:{self.port}",
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.home,
            detach=True,
        )
