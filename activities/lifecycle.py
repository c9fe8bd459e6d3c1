"""Starting, signalling and stopping agent workflows from the OrgWorkflow, idempotently."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg.names import TASK_QUEUE, agent_search_attributes, agent_workflow_id
from kafkaorg.spec import AgentSpec
from workflows.agent import AgentInput, AgentWorkflow, SpecUpdate, StopRequest


class AgentsRef(BaseModel):
    org: str
    agents: list[str]


class AgentCommand(BaseModel):
    org: str
    agent: str
    action: Literal["pause", "resume", "retire", "update"]
    reason: str = ""
    spec: AgentSpec | None = None
    version: int | None = None


class LifecycleActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def start_agents(self, ref: AgentsRef) -> list[str]:
        """Start each agent's workflow; one already running is left as it is."""
        started: list[str] = []
        for name in ref.agents:
            activity.heartbeat(name)
            wf_id = agent_workflow_id(ref.org, name)
            await self._client.start_workflow(
                AgentWorkflow.run,
                AgentInput(org=ref.org, agent=name),
                id=wf_id,
                task_queue=TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=agent_search_attributes(ref.org, name),
            )
            started.append(wf_id)
        return started

    @activity.defn
    async def stopped_agents(self, ref: AgentsRef) -> list[str]:
        """Agents whose workflow should run but does not (e.g. terminated in the Web UI)."""
        stopped: list[str] = []
        for name in ref.agents:
            activity.heartbeat(name)
            handle = self._client.get_workflow_handle(agent_workflow_id(ref.org, name))
            try:
                description = await handle.describe()
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
            await self._signal(
                AgentCommand(org=ref.org, agent=name, action="retire", reason="org stopped")
            )

    @activity.defn
    async def command_agent(self, command: AgentCommand) -> bool:
        """Deliver a lifecycle command; False when the agent's workflow is not running."""
        return await self._signal(command)

    async def _signal(self, command: AgentCommand) -> bool:
        handle = self._client.get_workflow_handle_for(
            AgentWorkflow.run, agent_workflow_id(command.org, command.agent)
        )
        try:
            if command.action == "pause":
                await handle.signal(AgentWorkflow.pause)
            elif command.action == "resume":
                await handle.signal(AgentWorkflow.resume)
            elif command.action == "retire":
                await handle.signal(AgentWorkflow.stop, StopRequest(reason=command.reason))
            else:
                assert command.spec is not None and command.version is not None
                await handle.signal(
                    AgentWorkflow.update_spec,
                    SpecUpdate(spec=command.spec, version=command.version),
                )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # not running: nothing to tell
                return False
            raise
        return True
