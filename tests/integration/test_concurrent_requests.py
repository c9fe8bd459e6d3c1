"""Concurrent conflicting requests against a real OrgWorkflow: one wins, the rest are
refused with a type, and the org stays healthy.

Ten requests sent at once all pass their validators together (the org has not
changed yet), so the re-check under the workflow's lock is what refuses the losers.
Before refusals were typed ``ApplicationError``s, that re-check raised a plain
``ValueError``, which failed the workflow task on every replay: the org was wedged
for good (no update, no drift repair, no stop). Each test ends by proving the org
still works: no ``WorkflowTaskFailed`` in its history and a later update succeeds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from kafkaorg import client as service
from kafkaorg.client import RequestRefused
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ChangeResult,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    RefusalType,
)
from kafkaorg.spec import AgentSpec, ToolSpec, TopicSpec
from tests.support import Platform, echo_spec, unique_org

pytestmark = pytest.mark.integration

CONCURRENT = 10


def _agent(name: str) -> AgentSpec:
    return AgentSpec(name=name, kind="echo", subscribes=["inbox"], publishes=["outbox"])


async def _all_at_once(calls: list[Any]) -> tuple[list[ChangeResult], list[RequestRefused]]:
    """Run the calls together; every failure must be a typed refusal, nothing else."""
    # A wedged org never answers: bounded, so that shows as a failure, not a hang.
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 90)
    won = [o for o in outcomes if isinstance(o, ChangeResult)]
    refused = [o for o in outcomes if isinstance(o, RequestRefused)]
    others = [o for o in outcomes if not isinstance(o, ChangeResult | RequestRefused)]
    assert not others, others
    return won, refused


async def _assert_healthy(platform: Platform, org: str) -> None:
    """No workflow task failed, and the org still takes a change."""
    result = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_agent("afterwards"))
    )
    assert result.changed
    history = await service.org_handle(platform.client, org).fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert not failed, failed[0]


async def test_ten_creations_of_one_agent_name_have_one_winner(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    request = CreateAgentRequest(agent=_agent("helper"))
    won, refused = await _all_at_once(
        [service.create_agent(platform.client, org, request) for _ in range(CONCURRENT)]
    )
    assert len(won) == 1 and len(refused) == CONCURRENT - 1
    assert {r.type for r in refused} == {RefusalType.ALREADY_EXISTS}
    assert all("agent 'helper' already exists" in r.reason for r in refused)
    await _assert_healthy(platform, org)


async def test_ten_creations_of_one_topic_have_one_winner(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    request = CreateTopicRequest(topic=TopicSpec(name="alerts"))
    won, refused = await _all_at_once(
        [service.create_topic(platform.client, org, request) for _ in range(CONCURRENT)]
    )
    assert len(won) == 1
    assert {r.type for r in refused} == {RefusalType.ALREADY_EXISTS}
    status = await service.org_status(service.org_handle(platform.client, org))
    assert status.topics.count("alerts") == 1
    await _assert_healthy(platform, org)


async def test_the_last_place_under_a_quota_goes_to_exactly_one_request(
    platform: Platform,
) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["limits"] = {"max_agents": 2}  # echo is one: room for one more
    await platform.start_org(spec)
    won, refused = await _all_at_once(
        [
            service.create_agent(
                platform.client, org, CreateAgentRequest(agent=_agent(f"helper-{i}"))
            )
            for i in range(CONCURRENT)
        ]
    )
    assert len(won) == 1 and len(refused) == CONCURRENT - 1
    assert {r.type for r in refused} == {RefusalType.QUOTA_EXCEEDED}
    agents = await service.org_status(service.org_handle(platform.client, org))
    assert len(agents.agents) == 2
    # Healthy: a retire frees the place, and the next creation takes it.
    await service.change_agent(
        platform.client, org, AgentCommand(agent="echo", action=AgentAction.RETIRE)
    )
    await _assert_healthy(platform, org)


async def test_pause_racing_retire_ends_retired_with_one_retirement(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    actions = [AgentAction.PAUSE, AgentAction.RETIRE] * (CONCURRENT // 2)
    won, refused = await _all_at_once(
        [
            service.change_agent(platform.client, org, AgentCommand(agent="echo", action=a))
            for a in actions
        ]
    )
    retirements = [r for r in won if r.changed and r.summary == ["agent echo is retired"]]
    assert len(retirements) == 1, won
    assert refused and {r.type for r in refused} == {RefusalType.CONFLICT}
    assert all("is retired" in r.reason for r in refused)
    infos = await service.org_handle(platform.client, org).query("agents", result_type=list)
    assert {i["name"]: i["status"] for i in infos}["echo"] == "retired"
    await _assert_healthy(platform, org)


async def test_two_writers_of_one_tool_never_overwrite_each_other(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    versions = [
        ToolSpec(
            name="score",
            code=f"def run(args):\n    return {{'writer': {i}}}\n",
            tests=f"assert run({{}}) == {{'writer': {i}}}\n",
        )
        for i in range(CONCURRENT)
    ]
    won, refused = await _all_at_once(
        [
            service.create_tool(
                platform.client, org, CreateToolRequest(tool=tool, based_on_version=0)
            )
            for tool in versions
        ]
    )
    assert len(won) == 1 and won[0].changed, won
    assert len(refused) == CONCURRENT - 1
    assert {r.type for r in refused} == {RefusalType.CONFLICT}
    assert Counter("is at version 1 now" in r.reason for r in refused) == {True: CONCURRENT - 1}
    await _assert_healthy(platform, org)
