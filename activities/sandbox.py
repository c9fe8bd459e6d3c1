"""Running agent-written code: the nsjail sandbox as a Temporal activity.

Hosted by the sandbox worker on ``kafkaorg-sandbox`` (see workers/), a process
of its own so that the hosts that run untrusted code can be separate from the
ones holding Kafka and database clients.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from kafkaorg import tracing
from kafkaorg.metrics import SANDBOX_RUN_SECONDS, SANDBOX_RUNS
from kafkaorg.sandbox import (
    SandboxInputError,
    SandboxPolicy,
    SandboxResult,
    SandboxUnavailableError,
    run_in_sandbox,
)

RUN_CODE_MARGIN = timedelta(seconds=10)
"""Over the wall time: jail set-up and teardown, a slow heartbeat, a loaded host."""
RUN_CODE_HEARTBEAT_TIMEOUT = timedelta(seconds=5)
RUN_CODE_RETRY = RetryPolicy(
    maximum_attempts=3,
    initial_interval=timedelta(seconds=1),
    non_retryable_error_types=["SandboxInputError"],
)
"""Retries cover a worker lost mid-run or a host that cannot jail; a program that
fails or hits a limit is a *result* and is never retried (it would fail again)."""


class SandboxRequest(BaseModel):
    """One run: Python source and its standard input (a tool reads JSON from it)."""

    code: str
    stdin: str = ""
    policy: SandboxPolicy | None = None
    """Tighter limits for this run; the worker's policy caps every field."""
    trace: dict[str, str] | None = None
    """Trace carrier of the record this run is for: its ``sandbox.run`` span joins that trace."""
    stdin_ref: StoredStdin | None = None
    """Standard input stored in PostgreSQL instead (a payload by reference): read by the
    sandbox worker, so a 20 MB payload never passes through Temporal."""


class StoredStdin(BaseModel):
    org: str
    sha256: str


StoredPayloads = Callable[[str, str], bytes | None]
"""``(org, sha256)`` → the stored payload's bytes (kafkaorg.payloads.stored)."""


def run_code_timeout(policy: SandboxPolicy) -> timedelta:
    """``start_to_close_timeout`` for ``run_code`` under ``policy`` (its wall time + margin)."""
    return timedelta(seconds=policy.wall_time_s) + RUN_CODE_MARGIN


class SandboxActivities:
    """Holds the worker's sandbox policy; every request runs under it or stricter."""

    def __init__(self, policy: SandboxPolicy, stored: StoredPayloads | None = None) -> None:
        self._policy = policy
        self._stored = stored

    @property
    def policy(self) -> SandboxPolicy:
        return self._policy

    @activity.defn
    def run_code(self, request: SandboxRequest) -> SandboxResult:
        """Run ``request.code`` in a fresh jail, heartbeating until it ends.

        Sync on purpose: the run blocks a thread of the worker's executor, and
        cancellation arrives through the heartbeat, which kills the jail.
        """
        if not tracing.enabled():
            return self._run_code(request, None)
        info = activity.info()
        with tracing.span(
            "sandbox.run",
            parent=request.trace,
            attributes={
                "kafkaorg.workflow_id": info.workflow_id or "",
                "kafkaorg.sandbox.wall_time_s": self._policy.tightened(request.policy).wall_time_s,
            },
            links=[tracing.current_span_for_link()],
            nest=True,
        ) as span:
            return self._run_code(request, span)

    def _run_code(self, request: SandboxRequest, span: tracing.Span | None) -> SandboxResult:
        policy = self._policy.tightened(request.policy)
        started = time.perf_counter()
        stdin = self._stdin(request)
        try:
            result = run_in_sandbox(request.code, stdin, policy, on_tick=activity.heartbeat)
        except SandboxInputError as exc:
            _count("input-error", time.perf_counter() - started, span=span)
            raise ApplicationError(str(exc), type="SandboxInputError", non_retryable=True) from None
        except SandboxUnavailableError as exc:
            _count("unavailable", time.perf_counter() - started, span=span)
            raise ApplicationError(str(exc), type="SandboxUnavailableError") from None
        outcome = "ok" if result.ok else "limit" if result.limit_hit else "exit-nonzero"
        _count(outcome, result.duration_s, str(result.limit_hit or "none"), span=span)
        if span is not None:
            span.set_attribute("kafkaorg.sandbox.cpu_s", result.cpu_s or 0.0)
            if result.exit_code is not None:
                span.set_attribute("kafkaorg.sandbox.exit_code", result.exit_code)
            if not result.ok:
                span.set_status(tracing.Status(tracing.StatusCode.ERROR, outcome))
        return result

    def _stdin(self, request: SandboxRequest) -> bytes:
        if request.stdin_ref is None:
            return request.stdin.encode()
        ref = request.stdin_ref
        data = self._stored(ref.org, ref.sha256) if self._stored is not None else None
        if data is None:
            raise ApplicationError(
                f"payload {ref.sha256[:12]}… of org {ref.org!r} is not stored "
                "(collected after its retention?)",
                type="PayloadMissing",
                non_retryable=True,
            )
        return data


def _count(
    outcome: str, seconds: float, limit: str = "none", span: tracing.Span | None = None
) -> None:
    SANDBOX_RUNS.labels(outcome, limit).inc()
    SANDBOX_RUN_SECONDS.labels(outcome).observe(seconds)
    if span is not None:
        span.set_attributes(
            {
                "kafkaorg.sandbox.outcome": outcome,
                "kafkaorg.sandbox.limit_hit": limit,
                "kafkaorg.sandbox.duration_s": seconds,
            }
        )
