"""Starting, signalling and stopping agent workflows from the OrgWorkflow, idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg import client as service
from kafkaorg.contracts import AgentAction, AgentCommand

T = TypeVar("T")


class AgentsRef(BaseModel):
    org: str
    agents: list[str]


class LifecycleActivities:
    def __init__(self, client: Client, concurrency: int = 32) -> None:
        self._client = client
        self._concurrency = concurrency

    async def _each(self, agents: list[str], act: Callable[[str], Awaitable[T]]) -> list[T]:
        """``act`` on every agent, ``concurrency`` at a time (each is a round trip to
        Temporal: an org of 1,000 agents waited for 1,000 of them in a row), in order;
        heartbeats how many are done."""
        gate = asyncio.Semaphore(self._concurrency)
        done = 0

        async def one(name: str) -> T:
            nonlocal done
            async with gate:
                result = await act(name)
            done += 1
            activity.heartbeat(f"{done}/{len(agents)}")
            return result

        return list(await asyncio.gather(*(one(name) for name in agents)))

    @activity.defn
    async def start_agents(self, ref: AgentsRef) -> list[str]:
        """Start each agent's workflow; one already running is left as it is."""
        return await self._each(
            ref.agents, lambda name: service.start_agent(self._client, ref.org, name)
        )

    @activity.defn
    async def stopped_agents(self, ref: AgentsRef) -> list[str]:
        """Agents whose workflow should run but does not (e.g. terminated in the Web UI)."""

        async def stopped(name: str) -> bool:
            try:
                description = await service.agent_handle(self._client, ref.org, name).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                return True
            return description.status != WorkflowExecutionStatus.RUNNING

        flags = await self._each(ref.agents, stopped)
        return [name for name, flag in zip(ref.agents, flags, strict=True) if flag]

    @activity.defn
    async def stop_agents(self, ref: AgentsRef) -> None:
        await self._each(
            ref.agents,
            lambda name: service.command_agent(
                self._client,
                AgentCommand(
                    org=ref.org, agent=name, action=AgentAction.RETIRE, reason="org stopped"
                ),
            ),
        )

    @activity.defn
    async def command_agent(self, command: AgentCommand) -> bool:
        """Deliver a lifecycle command; False when the agent's workflow is not running."""
        return await service.command_agent(self._client, command)
