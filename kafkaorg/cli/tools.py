"""``kafkaorg tool``: an org's registered tools and their immutable versions.

Listings read PostgreSQL (the registry); approving a version goes through the
org's OrgWorkflow, which records it and announces it on the audit topic.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select

from kafkaorg import client as service
from kafkaorg.cli._common import check_org_name, console, db_session, print_json, run, settings
from kafkaorg.contracts import ApproveToolRequest, ChangeResult, RollbackToolRequest
from kafkaorg.db import Org
from kafkaorg.db.models import Tool, ToolVersion
from kafkaorg.errors import BadInputError
from kafkaorg.temporal import connect_temporal

tool_app = typer.Typer(
    help="List, inspect, approve and roll back an org's tools.", no_args_is_help=True
)


def _versions(org: str, tool: str | None = None) -> list[dict[str, Any]]:
    """Every version (newest first within a tool), with whether it is the current one."""
    with db_session(settings()) as session:
        if session.scalar(select(Org.id).where(Org.name == org)) is None:
            raise BadInputError(f"unknown org {org!r}")
        query = (
            select(Tool.name, Tool.current_version, ToolVersion)
            .join(Org, Org.id == Tool.org_id)
            .join(ToolVersion, ToolVersion.tool_id == Tool.id)
            .where(Org.name == org)
            .order_by(Tool.name, ToolVersion.version.desc())
        )
        if tool is not None:
            query = query.where(Tool.name == tool)
        return [
            {
                "tool": name,
                "version": v.version,
                "status": v.status,
                "current": current == v.version,
                "description": v.description,
                "author": v.author,
                "created_at": v.created_at.isoformat() if v.created_at else None,
                "args_schema": v.args_schema,
                "test_result": v.test_result,
                "code": v.code,
                "tests": v.tests,
            }
            for name, current, v in session.execute(query).tuples().all()
        ]


def _reason(version: dict[str, Any]) -> str:
    result = version.get("test_result") or {}
    return str(result.get("reason") or "")


@tool_app.command("list")
def list_tools(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every tool of the org with its current version and its latest version's status."""
    check_org_name(org)
    latest: dict[str, dict[str, Any]] = {}
    currents: dict[str, int | None] = {}
    for v in _versions(org):
        latest.setdefault(v["tool"], v)
        currents.setdefault(v["tool"], None)
        if v["current"]:
            currents[v["tool"]] = v["version"]
    rows = [
        {
            "tool": name,
            "current_version": currents[name],
            "latest_version": v["version"],
            "latest_status": v["status"],
            "description": v["description"],
            "reason": _reason(v) or None,
        }
        for name, v in latest.items()
    ]
    if json_output:
        print_json(rows)
        return
    table = Table("tool", "current", "latest", "status", "description", title=f"tools of {org}")
    for row in rows:
        table.add_row(
            row["tool"],
            str(row["current_version"] or "-"),
            str(row["latest_version"]),
            row["latest_status"],
            row["description"],
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
    versions = _versions(org, tool)
    if not versions:
        raise BadInputError(f"unknown tool {tool!r} in org {org!r}")
    current = next((v["version"] for v in versions if v["current"]), None)
    if json_output:
        print_json({"tool": tool, "current_version": current, "versions": versions})
        return
    console.print(f"tool {tool} (current version: {current or 'none'})", highlight=False)
    for v in versions:
        result = v["test_result"] or {}
        mark = " (current)" if v["current"] else ""
        line = f"v{v['version']}{mark}: {v['status']}, {result.get('tests', 0)} test(s)"
        if _reason(v):
            line += f" — {_reason(v)}"
        console.print(line, markup=False, highlight=False)
    console.print("--- code of the newest version ---", highlight=False)
    console.print(versions[0]["code"], markup=False, highlight=False)


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
