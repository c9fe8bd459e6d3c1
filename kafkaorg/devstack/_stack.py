"""The local stack as a whole: start what is missing, wait for health, stop what we started."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from rich.console import Console

from kafkaorg.config import LOCAL_MODEL_DEFAULTS, Settings, get_settings

from ._base import Service
from ._console import ConsoleService
from ._kafka import KAFKA_VERSION, KafkaService
from ._local_model import LocalModelService
from ._models import ServiceStatus, StackError
from ._phoenix import PhoenixService
from ._postgres import PostgresService
from ._processes import last_error_line, port_open, port_owner
from ._prometheus import PrometheusService
from ._temporal import TemporalService
from ._workers import PlatformProcess


class DevStack:
    """Kafka, Temporal and PostgreSQL on this machine (plus worker and bridge on request).

    Every method is safe to call whatever state the stack is in: ``up`` starts only what
    does not answer yet, ``down`` only stops processes it finds pid files for.
    """

    def __init__(self, settings: Settings | None = None, console: Console | None = None) -> None:
        self.settings = settings or get_settings()
        self.console = console
        self.kafka = KafkaService(self.settings)
        self.temporal = TemporalService(self.settings)
        self.postgres = PostgresService(self.settings)
        self.core: list[Service] = [self.kafka, self.temporal, self.postgres]
        self.prometheus = PrometheusService(self.settings)
        self.console_service = ConsoleService(self.settings)
        self.phoenix = PhoenixService(self.settings)
        self.local_model = LocalModelService(self.settings)
        self.optional: list[Service] = [self.prometheus, self.console_service]
        """Started by every ``up`` when they can be; a missing one is a warning."""
        self.platform: list[Service] = [
            PlatformProcess(self.settings, "worker"),
            PlatformProcess(self.settings, "bridge"),
            # Tools run in nsjail on their own task queue (kafkaorg-sandbox).
            PlatformProcess(self.settings, "sandbox worker"),
        ]

    # -- output ----------------------------------------------------------------------------

    def _step(self, message: str) -> AbstractContextManager[Any]:
        return self.console.status(message) if self.console else nullcontext()

    def _say(self, message: str) -> None:
        if self.console:
            self.console.print(message)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One ``up``/``down`` at a time per state dir (tests and a shell may race)."""
        run_dir = self.settings.state_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "stack.lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                with self._step("Waiting for another kafkaorg dev command to finish …"):
                    fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- public ----------------------------------------------------------------------------

    def install(self) -> None:
        """Fetch Kafka's jars into the cache if they are not there yet."""
        if self.kafka.installed():
            self._say(f"[green]✓[/] Kafka {KAFKA_VERSION} jars present in {self.kafka.libs_dir}")
            return
        with self._step(
            f"Fetching Kafka {KAFKA_VERSION} jars from Maven Central into {self.kafka.libs_dir} …"
        ):
            self.kafka.install()
        self._say(f"[green]✓[/] Kafka {KAFKA_VERSION} jars installed in {self.kafka.libs_dir}")

    def up(
        self, workers: bool = False, trace_backend: bool = True, llm: bool = False
    ) -> list[ServiceStatus]:
        """Start what is not healthy yet, wait until everything answers, migrate the schema.

        ``trace_backend``: Phoenix too, when installed (the test suite starts it only for
        the tests that read traces). ``llm``: the local model too (it must be installed),
        the endpoint of every process started without ``KAFKAORG_LLM_BASE_URL``.
        """
        with self._lock():
            to_launch: list[Service] = []
            to_wait: list[Service] = []
            for service in self.core:
                if service.healthy():
                    self._say(f"[green]✓[/] {service.title} already running on {service.address}")
                    continue
                to_wait.append(service)
                if service.our_pid() is None:
                    if service is self.kafka and not self.kafka.installed():
                        self.install()
                    service.preflight()
                    self._check_ports(service)
                    to_launch.append(service)
            # Launch everything first and wait afterwards: the services start in parallel.
            for service in to_launch:
                service.launch()
            phoenix_launched = self._launch_phoenix() if trace_backend else False
            model_launched = self._launch_local_model() if llm else False
            for service in to_wait:
                self._wait(service)
            for service in self.core:
                service.after_healthy()
            self._migrate()
            if trace_backend:
                self._wait_phoenix(phoenix_launched)
            if llm:
                self._wait_local_model(model_launched)
            for service in self.optional:
                self._start_optional(service)
            if workers:
                launched = [s for s in self.platform if not s.healthy()]
                for service in launched:
                    service.launch()
                self._wait_survive(launched)
                for service in self.platform:
                    self._say(f"[green]✓[/] {service.title} running; log {service.log_file}")
        return self.status()

    def down(self) -> list[str]:
        """Stop the processes we started (worker and bridge first); returns their names."""
        with self._lock():
            extras = [*self.optional, *self.platform, self.phoenix, self.local_model]
            stopped = [s.name for s in extras if s.stop()]
            running = [s for s in self.core if s.our_pid() is not None]
            if running:
                names = ", ".join(s.title for s in running)
                with self._step(f"Stopping {names} …"), ThreadPoolExecutor(len(running)) as pool:
                    results = list(pool.map(lambda s: s.stop(), running))
                stopped += [s.name for s, done in zip(running, results, strict=True) if done]
        for name in stopped:
            self._say(f"[green]✓[/] stopped {name}")
        if not stopped:
            self._say("Nothing of ours was running.")
        return stopped

    def status(self) -> list[ServiceStatus]:
        """The state of every service, checked with a real client of each."""
        with ThreadPoolExecutor(len(self.core)) as pool:
            core = list(pool.map(lambda s: s.status(), self.core))
        extras = [*self.optional, self.phoenix, self.local_model, *self.platform]
        return core + [s.status() for s in extras]

    def is_up(self) -> bool:
        """Whether Kafka, Temporal and PostgreSQL all answer (worker and bridge not counted)."""
        return all(s.healthy() for s in self.core)

    # -- steps -----------------------------------------------------------------------------

    def _start_optional(self, service: Service) -> None:
        """Prometheus and the console need nothing at start and nothing needs them: one
        that cannot start (not installed, port taken) is a warning, not a failed ``up``."""
        if service.healthy():
            self._say(f"[green]✓[/] {service.title} running on {service.address}")
            return
        try:
            service.preflight()
            self._check_ports(service)
            service.launch()
            self._wait(service)
        except StackError as exc:
            self._say(f"[yellow]![/] {service.title} not started: {exc}")

    def _launch_phoenix(self) -> bool:
        """Start the trace backend if it is installed and not running; True if launched.
        Missing or blocked, it is a one-line note: the platform runs without traces."""
        phoenix = self.phoenix
        if phoenix.healthy() or phoenix.our_pid() is not None:
            return False
        try:
            phoenix.preflight()
            self._check_ports(phoenix)
        except StackError as exc:
            self._say(f"[yellow]![/] traces: {exc}; carrying on without Phoenix")
            return False
        phoenix.launch()
        return True

    def _wait_phoenix(self, launched: bool) -> None:
        """Wait for Phoenix; once it answers, the processes ``up`` starts send it their
        traces unless ``KAFKAORG_OTLP_ENDPOINT`` already names another collector."""
        phoenix = self.phoenix
        if launched or phoenix.our_pid() is not None:
            try:
                self._wait(phoenix)
            except StackError as exc:
                self._say(f"[yellow]![/] Phoenix not started: {exc}")
                return
        elif phoenix.healthy():
            self._say(f"[green]✓[/] {phoenix.title} already running on {phoenix.address}")
        if phoenix.healthy() and not self.settings.otlp_endpoint:
            update = {"otlp_endpoint": phoenix.otlp_endpoint}
            for service in self.platform:
                service.settings = service.settings.model_copy(update=update)

    def _launch_local_model(self) -> bool:
        """Start the local model unless it runs; asked for, a missing install is an error."""
        model = self.local_model
        if model.healthy() or model.our_pid() is not None:
            return False
        model.preflight()
        self._check_ports(model)
        model.launch()
        return True

    def _wait_local_model(self, launched: bool) -> None:
        """Once it answers, it is the endpoint of the processes ``up`` starts, unless
        ``KAFKAORG_LLM_BASE_URL`` names another."""
        model = self.local_model
        if launched or model.our_pid() is not None:
            self._wait(model)
        elif model.healthy():
            self._say(f"[green]✓[/] {model.title} already running on {model.address}")
        model.after_healthy()
        if self.settings.llm_base_url and self.settings.llm_base_url != model.base_url:
            self._say(
                f"[yellow]![/] KAFKAORG_LLM_BASE_URL is {self.settings.llm_base_url}: llm agents"
                " use that endpoint, not the local model"
            )
            return
        update = {
            "llm_base_url": model.base_url,
            "llm_model": model.model_name,
            **{
                k: v
                for k, v in LOCAL_MODEL_DEFAULTS.items()
                if k not in self.settings.model_fields_set
            },
        }
        for service in self.platform:
            service.settings = service.settings.model_copy(update=update)
        running = [s.title for s in self.platform if s.our_pid() is not None]
        if launched and running:
            self._say(
                f"[yellow]![/] {', '.join(running)} started before the local model: restart them"
                " (kafkaorg dev down, then up --llm --workers) so llm agents reach it"
            )

    def _check_ports(self, service: Service) -> None:
        for port in service.ports():
            if port_open(port.host, port.port):
                owner = port_owner(port.port) or "another process"
                raise StackError(
                    f"port {port.port} for {port.what} is taken by {owner}, which does not answer"
                    f" as {service.title}; stop it or move {service.title} with {port.setting}"
                )

    def _wait(self, service: Service) -> None:
        started = time.monotonic()
        deadline = started + service.timeout_s
        with self._step(f"Starting {service.title} on {service.address} …"):
            while not service.ready():
                if service.our_pid() is None:
                    raise StackError(self._died(service))
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{service.title} did not answer on {service.address} within"
                        f" {service.timeout_s:.0f} s; see {service.log_file}"
                    )
                time.sleep(0.5)
        elapsed = time.monotonic() - started
        self._say(f"[green]✓[/] {service.title} ready on {service.address} ({elapsed:.1f} s)")

    def _wait_survive(self, services: list[Service]) -> None:
        """Worker and bridge have no port; one that lives a few seconds has started."""
        if not services:
            return
        names = " and ".join(s.title for s in services)
        with self._step(f"Starting {names} …"):
            deadline = time.monotonic() + max(s.timeout_s for s in services)
            while time.monotonic() < deadline:
                for service in services:
                    if service.our_pid() is None:
                        raise StackError(self._died(service))
                time.sleep(0.25)

    @staticmethod
    def _died(service: Service) -> str:
        line = last_error_line(service.log_file)
        because = f" ({line})" if line else ""
        return f"{service.title} exited while starting{because}; see {service.log_file}"

    def _migrate(self) -> None:
        try:
            from kafkaorg.db.migrate import upgrade_to_head
        except ImportError as exc:
            self._say(f"[yellow]![/] database migrations skipped: kafkaorg.db.migrate ({exc})")
            return
        with self._step("Migrating the database schema to head …"):
            try:
                upgrade_to_head(self.settings.database_url)
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise StackError(f"database migration failed: {first}") from exc
        self._say("[green]✓[/] database schema at head")
