"""Agents asking their OrgWorkflow for changes (a new agent, a new tool) through its updates.

Workflows cannot send updates themselves, so an activity does it with the
worker's Temporal client. The update id derives from the calling activity, so a
retried activity gets the first call's outcome instead of asking twice. A
refusal (rights, quotas, failing tests) is an answer for the agent, not a failure.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError

from kafkaorg.names import org_workflow_id
from kafkaorg.spec import AgentSpec, ToolSpec


class AgentCreation(BaseModel):
    org: str
    agent: AgentSpec
    requested_by: str


class ToolCreation(BaseModel):
    org: str
    tool: ToolSpec
    requested_by: str


class RequestOutcome(BaseModel):
    accepted: bool
    summary: list[str]


def _update_id(kind: str) -> str:
    info = activity.info()
    return f"{kind}:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"


def _refusal(err: WorkflowUpdateFailedError) -> RequestOutcome:
    cause = err.cause
    message = getattr(cause, "message", None) or str(cause or err)
    return RequestOutcome(accepted=False, summary=[message])


class OrgRequestActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def request_create_agent(self, request: AgentCreation) -> RequestOutcome:
        # Imported here: workflows.org → agent workflow → its tools → this module.
        from workflows.org import CreateAgentRequest, OrgWorkflow

        handle = self._client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(request.org))
        try:
            result = await handle.execute_update(
                OrgWorkflow.create_agent,
                CreateAgentRequest(agent=request.agent, requested_by=request.requested_by),
                id=_update_id("create-agent"),
            )
        except WorkflowUpdateFailedError as err:
            return _refusal(err)
        return RequestOutcome(accepted=True, summary=result.summary)

    @activity.defn
    async def request_create_tool(self, request: ToolCreation) -> RequestOutcome:
        from workflows.org import CreateToolRequest, OrgWorkflow

        handle = self._client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(request.org))
        try:
            result = await handle.execute_update(
                OrgWorkflow.create_tool,
                CreateToolRequest(tool=request.tool, requested_by=request.requested_by),
                id=_update_id("create-tool"),
            )
        except WorkflowUpdateFailedError as err:
            return _refusal(err)
        return RequestOutcome(accepted=result.changed, summary=result.summary)
