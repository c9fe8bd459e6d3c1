"""``kafkaorg approval``: what waits for a person in an org, and the verdicts.

Listings read PostgreSQL (``kafkaorg.org_queries``): an agent's request the org's
``policy.approvals`` holds, and every flow run's ``approval`` step. A verdict goes to
whichever workflow holds the approval (the OrgWorkflow or the flow run), which carries
it out, records who decided, and announces it on the audit and approvals topics.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.cli._common import check_org_name, console, print_json, run, settings
from kafkaorg.contracts import ApprovalDecided, ApprovalVerdict
from kafkaorg.temporal import connect_temporal

approval_app = typer.Typer(
    help="List what waits for a person in an org; approve or deny it.", no_args_is_help=True
)


@approval_app.command("list")
def list_approvals(
    org: Annotated[str, typer.Argument(help="Org name.")],
    all_: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Approvals waiting in the org (with --all, decided ones and who decided)."""
    check_org_name(org)
    rows = queries.list_approvals(settings(), org, include_decided=all_)
    if json_output:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    if not rows:
        console.print(f"nothing waits for approval in {org}", highlight=False)
        return
    table = Table("id", "kind", "subject", "requested by", "status", "deadline", "decided by")
    for row in rows:
        deadline = f"{row.deadline:%Y-%m-%d %H:%M:%S}Z, then {row.timeout_default}"
        table.add_row(
            row.id,
            row.kind.value,
            row.subject,
            row.requested_by,
            row.status.value,
            deadline,
            row.decided_by or "",
        )
    console.print(table)


def _decide(org: str, approval_id: str, approve: bool, reason: str, by: str, as_json: bool) -> None:
    check_org_name(org)
    cfg = settings()
    approval = queries.find_approval(cfg, org, approval_id)
    verdict = ApprovalVerdict(id=approval_id, approve=approve, by=by, reason=reason)

    async def _go() -> ApprovalDecided:
        return await service.decide(await connect_temporal(cfg), approval, verdict)

    decided = run(_go())
    if as_json:
        print_json(decided.model_dump(mode="json"))
        return
    verdict_word = "approved" if decided.approved else "denied"
    line = f"{decided.id} ({decided.kind.value} {decided.subject}) {verdict_word} by {decided.by}"
    console.print(line, markup=False, highlight=False)
    if decided.outcome:
        console.print(decided.outcome, markup=False, highlight=False)


_ID = Annotated[str, typer.Argument(help="The approval's id (from kafkaorg approval list).")]
_REASON = Annotated[str, typer.Option("--reason", help="Why; recorded with the verdict.")]
_BY = Annotated[str, typer.Option("--as", help="Who decides: user:<name>.")]
_JSON = Annotated[bool, typer.Option("--json")]


@approval_app.command("approve")
def approve(
    org: Annotated[str, typer.Argument(help="Org name.")],
    approval_id: _ID,
    reason: _REASON = "",
    by: _BY = "user:cli",
    json_output: _JSON = False,
) -> None:
    """Approve: the held action is carried out now (its rules checked again)."""
    _decide(org, approval_id, True, reason, by, json_output)


@approval_app.command("deny")
def deny(
    org: Annotated[str, typer.Argument(help="Org name.")],
    approval_id: _ID,
    reason: _REASON = "",
    by: _BY = "user:cli",
    json_output: _JSON = False,
) -> None:
    """Deny: the held action is dropped (a flow step goes to its on_deny, or the run ends)."""
    _decide(org, approval_id, False, reason, by, json_output)
