"""The sandbox worker: hosts ``SandboxActivities.run_code`` on ``kafkaorg-sandbox``, and
the activities of stdio MCP servers, which it starts in the same jail.

A process of its own (``kafkaorg sandbox worker``) so untrusted code runs on
hosts chosen for it, away from the workers that hold Kafka and database
clients. It needs Temporal and nsjail, nothing else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.mcp_client import JailedMcpActivities
from activities.sandbox import SandboxActivities
from kafkaorg import payloads, tracing
from kafkaorg.config import Settings
from kafkaorg.metrics import process_metrics
from kafkaorg.names import SANDBOX_TASK_QUEUE
from kafkaorg.sandbox import (
    SandboxCapabilities,
    SandboxPolicy,
    SandboxUnavailableError,
    host_capabilities,
)
from kafkaorg.temporal import connect_temporal

log = logging.getLogger(__name__)


def sandbox_concurrency() -> int:
    """Jails at a time: one per CPU (a jail may burn a whole CPU until its limit)."""
    return max(2, os.cpu_count() or 2)


def build_sandbox_worker(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    *,
    policy: SandboxPolicy | None = None,
    task_queue: str = SANDBOX_TASK_QUEUE,
    max_concurrent: int | None = None,
) -> Worker:
    """A worker hosting ``run_code``; tests pass their own task queue.

    ``max_concurrent`` should not exceed the executor's threads (default:
    :func:`sandbox_concurrency`).
    """
    # Tools' payloads stored by reference are read here, not carried through Temporal.
    sandbox = SandboxActivities(
        policy or SandboxPolicy(), functools.partial(payloads.stored, settings)
    )
    mcp = JailedMcpActivities(sandbox.policy)
    return Worker(
        client,
        task_queue=task_queue,
        activities=[sandbox.run_code, mcp.list_jailed_mcp_tools, mcp.call_mcp_tool],
        activity_executor=executor,
        max_concurrent_activities=max_concurrent or sandbox_concurrency(),
    )


async def run_sandbox_worker(settings: Settings, policy: SandboxPolicy | None = None) -> None:
    """Run until SIGTERM/SIGINT, after checking that this host can jail at all."""
    caps = host_capabilities()
    if not caps.can_run:
        raise SandboxUnavailableError("sandbox unavailable: " + "; ".join(caps.problems()))
    with (
        tracing.process_tracing(settings, tracing.SERVICE_SANDBOX_WORKER),
        process_metrics(settings, "sandbox-worker") as runtime,
    ):
        client = await connect_temporal(settings, runtime)
        await _serve(settings, client, caps, policy)


async def _serve(
    settings: Settings, client: Client, caps: SandboxCapabilities, policy: SandboxPolicy | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    workers = sandbox_concurrency()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as executor:
        worker = build_sandbox_worker(
            client, settings, executor, policy=policy, max_concurrent=workers
        )
        async with worker:
            log.info(
                "sandbox worker polling %r on %s (%d jails at a time; memory cgroup: %s, "
                "pids cgroup: %s)",
                SANDBOX_TASK_QUEUE,
                settings.temporal_address,
                workers,
                caps.memory.detail if caps.memory.usable else f"off ({caps.memory.detail})",
                caps.pids.detail if caps.pids.usable else f"off ({caps.pids.detail})",
            )
            await stop.wait()
