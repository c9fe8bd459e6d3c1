"""Helpers the integration tests share: processes, orgs, producing and collecting records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from kafkaorg.client import launch_org
from kafkaorg.config import Settings
from kafkaorg.contracts import (
    AgentInput,
    AgentReport,
    AgentResult,
    OrgSignal,
    OrgStopRequest,
    StopRequest,
)
from kafkaorg.devstack import KafkaorgProcess
from kafkaorg.envelope import Record, new_record
from kafkaorg.kafka import Outgoing, client_config, create_admin, create_producer, produce_and_wait
from kafkaorg.names import (
    ORG_WORKFLOW_TYPE,
    TASK_QUEUE,
    agent_search_attributes,
    agent_workflow_id,
    kafka_topic,
)
from kafkaorg.spec import OrgSpec, validate_spec
from kafkaorg.temporal import connect_temporal
from workflows.agent import AgentWorkflow


def unique_org(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ProcessHandle(KafkaorgProcess):
    """A real ``kafkaorg worker|bridge|sandbox worker`` process a test may kill and restart.

    It inherits the test process's environment at each start, so a test sets variables
    before ``start()``; ``ensure_alive()`` fails the test with the log's tail if it died.
    """

    start_check_s = 0.5


@dataclass
class Collected:
    record: Record
    partition: int
    offset: int


@dataclass
class Platform:
    settings: Settings
    client: Client
    producer: Producer
    worker: ProcessHandle
    bridge: ProcessHandle

    @classmethod
    async def connect(
        cls, settings: Settings, *, worker: ProcessHandle, bridge: ProcessHandle
    ) -> Platform:
        worker.ensure_alive()
        bridge.ensure_alive()
        client = await connect_temporal(settings)
        return cls(settings, client, create_producer(settings), worker, bridge)

    async def close(self) -> None:
        await asyncio.to_thread(self.producer.flush, 10)
        await self.stop_running_orgs()

    async def stop_running_orgs(self) -> None:
        """Every org still running goes when a test ends (the test's own and any a CLI
        started). Left running, the suite's ~150 orgs woke every minute to reconcile, and a
        restarted worker, replaying them all on 2 cores, took over 60 s to start a new
        org (test_traces)."""
        query = f"WorkflowType = '{ORG_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
        running = [execution.id async for execution in self.client.list_workflows(query)]
        for workflow_id in running:
            with contextlib.suppress(RPCError):
                await self.client.get_workflow_handle(workflow_id).signal(
                    OrgSignal.STOP, OrgStopRequest(reason="test finished")
                )

    async def start_org(self, spec: dict[str, Any]) -> OrgSpec:
        org_spec = validate_spec(spec)
        await launch_org(self.settings, org_spec)
        return org_spec

    async def restart_agent(
        self, org: str, agent: str, **hooks: Any
    ) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        """Stop an agent's workflow and start it again with test hooks (``AgentInput`` fields)."""
        wf_id = agent_workflow_id(org, agent)
        handle = self.client.get_workflow_handle_for(AgentWorkflow.run, wf_id)
        await handle.signal(AgentWorkflow.stop, StopRequest())
        await handle.result()
        return await self.client.start_workflow(
            AgentWorkflow.run,
            AgentInput(org=org, agent=agent, **hooks),
            id=wf_id,
            task_queue=TASK_QUEUE,
            search_attributes=agent_search_attributes(org, agent),
        )

    async def agent_status(
        self, org: str, agent: str, until: Callable[[AgentReport], bool], timeout: float = 10
    ) -> AgentReport:
        """The latest run's status once ``until`` holds, or the last one seen at ``timeout``."""
        handle = self.client.get_workflow_handle_for(
            AgentWorkflow.run, agent_workflow_id(org, agent)
        )
        deadline = time.monotonic() + timeout
        while True:
            status = await handle.query(AgentWorkflow.status)
            if until(status) or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.2)

    @contextlib.contextmanager
    def replaced(self, session_process: ProcessHandle, **env: str) -> Iterator[ProcessHandle]:
        """The session's worker or bridge replaced, for one test, by one started with
        these ``KAFKAORG_*`` variables (a bridge joins the same group and takes over every
        partition; a worker polls the same task queues)."""
        session_process.stop()
        special = ProcessHandle(
            session_process.command, session_process.log_path.parent, env={**os.environ, **env}
        )
        special.start()
        try:
            yield special
        finally:
            special.stop()
            session_process.start()

    async def send(self, org: str, topic: str, records: list[Record]) -> None:
        items = [Outgoing(kafka_topic(org, topic), r) for r in records]
        await asyncio.to_thread(produce_and_wait, self.producer, items)

    async def send_raw(
        self,
        org: str,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        def _produce() -> None:
            self.producer.produce(kafka_topic(org, topic), value=value, key=key, headers=headers)
            assert self.producer.flush(30) == 0

        await asyncio.to_thread(_produce)

    async def collect(
        self,
        org: str,
        topic: str,
        count: int,
        timeout: float = 90.0,
        settle: float = 0.0,
        until: Callable[[list[Collected]], bool] | None = None,
    ) -> list[Collected]:
        """Read ``topic`` from its start until ``count`` distinct records, then ``settle`` s.

        ``until`` replaces the count where other writers share the topic and only some
        records matter.
        """
        return await asyncio.to_thread(
            collect_records, self.settings, kafka_topic(org, topic), count, timeout, settle, until
        )


def task(
    org: str, n: int, correlation_id: str | None = None, type_: str = "task.request"
) -> Record:
    return new_record(
        org=org,
        type=type_,
        source="user:test",
        payload={"n": n, "title": f"task {n}"},
        correlation_id=correlation_id,
    )


def collect_records(
    settings: Settings,
    topic: str,
    count: int,
    timeout: float,
    settle: float,
    until: Callable[[list[Collected]], bool] | None = None,
) -> list[Collected]:
    metadata = create_admin(settings).list_topics(topic, timeout=10)
    partitions = len(metadata.topics[topic].partitions)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Collected] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            done = until(out) if until else len({c.record.id for c in out}) >= count
            if settle_until is None and done:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            message = consumer.poll(0.2)
            if message is None:
                continue
            err = message.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(err))
                continue
            out.append(
                Collected(
                    Record.from_kafka_value(message.value() or b""),
                    message.partition() or 0,
                    message.offset() or 0,
                )
            )
    finally:
        consumer.close()
    return out


def raw_messages(settings: Settings, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
    """Raw Kafka messages (value and headers) of a topic, for DLQ checks."""
    metadata = create_admin(settings).list_topics(topic, timeout=10)
    partitions = len(metadata.topics[topic].partitions)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            out.append(message)
    finally:
        consumer.close()
    return out


def echo_spec(org: str, partitions: int = 3) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "inbox", "class": "work", "partitions": partitions},
            {"name": "outbox", "class": "work", "partitions": partitions},
        ],
        "agents": [
            {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
        ],
    }


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``kafkaorg ARGS`` as a user would (a real process, no stdin)."""
    return subprocess.run(
        [sys.executable, "-m", "kafkaorg.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def db_sessions(settings: Settings) -> Any:
    from kafkaorg.db import create_engine, create_sessionmaker

    return create_sessionmaker(create_engine(settings.database_url, pool_size=1))


def run_cli_raw(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run another program (e.g. the plain ``temporal`` CLI) the same way."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


async def run_cli_async(*args: str) -> subprocess.CompletedProcess[str]:
    """``run_cli`` from async tests, without blocking the event loop."""
    return await asyncio.to_thread(run_cli, *args)


def assert_one_clear_line(
    result: subprocess.CompletedProcess[str], code: int, *needles: str
) -> None:
    """DESIGN's error contract: this exit status, one ``error:`` line, no traceback."""
    assert result.returncode == code, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
