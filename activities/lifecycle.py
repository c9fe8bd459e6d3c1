"""Starting and stopping agent workflows from the OrgWorkflow, idempotently."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg.names import TASK_QUEUE, agent_search_attributes, agent_workflow_id
from workflows.agent import AgentInput, AgentWorkflow, StopRequest


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
    async def stop_agents(self, ref: AgentsRef) -> None:
        for name in ref.agents:
            handle = self._client.get_workflow_handle(agent_workflow_id(ref.org, name))
            try:
                await handle.signal(AgentWorkflow.stop, StopRequest(reason="org stopped"))
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:  # already gone is fine
                    raise
