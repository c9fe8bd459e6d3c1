"""Record the golden workflow histories under tests/golden/ from a live stack.

    .venv/bin/python scripts/record_golden_histories.py

WHEN TO RE-RUN: only when a workflow change is *meant* to be incompatible with
histories already recorded, and the workflows running in production are
migrated for it (drained, or restarted under a new type/version). In every other
case a failing ``tests/unit/test_golden_replay.py`` is the alarm it is there to
be: the change would break workflows that are running right now, so fix the
change (``workflow.patched()``, a new signal instead of a changed one, ...), do
not re-record.

What it records, from three orgs of its own (``golden-<hex>``, ``golden-<hex>-u``,
``golden-<hex>-d``; all left stopped, their topics kept):

- ``org_workflow.json``: an OrgWorkflow that applied its spec and was stopped;
- ``agent_workflow.json``: an AgentWorkflow that processed records and was stopped;
- ``agent_workflow_can.runN.json``: an AgentWorkflow chain that continued-as-new
  after every step (``AgentInput(continue_as_new_after_steps=1)``), one file per run;
- ``org_updates.json``: an OrgWorkflow (``policy.tool_approval: human``) through every
  update: ``create_tool`` twice (tests pass in the sandbox, each version pending),
  ``approve_tool`` both, ``rollback_tool`` to v1, ``create_agent`` by a user (a tool
  agent) and by an agent that may spawn, ``create_topic``, a refusal in a validator
  (leaves no trace) and one under the lock (two requests for one topic at once: the
  second fails after it was accepted), ``change_agent`` pause/resume/retire, the
  ``agent_failed`` signal from an agent whose step failed for good, ``apply_spec`` with
  a changed spec (a topic and an agent added, an agent changed, an agent and a work
  topic removed), ``repair_drift`` after a topic was deleted behind its back, ``stop``;
- ``org_drift_timer.json``: an OrgWorkflow with ``reconcile_interval_s: 1`` whose timer
  fires with nothing to do, then repairs a topic deleted and an agent workflow
  terminated behind its back, then is stopped;
- ``agent_lifecycle.json``: an AgentWorkflow paused (a record waits in its inbox),
  resumed, given a new spec (``update_spec``, from ``apply_spec``) and retired;
- ``agent_dlq.json``: an AgentWorkflow whose step fails for good (its output is over
  the record size limit: ``AgentStepError``), so the batch goes to ``sys.dlq``, the
  agent is marked failed and tells its org; the script's worker runs with a small
  ``max_record_bytes`` so the file stays small (same path as a 1 MB record);
- ``agent_tool.json``: a ``tool`` agent running a registered tool in the sandbox on
  each record (``load_current``, ``run_code``, ``publish_emissions``; one input the
  tool fails on goes to the DLQ);
- ``flow_workflow.json``: a FlowWorkflow run through an ``ask`` (answered by a ``reply``
  signal, as the bridge sends it), a ``parallel`` quorum, a ``switch``, an ``approval``
  decided by the ``decide`` update, an ``emit`` and the run's output;
- ``flow_fanout.json``: a FlowWorkflow run through a ``map`` (three items, two at a time),
  a ``parallel`` step whose first branch's own timeout passes before the other answers,
  and a ``handoff`` (the supervisor's choice, then the chosen agent's answer); recorded
  with ``--add-flows`` (the other histories are left as they were);
- ``flow_failed.json``: a FlowWorkflow run whose ``ask`` times out: the completed step's
  compensation (answered), the failure record to ``sys.dlq``;
- ``agent_llm.json``: an ``llm`` agent's LangGraph step against the scripted
  OpenAI-compatible server of ``tests/llm_server.py`` (a model call, a ``call_tool``
  run in the sandbox, a ``publish``, a final answer);
- ``org_approvals.json``: an OrgWorkflow with ``policy.approvals`` holding agents'
  ``create_agent`` requests: one approved and one denied by ``decide_approval``, an
  agent's record to an audit-class topic held (``hold_publish``) and approved, one
  denied at its deadline, one left waiting and denied by the stop; and
  ``flow_approval.json``, a FlowWorkflow whose ``approval`` step is recorded in
  PostgreSQL and on ``sys.approvals`` and decided. Recorded alone with
  ``--only-approvals``;
- ``agent_mcp.json``: an ``llm`` agent with MCP tools (the SDK-built server of
  ``tests/mcp_server.py``): ``discover_mcp_tools``, a ``call_mcp_tool`` that answers,
  one whose tool fails (told to the model), a ``publish``, a final answer. Recorded
  alone, leaving the other files as they are, with ``--only-mcp``;
- ``org_archive.json``: an OrgWorkflow that creates its archive schedule as it starts and,
  stopped, runs a last archive and deletes the schedule; ``archive_workflow.json``: an
  ``ArchiveWorkflow`` run that archived a topic. Recorded alone with ``--only-archive``.

Needs Kafka, Temporal and PostgreSQL (``kafkaorg dev up``) and a host that can run
nsjail. The script runs a worker and a sandbox worker of its own in this process, so
today's code handles the workflows; other workers polling the same task queues
(``kafkaorg dev up --workers``) may take tasks too, and if they run older code the
recording can come out stale. So before anything is written every history is
replayed against today's code, and the script refuses (exit 1) if one diverges:
restart those workers and re-run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.service import RPCError

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.client import launch_org
from kafkaorg.config import Settings, get_settings
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    AgentInput,
    AgentReport,
    ApprovalDecision,
    ApprovalKind,
    ApprovalVerdict,
    ApproveToolRequest,
    ArchiveInput,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    Delivery,
    FlowQuery,
    FlowReport,
    OrgQuery,
    OrgUpdate,
    Outstanding,
    PendingApproval,
    PublishRequest,
    RollbackToolRequest,
    StopRequest,
)
from kafkaorg.db.migrate import upgrade_to_head
from kafkaorg.envelope import Record, new_record
from kafkaorg.errors import KafkaorgError
from kafkaorg.history_replay import fetch_workflow_histories, replay_histories
from kafkaorg.kafka import create_admin
from kafkaorg.names import (
    TASK_QUEUE,
    agent_search_attributes,
    agent_workflow_id,
    kafka_topic,
    org_workflow_id,
)
from kafkaorg.sandbox import host_capabilities
from kafkaorg.spec import AgentSpec, OrgSpec, ToolSpec, TopicSpec, validate_spec
from kafkaorg.temporal import connect_temporal
from workers.replayer import make_replayer
from workers.sandbox_worker import build_sandbox_worker
from workers.worker import build_worker
from workflows.agent import AgentWorkflow
from workflows.archive import ArchiveWorkflow
from workflows.org import OrgStopRequest, OrgWorkflow

if TYPE_CHECKING:
    from tests.llm_server import ScriptedLLM
    from tests.mcp_server import McpTestServer

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "tests" / "golden"
AGENT = "echo"
WAIT_S = 90.0
MAX_RECORD_BYTES = 2048
"""The script's worker refuses outputs over this, so the DLQ path needs a 3 KB record,
not a 1 MB one (whose copies would make a file of megabytes)."""
USER = "user:golden"

DOUBLE_V1 = 'def run(args):\n    return {"double": args["n"] * 2}\n'
DOUBLE_V2 = 'def run(args):\n    return {"double": args["n"] * 2, "v": 2}\n'
DOUBLE_TESTS = """\
assert run({"n": 2})["double"] == 4

def test_zero():
    assert run({"n": 0})["double"] == 0
"""


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


def _updates_spec(org: str, *, changed: bool = False) -> OrgSpec:
    """The org driven through every update; ``changed``: the spec ``apply_spec`` carries."""
    io = {"subscribes": ["inbox"], "publishes": ["outbox"]}
    topics: list[dict[str, Any]] = [
        {"name": "inbox", "partitions": 1},
        {"name": "outbox", "partitions": 1},
    ]
    agents: list[dict[str, Any]] = [
        {"name": "clerk", "kind": "echo", **io},
        {"name": "boss", "kind": "echo", "can_create_agents": True, **io},
        {"name": "fragile", "kind": "echo", **io},
        {
            "name": "thinker",
            "kind": "llm",
            "instructions": "Double each task's n with the double tool; publish the result.",
            **io,
        },
    ]
    if changed:
        topics.append({"name": "extra", "partitions": 1})
        agents[0] = {"name": "clerk", "kind": "echo", "subscribes": ["inbox"]}
        agents[0]["publishes"] = ["outbox", "extra"]
        agents.append(
            {"name": "newbie", "kind": "echo", "subscribes": ["extra"], "publishes": ["outbox"]}
        )
    else:
        topics.append({"name": "old", "partitions": 1})
        agents.append(
            {
                "name": "gone",
                "kind": "rule",
                "subscribes": ["inbox"],
                "publishes": ["outbox"],
                "rules": [{"on": "*", "emit": "task.seen", "to": "outbox"}],
            }
        )
    return validate_spec(
        {
            "org": org,
            "topics": topics,
            "agents": agents,
            "policy": {"tool_approval": "human"},
            "reconcile_interval_s": 3600,  # no drift timer here: that is org_drift_timer's
        }
    )


def _drift_spec(org: str) -> OrgSpec:
    spec = _spec(org)
    spec["reconcile_interval_s"] = 1
    return validate_spec(spec)


def _records(org: str, count: int, **payload: Any) -> list[Record]:
    return [
        new_record(
            org=org,
            type="task.request",
            source=USER,
            payload={"n": n, "title": f"t{n}", **payload},
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


# ---- every update ---------------------------------------------------------------------


async def _refused(what: str, call: Awaitable[object]) -> service.RequestRefused:
    try:
        await call
    except service.RequestRefused as refusal:
        return refusal
    raise KafkaorgError(f"expected the org to refuse {what}")


def _topic_exists(settings: Settings, topic: str) -> bool:
    return topic in create_admin(settings).list_topics(timeout=10).topics


async def _delete_topic_behind_its_back(settings: Settings, topic: str) -> None:
    admin = create_admin(settings)
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        await asyncio.to_thread(future.result)

    async def gone() -> bool:
        return not await asyncio.to_thread(_topic_exists, settings, topic)

    await _until(f"Kafka to delete {topic}", gone)


async def _closed(client: Client, wf_id: str) -> bool:
    description = await client.get_workflow_handle(wf_id).describe()
    return description.status != WorkflowExecutionStatus.RUNNING


async def _org_updates(
    client: Client, settings: Settings, org: str, llm: ScriptedLLM
) -> dict[str, WorkflowHistory]:
    llm.script("thinker", _llm_script())
    await launch_org(settings, _updates_spec(org))

    # Tools: two versions, each tested in the sandbox and waiting for a person; v1 again.
    for code in (DOUBLE_V1, DOUBLE_V2):
        tool = ToolSpec(name="double", description="doubles n", code=code, tests=DOUBLE_TESTS)
        created = await service.create_tool(
            client, org, CreateToolRequest(tool=tool, requested_by=USER)
        )
        if not created.changed or "pending_approval" not in created.summary[0]:
            raise KafkaorgError(f"tool not registered for approval: {created.summary}")
        version = int(created.summary[0].split(" v", 1)[1].split(" ", 1)[0])
        await service.approve_tool(
            client, org, ApproveToolRequest(tool="double", version=version, approved_by=USER)
        )
    await service.rollback_tool(
        client, org, RollbackToolRequest(tool="double", version=1, requested_by=USER)
    )

    # Agents created at run time: a tool agent by a person, an echo agent by an agent.
    io = {"subscribes": ["inbox"], "publishes": ["outbox"]}
    doubler = AgentSpec.model_validate({"name": "doubler", "kind": "tool", "tool": "double", **io})
    await service.create_agent(client, org, CreateAgentRequest(agent=doubler, requested_by=USER))
    minion = AgentSpec.model_validate({"name": "minion", "kind": "echo", **io})
    await service.create_agent(
        client, org, CreateAgentRequest(agent=minion, requested_by=f"agent:{org}:boss")
    )
    await service.create_topic(
        client, org, CreateTopicRequest(topic=TopicSpec(name="scratch"), requested_by=USER)
    )

    # Refusals: one by a validator (no trace in history), one under the lock (accepted,
    # then failed): two requests for the same new topic at once both pass their
    # validators; the second finds the topic there once it holds the lock.
    await _refused(
        "a change to an unknown agent",
        service.change_agent(
            client,
            org,
            AgentCommand(agent="nobody", action=AgentAction.PAUSE, requested_by=USER),
        ),
    )
    twin = CreateTopicRequest(topic=TopicSpec(name="twin"), requested_by=USER)
    outcomes = await asyncio.gather(
        service.create_topic(client, org, twin),
        service.create_topic(client, org, twin),
        return_exceptions=True,
    )
    if not any(isinstance(o, service.RequestRefused) for o in outcomes):
        raise KafkaorgError(f"expected one of two twin topic requests refused: {outcomes}")

    # clerk: a record, paused (the next one waits), resumed.
    clerk_id = agent_workflow_id(org, "clerk")
    clerk = client.get_workflow_handle_for(AgentWorkflow.run, clerk_id)
    batch = _records(org, 3)
    await clerk.signal(AgentWorkflow.deliver, Delivery(records=batch[:1]))
    await _until("clerk to process a record", lambda: _processed(client, clerk_id, 1))
    for action in (AgentAction.PAUSE, AgentAction.RESUME):
        if action == AgentAction.RESUME:
            await clerk.signal(AgentWorkflow.deliver, Delivery(records=batch[1:2]))
            await asyncio.sleep(1.0)
            status = await _agent_status(client, clerk_id)
            if status is None or status.processed != 1 or status.inbox != 1:
                raise KafkaorgError(f"a paused clerk should keep its record waiting: {status}")
        await service.change_agent(
            client, org, AgentCommand(agent="clerk", action=action, requested_by=USER)
        )
    await _until("clerk to process after resume", lambda: _processed(client, clerk_id, 2))

    # fragile: its output is over the record size limit, a for-good failure (DLQ).
    fragile_id = agent_workflow_id(org, "fragile")
    big = _records(org, 1, blob="x" * (MAX_RECORD_BYTES + 1000))
    await client.get_workflow_handle_for(AgentWorkflow.run, fragile_id).signal(
        AgentWorkflow.deliver, Delivery(records=big)
    )
    await _until("fragile to fail", lambda: _closed(client, fragile_id))

    # doubler: the tool on each record; the tool fails on one ({"m": ...} has no "n").
    doubler_id = agent_workflow_id(org, "doubler")
    inputs = _records(org, 2)
    inputs.append(new_record(org=org, type="task.request", source=USER, payload={"m": 1}))
    await service.deliver(client, org, "doubler", Delivery(records=inputs))
    await _until("doubler to process 3 records", lambda: _processed(client, doubler_id, 3))

    # thinker: one record through the LangGraph graph and the scripted model.
    thinker_id = agent_workflow_id(org, "thinker")
    await service.deliver(client, org, "thinker", Delivery(records=_records(org, 1)))
    await _until("thinker to process a record", lambda: _processed(client, thinker_id, 1))

    # A changed spec: extra and newbie added, clerk changed, gone and old removed.
    applied = await service.apply_spec(client, _updates_spec(org, changed=True))
    if not applied.changed:
        raise KafkaorgError("the changed spec changed nothing")

    async def clerk_updated() -> bool:
        status = await _agent_status(client, clerk_id)
        return status is not None and status.version >= 2

    await _until("clerk to take its new spec", clerk_updated)
    await clerk.signal(AgentWorkflow.deliver, Delivery(records=batch[2:]))
    await _until("clerk to process with its new spec", lambda: _processed(client, clerk_id, 3))

    # Drift, repaired on request.
    await _delete_topic_behind_its_back(settings, kafka_topic(org, "extra"))
    repaired = await service.repair_drift(client, org)
    if not repaired.changed:
        raise KafkaorgError(f"repair_drift found nothing to repair: {repaired.summary}")

    await service.change_agent(
        client, org, AgentCommand(agent="clerk", action=AgentAction.RETIRE, requested_by=USER)
    )
    await asyncio.wait_for(clerk.result(), WAIT_S)

    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await asyncio.wait_for(org_handle.result(), WAIT_S)
    for wf_id in (doubler_id, thinker_id):
        await asyncio.wait_for(client.get_workflow_handle(wf_id).result(), WAIT_S)
    return {
        "org_updates": await org_handle.fetch_history(),
        "agent_lifecycle": await clerk.fetch_history(),
        "agent_dlq": await client.get_workflow_handle(fragile_id).fetch_history(),
        "agent_tool": await client.get_workflow_handle(doubler_id).fetch_history(),
        "agent_llm": await client.get_workflow_handle(thinker_id).fetch_history(),
    }


def _llm_script() -> list[Any]:
    from tests.llm_server import ScriptedReply, ScriptedToolCall

    def call(tool: str, **arguments: Any) -> ScriptedReply:
        return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])

    return [
        call("call_tool", name="double", args={"n": 5}),
        call("publish", topic="outbox", type="task.done", payload={"double": 10}),
        ScriptedReply(content="Doubled 5 and published it."),
    ]


# ---- MCP tools --------------------------------------------------------------------------


def _mcp_server() -> McpTestServer:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.mcp_server import McpTestServer

    return McpTestServer()


def _mcp_script() -> list[Any]:
    from tests.llm_server import ScriptedReply, ScriptedToolCall

    def call(tool: str, **arguments: Any) -> ScriptedReply:
        return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])

    return [
        call("mcp__docs__lookup", key="kafka"),
        call("mcp__docs__explode", reason="golden"),
        call("publish", topic="outbox", type="fact.found", payload={"fact": "an event log"}),
        ScriptedReply(content="Looked it up and published it."),
    ]


async def _mcp(
    client: Client, settings: Settings, org: str, llm: ScriptedLLM, url: str
) -> dict[str, WorkflowHistory]:
    llm.script("looker", _mcp_script())
    spec = validate_spec(
        {
            "org": org,
            "topics": [{"name": "inbox", "partitions": 1}, {"name": "outbox", "partitions": 1}],
            "mcp_servers": [{"name": "docs", "url": url}],
            "agents": [
                {
                    "name": "looker",
                    "kind": "llm",
                    "instructions": "Look facts up with the docs server; publish them.",
                    "subscribes": ["inbox"],
                    "publishes": ["outbox"],
                    "mcp": ["docs"],
                }
            ],
        }
    )
    await launch_org(settings, spec)
    looker_id = agent_workflow_id(org, "looker")
    await service.deliver(client, org, "looker", Delivery(records=_records(org, 1)))
    await _until("looker to process a record", lambda: _processed(client, looker_id, 1))
    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await asyncio.wait_for(org_handle.result(), WAIT_S)
    looker = client.get_workflow_handle(looker_id)
    await asyncio.wait_for(looker.result(), WAIT_S)
    return {"agent_mcp": await looker.fetch_history()}


async def _record_mcp(settings: Settings, llm: ScriptedLLM) -> dict[str, WorkflowHistory] | None:
    await asyncio.to_thread(upgrade_to_head, settings.database_url)
    client = await connect_temporal(settings)
    with (
        _mcp_server() as server,
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor,
    ):
        async with build_worker(client, settings, executor):
            histories = await _mcp(
                client, settings, f"golden-{uuid.uuid4().hex[:8]}-m", llm, server.url
            )
    named = {name: WorkflowHistory(name, h.events) for name, h in histories.items()}
    bad = [r for r in await replay_histories(named.values(), make_replayer()) if not r.ok]
    for r in bad:
        print(f"{r.workflow_id}: does not replay at event {r.divergence_event_id}: {r.error}")
    return None if bad else named


# ---- approvals ---------------------------------------------------------------------------


def _approvals_spec(org: str) -> OrgSpec:
    spec = _spec(org)
    spec["agents"][0]["can_create_agents"] = True  # type: ignore[index]
    spec["agents"][0]["publishes"].append("ledger")  # type: ignore[index]
    spec["topics"].append({"name": "ledger", "class": "audit", "partitions": 1})  # type: ignore[attr-defined]
    spec["policy"] = {
        "approvals": {
            "create_agent": {"timeout_s": 2, "default": "deny"},
            "publish": {"timeout_s": 600},
        }
    }
    spec["reconcile_interval_s"] = 3600
    spec["flows"] = [
        {
            "name": "gate",
            "steps": [
                {"id": "sign-off", "approval": {"timeout_s": 600}},
                {"id": "done", "emit": {"topic": "outbox", "type": "gate.done"}},
            ],
        }
    ]
    return validate_spec(spec)


async def _approvals(client: Client, settings: Settings, org: str) -> dict[str, WorkflowHistory]:
    """An OrgWorkflow holding agents' requests (``policy.approvals``): one approved by the
    ``decide_approval`` update, one denied, one whose deadline denies it, one left waiting
    when the org stops; and a FlowWorkflow whose approval step is recorded and decided."""
    await launch_org(settings, _approvals_spec(org))
    requester = f"agent:{org}:{AGENT}"
    io = {"subscribes": ["inbox"], "publishes": ["outbox"]}
    held: list[str] = []
    for name in ("yes", "no", "late"):
        spec = AgentSpec.model_validate({"name": name, "kind": "echo", **io})
        change = await service.create_agent(
            client, org, CreateAgentRequest(agent=spec, requested_by=requester)
        )
        if change.pending_approval is None:
            raise KafkaorgError(f"create_agent {name} was not held: {change.summary}")
        held.append(change.pending_approval)
    for approval_id, approve in zip(held[:2], (True, False), strict=False):
        await service.decide_org_approval(
            client, org, ApprovalVerdict(id=approval_id, approve=approve, by=USER)
        )

    async def expired() -> bool:
        pending = await client.get_workflow_handle(org_workflow_id(org)).query(
            OrgQuery.APPROVALS, result_type=list[PendingApproval]
        )
        return not pending

    await _until("the third request's deadline", expired)
    entry = new_record(org=org, type="ledger.entry", source=f"agent:{AGENT}", payload={"n": 1})
    hold = await service.send_update(
        client,
        org,
        OrgUpdate.HOLD_PUBLISH,
        PublishRequest(org=org, topic="ledger", record=entry, requested_by=requester),
    )
    if hold.pending_approval is None:
        raise KafkaorgError(f"the ledger entry was not held: {hold.summary}")
    await service.decide_org_approval(
        client, org, ApprovalVerdict(id=hold.pending_approval, approve=True, by=USER)
    )
    spec = AgentSpec.model_validate({"name": "left", "kind": "echo", **io})
    await service.create_agent(client, org, CreateAgentRequest(agent=spec, requested_by=requester))

    run = await service.start_flow(client, org, "gate", {}, run="gate-1")

    async def flow_waits() -> bool:
        rows = await asyncio.to_thread(queries.list_approvals, settings, org)
        return any(r.kind is ApprovalKind.FLOW_STEP for r in rows)

    await _until("the flow's approval step", flow_waits)
    row = next(
        r
        for r in await asyncio.to_thread(queries.list_approvals, settings, org)
        if r.kind is ApprovalKind.FLOW_STEP
    )
    await service.decide(client, row, ApprovalVerdict(id=row.id, approve=True, by=USER))
    await asyncio.wait_for(run.result(), WAIT_S)

    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await asyncio.wait_for(org_handle.result(), WAIT_S)
    return {
        "org_approvals": await org_handle.fetch_history(),
        "flow_approval": await run.fetch_history(),
    }


Scenario = Callable[[Client, Settings, str], Awaitable[dict[str, WorkflowHistory]]]


# ---- the archive ---------------------------------------------------------------------


async def _archive(client: Client, settings: Settings, org: str) -> dict[str, WorkflowHistory]:
    """An OrgWorkflow that creates its archive schedule as it starts and, stopped, runs a
    last archive and deletes the schedule; and an ArchiveWorkflow run that archived the
    org's audit topic."""
    spec = _spec(org)
    spec["topics"][0]["archive"] = True  # type: ignore[index]
    await launch_org(settings, validate_spec(spec))
    run = await client.start_workflow(
        ArchiveWorkflow.run,
        ArchiveInput(org=org),
        id=f"archive:{org}-golden",
        task_queue=TASK_QUEUE,
    )
    result = await asyncio.wait_for(run.result(), WAIT_S)
    if not result.segments:
        raise KafkaorgError("the archive run archived nothing")
    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await asyncio.wait_for(org_handle.result(), WAIT_S)
    return {
        "org_archive": await org_handle.fetch_history(),
        "archive_workflow": await run.fetch_history(),
    }


async def _record_alone(
    settings: Settings, scenario: Scenario, suffix: str
) -> dict[str, WorkflowHistory] | None:
    """One scenario's histories with a worker of this process, or None when one does not
    replay (already said); the other golden files are left as they are."""
    await asyncio.to_thread(upgrade_to_head, settings.database_url)
    client = await connect_temporal(settings)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
        async with build_worker(client, settings, executor):
            histories = await scenario(client, settings, f"golden-{uuid.uuid4().hex[:8]}-{suffix}")
    named = {name: WorkflowHistory(name, h.events) for name, h in histories.items()}
    bad = [r for r in await replay_histories(named.values(), make_replayer()) if not r.ok]
    for r in bad:
        print(f"{r.workflow_id}: does not replay at event {r.divergence_event_id}: {r.error}")
    return None if bad else named


# ---- the drift timer ------------------------------------------------------------------


async def _drift_timer(client: Client, settings: Settings, org: str) -> dict[str, WorkflowHistory]:
    await launch_org(settings, _drift_spec(org))
    await asyncio.sleep(1.5)  # the timer fires with nothing to repair
    agent = client.get_workflow_handle(agent_workflow_id(org, AGENT))
    first_run = (await agent.describe()).run_id
    await agent.terminate(reason="golden: drift")
    topic = kafka_topic(org, "outbox")
    await _delete_topic_behind_its_back(settings, topic)

    async def repaired() -> bool:
        described = await agent.describe()
        restarted = (
            described.run_id != first_run and described.status == WorkflowExecutionStatus.RUNNING
        )
        return restarted and await asyncio.to_thread(_topic_exists, settings, topic)

    await _until("the drift timer to repair the org", repaired)
    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await asyncio.wait_for(org_handle.result(), WAIT_S)
    return {"org_drift_timer": await org_handle.fetch_history()}


# ---- recording ------------------------------------------------------------------------


def _scripted_llm() -> ScriptedLLM:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests/ is not an installed package
    from tests.llm_server import ScriptedLLM

    return ScriptedLLM()


async def record(settings: Settings, llm: ScriptedLLM) -> dict[str, WorkflowHistory] | None:
    """The histories, named by their files, or None when one does not replay (already said)."""
    caps = host_capabilities()
    if not caps.can_run:
        raise KafkaorgError("sandbox unavailable: " + "; ".join(caps.problems()))
    await asyncio.to_thread(upgrade_to_head, settings.database_url)  # as the worker expects
    client = await connect_temporal(settings)
    base = f"golden-{uuid.uuid4().hex[:8]}"
    others = await _other_pollers(client)
    if others:
        print(
            f"note: other workers poll {TASK_QUEUE!r} ({', '.join(others)}); if they run older "
            "code the recording will fail its replay check below",
            file=sys.stderr,
        )
    worker_settings = settings.model_copy(update={"max_record_bytes": MAX_RECORD_BYTES})
    with (
        _mcp_server() as mcp_server,
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor,
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox") as jails,
    ):
        async with (
            build_worker(client, worker_settings, executor),
            build_sandbox_worker(client, settings, jails, max_concurrent=4),
        ):
            histories = await _drive(client, settings, base)
            histories |= await _org_updates(client, settings, f"{base}-u", llm)
            histories |= await _drift_timer(client, settings, f"{base}-d")
            histories |= await _flows(client, settings, f"{base}-f")
            histories |= await _mcp(client, settings, f"{base}-m", llm, mcp_server.url)
            histories |= await _archive(client, settings, f"{base}-r")
    print(f"recorded from orgs {base!r}, {base + '-u'!r}, {base + '-d'!r} (stopped)")

    # Stable ids in the files' names; the replayer needs only some id per history.
    named = {name: WorkflowHistory(name, h.events) for name, h in histories.items()}
    reports = await replay_histories(named.values(), make_replayer())
    bad = [r for r in reports if not r.ok]
    for r in bad:
        print(f"{r.workflow_id}: does not replay at event {r.divergence_event_id}: {r.error}")
    if bad:
        print("nothing written: restart workers running older code and re-run", file=sys.stderr)
        return None
    return named


def _one_event_a_line(history: WorkflowHistory) -> str:
    """The history's JSON with one compact event per line: a third of the indented size,
    and a diff still shows which events changed."""
    events = json.loads(history.to_json())["events"]
    lines = ",\n".join(json.dumps(e, separators=(",", ":")) for e in events)
    return '{"events": [\n' + lines + "\n]}\n"


def write(out_dir: Path, histories: dict[str, WorkflowHistory]) -> None:
    """Replace every golden file, so a renamed or dropped history leaves nothing stale."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.json"):
        old.unlink()
    for name, history in histories.items():
        path = out_dir / f"{name}.json"
        path.write_text(_one_event_a_line(history))
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


# ---- flows ------------------------------------------------------------------------------


def _flows_spec(org: str) -> OrgSpec:
    io = {"kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    return validate_spec(
        {
            "org": org,
            "topics": [{"name": "inbox", "partitions": 1}, {"name": "outbox", "partitions": 1}],
            "agents": [{"name": "a", **io}, {"name": "b", **io}, {"name": "c", **io}],
            "flows": [
                {
                    "name": "golden",
                    "steps": [
                        {"id": "ask", "ask": "a", "input": {"n": "$.input.n"}},
                        {
                            "id": "fan",
                            "parallel": [{"ask": "a"}, {"ask": "b"}, {"ask": "c"}],
                            "gather": "quorum:2",
                            "timeout_s": 60,
                        },
                        {
                            "id": "route",
                            "switch": [
                                {"when": "steps.ask.payload.n > `1`", "goto": "sign"},
                                {"goto": "end"},
                            ],
                        },
                        {"id": "sign", "approval": {"timeout_s": 600}},
                        {"id": "say", "emit": {"topic": "outbox", "type": "golden.said"}},
                    ],
                    "output": {"topic": "outbox", "type": "golden.done"},
                },
                {
                    "name": "fanout",
                    "steps": [
                        {
                            "id": "each",
                            "map": {"over": "input.items", "ask": "a", "max_concurrency": 2},
                            "timeout_s": 60,
                        },
                        {
                            "id": "race",
                            "parallel": [{"ask": "a", "timeout_s": 1}, {"ask": "b"}],
                            "gather": "first",
                            "timeout_s": 60,
                        },
                        {
                            "id": "pick",
                            "handoff": {"supervisor": "c", "choices": ["a", "b"]},
                            "timeout_s": 60,
                        },
                    ],
                },
                {
                    "name": "failing",
                    "steps": [
                        {"id": "prep", "ask": "a", "compensate": {"ask": "b"}},
                        {"id": "stuck", "ask": "c", "timeout_s": 1},
                    ],
                },
            ],
        }
    )


async def _flow_report(client: Client, wf_id: str) -> FlowReport | None:
    try:
        return await client.get_workflow_handle(wf_id).query(
            FlowQuery.STATE, result_type=FlowReport
        )
    except RPCError:
        return None


async def _answer(
    client: Client,
    wf_id: str,
    step: str,
    waiting: int = 1,
    payload: dict[str, Any] | None = None,
    exactly: bool = False,
    agent: str | None = None,
) -> None:
    """Play agent and bridge: answer ``waiting`` requests of ``step`` of the run (once
    ``exactly`` that many await, with ``exactly``)."""

    def of_step(report: FlowReport) -> list[Outstanding]:
        return [o for o in report.state.outstanding if o.step == step and agent in (None, o.agent)]

    async def ready() -> bool:
        report = await _flow_report(client, wf_id)
        if report is None:
            return False
        found = len(of_step(report))
        return found == waiting if exactly else found >= waiting

    await _until(f"{waiting} request(s) of step {step} of {wf_id}", ready)
    report = await _flow_report(client, wf_id)
    assert report is not None
    replies = [
        Record(
            id=str(uuid.uuid4()),
            type="flow.request",
            org=report.org,
            source=f"agent:{o.agent}",
            correlation_id=wf_id,
            causation_id=o.request_id,
            timestamp=datetime.now(UTC),
            payload=payload if payload is not None else {"n": 2, "by": o.agent},
            hops=1,
        )
        for o in of_step(report)[:waiting]
    ]
    await service.signal_flow_replies(client, wf_id, replies)


async def _fanout(client: Client, org: str) -> dict[str, WorkflowHistory]:
    run = await service.start_flow(client, org, "fanout", {"items": [1, 2, 3]}, run="fanout")
    await _answer(client, run.id, "each", 2)  # two at a time
    await _answer(client, run.id, "each", 1, exactly=True)
    await _answer(client, run.id, "race", 1, exactly=True)  # a's own 1 s passed: b answers
    await _answer(client, run.id, "pick", 1, payload={"next": "b", "reason": "golden"})
    await _answer(client, run.id, "pick", 1, agent="b")
    await run.result()
    return {"flow_fanout": await run.fetch_history()}


async def _flows(client: Client, settings: Settings, org: str) -> dict[str, WorkflowHistory]:
    await launch_org(settings, _flows_spec(org))
    run = await service.start_flow(client, org, "golden", {"n": 2}, run="golden")
    await _answer(client, run.id, "ask")
    await _answer(client, run.id, "fan", 3)  # three replies in one signal (quorum: two)

    async def approval_waits() -> bool:
        report = await _flow_report(client, run.id)
        return report is not None and "approval:sign" in report.waiting_for

    await _until("the approval step", approval_waits)
    await service.decide_approval(
        client, org, run.id, ApprovalDecision(step="sign", approve=True, by=USER)
    )
    await run.result()
    fanout = await _fanout(client, org)
    failing = await service.start_flow(client, org, "failing", {"n": 1}, run="failing")
    await _answer(client, failing.id, "prep")
    await _answer(client, failing.id, "compensate:prep")  # after "stuck" timed out
    await failing.result()
    org_handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    await org_handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="golden"))
    await org_handle.result()
    return {
        "flow_workflow": await run.fetch_history(),
        "flow_failed": await failing.fetch_history(),
        **fanout,
    }


def _write_alone(histories: dict[str, WorkflowHistory]) -> None:
    """Write these histories only, the other golden files left as they are."""
    for name, history in histories.items():
        path = GOLDEN_DIR / f"{name}.json"
        path.write_text(_one_event_a_line(history))
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    if sys.argv[1:] == ["--only-mcp"]:
        # The MCP agent's history only, the others left as they are (a new path).
        with _scripted_llm() as llm:
            os.environ["KAFKAORG_LLM_BASE_URL"] = llm.base_url
            get_settings.cache_clear()
            histories = asyncio.run(_record_mcp(get_settings(), llm))
        if histories is None:
            sys.exit(1)
        _write_alone(histories)
        return
    if sys.argv[1:] == ["--only-archive"]:
        # The archive's histories only, the others left as they are (a new workflow type).
        archived = asyncio.run(_record_alone(get_settings(), _archive, "r"))
        if archived is None:
            sys.exit(1)
        _write_alone(archived)
        return
    if sys.argv[1:] == ["--only-approvals"]:
        # Approvals' histories only, the others left as they are (a new path).
        approvals = asyncio.run(_record_alone(get_settings(), _approvals, "a"))
        if approvals is None:
            sys.exit(1)
        _write_alone(approvals)
        return
    if sys.argv[1:] in (["--only-flows"], ["--add-flows"]):
        # FlowWorkflow histories only, the others left as they are (a new workflow type);
        # --add-flows writes only those not recorded yet (new step kinds).
        histories = asyncio.run(_record_alone(get_settings(), _flows, "f"))
        if histories is None:
            sys.exit(1)
        for name, history in histories.items():
            if sys.argv[1] == "--add-flows" and (GOLDEN_DIR / f"{name}.json").exists():
                continue
            path = GOLDEN_DIR / f"{name}.json"
            path.write_text(_one_event_a_line(history))
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
        return
    with _scripted_llm() as llm:
        # Before the settings are first read: the worker's model calls go to the script.
        os.environ["KAFKAORG_LLM_BASE_URL"] = llm.base_url
        get_settings.cache_clear()
        try:
            histories = asyncio.run(record(get_settings(), llm))
        except KafkaorgError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
    if histories is None:
        sys.exit(1)
    write(GOLDEN_DIR, histories)


if __name__ == "__main__":
    main()
