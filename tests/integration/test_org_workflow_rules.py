"""OrgWorkflow's rules and races at workflow level: the real workflow code on the
session's Temporal, its activities stubbed (no Kafka, no PostgreSQL), so each case
runs in well under a second and the stubs count what the workflow asked for.

``WorkflowEnvironment.from_client`` (not ``start_local``, which downloads a server
these machines cannot fetch) with a fresh task queue per test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.kafka import (
    DeleteTopicsInput,
    EnsureTopicsInput,
    EnsureTopicsResult,
    PublishInput,
    PublishResult,
)
from activities.lifecycle import AgentsRef
from activities.state import (
    AgentStatusChange,
    OrgStatusChange,
    RegisterAgentInput,
    RegisteredAgent,
    SaveOrgResult,
    SaveTopicInput,
)
from kafkaorg.config import Settings
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ChangeResult,
    CreateAgentRequest,
    OrgInput,
    OrgPhase,
    OrgStatus,
    OrgUpdate,
)
from kafkaorg.spec import AgentSpec, OrgSpec
from kafkaorg.temporal import connect_temporal
from workflows.org import OrgWorkflow

pytestmark = pytest.mark.integration


@dataclass
class Stubs:
    """Stand-ins for the org's activities that record what they were asked."""

    calls: Counter[str] = field(default_factory=Counter)
    registered: list[str] = field(default_factory=list)
    audit_types: list[str] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        stubs = self

        @activity.defn(name="save_org")
        async def save_org(spec: OrgSpec) -> SaveOrgResult:
            stubs.calls["save_org"] += 1
            return SaveOrgResult(
                org_id=1, topics=[t.name for t in spec.topics], agents=[a.name for a in spec.agents]
            )

        @activity.defn(name="ensure_topics")
        async def ensure_topics(input: EnsureTopicsInput) -> EnsureTopicsResult:
            return EnsureTopicsResult(created=[t.kafka_topic for t in input.topics], existing=[])

        @activity.defn(name="publish")
        async def publish(input: PublishInput) -> PublishResult:
            stubs.audit_types += [r.type for r in input.records]
            return PublishResult(published=len(input.records))

        @activity.defn(name="register_agent")
        async def register_agent(input: RegisterAgentInput) -> RegisteredAgent:
            await asyncio.sleep(0.05)  # long enough for the other requests to queue up
            stubs.registered.append(input.agent.spec.name)
            return RegisteredAgent(agent=input.agent.spec.name, version=1, workflow_id="-")

        @activity.defn(name="start_agents")
        async def start_agents(ref: AgentsRef) -> list[str]:
            return list(ref.agents)

        @activity.defn(name="command_agent")
        async def command_agent(command: AgentCommand) -> bool:
            stubs.calls[f"command:{command.action}"] += 1
            return True

        @activity.defn(name="set_agent_status")
        async def set_agent_status(change: AgentStatusChange) -> None:
            stubs.calls[f"status:{change.status}"] += 1

        @activity.defn(name="set_org_status")
        async def set_org_status(change: OrgStatusChange) -> None:
            return None

        @activity.defn(name="save_topic")
        async def save_topic(input: SaveTopicInput) -> None:
            return None

        @activity.defn(name="missing_topics")
        async def missing_topics(input: DeleteTopicsInput) -> list[str]:
            return []

        @activity.defn(name="stopped_agents")
        async def stopped_agents(ref: AgentsRef) -> list[str]:
            return []

        @activity.defn(name="stop_agents")
        async def stop_agents(ref: AgentsRef) -> None:
            return None

        return [
            save_org,
            ensure_topics,
            publish,
            register_agent,
            start_agents,
            command_agent,
            set_agent_status,
            set_org_status,
            save_topic,
            missing_topics,
            stopped_agents,
            stop_agents,
        ]


@dataclass
class Org:
    handle: WorkflowHandle[OrgWorkflow, OrgStatus]
    stubs: Stubs


@pytest.fixture
async def temporal(stack: Settings) -> AsyncIterator[Client]:
    env = WorkflowEnvironment.from_client(await connect_temporal(stack))
    yield env.client


@pytest.fixture
async def org(temporal: Client) -> AsyncIterator[Org]:
    stubs = Stubs()
    queue = f"rules-{uuid.uuid4()}"
    name = f"r{uuid.uuid4().hex[:10]}"
    spec = OrgSpec.model_validate(
        {
            "org": name,
            "topics": [{"name": "inbox"}, {"name": "outbox"}],
            "agents": [
                {
                    "name": "boss",
                    "kind": "echo",
                    "subscribes": ["inbox"],
                    "publishes": ["outbox"],
                    "can_create_agents": True,
                }
            ],
            "limits": {"max_agents": 5, "max_spawns_per_minute": 2},
        }
    )
    async with Worker(
        temporal, task_queue=queue, workflows=[OrgWorkflow], activities=stubs.activities()
    ):
        handle = await temporal.start_workflow(
            OrgWorkflow.run,
            OrgInput.model_validate(spec.model_dump(by_alias=True)),
            id=f"org:{name}",
            task_queue=queue,
        )
        for _ in range(100):
            if (await handle.query(OrgWorkflow.status)).phase == OrgPhase.RUNNING:
                break
            await asyncio.sleep(0.05)
        yield Org(handle, stubs)
        await handle.terminate("test over")


def _child(name: str) -> AgentSpec:
    return AgentSpec(name=name, kind="echo", subscribes=["inbox"], publishes=["outbox"])


async def _race(org: Org, requests: list[CreateAgentRequest]) -> tuple[int, list[ApplicationError]]:
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(org.handle.execute_update(OrgWorkflow.create_agent, r) for r in requests),
            return_exceptions=True,
        ),
        30,
    )
    won = sum(isinstance(o, ChangeResult) for o in outcomes)
    refusals = []
    for o in outcomes:
        if isinstance(o, BaseException):
            assert isinstance(o, WorkflowUpdateFailedError), o
            assert isinstance(o.cause, ApplicationError), o.cause
            refusals.append(o.cause)
    return won, refusals


async def _no_task_failed(org: Org) -> None:
    history = await org.handle.fetch_history()
    kinds = {e.event_type for e in history.events}
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in kinds


async def test_racing_creations_register_the_agent_once(org: Org) -> None:
    won, refusals = await _race(org, [CreateAgentRequest(agent=_child("kid"))] * 10)
    assert won == 1 and len(refusals) == 9
    assert {r.type for r in refusals} == {"AlreadyExists"}
    assert all(r.non_retryable for r in refusals)
    assert org.stubs.registered == ["kid"]
    assert org.stubs.audit_types.count("agent.created") == 1
    await _no_task_failed(org)


async def test_racing_spawns_by_an_agent_stop_at_the_spawn_rate(org: Org) -> None:
    requests = [
        CreateAgentRequest(agent=_child(f"kid-{i}"), requested_by="agent:boss") for i in range(6)
    ]
    won, refusals = await _race(org, requests)
    assert won == 2  # limits.max_spawns_per_minute
    assert {r.type for r in refusals} == {"QuotaExceeded"}
    assert all("spawned in the last minute" in r.message for r in refusals)
    assert len(org.stubs.registered) == 2
    await _no_task_failed(org)


async def test_refusals_rejected_by_the_validator_leave_no_trace_in_history(org: Org) -> None:
    before = len((await org.handle.fetch_history()).events)
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await org.handle.execute_update(
            OrgWorkflow.change_agent, AgentCommand(agent="nobody", action=AgentAction.PAUSE)
        )
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "NotFound"
    assert len((await org.handle.fetch_history()).events) == before


async def test_pause_then_retire_is_told_to_the_agent_in_order(org: Org) -> None:
    for action in (AgentAction.PAUSE, AgentAction.PAUSE, AgentAction.RETIRE):
        await org.handle.execute_update(
            OrgUpdate.CHANGE_AGENT,
            AgentCommand(agent="boss", action=action),
            result_type=ChangeResult,
        )
    # The second pause changed nothing and told the agent nothing.
    assert org.stubs.calls["command:pause"] == 1
    assert org.stubs.calls["command:retire"] == 1
    assert org.stubs.calls["status:retired"] == 1
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await org.handle.execute_update(
            OrgWorkflow.change_agent, AgentCommand(agent="boss", action=AgentAction.RESUME)
        )
    assert "is retired" in str(info.value.cause)
