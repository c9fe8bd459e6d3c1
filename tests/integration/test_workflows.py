"""Workflow-level behaviour: continue-as-new keeps inbox and dedup, histories replay."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from kafkaorg.names import agent_workflow_id, org_workflow_id
from tests.support import Platform, echo_spec, task, unique_org
from workflows.agent import AgentWorkflow, Delivery
from workflows.org import OrgWorkflow

pytestmark = pytest.mark.integration


async def test_agent_continues_as_new_carrying_inbox_and_dedup_window(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    # Restart the agent with the test hook: continue-as-new after every step.
    records = [task(org, n) for n in range(30)]
    new = await platform.restart_agent(org, "echo", continue_as_new_after_steps=1)
    for i in range(0, 30, 3):
        await new.signal(AgentWorkflow.deliver, Delivery(records=records[i : i + 3]))
    done = await platform.agent_status(org, "echo", until=lambda s: s.processed == 30, timeout=90)
    assert done.runs > 1, "the workflow continued as new"
    runs_before = done.runs
    # The duplicates arrive only now, in a run that never saw the originals arrive:
    # only the carried-over dedup window can recognise them.
    await new.signal(AgentWorkflow.deliver, Delivery(records=records[:5]))

    status = await platform.agent_status(org, "echo", until=lambda s: s.duplicates == 5)
    out = await platform.collect(org, "outbox", 31, timeout=10, settle=2.0)
    assert len(out) == 30
    assert {c.record.causation_id for c in out} == {r.id for r in records}
    assert status.processed == 30 and status.runs >= runs_before > 1


async def test_histories_of_every_workflow_type_replay_against_todays_code(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    await platform.send(org, "inbox", [task(org, 1), task(org, 2)])
    await platform.collect(org, "outbox", 2)
    histories: list[WorkflowHistory] = []
    for wf_id in (org_workflow_id(org), agent_workflow_id(org, "echo")):
        handle = platform.client.get_workflow_handle(wf_id)
        histories.append(await handle.fetch_history())
    replayer = Replayer(
        workflows=[OrgWorkflow, AgentWorkflow], data_converter=pydantic_data_converter
    )
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{history.workflow_id}: {result.replay_failure}"


async def test_a_large_inbox_is_worked_down_before_continuing_as_new(platform: Platform) -> None:
    """Continue-as-new carries the inbox; over 2 MB, Temporal would refuse the new run."""
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    new = await platform.restart_agent(org, "echo", continue_as_new_after_steps=1)
    await new.signal(AgentWorkflow.pause)
    # 36 records of ~100 kB: 3.6 MB of inbox, delivered while paused.
    records = [
        task(org, n).model_copy(update={"payload": {"n": n, "blob": "x" * 100_000}})
        for n in range(36)
    ]
    for i in range(0, 36, 6):
        await new.signal(AgentWorkflow.deliver, Delivery(records=records[i : i + 6]))
    await new.signal(AgentWorkflow.resume)

    out = await platform.collect(org, "outbox", 36, timeout=120, settle=1.0)

    assert {c.record.causation_id for c in out} == {r.id for r in records}
    status = await platform.agent_status(org, "echo", until=lambda s: s.processed == 36)
    assert status.processed == 36 and status.inbox == 0
    assert status.runs > 1, "it did continue as new, once the state fit"
    assert status.failed_reason is None
