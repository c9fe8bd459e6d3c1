"""Is the stack up, and who else is on it: checks before a run, and the run's own processes.

Every check answers within seconds, so a missing service is one line on stderr
rather than a phase that times out minutes later; the poller and group-member
counts go into the report, since another worker or bridge on a shared stack
puts its load into the numbers.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy
from confluent_kafka import KafkaException
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.echo.harness import BenchError, err
from kafkaorg.bridge_status import read_bridge_statuses
from kafkaorg.config import Settings
from kafkaorg.devstack import KafkaorgProcess
from kafkaorg.errors import KafkaorgError
from kafkaorg.kafka import check_kafka, create_admin
from kafkaorg.names import BRIDGE_GROUP_ID, TASK_QUEUE
from kafkaorg.temporal import connect_temporal

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_HINT = "start the stack with `kafkaorg dev up --workers`"
START_HINT = (
    "start them with `kafkaorg dev up --workers`, "
    "or pass --start-workers to run a worker and a bridge for this run"
)
POLLER_FRESH_S = 90.0
"""A live idle worker re-polls at least every ~70 s (long-poll timeout); older pollers are gone."""


async def worker_pollers(client: Client, settings: Settings) -> list[str]:
    """Identities of workers that polled the platform's workflow task queue recently."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=5),
    )
    cutoff = time.time() - POLLER_FRESH_S
    return sorted(
        {p.identity for p in response.pollers if p.last_access_time.ToSeconds() >= cutoff}
    )


def bridge_members(settings: Settings) -> int:
    """Members of the bridge's consumer group: 0 means no bridge is running."""
    admin = create_admin(settings)
    try:
        futures = admin.describe_consumer_groups([BRIDGE_GROUP_ID], request_timeout=5)
        return len(futures[BRIDGE_GROUP_ID].result(timeout=10).members)
    except KafkaException:
        return 0


def check_postgres(settings: Settings) -> None:
    engine = sqlalchemy.create_engine(settings.database_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except sqlalchemy.exc.SQLAlchemyError:
        raise BenchError(
            f"PostgreSQL is not reachable at KAFKAORG_DATABASE_URL; {STACK_HINT}"
        ) from None
    finally:
        engine.dispose()


async def check_stack(settings: Settings) -> Client:
    """Kafka, Temporal and PostgreSQL must answer within seconds, or the run ends here."""
    try:
        await asyncio.to_thread(check_kafka, settings)
    except KafkaorgError:
        raise BenchError(
            f"Kafka is not reachable at {settings.kafka_bootstrap}; {STACK_HINT}"
        ) from None
    try:
        client = await asyncio.wait_for(connect_temporal(settings), timeout=15)
    except (KafkaorgError, TimeoutError):
        raise BenchError(
            f"Temporal is not reachable at {settings.temporal_address}; {STACK_HINT}"
        ) from None
    await asyncio.to_thread(check_postgres, settings)
    return client


async def check_processes(client: Client, settings: Settings) -> tuple[list[str], int]:
    """A worker and a bridge someone else started must be there; the kafkaorg phase needs both."""
    pollers = await worker_pollers(client, settings)
    members = await asyncio.to_thread(bridge_members, settings)
    missing = [
        what
        for what, ok in (("kafkaorg worker", bool(pollers)), ("kafkaorg bridge", members > 0))
        if not ok
    ]
    if missing:
        raise BenchError(f"no {' and no '.join(missing)} is running; {START_HINT}")
    return pollers, members


class PlatformProcesses:
    """``kafkaorg worker`` and ``kafkaorg bridge`` subprocesses for one run (--start-workers)."""

    def __init__(self, extra_env: dict[str, str | None] | None = None) -> None:
        """``extra_env``: variables set for these processes (None: removed)."""
        self.log_dir = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-"))
        merged = {**os.environ, **(extra_env or {})}
        env = {k: v for k, v in merged.items() if v is not None}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self.processes = {
            command: KafkaorgProcess(command, self.log_dir, env=env, cwd=REPO_ROOT)
            for command in ("worker", "bridge")
        }

    def start(self) -> None:
        for process in self.processes.values():
            process.start()
        err.print(f"started worker and bridge (logs in {self.log_dir})")

    def check_alive(self) -> None:
        for process in self.processes.values():
            if process.returncode is not None:
                raise BenchError(
                    f"`{process.title}` exited with {process.returncode}; see {process.log_path}"
                )

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=20)


async def wait_for_own_processes(
    client: Client, settings: Settings, processes: PlatformProcesses, timeout: float = 60
) -> tuple[list[str], int]:
    """Until our worker polls and a bridge is in its group (bounded; dies early if they do)."""
    worker_pid = processes.processes["worker"].pid
    bridge_pid = processes.processes["bridge"].pid
    deadline = time.monotonic() + timeout
    while True:
        processes.check_alive()
        pollers = await worker_pollers(client, settings)
        members = await asyncio.to_thread(bridge_members, settings)
        # On a fresh broker no topic matches the bridge's pattern yet, so the group has no
        # members; the bridge's own status file says it is up all the same.
        bridge_up = members > 0 or any(
            s.get("pid") == bridge_pid for s in read_bridge_statuses(settings)
        )
        if any(p.startswith(f"{worker_pid}@") for p in pollers) and bridge_up:
            return pollers, members
        if time.monotonic() > deadline:
            raise BenchError(
                f"worker/bridge not ready within {timeout:.0f} s; see logs in {processes.log_dir}"
            )
        await asyncio.sleep(0.5)
