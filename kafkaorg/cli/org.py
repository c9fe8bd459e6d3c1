"""``kafkaorg org``: start, inspect and stop orgs (each one an OrgWorkflow)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import func, select
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from kafkaorg.cli._common import check_org_name, console, db_session, print_json, run, settings
from kafkaorg.config import Settings
from kafkaorg.db import Agent, Org, Topic
from kafkaorg.errors import BadInputError, KafkaorgError, ServiceUnavailableError
from kafkaorg.kafka import check_kafka
from kafkaorg.lag import bridge_lag, lag_by_topic
from kafkaorg.llm import require_llm_for
from kafkaorg.llm.usage import org_token_budget, tokens_by_agent
from kafkaorg.names import TASK_QUEUE, org_search_attributes, org_workflow_id, split_kafka_topic
from kafkaorg.reconcile import diff_specs
from kafkaorg.spec import OrgSpec, load_spec
from kafkaorg.temporal import connect_temporal
from workflows.org import ChangeResult, OrgInput, OrgStatus, OrgStopRequest, OrgWorkflow

org_app = typer.Typer(help="Start, inspect and stop orgs.", no_args_is_help=True)

READY_TIMEOUT_S = 60.0


async def _wait_running(handle: WorkflowHandle[OrgWorkflow, OrgStatus], wait_s: float) -> OrgStatus:
    """Poll the OrgWorkflow until it has applied its spec (or failed)."""
    deadline = time.monotonic() + wait_s
    while True:
        description = await handle.describe()
        if description.status not in (None, WorkflowExecutionStatus.RUNNING):
            raise KafkaorgError(
                f"org workflow {handle.id} ended with status {description.status.name}; "
                f"see it in the Temporal Web UI"
            )
        try:
            status = await handle.query(OrgWorkflow.status, rpc_timeout=_rpc_timeout(deadline))
            if status.phase == "running":
                return status
        except RPCError:
            pass  # no worker has picked up the workflow yet
        if time.monotonic() > deadline:
            raise KafkaorgError(
                f"org workflow {handle.id} is not running after {wait_s:.0f}s: is a worker "
                "running? (`kafkaorg worker`, or `kafkaorg dev up --workers`)"
            )
        await asyncio.sleep(0.3)


def _rpc_timeout(deadline: float) -> timedelta:
    return timedelta(seconds=max(1.0, min(5.0, deadline - time.monotonic())))


async def start_org(spec: OrgSpec, cfg: Settings, *, wait: bool = True) -> OrgStatus | None:
    """Start the org's workflow (the same call ``temporal workflow start`` makes)."""
    await asyncio.to_thread(check_kafka, cfg)
    client = await connect_temporal(cfg)
    try:
        handle = await client.start_workflow(
            OrgWorkflow.run,
            OrgInput.model_validate(spec.model_dump(by_alias=True)),
            id=org_workflow_id(spec.org),
            task_queue=TASK_QUEUE,
            search_attributes=org_search_attributes(spec.org),
        )
    except WorkflowAlreadyStartedError:
        raise BadInputError(
            f"org {spec.org!r} is already running (workflow {org_workflow_id(spec.org)}); "
            f"stop it first with `kafkaorg org stop {spec.org}`"
        ) from None
    if not wait:
        return None
    with console.status(f"Applying org {spec.org!r} (topics, state, agents) …"):
        return await _wait_running(handle, READY_TIMEOUT_S)


@org_app.command("start")
def start(
    file: Annotated[Path, typer.Argument(help="Org spec, YAML or JSON.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Start an org from a spec: create its topics, register and start its agents."""
    spec = load_spec(file)
    cfg = settings()
    require_llm_for(spec.agents, cfg)
    status = run(start_org(spec, cfg))
    assert status is not None
    if json_output:
        print_json(status.model_dump())
        return
    console.print(
        f"[green]org {spec.org!r} is running[/]: {len(status.topics)} topic(s), "
        f"{len(status.agents)} agent(s)"
    )
    console.print(f"Temporal Web UI: {cfg.temporal_ui_org_url(spec.org)}", soft_wrap=True)


async def _handle(client: Client, org: str) -> WorkflowHandle[OrgWorkflow, OrgStatus]:
    handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    try:
        await handle.describe()
    except RPCError:
        raise BadInputError(f"unknown org {org!r}: no workflow {org_workflow_id(org)}") from None
    return handle


async def org_handle(client: Client, org: str) -> WorkflowHandle[OrgWorkflow, OrgStatus]:
    """The running OrgWorkflow of ``org``; an org that is not running is bad input."""
    handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    try:
        description = await handle.describe()
    except RPCError:
        raise BadInputError(f"unknown org {org!r}: no workflow {org_workflow_id(org)}") from None
    if description.status != WorkflowExecutionStatus.RUNNING:
        state = description.status.name if description.status else "UNKNOWN"
        raise BadInputError(f"org {org!r} is not running (its workflow is {state})")
    return handle


async def run_update(
    coro: Coroutine[Any, Any, ChangeResult],
) -> ChangeResult:
    """Await an OrgWorkflow update; its refusal (validator or business rule) is bad input."""
    try:
        return await coro
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = getattr(cause, "message", None) or str(cause or exc)
        raise BadInputError(f"refused: {message}") from None


def current_spec(cfg: Settings, org: str) -> OrgSpec | None:
    """The spec PostgreSQL holds for ``org`` (None: the org was never started)."""
    with db_session(cfg) as session:
        data = session.scalar(select(Org.spec).where(Org.name == org))
    return OrgSpec.model_validate(data) if data is not None else None


@org_app.command("plan")
def plan(
    file: Annotated[Path, typer.Argument(help="Org spec, YAML or JSON.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show what `org apply FILE` would change in the running org, changing nothing."""
    spec = load_spec(file)
    diff = diff_specs(current_spec(settings(), spec.org), spec)
    if json_output:
        print_json({"org": spec.org, "empty": diff.is_empty, **diff.model_dump(mode="json")})
        return
    if diff.is_empty and not diff.problems:
        console.print(f"org {spec.org!r}: no changes")
        return
    for line in diff.summary_lines():
        console.print(line, markup=False, highlight=False)
    for problem in diff.problems:
        console.print(f"! {problem}", markup=False, highlight=False)


@org_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="Org spec, YAML or JSON.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make the running org match a spec (starts the org if it does not run yet)."""
    spec = load_spec(file)
    cfg = settings()
    require_llm_for(spec.agents, cfg)

    async def _apply() -> ChangeResult:
        client = await connect_temporal(cfg)
        handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(spec.org))
        try:
            description = await handle.describe()
            running = description.status == WorkflowExecutionStatus.RUNNING
        except RPCError:
            running = False
        if not running:
            await start_org(spec, cfg)
            return ChangeResult(changed=True, summary=diff_specs(None, spec).summary_lines())
        with console.status(f"Applying changes to org {spec.org!r} …"):
            result = await run_update(handle.execute_update(OrgWorkflow.apply_spec, spec))
            repaired = await run_update(handle.execute_update(OrgWorkflow.repair_drift))
        return ChangeResult(
            changed=result.changed or repaired.changed, summary=result.summary + repaired.summary
        )

    result = run(_apply())
    if json_output:
        print_json(result.model_dump())
        return
    if not result.changed:
        console.print(f"org {spec.org!r}: nothing to change")
    for line in result.summary:
        console.print(line, markup=False, highlight=False)


@org_app.command("status")
def status(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show an org's workflow phase, topics, agents and the bridge's lag on its topics."""
    check_org_name(org)

    async def _status() -> tuple[str, OrgStatus | None]:
        client = await connect_temporal(settings())
        handle = await _handle(client, org)
        description = await handle.describe()
        state = description.status.name if description.status else "UNKNOWN"
        if description.status != WorkflowExecutionStatus.RUNNING:
            return state, None
        return state, await handle.query(OrgWorkflow.status)

    workflow_status, org_status = run(_status())
    lag = _org_lag(org)
    if json_output:
        print_json(
            {
                "workflow_status": workflow_status,
                **(org_status.model_dump() if org_status else {"org": org}),
                "lag": lag,
            }
        )
        return
    console.print(f"org {org!r}: workflow {workflow_status}")
    if org_status:
        console.print(f"  phase: {org_status.phase}")
        console.print(f"  topics: {', '.join(org_status.topics) or '-'}")
        console.print(f"  agents: {', '.join(org_status.agents) or '-'}")
    if lag is not None:
        shown = ", ".join(f"{topic} {n}" for topic, n in lag.items()) or "-"
        console.print(f"  bridge lag (records not yet in a workflow): {shown}")


def _org_lag(org: str) -> dict[str, int] | None:
    """Records of each org topic the bridge has not committed yet (None: Kafka unreachable)."""
    try:
        lags = bridge_lag(settings(), org, timeout=5.0)
    except ServiceUnavailableError:
        return None
    return {split_kafka_topic(t)[1]: n for t, n in lag_by_topic(lags).items()}


@org_app.command("stop")
def stop(
    org: Annotated[str, typer.Argument(help="Org name.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit topic.")] = "stopped by user",
    delete_topics: Annotated[
        bool, typer.Option("--delete-topics", help="Also delete its work topics.")
    ] = False,
) -> None:
    """Stop an org: its agents stop and its state is marked stopped (topics are kept)."""
    check_org_name(org)

    async def _stop() -> None:
        client = await connect_temporal(settings())
        handle = await _handle(client, org)
        await handle.signal(
            OrgWorkflow.stop, OrgStopRequest(reason=reason, delete_work_topics=delete_topics)
        )
        with console.status(f"Stopping org {org!r} …"):
            await handle.result()

    run(_stop())
    console.print(f"org {org!r} stopped")


@org_app.command("list")
def list_orgs(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List orgs known to PostgreSQL, with their agent and topic counts."""
    cfg = settings()
    agents = select(func.count()).where(Agent.org_id == Org.id).scalar_subquery()
    topics = select(func.count()).where(Topic.org_id == Org.id).scalar_subquery()
    with db_session(cfg) as session:
        rows = session.execute(
            select(Org.name, Org.status, agents, topics, Org.created_at).order_by(Org.name)
        ).all()
    items = [
        {
            "org": r[0],
            "status": r[1],
            "agents": r[2],
            "topics": r[3],
            "created_at": r[4].isoformat(),
        }
        for r in rows
    ]
    if json_output:
        print_json(items)
        return
    table = Table("org", "status", "agents", "topics", "created")
    for item in items:
        table.add_row(
            item["org"],
            item["status"],
            str(item["agents"]),
            str(item["topics"]),
            item["created_at"][:19],
        )
    console.print(table)


@org_app.command("usage")
def usage(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """LLM tokens used by each agent of an org, the total and the org's budget."""
    check_org_name(org)
    with db_session(settings()) as session:
        if session.scalar(select(Org.id).where(Org.name == org)) is None:
            raise BadInputError(f"unknown org {org!r}")
        by_agent = tokens_by_agent(session, org)
        budget = org_token_budget(session, org)
    total = sum(u.total_tokens for u in by_agent.values())
    if json_output:
        print_json(
            {
                "org": org,
                "agents": {name: u.model_dump() for name, u in by_agent.items()},
                "total_tokens": total,
                "budget": budget,
            }
        )
        return
    table = Table("agent", "prompt", "completion", "total")
    for name, u in by_agent.items():
        table.add_row(name, str(u.prompt_tokens), str(u.completion_tokens), str(u.total_tokens))
    console.print(table)
    left = f"; budget {budget} ({max(budget - total, 0)} left)" if budget is not None else ""
    console.print(f"total {total} token(s){left}")
