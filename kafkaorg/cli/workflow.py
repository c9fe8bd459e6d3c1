"""``kafkaorg workflow replay``: would today's code still run the workflows that are running?

Fetches histories from Temporal and replays them against the workflow code of
this checkout (the worker's ``WORKFLOWS``), offline: nothing is started,
signalled or changed. Exit 0 when every run replays, 1 when one does not.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kafkaorg.cli._common import check_org_name, console, print_json, run, settings
from kafkaorg.errors import BadInputError
from kafkaorg.history_replay import (
    ReplayReport,
    fetch_org_histories,
    fetch_workflow_histories,
    replay_histories,
)
from kafkaorg.temporal import connect_temporal

workflow_app = typer.Typer(
    help="Check workflow histories against today's code.", no_args_is_help=True
)


async def _replay(target: str, *, org: bool, run_id: str | None) -> list[ReplayReport]:
    from workers.replayer import make_replayer  # the workflows' code: only when replaying

    client = await connect_temporal(settings())
    if org:
        histories = await fetch_org_histories(client, target)
    else:
        histories = await fetch_workflow_histories(client, target, run_id)
    return await replay_histories(histories, make_replayer())


def _print(report: ReplayReport) -> None:
    where = (
        f"{report.workflow_id} run {report.run_id} ({report.workflow_type}, {report.events} events)"
    )
    if report.ok:
        console.print(f"[green]OK[/]        {where}", highlight=False, soft_wrap=True)
        return
    if report.nondeterministic:
        at = f"event {report.divergence_event_id}" if report.divergence_event_id else "event ?"
        console.print(
            f"[red]DIVERGES[/]  {where} at {at}: {report.error}", highlight=False, soft_wrap=True
        )
        return
    console.print(f"[red]FAILED[/]    {where}: {report.error}", highlight=False, soft_wrap=True)


@workflow_app.command("replay")
def replay(
    target: Annotated[
        str, typer.Argument(help="Workflow id (e.g. agent:acme:planner), or ORG with --all.")
    ],
    all_: Annotated[
        bool, typer.Option("--all", help="Replay every workflow (every run) of the org TARGET.")
    ] = False,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Only this run (default: every run).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Replay workflow histories against today's code (a determinism check before a deploy)."""
    if all_:
        check_org_name(target)
        if run_id is not None:
            raise BadInputError("--run-id names one run of one workflow; it cannot go with --all")
    elif not target.strip():
        raise BadInputError("give a workflow id (e.g. org:acme), or an org name with --all")
    reports = run(_replay(target, org=all_, run_id=run_id))
    ok = all(r.ok for r in reports)
    if json_output:
        print_json({"ok": ok, "workflows": [r.model_dump() for r in reports]})
    else:
        for report in reports:
            _print(report)
        bad = sum(not r.ok for r in reports)
        summary = f"{len(reports)} run(s) replayed, {bad} failed"
        console.print(summary if ok else f"[red]{summary}[/]", highlight=False)
    if not ok:
        sys.exit(1)
