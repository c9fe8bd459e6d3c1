"""Record the golden workflow histories under tests/golden/ from a live stack.

    .venv/bin/python scripts/record_golden_histories.py

WHEN TO RE-RUN: only when a workflow change is *meant* to be incompatible with
histories already recorded, and the workflows running in production are
migrated for it (drained, or restarted under a new type/version). In every other
case a failing ``tests/unit/test_golden_replay.py`` is the alarm it is there to
be: the change would break workflows that are running right now, so fix the
change (``workflow.patched()``, a new signal instead of a changed one, ...), do
not re-record.

What it records, with one org of its own (``golden-<hex>``, left stopped):

- ``org_workflow.json``: an OrgWorkflow that applied its spec and was stopped;
- ``agent_workflow.json``: an AgentWorkflow that processed records and was stopped;
- ``agent_workflow_can.runN.json``: an AgentWorkflow chain that continued-as-new
  after every step (``AgentInput(continue_as_new_after_steps=1)``), one file per run.

Needs Kafka, Temporal and PostgreSQL (``kafkaorg dev up``). The script runs a
worker of its own in this process, so today's code handles the workflows; other
workers polling the same task queue (``kafkaorg dev up --workers``) may take
tasks too, and if they run older code the recording can come out stale. So
before anything is written every history is replayed against today's code, and
the script refuses (exit 1) if one diverges: restart those workers and re-run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError

from kafkaorg.client import launch_org
from kafkaorg.config import Settings, get_settings
from kafkaorg.contracts import AgentInput, AgentReport, Delivery, StopRequest
from kafkaorg.db.migrate import upgrade_to_head
from kafkaorg.envelope import Record, new_record
from kafkaorg.errors import KafkaorgError
from kafkaorg.history_replay import fetch_workflow_histories, replay_histories
from kafkaorg.names import (
    TASK_QUEUE,
    agent_search_attributes,
    agent_workflow_id,
    org_workflow_id,
)
from kafkaorg.spec import validate_spec
from kafkaorg.temporal import connect_temporal
from workers.worker import build_worker
from workflows.agent import AgentWorkflow
from workflows.org import OrgStopRequest, OrgWorkflow

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden"
AGENT = "echo"
WAIT_S = 90.0


def _spec(org: str) -> dict[str, object]:
    return {
        "org": org,
        "topics": [
            {"name": "inbox", "class": "work", "partitions": 1},
            {"name": "outbox", "class": "work", "partitions": 1},
        ],
        "agents": [
            {"name": AGENT, "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
        ],
    }


def _records(org: str, count: int) -> list[Record]:
    return [
        new_record(
            org=org, type="task.request", source="user:golden", payload={"n": n, "title": f"t{n}"}
        )
        for n in range(count)
    ]


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline:
            raise KafkaorgError(f"timed out after {WAIT_S:.0f}s waiting for {what}")
        await asyncio.sleep(0.2)


async def _agent_status(client: Client, wf_id: str) -> AgentReport | None:
    try:
        return await client.get_workflow_handle_for(AgentWorkflow.run, wf_id).query(
            AgentWorkflow.status
        )
    except RPCError:
        return None  # not picked up by a worker yet


async def _processed(client: Client, wf_id: str, count: int, runs: int = 1) -> bool:
    status = await _agent_status(client, wf_id)
    return status is not None and status.processed >= count and status.runs >= runs


async def _other_pollers(client: Client) -> list[str]:
    """Identities of workers on the task queue besides this process's own."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return sorted({p.identity for p in response.pollers if p.identity != client.identity})


async def _drive(client: Client, settings: Settings, org: str) -> dict[str, WorkflowHistory]:
    agent_id = agent_workflow_id(org, AGENT)
    await launch_org(settings, validate_spec(_spec(org)))

    # 1. An agent that processes records (delivered exactly as the bridge delivers them).
    agent = client.get_workflow_handle_for(AgentWorkflow.run, agent_id)
    records = _records(org, 3)
    await agent.signal(AgentWorkflow.deliver, Delivery(records=records[:2]))
    await agent.signal(AgentWorkflow.deliver, Delivery(records=records[1:]))  # one duplicate
    await _until("the agent to process 3 records", lambda: _processed(client, agent_id, 3))
    first_run = (await agent.describe()).run_id
    await agent.signal(AgentWorkflow.stop, StopRequest(reason="golden"))
    await agent.result()

    # 2. The same agent again, continuing-as-new after every step.
    chain = await client.start_workflow(
        AgentWorkflow.run,
        AgentInput(org=org, agent=AGENT, continue_as_new_after_steps=1),
        id=agent_id,
        task_queue=TASK_QUEUE,
        search_attributes=agent_search_attributes(org, AGENT),
    )
    more = _records(org, 3)
    await chain.signal(AgentWorkflow.deliver, Delivery(records=more[:1]))
    await _until("run 2 of the agent", lambda: _processed(client, agent_id, 1, runs=2))
    latest = client.get_workflow_handle_for(AgentWorkflow.run, agent_id)
    await latest.signal(AgentWorkflow.deliver, Delivery(records=more[1:]))
    await _until("run 3 of the agent", lambda: _processed(client, agent_id, 3, runs=3))

    # 3. Stop the org: it stops its agents (the chain's last run ends) and completes.
    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await org_handle.result()
    await latest.result()

    out = {"org_workflow": await org_handle.fetch_history()}
    out["agent_workflow"] = await client.get_workflow_handle(
        agent_id, run_id=first_run
    ).fetch_history()
    runs = [h for h in await fetch_workflow_histories(client, agent_id) if h.run_id != first_run]
    if len(runs) < 2:
        raise KafkaorgError(f"expected a continue-as-new chain, got {len(runs)} run(s)")
    for n, history in enumerate(runs, start=1):
        out[f"agent_workflow_can.run{n}"] = history
    return out


async def record(settings: Settings) -> dict[str, WorkflowHistory] | None:
    """The histories, named by their files, or None when one does not replay (already said)."""
    await asyncio.to_thread(upgrade_to_head, settings.database_url)  # as the worker expects
    client = await connect_temporal(settings)
    org = f"golden-{uuid.uuid4().hex[:8]}"
    others = await _other_pollers(client)
    if others:
        print(
            f"note: other workers poll {TASK_QUEUE!r} ({', '.join(others)}); if they run older "
            "code the recording will fail its replay check below",
            file=sys.stderr,
        )
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
        async with build_worker(client, settings, executor):
            histories = await _drive(client, settings, org)
    print(f"recorded from org {org!r} (stopped; its topics are kept)")

    # Stable ids in the files' names; the replayer needs only some id per history.
    named = {name: WorkflowHistory(name, h.events) for name, h in histories.items()}
    reports = await replay_histories(named.values())
    bad = [r for r in reports if not r.ok]
    for r in bad:
        print(f"{r.workflow_id}: does not replay at event {r.divergence_event_id}: {r.error}")
    if bad:
        print("nothing written: restart workers running older code and re-run", file=sys.stderr)
        return None
    return named


def write(out_dir: Path, histories: dict[str, WorkflowHistory]) -> None:
    """Replace every golden file, so a renamed or dropped history leaves nothing stale."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.json"):
        old.unlink()
    for name, history in histories.items():
        path = out_dir / f"{name}.json"
        path.write_text(history.to_json() + "\n")
        print(f"wrote {path}")


def main() -> None:
    try:
        histories = asyncio.run(record(get_settings()))
    except KafkaorgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if histories is None:
        sys.exit(1)
    write(GOLDEN_DIR, histories)


if __name__ == "__main__":
    main()
