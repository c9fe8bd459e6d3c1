"""What the local stack reports: one status per service, one error type for expected failures."""

from __future__ import annotations

from pydantic import BaseModel

from kafkaorg.errors import KafkaorgError


class StackError(KafkaorgError):
    """An expected failure of the local stack, with one line saying what is wrong and how to fix it.

    The CLI prints it without a traceback (exit 1), so the message must stand on its own.
    """


class ProcessExitedError(KafkaorgError):
    """A ``kafkaorg`` child process is not running when it should be; quotes its log's end."""


class ServiceStatus(BaseModel):
    """The state of one service of the local stack, as ``kafkaorg dev status`` shows it."""

    name: str
    healthy: bool
    address: str
    pid: int | None = None
    detail: str = ""
    log: str | None = None
    """Where the service writes its log, when it is ours."""
    metrics_url: str | None = None
    """The process's Prometheus endpoint (worker, bridge, sandbox worker, while running)."""
    sdk_metrics_url: str | None = None
    """Its Temporal SDK metrics (the SDK's own Prometheus endpoint)."""
