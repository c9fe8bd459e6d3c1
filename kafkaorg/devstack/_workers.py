"""The platform's own processes (``kafkaorg worker``, ``kafkaorg bridge``, ``kafkaorg sandbox
worker``): how they are started, by the stack, the tests and the benchmarks alike."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from kafkaorg.config import Settings

from ._base import Port, Service
from ._models import ProcessExitedError, ServiceStatus
from ._processes import PidFile, port_open, spawn, split_host_port


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
    if settings.otlp_endpoint:  # traces (kafkaorg/tracing.py): dev up may point them at Phoenix
        env["KAFKAORG_OTLP_ENDPOINT"] = settings.otlp_endpoint
    if settings.llm_base_url:  # dev up --llm may point them at the local model
        env["KAFKAORG_LLM_BASE_URL"] = settings.llm_base_url
        env["KAFKAORG_LLM_MODEL"] = settings.llm_model
        env["KAFKAORG_LLM_MAX_TOKENS_PARAM"] = settings.llm_max_tokens_param
        env["KAFKAORG_LLM_MAX_TOKENS"] = str(settings.llm_max_tokens)
        env["KAFKAORG_LLM_TIMEOUT_S"] = str(settings.llm_timeout_s)
        env["KAFKAORG_LLM_MAX_RETRIES"] = str(settings.llm_max_retries)
    return env


class KafkaorgProcess:
    """One ``python -m kafkaorg.cli <command>`` child, its output appended to a log file.

    The one way the platform's processes are started: by ``kafkaorg dev up --workers``
    (detached and tracked by a pid file, so a later ``kafkaorg dev down`` stops them), by
    the tests (which SIGKILL and restart them, and read their logs) and by the benchmarks.
    The log is ``<log_dir>/<name or command, spaces as dashes>.log``, kept across restarts
    (a ``name`` tells a second worker's log from the first's).
    """

    start_check_s: float = 0.0
    """How long ``start`` watches for an exit at once (an import error, a bad setting)."""

    def __init__(
        self,
        command: str,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detach: bool = False,
        pid_file: PidFile | None = None,
        name: str | None = None,
    ) -> None:
        self.command = command
        self.title = f"kafkaorg {command}" + (f" ({name})" if name else "")
        self.log_path = log_dir / f"{name or command.replace(' ', '-')}.log"
        self.env = env  # None: this process's environment as it is at each start
        self.cwd = cwd
        self.detach = detach
        self.pid_file = pid_file
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        """Start it; raise ProcessExitedError if it exits within ``start_check_s``."""
        self.process = spawn(
            [sys.executable, "-m", "kafkaorg.cli", *self.command.split()],
            log_file=self.log_path,
            pid_file=self.pid_file,
            env=self.env,
            cwd=self.cwd,
            detach=self.detach,
        )
        if self.start_check_s:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.start_check_s)
            self.ensure_alive()

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.title} was never started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited, else None."""
        return None if self.process is None else self.process.poll()

    def ensure_alive(self) -> None:
        """Raise ProcessExitedError, quoting the end of its log, unless it runs."""
        if self.process is not None and self.process.poll() is None:
            return
        state = "never started" if self.process is None else f"exited ({self.process.returncode})"
        raise ProcessExitedError(
            f"{self.title} {state}; end of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL: no chance to finish, flush or commit anything."""
        assert self.process is not None, f"{self.title} was never started"
        self.process.kill()
        self.process.wait(timeout=10)

    def restart_after_kill(self) -> None:
        self.kill()
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (it finishes what it is doing), SIGKILL if still running after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def log_tail(log_file: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log (read from its last 64 KiB)."""
    try:
        with log_file.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class PlatformProcess(Service):
    """A KafkaorgProcess under the stack, found again by its pid file; healthy while it runs."""

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
        KafkaorgProcess(
            self.command,
            self.logs_dir,
            env=settings_env(self.settings),
            cwd=self.settings.state_dir,
            detach=True,
            pid_file=self.pid_file,
        ).start()

    def status(self) -> ServiceStatus:
        """As every service's, plus the metrics endpoints its process announced."""
        from kafkaorg.metrics import metrics_endpoints

        status = super().status()
        if status.pid is not None:
            urls = {
                e.process: e.url for e in metrics_endpoints(self.settings) if e.pid == status.pid
            }
            status.metrics_url = urls.get(self.name)
            status.sdk_metrics_url = urls.get(f"{self.name}-temporal-sdk")
        return status

    def detail(self, healthy: bool, pid: int | None) -> str:
        base = "running" if healthy else "not running (start with: kafkaorg dev up --workers)"
        if self.command != "bridge":
            return base
        return "; ".join([base, *bridge_backpressure(self.settings)])


def bridge_backpressure(settings: Settings) -> list[str]:
    """The bridge group's total lag (from Kafka) and what running bridges have paused."""
    from kafkaorg.bridge_status import read_bridge_statuses
    from kafkaorg.errors import KafkaorgError
    from kafkaorg.lag import bridge_lag

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
