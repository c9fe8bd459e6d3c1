"""The service layer: every way to change or read a running org goes through here.

The CLI, the demo, bench, scripts, tests and the console call these functions;
activities and the bridge use the same ones to start and signal workflows. Workflows
are addressed by type and handler *name* (``kafkaorg.contracts``), never by importing
``workflows/``, so this module and its callers stay free of workflow code.

A refusal by the org (a rule said no, in a validator or under the lock) comes back as
``RequestRefused``: bad input with the refusal's type, one line for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, JsonValue
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg.config import Settings
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    AgentConversation,
    AgentInput,
    AgentQuery,
    AgentReport,
    AgentSignal,
    ApprovalDecided,
    ApprovalDecision,
    ApprovalKind,
    ApprovalRow,
    ApprovalStatus,
    ApprovalVerdict,
    ApproveToolRequest,
    ChangeResult,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    Delivery,
    FlowInput,
    FlowQuery,
    FlowReplies,
    FlowReport,
    FlowResult,
    FlowRunInfo,
    FlowSignal,
    FlowUpdate,
    OrgInput,
    OrgPhase,
    OrgQuery,
    OrgSignal,
    OrgStatus,
    OrgStopRequest,
    OrgUpdate,
    RefusalType,
    RollbackToolRequest,
    SpecUpdate,
    StopRequest,
)
from kafkaorg.envelope import Record
from kafkaorg.errors import BadInputError, KafkaorgError
from kafkaorg.kafka import check_kafka
from kafkaorg.names import (
    AGENT_WORKFLOW_TYPE,
    FLOW_ATTR,
    FLOW_WORKFLOW_TYPE,
    ORG_ATTR,
    ORG_WORKFLOW_TYPE,
    TASK_QUEUE,
    agent_search_attributes,
    agent_workflow_id,
    flow_search_attributes,
    flow_workflow_id,
    is_flow_workflow_id,
    org_search_attributes,
    org_workflow_id,
)
from kafkaorg.reconcile import diff_specs
from kafkaorg.schema_registry import store as schema_store
from kafkaorg.schema_registry.compatibility import Compatibility
from kafkaorg.spec import OrgSpec
from kafkaorg.temporal import connect_temporal

R = TypeVar("R", bound=BaseModel)

ORG_READY_TIMEOUT_S = 60.0
AGENT_READY_TIMEOUT_S = 0.1
"""Added to ``ORG_READY_TIMEOUT_S`` per agent of the spec: an org of 1,000 agents may
take 160 s before ``org start`` gives up (it took 5.8 s for 100 when this was set)."""


class RequestRefused(BadInputError):
    """The org refused a request; ``type`` is its ``RefusalType`` (or the error's type)."""

    def __init__(self, message: str, type: str | None) -> None:
        super().__init__(f"refused: {message}")
        self.reason = message
        self.type = type


def refusal_of(err: WorkflowUpdateFailedError) -> RequestRefused:
    """What a failed update says, as one line (its ``ApplicationError``'s message)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return RequestRefused(cause.message, cause.type)
    message = getattr(cause, "message", None) or str(cause or err)
    return RequestRefused(message, None)


# ---- orgs -------------------------------------------------------------------------------


def org_handle(client: Client, org: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(org_workflow_id(org), result_type=OrgStatus)


async def running_org(client: Client, org: str) -> WorkflowHandle[Any, Any]:
    """The running OrgWorkflow of ``org``; an org that is not running is bad input."""
    handle = org_handle(client, org)
    try:
        description = await handle.describe()
    except RPCError:
        raise BadInputError(f"unknown org {org!r}: no workflow {org_workflow_id(org)}") from None
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name if description.status else "UNKNOWN"
        raise BadInputError(f"org {org!r} is not running (its workflow is {state})")
    return handle


async def is_running(client: Client, org: str) -> bool:
    try:
        description = await org_handle(client, org).describe()
    except RPCError:
        return False
    return description.status == WorkflowExecutionStatus.RUNNING


async def start_org(client: Client, spec: OrgSpec) -> WorkflowHandle[Any, Any]:
    """Start the org's workflow: the very call ``temporal workflow start`` makes."""
    try:
        return await client.start_workflow(
            ORG_WORKFLOW_TYPE,
            OrgInput.model_validate(spec.model_dump(by_alias=True)),
            id=org_workflow_id(spec.org),
            task_queue=TASK_QUEUE,
            search_attributes=org_search_attributes(spec.org),
            result_type=OrgStatus,
        )
    except WorkflowAlreadyStartedError:
        raise BadInputError(
            f"org {spec.org!r} is already running (workflow {org_workflow_id(spec.org)}); "
            f"stop it first with `kafkaorg org stop {spec.org}`"
        ) from None


async def launch_org(
    cfg: Settings,
    spec: OrgSpec,
    *,
    wait: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> OrgStatus | None:
    """Start an org (Kafka checked first, so a dead broker is one clear line) and, with
    ``wait``, return once its topics, state and agents are in place. ``on_progress`` is
    told how many of the org's agents run, as they start."""
    await asyncio.to_thread(check_kafka, cfg)
    await check_spec_schemas(cfg, spec)
    client = await connect_temporal(cfg)
    handle = await start_org(client, spec)
    if not wait and not spec.schemas:
        return None
    wait_s = ORG_READY_TIMEOUT_S + AGENT_READY_TIMEOUT_S * len(spec.agents)
    progress = None
    if on_progress is not None:
        progress = functools.partial(running_agents, client, spec.org)
    # The schemas' rows name the org's row, which the OrgWorkflow writes as it starts.
    status = await wait_until_applied(handle, wait_s, progress=progress, on_progress=on_progress)
    await register_spec_schemas(cfg, spec)
    return status if wait else None


def _spec_schemas(spec: OrgSpec) -> list[tuple[str, dict[str, Any], Compatibility | None]]:
    return [
        (s.type, s.json_schema or {}, Compatibility(s.compatibility) if s.compatibility else None)
        for s in spec.schemas
    ]


async def check_spec_schemas(cfg: Settings, spec: OrgSpec) -> None:
    """Refuse a spec whose schemas their types' compatibility modes refuse, before any
    change: the report names every breakage (``SchemaIncompatibleError``, bad input)."""
    if not spec.schemas:
        return
    reports = await asyncio.to_thread(schema_store.check_all, cfg, spec.org, _spec_schemas(spec))
    refused = [r for r in reports if not r.compatible]
    if len(refused) == 1:
        raise schema_store.SchemaIncompatibleError(refused[0])
    if refused:
        raise BadInputError("\n".join(r.text() for r in refused))


def plan_spec_schemas(cfg: Settings, spec: OrgSpec) -> list[schema_store.CompatibilityReport]:
    """What ``apply`` would do with the spec's schemas: a report per changed type (an org
    not started yet: every schema is a first version)."""
    if not spec.schemas:
        return []
    reports = schema_store.check_all(cfg, spec.org, _spec_schemas(spec))
    if not reports:  # no org yet
        return [
            schema_store.CompatibilityReport(
                org=spec.org,
                record_type=t,
                compatibility=mode or schema_store.DEFAULT_COMPATIBILITY,
                against_version=None,
                compatible=True,
                breakages=[],
            )
            for t, _, mode in _spec_schemas(spec)
        ]
    return [r for r in reports if r.identical_to is None]


async def register_spec_schemas(cfg: Settings, spec: OrgSpec) -> list[str]:
    """Register the spec's schemas (new versions where changed); what changed, as lines."""
    if not spec.schemas:
        return []
    done = await asyncio.to_thread(schema_store.register_all, cfg, spec.org, _spec_schemas(spec))
    return [
        f"schema {r.version.record_type}: version {r.version.version} registered"
        for r in done
        if r.created
    ]


async def running_agents(client: Client, org: str) -> int:
    """How many of ``org``'s agent workflows run (Temporal's visibility, a moment behind)."""
    query = (
        f"{ORG_ATTR.name} = '{org}' AND WorkflowType = '{AGENT_WORKFLOW_TYPE}' "
        "AND ExecutionStatus = 'Running'"
    )
    return (await client.count_workflows(query)).count


async def wait_until_applied(
    handle: WorkflowHandle[Any, Any],
    wait_s: float = ORG_READY_TIMEOUT_S,
    *,
    progress: Callable[[], Awaitable[int]] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> OrgStatus:
    """Poll the OrgWorkflow until it has applied its spec (or ended), reporting
    ``progress()`` to ``on_progress`` on the way."""
    deadline = time.monotonic() + wait_s
    while True:
        if progress is not None and on_progress is not None:
            with contextlib.suppress(RPCError):
                on_progress(await progress())
        description = await handle.describe()
        if description.status not in (None, WorkflowExecutionStatus.RUNNING):
            raise KafkaorgError(
                f"org workflow {handle.id} ended with status {description.status.name}; "
                f"see it in the Temporal Web UI"
            )
        try:
            status = await org_status(handle, rpc_timeout_s=max(1.0, deadline - time.monotonic()))
            if status.phase == OrgPhase.RUNNING:
                if on_progress is not None:  # every agent has started (visibility may lag)
                    on_progress(len(status.agents))
                return status
        except RPCError:
            pass  # no worker has picked up the workflow yet
        if time.monotonic() > deadline:
            raise KafkaorgError(
                f"org workflow {handle.id} is not running after {wait_s:.0f}s: is a worker "
                "running? (`kafkaorg worker`, or `kafkaorg dev up --workers`)"
            )
        await asyncio.sleep(0.3)


async def org_status(handle: WorkflowHandle[Any, Any], rpc_timeout_s: float = 5.0) -> OrgStatus:
    return await handle.query(
        OrgQuery.STATUS,
        result_type=OrgStatus,
        rpc_timeout=timedelta(seconds=min(5.0, rpc_timeout_s)),
    )


async def org_spec(client: Client, org: str) -> OrgSpec:
    return await (await running_org(client, org)).query(OrgQuery.SPEC, result_type=OrgSpec)


async def stop_org(client: Client, org: str, request: OrgStopRequest) -> WorkflowHandle[Any, Any]:
    handle = await running_org(client, org)
    await handle.signal(OrgSignal.STOP, request)
    return handle


async def send_update(
    client: Client,
    org: str,
    update: OrgUpdate,
    request: BaseModel | None = None,
    *,
    update_id: str | None = None,
) -> ChangeResult:
    """The one path for a change to an org: the update, its refusal mapped to bad input."""
    handle = await running_org(client, org)
    args = [] if request is None else [request]
    try:
        return await handle.execute_update(
            update, args=args, id=update_id, result_type=ChangeResult
        )
    except WorkflowUpdateFailedError as err:
        raise refusal_of(err) from None


async def apply_spec(client: Client, spec: OrgSpec) -> ChangeResult:
    return await send_update(client, spec.org, OrgUpdate.APPLY_SPEC, spec)


async def repair_drift(client: Client, org: str) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.REPAIR_DRIFT)


async def apply_or_launch(cfg: Settings, client: Client, spec: OrgSpec) -> ChangeResult:
    """``org apply``: make the running org match ``spec`` (and repair drift), or start it
    when it does not run yet; the summary lists what changed either way."""
    if not await is_running(client, spec.org):
        await launch_org(cfg, spec)
        return ChangeResult(changed=True, summary=diff_specs(None, spec).summary_lines())
    await check_spec_schemas(cfg, spec)
    result = await apply_spec(client, spec)
    repaired = await repair_drift(client, spec.org)
    registered = await register_spec_schemas(cfg, spec)
    return ChangeResult(
        changed=result.changed or repaired.changed or bool(registered),
        summary=result.summary + repaired.summary + registered,
    )


async def create_agent(client: Client, org: str, request: CreateAgentRequest) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.CREATE_AGENT, request)


async def change_agent(client: Client, org: str, request: AgentCommand) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.CHANGE_AGENT, request)


async def create_topic(client: Client, org: str, request: CreateTopicRequest) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.CREATE_TOPIC, request)


async def create_tool(client: Client, org: str, request: CreateToolRequest) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.CREATE_TOOL, request)


async def approve_tool(client: Client, org: str, request: ApproveToolRequest) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.APPROVE_TOOL, request)


async def rollback_tool(client: Client, org: str, request: RollbackToolRequest) -> ChangeResult:
    return await send_update(client, org, OrgUpdate.ROLLBACK_TOOL, request)


# ---- agents -----------------------------------------------------------------------------

AGENT_TASK_TIMEOUT = timedelta(seconds=10)
"""An agent's workflow task on a worker that died is retried elsewhere after this long.
Not shorter: its longest task, replaying a whole run on a cold cache, took 1-2 s at the
1,000 events after which an agent continues-as-new on this 2-core machine (4,000 events:
6.8 s; bench/bench_replay.py), and a task over the timeout would time out on every retry."""


def agent_handle(client: Client, org: str, agent: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(agent_workflow_id(org, agent))


async def deliver(client: Client, org: str, agent: str, delivery: Delivery) -> None:
    """Signal-with-start: records reach an agent whether or not its workflow runs yet."""
    await client.start_workflow(
        AGENT_WORKFLOW_TYPE,
        AgentInput(org=org, agent=agent),
        id=agent_workflow_id(org, agent),
        task_queue=TASK_QUEUE,
        start_signal=AgentSignal.DELIVER,
        start_signal_args=[delivery],
        search_attributes=agent_search_attributes(org, agent),
        task_timeout=AGENT_TASK_TIMEOUT,
    )


async def start_agent(client: Client, org: str, agent: str) -> str:
    """Start an agent's workflow; one already running is left as it is."""
    handle = await client.start_workflow(
        AGENT_WORKFLOW_TYPE,
        AgentInput(org=org, agent=agent),
        id=agent_workflow_id(org, agent),
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=agent_search_attributes(org, agent),
        task_timeout=AGENT_TASK_TIMEOUT,
    )
    return handle.id


async def command_agent(client: Client, command: AgentCommand) -> bool:
    """Tell a running AgentWorkflow to pause, resume, retire or take a new spec; False
    when its workflow does not run (there is nothing to tell)."""
    assert command.org is not None
    handle = agent_handle(client, command.org, command.agent)
    signal: AgentSignal
    arg: BaseModel | None = None
    if command.action == AgentAction.PAUSE:
        signal = AgentSignal.PAUSE
    elif command.action == AgentAction.RESUME:
        signal = AgentSignal.RESUME
    elif command.action == AgentAction.RETIRE:
        signal, arg = AgentSignal.STOP, StopRequest(reason=command.reason)
    else:
        assert command.spec is not None and command.version is not None
        signal, arg = (
            AgentSignal.UPDATE_SPEC,
            SpecUpdate(spec=command.spec, version=command.version),
        )
    try:
        await handle.signal(signal, *([] if arg is None else [arg]))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def agent_conversation(client: Client, org: str, agent: str) -> AgentConversation:
    """An llm agent's recent conversation (the ``conversation`` query)."""
    return await agent_handle(client, org, agent).query(
        AgentQuery.CONVERSATION, result_type=AgentConversation, rpc_timeout=timedelta(seconds=5)
    )


async def agent_report(
    client: Client, org: str, agent: str, rpc_timeout: timedelta | None = None
) -> AgentReport:
    """The agent's ``status`` query (inbox, counters, failure)."""
    return await agent_handle(client, org, agent).query(
        AgentQuery.STATUS, result_type=AgentReport, rpc_timeout=rpc_timeout
    )


# ---- flows ------------------------------------------------------------------------------

VISIBILITY_LAG_S = 3.0
"""How long a run's name is looked for: Temporal lists a new run after a moment."""
RUN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def flow_handle(client: Client, workflow_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(workflow_id, result_type=FlowResult)


async def start_flow(
    client: Client,
    org: str,
    flow: str,
    input: dict[str, JsonValue],
    *,
    run: str | None = None,
    continue_as_new_after_steps: int | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start a run of one of the org's flows, its definition taken from the running org's
    spec (so the run is self-contained): the very call ``temporal workflow start`` makes."""
    spec = await org_spec(client, org)
    definition = spec.flow(flow)
    if definition is None:
        known = ", ".join(f.name for f in spec.flows) or "none"
        raise BadInputError(f"org {org!r} has no flow {flow!r} (its flows: {known})")
    run = run or uuid.uuid4().hex[:12]
    if not RUN_NAME_RE.match(run):
        raise BadInputError(f"run name {run!r} is not valid (it must match {RUN_NAME_RE.pattern})")
    try:
        return await start_flow_run(
            client,
            FlowInput(
                org=org,
                flow=definition,
                input=input,
                run=run,
                continue_as_new_after_steps=continue_as_new_after_steps,
            ),
        )
    except WorkflowAlreadyStartedError:
        raise BadInputError(f"flow run {flow_workflow_id(org, flow, run)} already exists") from None


async def start_flow_run(client: Client, input: FlowInput) -> WorkflowHandle[Any, Any]:
    """Start a run from its complete input (the bridge's triggers). A run of that id that
    exists or existed raises ``WorkflowAlreadyStartedError``: a name is used once."""
    return await client.start_workflow(
        FLOW_WORKFLOW_TYPE,
        input,
        id=flow_workflow_id(input.org, input.flow.name, input.run),
        task_queue=TASK_QUEUE,
        search_attributes=flow_search_attributes(input.org, input.flow.name),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        result_type=FlowResult,
    )


async def find_flow_run(client: Client, org: str, run: str) -> str:
    """The workflow id of a run, given that id or the run's name."""
    if is_flow_workflow_id(run):
        if run.split(":")[1] != org:
            raise BadInputError(f"flow run {run} is not a run of org {org!r}")
        return run
    deadline = time.monotonic() + VISIBILITY_LAG_S
    while True:
        matches = [r.workflow_id for r in await list_flows(client, org) if r.run == run]
        if matches or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)  # a run started a moment ago may not be listed yet
    if not matches:
        raise BadInputError(f"org {org!r} has no flow run {run!r} (see `kafkaorg flow list {org}`)")
    if len(matches) > 1:
        raise BadInputError(f"run name {run!r} is ambiguous: give one of {', '.join(matches)}")
    return matches[0]


async def flow_status(client: Client, org: str, run: str) -> FlowReport:
    """The run's state (the ``state`` query; a finished run is queried from its history)."""
    workflow_id = await find_flow_run(client, org, run)
    try:
        return await flow_handle(client, workflow_id).query(
            FlowQuery.STATE, result_type=FlowReport, rpc_timeout=timedelta(seconds=10)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise BadInputError(f"no flow run {workflow_id}") from None
        raise


async def list_flows(client: Client, org: str, *, running: bool = False) -> list[FlowRunInfo]:
    """The org's flow runs, newest first (Temporal's visibility: it lags a second or so);
    a run that continued-as-new is one row, its latest execution's."""
    query = f"WorkflowType = '{FLOW_WORKFLOW_TYPE}' AND {ORG_ATTR.name} = '{org}'"
    if running:
        query += " AND ExecutionStatus = 'Running'"
    rows: list[FlowRunInfo] = []
    seen: set[str] = set()
    async for execution in client.list_workflows(query):
        if execution.id in seen:
            continue
        seen.add(execution.id)
        _, _, flow, run = execution.id.split(":", 3)
        attrs = execution.typed_search_attributes
        rows.append(
            FlowRunInfo(
                workflow_id=execution.id,
                flow=attrs.get(FLOW_ATTR) or flow,
                run=run,
                status=execution.status.name.lower() if execution.status else "unknown",
                started_at=execution.start_time,
                closed_at=execution.close_time,
            )
        )
    return rows


async def decide_approval(
    client: Client, org: str, run: str, decision: ApprovalDecision
) -> ApprovalDecision:
    """Approve or deny a run's waiting ``approval`` step; a run not waiting for that step
    refuses (bad input)."""
    workflow_id = await find_flow_run(client, org, run)
    try:
        return await flow_handle(client, workflow_id).execute_update(
            FlowUpdate.DECIDE, decision, result_type=ApprovalDecision
        )
    except WorkflowUpdateFailedError as err:
        raise refusal_of(err) from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise BadInputError(f"flow run {workflow_id} is not running ({exc.message})") from None
        raise


async def decide_org_approval(
    client: Client, org: str, verdict: ApprovalVerdict
) -> ApprovalDecided:
    """A verdict on a request the org holds (``policy.approvals``)."""
    handle = await running_org(client, org)
    try:
        return await handle.execute_update(
            OrgUpdate.DECIDE_APPROVAL, verdict, result_type=ApprovalDecided
        )
    except WorkflowUpdateFailedError as err:
        raise refusal_of(err) from None


async def decide(
    client: Client, approval: ApprovalRow, verdict: ApprovalVerdict
) -> ApprovalDecided:
    """A person's verdict on any approval, wherever it waits: a request the org holds, or
    a flow run's ``approval`` step. Agents never decide; a decided one stays decided."""
    if verdict.by.startswith("agent:"):
        raise BadInputError(f"{verdict.by}: only people decide approvals")
    if approval.status is not ApprovalStatus.PENDING:
        raise BadInputError(
            f"approval {approval.id} was already {approval.status.value}"
            + (f" by {approval.decided_by}" if approval.decided_by else "")
        )
    if approval.kind is not ApprovalKind.FLOW_STEP:
        return await decide_org_approval(client, approval.org, verdict)
    step = str(approval.request.get("step", ""))
    decision = await decide_approval(
        client,
        approval.org,
        str(approval.request.get("run", "")),
        ApprovalDecision(step=step, approve=verdict.approve, by=verdict.by, reason=verdict.reason),
    )
    return ApprovalDecided(
        id=approval.id,
        kind=approval.kind,
        subject=approval.subject,
        approved=decision.approve,
        by=decision.by,
        reason=decision.reason,
        outcome="the run goes on" if decision.approve else "the step is denied",
    )


async def signal_flow_replies(client: Client, workflow_id: str, records: list[Record]) -> None:
    """The bridge's path: agents' records of a run, to the run."""
    await flow_handle(client, workflow_id).signal(FlowSignal.REPLY, FlowReplies(records=records))


__all__ = [
    "RefusalType",
    "RequestRefused",
    "agent_conversation",
    "agent_handle",
    "agent_report",
    "apply_or_launch",
    "apply_spec",
    "approve_tool",
    "change_agent",
    "command_agent",
    "create_agent",
    "create_tool",
    "create_topic",
    "decide",
    "decide_approval",
    "decide_org_approval",
    "deliver",
    "find_flow_run",
    "flow_handle",
    "flow_status",
    "is_running",
    "launch_org",
    "list_flows",
    "org_handle",
    "org_spec",
    "org_status",
    "refusal_of",
    "repair_drift",
    "rollback_tool",
    "running_org",
    "send_update",
    "signal_flow_replies",
    "start_agent",
    "start_flow",
    "start_flow_run",
    "start_org",
    "stop_org",
    "wait_until_applied",
]
