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

from kafkaorg import client as service
from kafkaorg.contracts import CreateAgentRequest, CreateToolRequest, OrgUpdate
from kafkaorg.errors import BadInputError


class RequestOutcome(BaseModel):
    accepted: bool
    summary: list[str]


def _update_id(kind: str) -> str:
    info = activity.info()
    return f"{kind}:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"


class OrgRequestActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def _ask(
        self, update: OrgUpdate, request: CreateAgentRequest | CreateToolRequest
    ) -> RequestOutcome:
        assert request.org is not None
        try:
            result = await service.send_update(
                self._client, request.org, update, request, update_id=_update_id(update)
            )
        except BadInputError as refused:  # a refusal, or the org is not running
            return RequestOutcome(accepted=False, summary=[str(refused).removeprefix("refused: ")])
        return RequestOutcome(accepted=result.changed, summary=result.summary)

    @activity.defn
    async def request_create_agent(self, request: CreateAgentRequest) -> RequestOutcome:
        return await self._ask(OrgUpdate.CREATE_AGENT, request)

    @activity.defn
    async def request_create_tool(self, request: CreateToolRequest) -> RequestOutcome:
        return await self._ask(OrgUpdate.CREATE_TOOL, request)
