"""``kafkaorg flow``: start runs of an org's flows, read their state, decide approvals.

Everything goes through the service layer (``kafkaorg.client``); a run is a
``FlowWorkflow``, so the Temporal Web UI shows the same runs.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import JsonValue
from rich.table import Table

from kafkaorg import client as service
from kafkaorg.cli._common import check_org_name, console, print_json, run, settings
from kafkaorg.contracts import ApprovalDecision, FlowReport, FlowResult, FlowRunInfo
from kafkaorg.envelope import parse_payload_json
from kafkaorg.errors import BadInputError, KafkaorgError
from kafkaorg.temporal import connect_temporal

flow_app = typer.Typer(
    help="Start flow runs, list them, read their state, approve or deny their approvals.",
    no_args_is_help=True,
)


def _input(text: str) -> dict[str, JsonValue]:
    try:
        return parse_payload_json(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"--input is not JSON: {exc.msg} at column {exc.colno}") from None


@flow_app.command("start")
def start(
    org: Annotated[str, typer.Argument(help="Org name.")],
    flow: Annotated[str, typer.Argument(help="A flow of the org's spec.")],
    input: Annotated[str, typer.Option("--input", help="The run's input as JSON.")] = "{}",
    run_name: Annotated[
        str | None, typer.Option("--run", help="The run's name (default: a random one).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Start a run of FLOW with --input; with --wait, print its end (exit 1 if it failed)."""
    check_org_name(org)
    payload = _input(input)

    async def _go() -> tuple[str, FlowResult | None]:
        client = await connect_temporal(settings())
        handle = await service.start_flow(client, org, flow, payload, run=run_name)
        return handle.id, (await handle.result()) if wait else None

    workflow_id, result = run(_go())
    if json_output:
        print_json({"workflow_id": workflow_id, **(result.model_dump() if result else {})})
    else:
        console.print(f"started {workflow_id}", markup=False, highlight=False)
        if result is not None:
            console.print(f"{result.status}: {json.dumps(result.result)}", markup=False)
    if result is not None and result.status != "completed":
        raise KafkaorgError(f"flow run {workflow_id} ended {result.status}: {result.failure}")


@flow_app.command("status")
def status(
    org: Annotated[str, typer.Argument(help="Org name.")],
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run name or workflow id.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A run's state: status, steps with their outputs, visits, decisions, late replies."""
    check_org_name(org)

    async def _go() -> FlowReport:
        return await service.flow_status(await connect_temporal(settings()), org, run_name)

    report = run(_go())
    if json_output:
        print_json(report.model_dump(mode="json"))
        return
    s = report.state
    console.print(f"{report.workflow_id}: {s.status}", markup=False, highlight=False)
    if s.failure:
        console.print(f"  failure: {s.failure}", markup=False, highlight=False)
    if report.waiting_for:
        console.print(f"  waiting for: {', '.join(report.waiting_for)}", markup=False)
    table = Table("step", "kind", "visit", "status", "output")
    for step in s.history:
        table.add_row(
            step.step, step.kind, str(step.visit), step.status, json.dumps(step.output)[:80]
        )
    console.print(table)
    for d in s.decisions:
        console.print(f"  decision {d.step}: {d.choice} by {d.by} ({d.reason})", markup=False)
    if s.late:
        console.print(f"  late replies: {len(s.late)}", markup=False)


@flow_app.command("list")
def list_runs(
    org: Annotated[str, typer.Argument(help="Org name.")],
    running: Annotated[bool, typer.Option("--running", help="Only runs not ended.")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The org's flow runs, newest first."""
    check_org_name(org)

    async def _go() -> list[FlowRunInfo]:
        return await service.list_flows(await connect_temporal(settings()), org, running=running)

    rows = run(_go())
    if json_output:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    table = Table("flow", "run", "status", "started", "workflow id")
    for r in rows:
        started = r.started_at.isoformat() if r.started_at else ""
        table.add_row(r.flow, r.run, r.status, started, r.workflow_id)
    console.print(table)


def _decide(org: str, run_name: str, step: str, approve: bool, reason: str, by: str) -> None:
    check_org_name(org)
    decision = ApprovalDecision(step=step, approve=approve, by=by, reason=reason)

    async def _go() -> ApprovalDecision:
        client = await connect_temporal(settings())
        return await service.decide_approval(client, org, run_name, decision)

    done = run(_go())
    verdict = "approved" if done.approve else "denied"
    console.print(f"{verdict} step {done.step} of {run_name}", markup=False, highlight=False)


@flow_app.command("approve")
def approve(
    org: Annotated[str, typer.Argument(help="Org name.")],
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run name or workflow id.")],
    step: Annotated[str, typer.Argument(help="The approval step waiting.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the decision).")] = "",
    by: Annotated[str, typer.Option("--as", help="Who decides (user:<name>).")] = "user:cli",
) -> None:
    """Approve a run's waiting approval step."""
    _decide(org, run_name, step, True, reason, by)


@flow_app.command("deny")
def deny(
    org: Annotated[str, typer.Argument(help="Org name.")],
    run_name: Annotated[str, typer.Argument(metavar="RUN", help="Run name or workflow id.")],
    step: Annotated[str, typer.Argument(help="The approval step waiting.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the decision).")] = "",
    by: Annotated[str, typer.Option("--as", help="Who decides (user:<name>).")] = "user:cli",
) -> None:
    """Deny a run's waiting approval step."""
    _decide(org, run_name, step, False, reason, by)
