"""``kafkaorg tool``: an org's registered tools and their immutable versions.

Listings read PostgreSQL (the registry, via ``kafkaorg.org_queries``); approving a
version goes through the org's OrgWorkflow, which records it and announces it on the
audit topic.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.cli._common import check_org_name, console, print_json, run, settings
from kafkaorg.contracts import ApproveToolRequest, ChangeResult, RollbackToolRequest
from kafkaorg.temporal import connect_temporal

tool_app = typer.Typer(
    help="List, inspect, approve and roll back an org's tools.", no_args_is_help=True
)


def _version_json(version: queries.ToolVersionRow) -> dict[str, Any]:
    created_at = version.created_at.isoformat() if version.created_at else None
    return {**version.model_dump(), "created_at": created_at}


@tool_app.command("list")
def list_tools(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every tool of the org with its current version and its latest version's status."""
    check_org_name(org)
    rows = queries.list_tools(settings(), org)
    if json_output:
        print_json([r.model_dump() for r in rows])
        return
    table = Table("tool", "current", "latest", "status", "description", title=f"tools of {org}")
    for row in rows:
        table.add_row(
            row.tool,
            str(row.current_version or "-"),
            str(row.latest_version),
            row.latest_status,
            row.description,
        )
    console.print(table)


@tool_app.command("show")
def show_tool(
    org: Annotated[str, typer.Argument(help="Org name.")],
    tool: Annotated[str, typer.Argument(help="Tool name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A tool's versions: status, test result (and why a failed one failed), code."""
    check_org_name(org)
    detail = queries.tool_detail(settings(), org, tool)
    current, versions = detail.current_version, detail.versions
    if json_output:
        print_json(
            {
                "tool": tool,
                "current_version": current,
                "versions": [_version_json(v) for v in versions],
            }
        )
        return
    console.print(f"tool {tool} (current version: {current or 'none'})", highlight=False)
    for v in versions:
        mark = " (current)" if v.current else ""
        line = f"v{v.version}{mark}: {v.status}, {v.tests_run} test(s)"
        if v.reason:
            line += f" — {v.reason}"
        console.print(line, markup=False, highlight=False)
    console.print("--- code of the newest version ---", highlight=False)
    console.print(versions[0].code, markup=False, highlight=False)


@tool_app.command("approve")
def approve(
    org: Annotated[str, typer.Argument(help="Org name.")],
    tool: Annotated[str, typer.Argument(help="Tool name.")],
    version: Annotated[int, typer.Argument(help="The version to approve.")],
    approved_by: Annotated[str, typer.Option("--as", help="user:<name>.")] = "user:cli",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approve a tested version (orgs with ``policy: {tool_approval: human}``): it goes live."""
    check_org_name(org)
    request = ApproveToolRequest(tool=tool, version=version, approved_by=approved_by)

    async def _go() -> ChangeResult:
        return await service.approve_tool(await connect_temporal(settings()), org, request)

    result = run(_go())
    if json_output:
        print_json(result.model_dump())
        return
    for line in result.summary:
        console.print(line, markup=False, highlight=False)


@tool_app.command("rollback")
def rollback(
    org: Annotated[str, typer.Argument(help="Org name.")],
    tool: Annotated[str, typer.Argument(help="Tool name.")],
    version: Annotated[int, typer.Argument(help="An earlier version that passed its tests.")],
    requested_by: Annotated[str, typer.Option("--as", help="user:<name>.")] = "user:cli",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make an earlier tested version current again (until a newer one passes its tests)."""
    check_org_name(org)
    request = RollbackToolRequest(tool=tool, version=version, requested_by=requested_by)

    async def _go() -> ChangeResult:
        return await service.rollback_tool(await connect_temporal(settings()), org, request)

    result = run(_go())
    if json_output:
        print_json(result.model_dump())
        return
    for line in result.summary:
        console.print(line, markup=False, highlight=False)
