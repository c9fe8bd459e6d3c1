"""Agents asking their OrgWorkflow for changes (a new agent, a new tool) through its updates.

Workflows cannot send updates themselves, so an activity does it with the
worker's Temporal client. The update id derives from the calling activity, so a
retried activity gets the first call's outcome instead of asking twice. A
refusal (rights, quotas, failing tests) is an answer for the agent, not a failure.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from kafkaorg import client as service
from kafkaorg.contracts import (
    CreateAgentRequest,
    CreateToolRequest,
    FlowInput,
    OrgUpdate,
    PublishRequest,
    StartFlowOutcome,
    StartFlowRequest,
)
from kafkaorg.errors import BadInputError
from kafkaorg.names import flow_workflow_id


class RequestOutcome(BaseModel):
    accepted: bool
    summary: list[str]
    pending_approval: str | None = None
    """The org's policy holds the request for a person: the approval's id."""


def _update_id(kind: str) -> str:
    info = activity.info()
    return f"{kind}:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"


class OrgRequestActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def _ask(
        self, update: OrgUpdate, request: CreateAgentRequest | CreateToolRequest | PublishRequest
    ) -> RequestOutcome:
        assert request.org is not None
        try:
            result = await service.send_update(
                self._client, request.org, update, request, update_id=_update_id(update)
            )
        except BadInputError as refused:  # a refusal, or the org is not running
            return RequestOutcome(accepted=False, summary=[str(refused).removeprefix("refused: ")])
        return RequestOutcome(
            accepted=result.changed,
            summary=result.summary,
            pending_approval=result.pending_approval,
        )

    @activity.defn
    async def request_create_agent(self, request: CreateAgentRequest) -> RequestOutcome:
        return await self._ask(OrgUpdate.CREATE_AGENT, request)

    @activity.defn
    async def request_create_tool(self, request: CreateToolRequest) -> RequestOutcome:
        return await self._ask(OrgUpdate.CREATE_TOOL, request)

    @activity.defn
    async def request_publish(self, request: PublishRequest) -> RequestOutcome:
        """Hold the record for a person if the org's policy says so (``pending_approval``)."""
        return await self._ask(OrgUpdate.HOLD_PUBLISH, request)

    @activity.defn
    async def request_start_flow(self, request: StartFlowRequest) -> StartFlowOutcome:
        """Start the run, its definition from the running org's spec. The run's name is
        the caller's deterministic one, so a retried activity (or a replayed agent) finds
        the run it started: ``already``, not a second run. An unknown flow is a refusal."""
        try:
            spec = await service.org_spec(self._client, request.org)
        except BadInputError as refused:
            return StartFlowOutcome(started=False, reason=str(refused))
        flow = spec.flow(request.flow)
        if flow is None:
            known = ", ".join(f.name for f in spec.flows) or "none"
            return StartFlowOutcome(
                started=False,
                reason=f"org {request.org!r} has no flow {request.flow!r} (its flows: {known})",
            )
        wf_id = flow_workflow_id(request.org, flow.name, request.run)
        run = FlowInput(org=request.org, flow=flow, input=request.input, run=request.run)
        try:
            await service.start_flow_run(self._client, run)
        except WorkflowAlreadyStartedError:
            return StartFlowOutcome(started=True, already=True, workflow_id=wf_id)
        activity.logger.info("%s started flow run %s", request.requested_by, wf_id)
        return StartFlowOutcome(started=True, workflow_id=wf_id)
