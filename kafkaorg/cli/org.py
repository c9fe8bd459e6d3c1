"""``kafkaorg org``: start, inspect and stop orgs (each one an OrgWorkflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import (
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.cli._common import check_org_name, console, count_bar, print_json, run, settings
from kafkaorg.config import Settings
from kafkaorg.contracts import ChangeResult, OrgStatus, OrgStopRequest
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.lag import bridge_lag, lag_by_topic
from kafkaorg.llm import require_llm_for
from kafkaorg.names import org_workflow_id, split_kafka_topic
from kafkaorg.reconcile import diff_specs
from kafkaorg.spec import OrgSpec, load_spec
from kafkaorg.temporal import connect_temporal

org_app = typer.Typer(help="Start, inspect and stop orgs.", no_args_is_help=True)


PROGRESS_BAR_AGENTS = 20
"""From this many agents on, ``org start`` shows a bar of the agents started."""


async def start_org(spec: OrgSpec, cfg: Settings) -> OrgStatus:
    if len(spec.agents) < PROGRESS_BAR_AGENTS:
        with console.status(f"Applying org {spec.org!r} (topics, state, agents) …"):
            status = await service.launch_org(cfg, spec)
    else:
        with count_bar("{task.description}") as bar:
            agents = bar.add_task(f"org {spec.org}: agents running", total=len(spec.agents))
            status = await service.launch_org(
                cfg, spec, on_progress=lambda n: bar.update(agents, completed=n)
            )
    assert status is not None
    return status


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
    if json_output:
        print_json(status.model_dump())
        return
    console.print(
        f"[green]org {spec.org!r} is running[/]: {len(status.topics)} topic(s), "
        f"{len(status.agents)} agent(s)"
    )
    console.print(f"Temporal Web UI: {cfg.temporal_ui_org_url(spec.org)}", soft_wrap=True)


@org_app.command("plan")
def plan(
    file: Annotated[Path, typer.Argument(help="Org spec, YAML or JSON.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show what `org apply FILE` would change in the running org, changing nothing."""
    spec = load_spec(file)
    cfg = settings()
    diff = diff_specs(queries.current_spec(cfg, spec.org), spec)
    schemas = service.plan_spec_schemas(cfg, spec)
    if json_output:
        print_json(
            {
                "org": spec.org,
                "empty": diff.is_empty and not schemas,
                **diff.model_dump(mode="json"),
                "schemas": [r.model_dump(mode="json") for r in schemas],
            }
        )
        return
    if diff.is_empty and not diff.problems and not schemas:
        console.print(f"org {spec.org!r}: no changes")
        return
    for line in diff.summary_lines():
        console.print(line, markup=False, highlight=False)
    for report in schemas:
        mark = "~ schema" if report.compatible else "! schema"
        console.print(f"{mark} {report.text()}", markup=False, highlight=False, soft_wrap=True)
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
        with console.status(f"Applying org {spec.org!r} …"):
            return await service.apply_or_launch(cfg, client, spec)

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
        handle = service.org_handle(await connect_temporal(settings()), org)
        try:
            description = await handle.describe()
        except RPCError:
            raise BadInputError(
                f"unknown org {org!r}: no workflow {org_workflow_id(org)}"
            ) from None
        state = description.status.name if description.status else "UNKNOWN"
        if description.status != WorkflowExecutionStatus.RUNNING:
            return state, None
        return state, await service.org_status(handle)

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
        handle = await service.stop_org(
            await connect_temporal(settings()),
            org,
            OrgStopRequest(reason=reason, delete_work_topics=delete_topics),
        )
        with console.status(f"Stopping org {org!r} …"):
            await handle.result()

    run(_stop())
    console.print(f"org {org!r} stopped")


@org_app.command("list")
def list_orgs(json_output: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List orgs known to PostgreSQL, with their agent and topic counts."""
    items = [
        {**r.model_dump(), "created_at": r.created_at.isoformat()}
        for r in queries.list_orgs(settings())
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
    shown = queries.org_usage(settings(), org)
    if json_output:
        print_json(shown.model_dump())
        return
    table = Table("agent", "prompt", "completion", "total")
    for name, u in shown.agents.items():
        table.add_row(name, str(u.prompt_tokens), str(u.completion_tokens), str(u.total_tokens))
    console.print(table)
    budget, total = shown.budget, shown.total_tokens
    left = f"; budget {budget} ({max(budget - total, 0)} left)" if budget is not None else ""
    console.print(f"total {total} token(s){left}")
