"""Starting, signalling and stopping agent workflows from the OrgWorkflow, idempotently."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg import client as service
from kafkaorg.contracts import AgentAction, AgentCommand


class AgentsRef(BaseModel):
    org: str
    agents: list[str]


class LifecycleActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def start_agents(self, ref: AgentsRef) -> list[str]:
        """Start each agent's workflow; one already running is left as it is."""
        started: list[str] = []
        for name in ref.agents:
            activity.heartbeat(name)
            started.append(await service.start_agent(self._client, ref.org, name))
        return started

    @activity.defn
    async def stopped_agents(self, ref: AgentsRef) -> list[str]:
        """Agents whose workflow should run but does not (e.g. terminated in the Web UI)."""
        stopped: list[str] = []
        for name in ref.agents:
            activity.heartbeat(name)
            try:
                description = await service.agent_handle(self._client, ref.org, name).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                stopped.append(name)
                continue
            if description.status != WorkflowExecutionStatus.RUNNING:
                stopped.append(name)
        return stopped

    @activity.defn
    async def stop_agents(self, ref: AgentsRef) -> None:
        for name in ref.agents:
            await service.command_agent(
                self._client,
                AgentCommand(
                    org=ref.org, agent=name, action=AgentAction.RETIRE, reason="org stopped"
                ),
            )

    @activity.defn
    async def command_agent(self, command: AgentCommand) -> bool:
        """Deliver a lifecycle command; False when the agent's workflow is not running."""
        return await service.command_agent(self._client, command)
