"""The web console as a service of the local stack: ``kafkaorg console``, detached."""

from __future__ import annotations

import urllib.request

from kafkaorg.config import Settings

from ._base import Port, Service
from ._processes import port_open
from ._workers import KafkaorgProcess, settings_env


class ConsoleService(Service):
    name = "console"
    title = "kafkaorg console"
    timeout_s = 20.0
    marker = "kafkaorg.cli console"
    stop_timeout_s = 10.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = settings.console_host, settings.console_port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.settings.console_url

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def preflight(self) -> None:
        return None

    def ports(self) -> list[Port]:
        return [Port(self.host, self.port, "the console", "KAFKAORG_CONSOLE_PORT")]

    def launch(self) -> None:
        env = settings_env(self.settings)
        if not self.settings.prometheus_url:
            # The local stack's Prometheus, when it runs: the console's rates come from it.
            from ._prometheus import PrometheusService

            prometheus = PrometheusService(self.settings)
            if prometheus.healthy():
                env["KAFKAORG_PROMETHEUS_URL"] = prometheus.url
        process = KafkaorgProcess(
            f"console --host {self.host} --port {self.port}",
            self.logs_dir,
            env=env,
            cwd=self.settings.state_dir,
            detach=True,
            pid_file=self.pid_file,
        )
        process.log_path = self.log_file
        process.start()

    def detail(self, healthy: bool, pid: int | None) -> str:
        if healthy:
            return f"open {self.url} in a browser" + ("" if pid else " (not started by us)")
        return "starting or unhealthy" if pid else "down"
