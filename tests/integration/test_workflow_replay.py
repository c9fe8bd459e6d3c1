"""``kafkaorg workflow replay`` against a live org: histories fetched from Temporal, replayed."""

from __future__ import annotations

import asyncio
import json

import pytest

from kafkaorg.names import TASK_QUEUE, agent_search_attributes, agent_workflow_id, org_workflow_id
from tests.support import Platform, echo_spec, task, unique_org
from tests.support import run_cli_async as kafkaorg
from workflows.agent import AgentInput, AgentWorkflow, Delivery, StopRequest

pytestmark = pytest.mark.integration


async def _visible(platform: Platform, query: str, count: int) -> None:
    """Visibility is eventually consistent: wait until the runs are listed."""
    for _ in range(100):
        if len([e async for e in platform.client.list_workflows(query)]) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} workflows for {query}")


async def test_every_workflow_of_a_live_org_replays_including_continue_as_new_runs(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    await platform.send(org, "inbox", [task(org, 1), task(org, 2)])
    await platform.collect(org, "outbox", 2)
    # Restart the agent so it continues-as-new after every step: a chain of runs.
    agent_id = agent_workflow_id(org, "echo")
    first = platform.client.get_workflow_handle_for(AgentWorkflow.run, agent_id)
    await first.signal(AgentWorkflow.stop, StopRequest())
    await first.result()
    chain = await platform.client.start_workflow(
        AgentWorkflow.run,
        AgentInput(org=org, agent="echo", continue_as_new_after_steps=1),
        id=agent_id,
        task_queue=TASK_QUEUE,
        search_attributes=agent_search_attributes(org, "echo"),
    )
    await chain.signal(AgentWorkflow.deliver, Delivery(records=[task(org, 3)]))
    await platform.collect(org, "outbox", 3)
    latest = platform.client.get_workflow_handle_for(AgentWorkflow.run, agent_id)
    for _ in range(100):
        if (await latest.query(AgentWorkflow.status)).runs >= 2:
            break
        await asyncio.sleep(0.1)
    await _visible(platform, f'KafkaorgOrg = "{org}"', 4)  # org + first agent + 2 chain runs
    # The newest run may not have finished its first workflow task yet (3 events): wait
    # until it has, so that every history replayed below holds a completed task.
    for _ in range(100):
        if (await latest.describe()).history_length > 3:
            break
        await asyncio.sleep(0.1)

    result = await kafkaorg("workflow", "replay", "--all", org, "--json")

    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["ok"] is True
    runs = report["workflows"]
    assert all(r["ok"] for r in runs), runs
    assert {r["workflow_type"] for r in runs} == {"OrgWorkflow", "AgentWorkflow"}
    agent_runs = {r["run_id"] for r in runs if r["workflow_id"] == agent_id}
    assert len(agent_runs) >= 3, "the first execution and both runs of the chain"
    assert all(r["events"] > 3 for r in runs)

    one = await kafkaorg("workflow", "replay", agent_id)
    assert one.returncode == 0, one.stderr + one.stdout
    assert one.stdout.count("OK") >= 3, one.stdout

    org_run = next(r["run_id"] for r in runs if r["workflow_id"] == org_workflow_id(org))
    single = await kafkaorg(
        "workflow", "replay", org_workflow_id(org), "--run-id", org_run, "--json"
    )
    assert single.returncode == 0, single.stderr
    assert [r["run_id"] for r in json.loads(single.stdout)["workflows"]] == [org_run]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("agent:no-such-org:nobody",), "unknown workflow 'agent:no-such-org:nobody'"),
        (("--all", "no-such-org-x1"), "no workflows found for org 'no-such-org-x1'"),
        (("--all", "Not_An_Org"), "org name 'Not_An_Org' is not valid"),
    ],
)
async def test_unknown_workflows_and_orgs_are_bad_input(
    platform: Platform, args: tuple[str, ...], needle: str
) -> None:
    result = await kafkaorg("workflow", "replay", *args)

    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
